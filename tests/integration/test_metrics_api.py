"""The metrics API against the real Prometheus scraping real proxies, on loopback.

Three ``weft proxy`` processes forward to a small backend (``/ok``, ``/fail`` answering 500,
``/slow`` after 220 ms): ``web`` (requests go straight to its inbound listener), ``api``, and
``vote-bot``, api's client, whose outbound listener resolves ``api-svc`` through the real
destination service (route series from api-svc's ServiceProfile, ``dst_*`` labels). An
in-memory platform lists their "pods" at 127.0.0.1, labelled as the injector labels pods, with
each proxy's admin port; the destination service, the targets server and the metrics API run
in a background event loop over that platform, on sockets bound before they start; Prometheus
(config from ``weft.controller.prometheus.config``, 1 s scrapes) discovers the proxies through
the targets server. The API's answers are compared with the requests sent.

Prometheus's ``increase()`` extrapolates to the ends of the window, so counts are checked to be
never below what was sent and within +10% of it once the series hold some history.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import uvloop

from harness.loopback import LoopbackProxy
from harness.mesh import wait_for
from tests.prometheus import PrometheusProcess, prometheus_missing
from weft.controller.destination.addresses import MeshSettings
from weft.controller.destination.service import DestinationService
from weft.controller.metrics_api.api import MetricsApi
from weft.controller.metrics_api.prometheus import PrometheusClient, PrometheusError
from weft.controller.metrics_api.server import serve_metrics_api
from weft.controller.prometheus.config import PrometheusSettings
from weft.controller.prometheus.server import serve_targets
from weft.local.api_server import ApiServer
from weft.local.cluster_config import ClusterConfig
from weft.local.store import ObjectStore
from weft.platform import PlatformError, TokenReview, WatchEvent

pytestmark = pytest.mark.skipif(prometheus_missing() is not None, reason=str(prometheus_missing()))

T = TypeVar("T")
Obj = dict[str, Any]
NS = "emojivoto"
POD = "web-5d4f-abcde"
API_POD = "api-5d4f-fghij"
CLIENT_POD = "vote-bot-5d4f-klmno"
API_FQN = "api-svc.emojivoto.svc.cluster.local"
API_AUTHORITY = f"{API_FQN}:80"
SLOW_SECONDS = 0.22


class StaticPlatform:
    """A platform double whose objects never change: lists, and watches that stay quiet."""

    def __init__(self, objects: list[Obj]) -> None:
        self.objects = objects

    async def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """The objects of ``kind`` (in ``namespace``)."""
        return [
            o
            for o in self.objects
            if o["kind"] == kind and namespace in (None, o["metadata"].get("namespace"))
        ]

    async def watch(self, kind: str, namespace: str | None = None) -> AsyncIterator[WatchEvent]:
        """ADDED for each object, then nothing."""
        for obj in await self.list(kind, namespace):
            yield WatchEvent("ADDED", obj)
        await asyncio.Event().wait()

    async def mint_token(self, namespace: str, service_account: str, pod: str) -> str:
        """Not used here."""
        raise PlatformError("no tokens here")

    async def verify_token(self, token: str) -> TokenReview:
        """Not used here."""
        return TokenReview(False, reason="no tokens here")


class LoopThread:
    """An event loop in a thread, for the in-process servers."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` in the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Served:
    """A server running in the loop until ``stop`` is set."""

    stop: asyncio.Event
    task: asyncio.Task[None]


def serve(loop: LoopThread, start: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> Served:
    """Start ``start(stop)`` as a task in ``loop``."""

    async def begin() -> Served:
        stop = asyncio.Event()
        return Served(stop, asyncio.create_task(start(stop)))

    return loop.run(begin())


def shut(loop: LoopThread, served: Served) -> None:
    """Stop a server and wait for it."""

    async def end() -> None:
        served.stop.set()
        await served.task

    loop.run(end())


def listening() -> socket.socket:
    """A socket listening on a port of 127.0.0.1 the kernel picked."""
    return socket.create_server(("127.0.0.1", 0))


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


# -- the backend ------------------------------------------------------------------------------


class Backend(BaseHTTPRequestHandler):
    """``/ok`` 200, ``/fail`` 500, ``/slow`` 200 after 220 ms."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(SLOW_SECONDS)  # the workload being measured, not a synchronisation
        status = 500 if self.path == "/fail" else 200
        body = b"failed\n" if status == 500 else b"ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class BackendServer(ThreadingHTTPServer):
    """The backend's server, with a listen backlog for three proxies' connections (the
    default of 5 can drop connection attempts while the proxies open ten at once)."""

    request_queue_size = 128
    daemon_threads = True


def send(port: int, paths: list[str], host: str = "web-svc.emojivoto:80") -> list[int]:
    """GET each path through the proxy on ``port`` (ten at a time); the status codes."""

    def one(path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            rsp = conn.getresponse()
            rsp.read()
            return rsp.status
        finally:
            conn.close()

    with ThreadPoolExecutor(10) as pool:
        return list(pool.map(one, paths))


# -- objects ----------------------------------------------------------------------------------


def meshed_pod(name: str, app: str, admin_port: int) -> Obj:
    """A pod of deployment ``app`` whose proxy is a loopback proxy, labelled as the injector
    labels pods."""
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {
                "app": app,
                "pod-template-hash": "5d4f",
                "linkerd.io/control-plane-ns": "weft",
                "linkerd.io/proxy-deployment": app,
                "linkerd.io/workload-ns": NS,
            },
            "ownerReferences": [{"kind": "Deployment", "name": app, "controller": True}],
        },
        "spec": {
            "serviceAccountName": app,
            "initContainers": [
                {
                    "name": "linkerd-proxy",
                    "restartPolicy": "Always",
                    "env": [
                        {
                            "name": "LINKERD2_PROXY_ADMIN_LISTEN_ADDR",
                            "value": f"127.0.0.1:{admin_port}",
                        }
                    ],
                }
            ],
            "containers": [{"name": app}],
        },
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    }


def metrics_api_pod(admin_port: int) -> Obj:
    """The metrics API's own pod, so Prometheus scrapes its admin port as a controller."""
    return {
        "kind": "Pod",
        "metadata": {
            "name": "weft-metrics-api-1",
            "namespace": "weft",
            "labels": {"weft.io/control-plane-component": "metrics-api"},
        },
        "spec": {
            "serviceAccountName": "weft-metrics-api",
            "containers": [
                {
                    "name": "metrics-api",
                    "ports": [{"name": "admin-http", "containerPort": admin_port}],
                }
            ],
        },
        "status": {"phase": "Running", "podIP": "127.0.0.1"},
    }


def api_service(inbound_port: int) -> list[Obj]:
    """Service api-svc (port 80) whose one endpoint is the api proxy's inbound port, and its
    ServiceProfile: GET /ok, GET /fail and GET /never (which gets no traffic)."""
    routes = [
        {"name": f"GET /{path}", "condition": {"method": "GET", "pathRegex": f"/{path}"}}
        for path in ("ok", "fail", "never")
    ]
    return [
        {
            "kind": "Service",
            "metadata": {"name": "api-svc", "namespace": NS},
            "spec": {
                "clusterIP": "10.96.0.40",
                "selector": {"app": "api"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
        {
            "kind": "Endpoints",
            "metadata": {"name": "api-svc", "namespace": NS},
            "subsets": [
                {
                    "ports": [{"name": "http", "port": inbound_port}],
                    "addresses": [
                        {
                            "ip": "127.0.0.1",
                            "targetRef": {"kind": "Pod", "name": API_POD, "namespace": NS},
                        }
                    ],
                }
            ],
        },
        {
            "kind": "ServiceProfile",
            "metadata": {"name": API_FQN, "namespace": NS},
            "spec": {"routes": routes},
        },
    ]


def cluster(
    web: LoopbackProxy, api: LoopbackProxy, client: LoopbackProxy, api_admin: int
) -> list[Obj]:
    """The platform's objects: deployments web, idle (no pods), api and vote-bot (api's
    client), their pods, api-svc and the metrics API's pod."""
    return [
        {"kind": "Namespace", "metadata": {"name": NS}},
        *(
            {"kind": "Deployment", "metadata": {"name": name, "namespace": NS}}
            for name in ("web", "idle", "api", "vote-bot")
        ),
        meshed_pod(POD, "web", web.admin),
        meshed_pod(API_POD, "api", api.admin),
        meshed_pod(CLIENT_POD, "vote-bot", client.admin),
        *api_service(api.inbound),
        metrics_api_pod(api_admin),
    ]


def start_destination(loop: LoopThread, platform: StaticPlatform) -> tuple[int, Callable[[], None]]:
    """The destination service on a gRPC port of 127.0.0.1; (port, stop)."""

    async def begin() -> tuple[int, Callable[[], Coroutine[Any, Any, None]]]:
        service = DestinationService(platform, MeshSettings())
        server = grpc.aio.server()
        service.add_to_server(server)
        port: int = server.add_insecure_port("127.0.0.1:0")
        await service.start()
        await server.start()

        async def end() -> None:
            await server.stop(1)
            await service.stop()

        return port, end

    port, end = loop.run(begin())
    return port, lambda: loop.run(end())


# -- the API ----------------------------------------------------------------------------------


def call(base: str, method: str, body: Any = None) -> tuple[int, Any]:
    """POST ``body`` (GET without one) to ``/api/v1/<method>``; (status, decoded JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/v1/{method}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as rsp:
            return rsp.status, json.load(rsp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def stat(base: str, **extra: Any) -> tuple[int, Any]:
    body = {
        "selector": {"resource": {"namespace": NS, "type": "deployment", "name": "web"}},
        "timeWindow": "1m",
        "tcpStats": True,
        **extra,
    }
    return call(base, "StatSummary", body)


def web_row(base: str, **extra: Any) -> Obj:
    status, answer = stat(base, **extra)
    assert status == 200, answer
    rows = answer["ok"]["statTables"][0]["podGroup"]["rows"]
    assert [r["resource"]["name"] for r in rows] == ["web"]
    row: Obj = rows[0]
    return row


@dataclass
class Setup:
    """Everything the tests share."""

    web: LoopbackProxy
    client: LoopbackProxy
    prometheus: PrometheusProcess
    api: str
    loop: LoopThread
    platform: StaticPlatform


def has_series(prometheus: PrometheusProcess, selector: str, count: int) -> Callable[[], bool]:
    """A check: whether Prometheus holds ``count`` series for ``selector``."""
    return lambda: len(prometheus.query(selector)) == count


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("metrics-api")
    backend = BackendServer(("127.0.0.1", 0), Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    forward = ("127.0.0.1", backend.server_port)
    # Every proxy listens on 127.0.0.1 only: that is its "pod IP" in the platform's objects.
    web = LoopbackProxy(forward, directory, host="127.0.0.1")
    api_proxy = LoopbackProxy(forward, directory, host="127.0.0.1")
    loop = LoopThread()
    prometheus: PrometheusProcess | None = None
    client: LoopbackProxy | None = None
    stops: list[Callable[[], None]] = []
    try:
        web.start()
        api_proxy.start()
        targets_sock, api_sock, api_admin_sock = listening(), listening(), listening()
        # The client needs the destination service's port, so it starts after it; the platform
        # learns the client's admin port once it has started, before the targets server reads it.
        client_ports = LoopbackProxy(forward, directory, host="127.0.0.1")
        platform = StaticPlatform(cluster(web, api_proxy, client_ports, port_of(api_admin_sock)))
        destination_port, stop_destination = start_destination(loop, platform)
        stops.append(stop_destination)
        client_ports.env.update(
            LINKERD2_PROXY_DESTINATION_SVC_ADDR=f"127.0.0.1:{destination_port}",
            LINKERD2_PROXY_DESTINATION_CONTEXT=f"ns:{NS}",
        )
        client = client_ports.start()
        platform.objects = cluster(web, api_proxy, client, port_of(api_admin_sock))
        targets = serve(
            loop, lambda stop: serve_targets(platform, "weft", targets_sock, None, stop)
        )
        stops.append(lambda: shut(loop, targets))
        settings = PrometheusSettings(
            scrape_interval="1s",
            evaluation_interval="1s",
            refresh_interval="1s",
            targets_url=f"http://127.0.0.1:{port_of(targets_sock)}/targets",
        )
        prometheus = PrometheusProcess(directory / "prometheus", settings).start()
        api = MetricsApi(platform, PrometheusClient(prometheus.url), MeshSettings())
        served = serve(loop, lambda stop: serve_metrics_api(api, api_sock, api_admin_sock, stop))
        stops.append(lambda: shut(loop, served))
        # A request of each kind first, so every series the tests count exists in Prometheus
        # before the measured requests (increase() cannot see what came before a series' first
        # sample).
        assert send(web.inbound, ["/ok", "/fail"]) == [200, 500]
        assert send(client.outbound, ["/ok", "/fail", "/slow"], API_AUTHORITY) == [200, 500, 200]
        for selector, count in (
            ('response_total{direction="inbound", deployment="web"}', 2),
            ('response_total{direction="inbound", deployment="api"}', 2),
            ('response_total{direction="outbound", deployment="vote-bot"}', 2),
            ('route_response_total{deployment="vote-bot"}', 3),
        ):
            wait_for(has_series(prometheus, selector, count), 30, what=f"warm-up series {selector}")
        yield Setup(
            web, client, prometheus, f"http://127.0.0.1:{port_of(api_sock)}", loop, platform
        )
    finally:
        for stop in reversed(stops):
            stop()
        loop.close()
        if prometheus is not None:
            prometheus.stop()
        for proxy in (client, api_proxy, web):
            if proxy is not None:
                proxy.stop()
        backend.shutdown()
        backend.server_close()


# -- tests (in this order: the first needs the history to start at the warm-up) --------------


def test_stat_summary_counts_the_requests_sent_through_the_proxy(setup: Setup) -> None:
    paths = ["/ok"] * 60 + ["/fail"] * 20 + ["/slow"] * 20
    statuses = send(setup.web.inbound, paths[::3] + paths[1::3] + paths[2::3])
    assert statuses.count(200) == 80 and statuses.count(500) == 20, statuses

    def scraped() -> bool:
        totals = setup.prometheus.query(
            'sum(response_total{direction="inbound", deployment="web"}) by (classification)'
        )
        found = {t["metric"]["classification"]: float(t["value"][1]) for t in totals}
        return found == {"success": 81.0, "failure": 21.0}  # with the warm-up's two

    wait_for(scraped, 30, what="Prometheus scraping every request")

    # increase() extrapolates from the series' first sample to the window's ends, which only
    # adds (the warm-up made the first sample precede the measured requests): the API may
    # over-count by up to ~1.9 s of the series' history (its scrape interval to the window's
    # end, the extrapolation towards zero before it), so it is within +10% once the series
    # holds ~20 s of samples, and never below what was sent.
    def within_tolerance() -> Obj | None:
        row = web_row(setup.api)
        stats = row["stats"]
        assert stats["successCount"] >= 80 and stats["failureCount"] >= 20, stats
        if stats["successCount"] <= 88 and stats["failureCount"] <= 22:
            return row
        return None

    row = wait_for(within_tolerance, 40, what="counts within 10% of what was sent", interval=1)
    assert row is not None
    assert (row["meshedPodCount"], row["runningPodCount"], row["failedPodCount"]) == (1, 1, 0)
    assert row["resource"] == {"namespace": NS, "type": "deployment", "name": "web"}
    assert row["timeWindow"] == "1m"
    tcp = row["tcpStats"]
    assert tcp["readBytesTotal"] > 0 and tcp["writeBytesTotal"] > 0
    assert tcp["openConnections"] >= 0


def test_latency_quantiles_fall_in_the_buckets_of_the_requests(setup: Setup) -> None:
    # Latencies use irate() (the last two scrapes), so traffic must still be flowing: rounds of
    # eight fast and two slow requests (slow: 220 ms, in Linkerd's (200, 300] bucket).
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            send(setup.web.inbound, ["/ok"] * 8 + ["/slow"] * 2)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    seen: list[Obj] = []

    def in_buckets() -> bool:
        stats = web_row(setup.api)["stats"]
        seen[:] = [stats]
        return bool(
            stats
            and stats["latencyMsP50"] is not None
            and stats["latencyMsP50"] < 100
            and 200 < (stats["latencyMsP95"] or 0) <= 300
            and 200 < (stats["latencyMsP99"] or 0) <= 300
        )

    try:
        wait_for(in_buckets, 30, what=f"p50 fast, p95 and p99 in (200, 300]; saw {seen}")
    finally:
        stop.set()
        sender.join(30)


def close_to(got: int, sent: int) -> bool:
    """Never below what was sent (assertion), and within +10% (rounded up) of it."""
    assert got >= sent, f"{got} < {sent} sent"
    return got <= math.ceil(sent * 1.1)


def test_routes_directions_services_and_edges_from_a_meshed_client(setup: Setup) -> None:
    paths = ["/ok"] * 20 + ["/fail"] * 10 + ["/slow"] * 5
    statuses = send(setup.client.outbound, paths, API_AUTHORITY)
    assert statuses.count(200) == 25 and statuses.count(500) == 10

    def scraped() -> bool:
        # Every proxy's series hold every request (the warm-up's included).
        def totals(query: str, label: str) -> dict[str, float]:
            found = setup.prometheus.query(query)
            return {t["metric"].get(label, ""): float(t["value"][1]) for t in found}

        routes = 'sum(route_response_total{deployment="vote-bot"}) by (rt_route)'
        server = 'sum(response_total{direction="inbound", deployment="api"}) by (classification)'
        client = (
            'sum(response_total{direction="outbound", deployment="vote-bot"}) by (classification)'
        )
        expected = {"success": 27.0, "failure": 11.0}
        return (
            totals(routes, "rt_route") == {"GET /ok": 21.0, "GET /fail": 11.0, "": 6.0}
            and totals(server, "classification") == expected
            and totals(client, "classification") == expected
        )

    wait_for(scraped, 30, what="Prometheus scraping the client's and the server's series")

    def routes(body: Obj) -> dict[str, Obj]:
        status, answer = call(setup.api, "TopRoutes", body)
        assert status == 200, answer
        (table,) = answer["ok"]["routes"]
        assert {row["authority"] for row in table["rows"]} == {API_AUTHORITY}
        return {row["route"]: row["stats"] for row in table["rows"]}

    def stat_row(body: Obj) -> Obj:
        status, answer = call(setup.api, "StatSummary", {"timeWindow": "1m", **body})
        assert status == 200, answer
        (row,) = answer["ok"]["statTables"][0]["podGroup"]["rows"]
        stats: Obj = row["stats"]
        return stats

    def resource(kind: str, name: str) -> Obj:
        return {"namespace": NS, "type": kind, "name": name}

    def counted() -> bool:
        # Routes of api's services as its callers measured them, and the client's own view.
        for body in (
            {"selector": {"resource": resource("deployment", "api")}},
            {
                "selector": {"resource": resource("deployment", "vote-bot")},
                "toResource": resource("deployment", "api"),
            },
        ):
            found = routes({"timeWindow": "1m", **body})
            assert list(found) == ["GET /ok", "GET /fail", "GET /never", "[DEFAULT]"]
            assert found["GET /never"]["successCount"] == 0
            if not (
                close_to(found["GET /ok"]["successCount"], 20)
                and close_to(found["GET /ok"]["actualSuccessCount"], 20)
                and close_to(found["GET /fail"]["failureCount"], 10)
                and close_to(found["[DEFAULT]"]["successCount"], 5)
            ):
                return False
        # Golden metrics: at the server, from the client, to the server, and of the service.
        for body in (
            {"selector": {"resource": resource("deployment", "api")}},
            {
                "selector": {"resource": resource("deployment", "api")},
                "fromResource": resource("deployment", "vote-bot"),
            },
            {
                "selector": {"resource": resource("deployment", "vote-bot")},
                "toResource": resource("deployment", "api"),
            },
            {"selector": {"resource": resource("service", "api-svc")}},
        ):
            stats = stat_row(body)
            if not (close_to(stats["successCount"], 25) and close_to(stats["failureCount"], 10)):
                return False
        return True

    wait_for(counted, 40, what="route and stat counts within 10% of what was sent", interval=1)

    status, answer = call(
        setup.api, "Edges", {"selector": {"resource": {"namespace": NS, "type": "deploy"}}}
    )
    assert status == 200, answer
    assert answer["ok"]["edges"] == [
        {
            "src": resource("deployment", "vote-bot"),
            "dst": resource("deployment", "api"),
            "clientId": "",
            "serverId": "",
            "noIdentityMsg": "Disabled",
        }
    ]


def test_series_carry_the_relabelled_pod_labels(setup: Setup) -> None:
    series = setup.prometheus.query('response_total{direction="inbound", deployment="web"}')
    assert series
    for entry in series:
        labels = entry["metric"]
        assert labels["job"] == "weft-proxy"
        assert labels["namespace"] == NS
        assert labels["pod"] == POD
        assert labels["deployment"] == "web"
        assert labels["serviceaccount"] == "web"
        assert labels["control_plane_ns"] == "weft"
        assert labels["workload_ns"] == NS
        assert labels["app"] == "web"
        assert labels["pod_template_hash"] == "5d4f"
        leftovers = [
            n for n in labels if n != "__name__" and n.startswith(("__", "linkerd", "proxy_"))
        ]
        assert not leftovers, labels


def test_the_control_plane_and_prometheus_itself_are_scraped(setup: Setup) -> None:
    def up(job: str) -> list[Obj]:
        return [
            entry
            for entry in setup.prometheus.query(f'up{{job="{job}"}}')
            if entry["value"][1] == "1"
        ]

    controller = wait_for(lambda: up("weft-controller"), 30, what="the metrics API scraped")
    labels = controller[0]["metric"]
    assert (labels["namespace"], labels["pod"], labels["component"]) == (
        "weft",
        "weft-metrics-api-1",
        "metrics-api",
    )
    wait_for(lambda: up("prometheus"), 30, what="Prometheus scraping itself")
    wait_for(
        lambda: setup.prometheus.query(
            'metrics_api_requests_total{method="StatSummary", code="200"}'
        ),
        30,
        what="the metrics API's own request counts in Prometheus",
    )


def test_every_object_has_a_row_even_without_traffic(setup: Setup) -> None:
    body = {"selector": {"resource": {"namespace": NS, "type": "deploy"}}, "timeWindow": "1m"}
    status, answer = call(setup.api, "StatSummary", body)
    assert status == 200, answer
    rows = answer["ok"]["statTables"][0]["podGroup"]["rows"]
    by_name = {r["resource"]["name"]: r for r in rows}
    assert list(by_name) == ["api", "idle", "vote-bot", "web"]
    assert by_name["idle"]["stats"] is None and by_name["idle"]["runningPodCount"] == 0
    assert by_name["web"]["stats"]["successCount"] > 0
    status, answer = call(
        setup.api,
        "StatSummary",
        {**body, "selector": {"resource": {"type": "all", "namespace": NS}}},
    )
    assert status == 200
    names = {
        (row["resource"]["type"], row["resource"]["name"])
        for table in answer["ok"]["statTables"]
        for row in table["podGroup"]["rows"]
    }
    assert {("pod", POD), ("namespace", NS), ("service", "api-svc")} <= names
    # With a toResource only rows with traffic to it remain: vote-bot's, of each type.
    to_api = {"namespace": NS, "type": "deployment", "name": "api"}
    status, answer = call(
        setup.api,
        "StatSummary",
        {"selector": {"resource": {"type": "all", "namespace": NS}}, "toResource": to_api},
    )
    assert status == 200, answer
    names = {
        (row["resource"]["type"], row["resource"]["name"])
        for table in answer["ok"]["statTables"]
        for row in table["podGroup"]["rows"]
    }
    assert names == {
        ("namespace", NS),
        ("deployment", "vote-bot"),
        ("pod", CLIENT_POD),
        ("service", "api-svc"),
    }


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"timeWindow": "1 minute"}, 400, 'timeWindow "1 minute" is not a Prometheus duration'),
        (
            {"selector": {"resource": {"namespace": NS, "type": "statefulsetz"}}},
            400,
            "unknown resource type",
        ),
        (
            {"selector": {"resource": {"namespace": NS, "type": "deploy", "name": "nope"}}},
            404,
            "deployment/nope not found in namespace emojivoto",
        ),
        (
            {"toResource": {"namespace": NS, "type": "deploy", "name": "gone"}},
            404,
            "deployment/gone not found",
        ),
    ],
)
def test_bad_requests_get_one_line_errors(setup: Setup, body: Obj, code: int, message: str) -> None:
    status, answer = stat(setup.api, **body)
    assert status == code, answer
    assert message in answer["error"] and "\n" not in answer["error"]


def test_not_json_is_a_bad_request(setup: Setup) -> None:
    request = urllib.request.Request(f"{setup.api}/api/v1/StatSummary", data=b"{nope")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 400
    assert json.load(info.value)["error"].startswith("the request body is not JSON")


def test_self_check_and_lists(setup: Setup) -> None:
    status, answer = call(setup.api, "SelfCheck")
    assert status == 200
    assert [(r["subsystem"], r["status"]) for r in answer["results"]] == [
        ("kubernetes", "OK"),
        ("prometheus", "OK"),
    ]
    status, answer = call(setup.api, "ListPods", {"selector": {"resource": {"namespace": NS}}})
    assert status == 200
    assert [(p["name"], p["added"], p["owner"]) for p in answer["pods"]] == [
        (f"{NS}/{API_POD}", True, {"type": "deployment", "name": "api"}),
        (f"{NS}/{CLIENT_POD}", True, {"type": "deployment", "name": "vote-bot"}),
        (f"{NS}/{POD}", True, {"type": "deployment", "name": "web"}),
    ]
    status, answer = call(setup.api, "ListServices", {"namespace": NS})
    assert answer == {"services": [{"name": "api-svc", "namespace": NS}]}


def test_the_documented_curl_through_the_agents_service_proxy(setup: Setup, tmp_path: Path) -> None:
    # The node agent's real API server, whose store holds the metrics API's Service and an
    # endpoint at the API's loopback port; curl as docs/metrics-api.md shows it.
    port = int(setup.api.rsplit(":", 1)[1])
    objects = (
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "weft-metrics-api", "namespace": "weft"},
            "spec": {"ports": [{"name": "http", "port": 8085, "targetPort": 8085}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "weft-metrics-api", "namespace": "weft"},
            "subsets": [
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": port}]}
            ],
        },
    )
    sock = tmp_path / "api.sock"

    async def start() -> ApiServer:
        store = ObjectStore()
        for obj in objects:
            store.put(obj)
        server = ApiServer(ClusterConfig(state_dir=str(tmp_path)), store, b"k" * 32)
        await server.start(sock)
        return server

    server = setup.loop.run(start())
    base = "http://agent/api/v1/namespaces/weft/services/weft-metrics-api:8085/proxy/api/v1"
    body = json.dumps(
        {
            "selector": {"resource": {"namespace": NS, "type": "deployment"}},
            "timeWindow": "1m",
            "tcpStats": True,
        }
    )
    try:
        done = subprocess.run(
            [
                "curl",
                "-sS",
                "--unix-socket",
                str(sock),
                "-XPOST",
                "-d",
                body,
                f"{base}/StatSummary",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)["ok"]["statTables"][0]["podGroup"]["rows"]
        assert [r["resource"]["name"] for r in rows] == ["api", "idle", "vote-bot", "web"]
        done = subprocess.run(
            ["curl", "-sS", "--unix-socket", str(sock), f"{base}/SelfCheck"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert [r["status"] for r in json.loads(done.stdout)["results"]] == ["OK", "OK"]
    finally:
        setup.loop.run(server.close())


def test_prometheus_stopped_is_a_503_naming_it(setup: Setup, tmp_path: Path) -> None:
    prometheus = PrometheusProcess(tmp_path / "prometheus", PrometheusSettings()).start()
    api_sock, admin_sock = listening(), listening()
    api = MetricsApi(setup.platform, PrometheusClient(prometheus.url), MeshSettings())
    served = serve(setup.loop, lambda stop: serve_metrics_api(api, api_sock, admin_sock, stop))
    base = f"http://127.0.0.1:{port_of(api_sock)}"
    try:
        assert stat(base)[0] == 200
        prometheus.stop()
        status, answer = stat(base)
        assert status == 503, answer
        error = answer["error"]
        assert error == f"prometheus at {prometheus.url}: cannot connect (Connection refused)"
        assert "\n" not in error
        status, answer = call(base, "SelfCheck")
        assert [r["status"] for r in answer["results"]] == ["OK", "FAIL"]
        assert answer["results"][1]["friendlyMessageToUser"].startswith("prometheus at ")
    finally:
        prometheus.stop()
        shut(setup.loop, served)


def test_an_error_answer_from_prometheus_is_one_line_naming_it(setup: Setup) -> None:
    client = PrometheusClient(setup.prometheus.url)

    async def bad_query() -> str:
        try:
            await client.query("sum(response_total")
        except PrometheusError as exc:
            return str(exc)
        finally:
            await client.close()
        return "no error"

    error = setup.loop.run(bad_query())
    assert error.startswith(f"prometheus at {setup.prometheus.url}: HTTP 400: "), error
    assert "\n" not in error


def test_nan_latencies_without_recent_traffic_are_null(setup: Setup) -> None:
    # irate() over the last two scrapes: once two scrapes pass with no requests, no quantile.
    def quiet() -> Obj | None:
        stats = web_row(setup.api)["stats"]
        return stats if stats["latencyMsP50"] is None else None

    stats = wait_for(quiet, 30, what="latencies without traffic", interval=0.5)
    assert stats is not None
    assert stats["latencyMsP95"] is None and stats["latencyMsP99"] is None
    assert stats["successCount"] > 0
