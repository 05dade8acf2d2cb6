"""Watching the mesh, end to end: Prometheus, the metrics API, tap and the CLI, in a real cluster.

One cluster (Prometheus scraping every second) serves the module. In the meshed namespace
``viz`` a ``client`` pod sends a known mix through its proxy to ``server`` (backend.py): four
``/ok`` for one ``/status/500`` and one ``/sleep/200``, at a fixed rate, so the golden numbers are
known in advance: success 5/6, the rate the load was paced at, p50 fast and p95/p99 in the
200-300 ms bucket. ``flaky`` fails half of ``/flaky`` at random behind a retryable route.

Every figure is read the way a user reads it: ``weft stat|routes|edges|tap|check`` run as
commands, their JSON parsed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.local_cluster import APPS, LocalCluster, running_cluster
from harness.mesh import REPO_ROOT, wait_for
from weft.local import control_plane
from weft.local.cluster_config import ClusterConfig

pytestmark = pytest.mark.netns

POD_CIDR = "10.228.0.0/16"
SERVICE_CIDR = "10.229.0.0/16"
NS = "viz"
APP_PORT = 8080
BACKEND = APPS / "backend.py"
LOAD = APPS / "load.py"
TAP_CLIENT = APPS / "tap_client.py"
DOMAIN = "cluster.local"

RATE = 24.0  # requests per second of the mixed load
MIX = "/ok,/ok,/ok,/ok,/status/500,/sleep/200"
SUCCESS = 5 / 6
WINDOW = "20s"

Obj = dict[str, Any]


def identity(sa: str) -> str:
    return f"{sa}.{NS}.serviceaccount.identity.weft.{DOMAIN}"


# -- manifests ----------------------------------------------------------------------------


def backend(name: str, *args: str, annotations: dict[str, str] | None = None) -> list[Obj]:
    """A ServiceAccount, Deployment and Service ``name`` running backend.py (its pod template
    annotated with ``annotations``)."""
    labels = {"app": name}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NS}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations or {}},
                    "spec": {
                        "serviceAccountName": name,
                        "containers": [
                            {
                                "name": "app",
                                "command": ["python", str(BACKEND), "--port", str(APP_PORT)],
                                "args": ["--name", name, *args],
                                "ports": [{"name": "http", "containerPort": APP_PORT}],
                                "readinessProbe": {
                                    "httpGet": {"path": "/healthz", "port": "http"},
                                    "periodSeconds": 1,
                                },
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    ]


def client() -> list[Obj]:
    """An idle meshed pod (service account ``client``) to send load and requests from."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "client", "namespace": NS},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "client", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "client"}},
                "template": {
                    "metadata": {"labels": {"app": "client"}},
                    "spec": {
                        "serviceAccountName": "client",
                        "containers": [{"name": "sleep", "command": ["sleep", "infinity"]}],
                    },
                },
            },
        },
    ]


PROFILES = f"""
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {{name: flaky.{NS}.svc.{DOMAIN}, namespace: {NS}}}
spec:
  routes:
  - name: flaky
    condition: {{method: GET, pathRegex: /flaky}}
    isRetryable: true
  - name: never-called
    condition: {{method: GET, pathRegex: /never}}
  retryBudget: {{retryRatio: 0.5, minRetriesPerSecond: 20, ttl: 10s}}
"""


def namespace_manifest() -> str:
    objects: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "annotations": {"linkerd.io/inject": "enabled"}},
        },
        *client(),
        *backend("server"),
        *backend("flaky", "--fail-rate", "0.5"),
        *backend("private", annotations={"config.linkerd.io/disable-tap": "true"}),
    ]
    return yaml.safe_dump_all(objects, sort_keys=False) + "---\n" + PROFILES


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(
        tmp_path_factory.mktemp("clusters"),
        POD_CIDR,
        SERVICE_CIDR,
        "--prometheus-scrape-interval",
        "1s",
    ) as c:
        c.apply(namespace_manifest())
        for name in ("client", "server", "flaky", "private"):
            c.wait_deployment(NS, name, 1, timeout=120)
        yield c


# -- helpers ------------------------------------------------------------------------------


def weft(
    cluster: LocalCluster, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``weft <args> --name <cluster> --state-dir <dir>``, as a user runs it."""
    argv = [sys.executable, "-m", "weft", *args, "--name", cluster.name]
    argv += ["--state-dir", str(cluster.state_dir)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO_ROOT
    )


def weft_json(cluster: LocalCluster, *args: str) -> Any:
    """The JSON a command prints; a failure raises RuntimeError (a "not yet" to ``wait_for``)."""
    proc = weft(cluster, *args, "-o", "json")
    if proc.returncode != 0:
        raise RuntimeError(f"weft {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout)


def pod_of(cluster: LocalCluster, deployment: str) -> Obj:
    return cluster.wait_deployment(NS, deployment, 1)[0]


class Load:
    """load.py running in the client pod until :meth:`stop`."""

    def __init__(self, cluster: LocalCluster, url: str, stop: Path, *args: str) -> None:
        self.stop_file = stop
        pod = pod_of(cluster, "client")["metadata"]["name"]
        argv = ["python", str(LOAD), url, "--seconds", "600", "--stop-file", str(stop), *args]
        self.proc = cluster.exec_background(pod, NS, argv)

    def stop(self) -> Obj:
        self.stop_file.touch()
        try:
            out, _ = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        result: Obj = json.loads(out.strip().splitlines()[-1])
        return result


def row(rows: list[Obj], name: str) -> Obj:
    """The one row called ``name``; LookupError (a "not yet" to ``wait_for``) if none."""
    found = [r for r in rows if r["name"] == name]
    if len(found) != 1:
        raise LookupError(f"{len(found)} rows named {name} in {rows}")
    return found[0]


def near(value: float | None, expected: float, tolerance: float) -> bool:
    return value is not None and abs(value - expected) <= tolerance


# -- stat ---------------------------------------------------------------------------------


def test_stat_reports_the_known_success_rate_rate_and_latency_on_both_sides(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    load = Load(
        cluster, f"http://server.{NS}/", tmp_path / "stop", "--paths", MIX,
        "--rate", str(RATE), "--threads", "4",
    )  # fmt: skip
    try:
        # Rates over a 20 s window settle once the load has run for longer than the window and
        # Prometheus has scraped it: wait for that, then check every figure of that moment.
        def settled() -> tuple[Obj, Obj, Obj] | None:
            rows = weft_json(cluster, "stat", "deploy", "-n", NS, "-t", WINDOW)
            server = row(rows, "server")
            to = row(
                weft_json(cluster, "stat", "deploy/client", "-n", NS, "--to", "deploy/server",
                          "-t", WINDOW), "client",
            )  # fmt: skip
            frm = row(
                weft_json(cluster, "stat", "deploy", "-n", NS, "--from", "deploy/client",
                          "-t", WINDOW), "server",
            )  # fmt: skip
            for r in (server, to, frm):
                if not (near(r["rps"], RATE, 0.1 * RATE) and near(r["success"], SUCCESS, 0.05)):
                    return None
            return server, to, frm

        figures = wait_for(settled, 120, what="stat to settle on the load", interval=1)
        assert figures is not None
        server, to, frm = figures
        rows = weft_json(cluster, "stat", "deploy", "-n", NS, "-t", WINDOW)
    finally:
        result = load.stop()
    assert result["failed"] == result["statuses"].get("500", 0), result  # only the asked-for 500s

    assert server["meshed"] == "1/1"
    assert row(rows, "client")["meshed"] == "1/1"
    # The fast 4/6 (and the 500s) are the median; the 1/6 at 200 ms is above the 95th
    # percentile, in Linkerd's (200, 300] ms bucket, measured at both ends.
    assert server["latency_ms_p50"] is not None and server["latency_ms_p50"] <= 50, server
    for r in (server, to):
        for q in ("latency_ms_p95", "latency_ms_p99"):
            assert 200 < r[q] <= 300, r
    # What the client's proxy sent (--to, --from) is what the server's received: each is within
    # 10 % of the paced rate (settled above), so within 20 % of each other.
    assert abs(to["rps"] - server["rps"]) <= 0.2 * RATE, (to, server)
    assert abs(frm["rps"] - server["rps"]) <= 0.2 * RATE, (frm, server)


def test_stat_lists_workloads_without_traffic_and_counts_pods(cluster: LocalCluster) -> None:
    rows = weft_json(cluster, "stat", "deploy", "-n", NS, "-t", WINDOW)
    assert {r["name"] for r in rows} == {"client", "server", "flaky", "private"}
    pods = weft_json(cluster, "stat", "po", "-n", NS)
    assert len(pods) == 4 and all(p["meshed"] == "1/1" for p in pods)
    namespaces = weft_json(cluster, "stat", "ns", "-A")
    assert row(namespaces, NS)["meshed"] == "4/4"


# -- routes -------------------------------------------------------------------------------


def test_routes_show_each_profile_route_and_retries_as_actual_above_effective(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    load = Load(
        cluster, f"http://flaky.{NS}/", tmp_path / "stop", "--paths", "/flaky,/unmatched",
        "--rate", "20", "--threads", "2",
    )  # fmt: skip
    try:

        def retried() -> list[Obj] | None:
            tables: dict[str, list[Obj]] = weft_json(
                cluster, "routes", "deploy/client", "-n", NS, "--to", "svc/flaky", "-t", WINDOW
            )
            routes = tables["deployment/client"]
            flaky = [r for r in routes if r["route"] == "flaky"]
            default = [r for r in routes if r["route"] == "[DEFAULT]"]
            if not flaky or not default or not flaky[0]["actual_rps"] or not default[0]["rps"]:
                return None
            # rps and success are what the client saw (effective); actual_* every attempt.
            if not flaky[0]["actual_rps"] > flaky[0]["rps"]:
                return None
            return routes

        found = wait_for(retried, 90, what="retries in the route metrics", interval=1)
    finally:
        load.stop()
    assert found is not None
    routes = found
    names = {r["route"] for r in routes}
    assert {"flaky", "never-called", "[DEFAULT]"} <= names, routes
    flaky = next(r for r in routes if r["route"] == "flaky")
    # Retries hide failures: what the client saw succeeds more often than each attempt did.
    assert flaky["success"] > flaky["actual_success"], flaky
    plain = weft(cluster, "routes", "deploy/client", "-n", NS, "--to", "svc/flaky", "-t", "1m")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split()[:7] == [
        "ROUTE", "SERVICE", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99"
    ]  # fmt: skip
    assert "[DEFAULT]" in plain.stdout and "never-called" in plain.stdout


# -- edges --------------------------------------------------------------------------------


def test_edges_show_both_identities_and_that_the_edge_is_secured(cluster: LocalCluster) -> None:
    def edge() -> Obj | None:
        edges = weft_json(cluster, "edges", "deploy", "-n", NS)
        found = [e for e in edges if e["src"] == "client" and e["dst"] == "server"]
        return found[0] if found else None

    found = wait_for(edge, 60, what="the client → server edge", interval=1)
    assert found is not None
    assert found["client_id"] == identity("client"), found
    assert found["server_id"] == identity("server"), found
    assert found["no_identity_msg"] == "", found
    table = weft(cluster, "edges", "deploy", "-n", NS)
    assert table.stdout.split()[:7] == [
        "SRC", "DST", "SRC_NS", "DST_NS", "CLIENT_ID", "SERVER_ID", "SECURED"
    ]  # fmt: skip
    line = next(ln for ln in table.stdout.splitlines() if ln.split()[:2] == ["client", "server"])
    assert line.rstrip().endswith("√"), table.stdout


# -- tap ----------------------------------------------------------------------------------


class Tap:
    """``weft tap ... -o json`` in the background; its events as they arrive."""

    def __init__(self, cluster: LocalCluster, *args: str) -> None:
        argv = [sys.executable, "-m", "weft", "tap", *args, "-o", "json", "--name", cluster.name,
                "--state-dir", str(cluster.state_dir)]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT
        )
        self.events: list[Obj] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        """Parse the stream of JSON objects (each printed indented, as linkerd tap -o json)."""
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self.proc.stdout:
            buffer += line
            while buffer.strip():
                try:
                    event, end = decoder.raw_decode(buffer.lstrip())
                except ValueError:
                    break  # the object is not complete yet
                buffer = buffer.lstrip()[end:]
                with self.lock:
                    self.events.append(event)

    def seen(self) -> list[Obj]:
        with self.lock:
            return list(self.events)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, err


def request_events(events: list[Obj], path: str) -> dict[str, Obj]:
    """The request-init, response-init and response-end events of the request for ``path``."""
    init = [e for e in events if (e.get("requestInitEvent") or {}).get("path") == path]
    if not init:
        return {}
    sid = init[0]["requestInitEvent"]["id"]
    found = {"req": init[0]}
    for kind, key in (("rsp", "responseInitEvent"), ("end", "responseEndEvent")):
        match = [e for e in events if (e.get(key) or {}).get("id") == sid]
        if match:
            found[kind] = match[0]
    return found


def is_probe(event: Obj, prefix: str) -> bool:
    """Whether ``event`` is the request-init of a request whose path starts with ``prefix``."""
    return str((event.get("requestInitEvent") or {}).get("path", "")).startswith(prefix)


def curl(cluster: LocalCluster, url: str, *args: str) -> None:
    pod = pod_of(cluster, "client")["metadata"]["name"]
    cluster.exec(pod, NS, ["curl", "-sS", "-o", "/dev/null", "--max-time", "5", *args, url])


def test_tap_shows_exactly_the_requests_made_during_it(cluster: LocalCluster) -> None:
    tap = Tap(cluster, "deploy/server", "-n", NS, "--path", "/tapme")
    try:
        # Once a probe request shows up, the tap is live (its events arrive a little after curl
        # returns, so any probe so far counts).
        n = iter(range(1000))

        def live() -> bool:
            curl(cluster, f"http://server.{NS}/tapme/probe-{next(n)}")
            return any(is_probe(e, "/tapme/probe-") for e in tap.seen())

        wait_for(live, 30, what="the tap to be live", interval=0.5)
        curl(cluster, f"http://server.{NS}/tapme/get-1")
        curl(cluster, f"http://server.{NS}/tapme/missing", "-H", "x-fail-once: t1")
        curl(cluster, f"http://server.{NS}/other")  # not under --path: not reported
        wanted = ("/tapme/get-1", "/tapme/missing")
        wait_for(
            lambda: all(len(request_events(tap.seen(), p)) == 3 for p in wanted),
            20,
            what="all three events of both requests",
        )
    finally:
        code, err = tap.stop()
    assert code == 0, err
    events = tap.seen()
    ok, failed = (request_events(events, p) for p in wanted)
    for found, status in ((ok, 200), (failed, 500)):
        req = found["req"]["requestInitEvent"]
        assert req["method"] == "GET" and req["authority"] == f"server.{NS}", found
        assert found["req"]["proxyDirection"] == "INBOUND"
        assert found["rsp"]["responseInitEvent"]["httpStatus"] == status
        end = found["end"]["responseEndEvent"]
        assert int(end["responseBytes"]) > 0
        assert found["req"]["source"]["metadata"]["deployment"] == "client", found["req"]
    assert not request_events(events, "/other")


def test_tap_filters_by_method_and_destination(cluster: LocalCluster) -> None:
    tap = Tap(cluster, "deploy/client", "-n", NS, "--to", "deploy/server", "--method", "POST")
    try:
        n = iter(range(1000))

        def live() -> bool:
            curl(cluster, f"http://server.{NS}/post-{next(n)}", "-X", "POST", "-d", "x")
            return any(is_probe(e, "/post-") for e in tap.seen())

        wait_for(live, 30, what="the outbound tap to be live", interval=0.5)
        curl(cluster, f"http://server.{NS}/get-not-post")
        curl(cluster, f"http://flaky.{NS}/post-elsewhere", "-X", "POST", "-d", "x")
        curl(cluster, f"http://server.{NS}/post-last", "-X", "POST", "-d", "x")
        wait_for(lambda: request_events(tap.seen(), "/post-last"), 20, what="the last POST")
    finally:
        tap.stop()
    events = tap.seen()
    assert request_events(events, "/post-last")["req"]["proxyDirection"] == "OUTBOUND"
    assert not request_events(events, "/get-not-post")
    assert not request_events(events, "/post-elsewhere")


def test_max_rps_bounds_what_a_tap_reports(cluster: LocalCluster, tmp_path: Path) -> None:
    load = Load(
        cluster, f"http://server.{NS}/ok", tmp_path / "stop", "--rate", "40", "--threads", "2"
    )
    tap = Tap(cluster, "deploy/server", "-n", NS, "--path", "/ok", "--max-rps", "2")
    try:

        def reported() -> int:
            return sum(1 for e in tap.seen() if "requestInitEvent" in e)

        wait_for(lambda: reported() >= 2, 30, what="the tap to report under load")
        first, start = reported(), time.monotonic()
        wait_for(lambda: reported() >= first + 10, 30, what="ten more requests reported")
        elapsed = time.monotonic() - start
    finally:
        tap.stop()
        load.stop()
    # At 40 requests/s ten requests take a quarter of a second; at 2/s they take four or more.
    assert elapsed >= 4.0, elapsed


def test_a_tap_from_another_identity_is_refused_by_the_proxy(cluster: LocalCluster) -> None:
    cfg = ClusterConfig.load(cluster.state_dir)
    server = pod_of(cluster, "server")
    argv = [
        "ip", "netns", "exec", cfg.node_netns, sys.executable, str(TAP_CLIENT),
        "--identity-dir", str(control_plane.identity_dir(cfg)),
        "--as", identity("client"),
        "--to", f"{server['status']['podIP']}:4190", "--server-name", identity("server"),
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == "PERMISSION_DENIED", result
    assert identity("client") in result["details"], result


def test_the_tap_api_refuses_callers_it_does_not_authorize(cluster: LocalCluster) -> None:
    pod = pod_of(cluster, "client")["metadata"]["name"]
    argv = [sys.executable, str(TAP_CLIENT), "--api", str(cluster.state_dir / "api.sock"),
            "--pod", pod, "--namespace", NS]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {
        "status": 403,
        "error": f"system:serviceaccount:{NS}:client is not authorized to tap",
    }


# -- check --proxy ------------------------------------------------------------------------


def test_check_proxy_passes_and_fails_when_a_proxy_is_stopped(cluster: LocalCluster) -> None:
    good = weft(cluster, "check", "--proxy", "-n", NS)
    assert good.returncode == 0, good.stdout + good.stderr
    for line in (
        "√ data plane proxies are ready",
        "√ data plane proxy metrics are present in Prometheus",
        "√ data plane and cli versions match",
    ):
        assert line in good.stdout, good.stdout

    server = pod_of(cluster, "server")
    (pid,) = cluster.pids(server, "weft proxy")
    os.kill(pid, signal.SIGSTOP)
    try:
        bad = weft(cluster, "check", "--proxy", "-n", NS, "--wait", "5")
        as_json = weft(cluster, "check", "--proxy", "-n", NS, "--wait", "1", "-o", "json")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert bad.returncode != 0
    assert "\u00d7 data plane proxy metrics are present in Prometheus" in bad.stdout, bad.stdout
    assert f"* {NS}/{server['metadata']['name']}" in bad.stdout
    report = json.loads(as_json.stdout)
    assert report["success"] is False
    data_plane = next(c for c in report["categories"] if c["categoryName"] == "weft-data-plane")
    assert any(c["result"] == "error" for c in data_plane["checks"]), data_plane


# -- bad input and faults (last: it stops Prometheus) -----------------------------------------


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["stat", "deployz"], "unknown resource type"),
        (["stat", "deploy", "-n", NS, "-t", "10q"], "time window"),
        (["stat", "deploy/nope", "-n", NS], "not found"),
        (["tap", "deploy/nope", "-n", NS], "no pods found"),
        (["tap", "deploy/private", "-n", NS], "have tapping disabled"),
        (["routes", "deploy/nope", "-n", NS], "not found"),
    ],
)
def test_bad_input_is_one_line_and_a_failure(
    cluster: LocalCluster, args: list[str], text: str
) -> None:
    proc = weft(cluster, *args)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], proc.stderr


def set_prometheus_replicas(cluster: LocalCluster, replicas: int) -> None:
    cfg = ClusterConfig.load(cluster.state_dir)
    (dep,) = [
        o
        for o in control_plane.manifests(cfg)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "weft-prometheus"
    ]
    dep["spec"]["replicas"] = replicas
    out = cluster.apply(yaml.safe_dump(dep))
    assert "configured" in out, out
    cluster.wait_deployment("weft", "weft-prometheus", replicas, timeout=60)


def prometheus_value(cluster: LocalCluster, query: str, at: float) -> float | None:
    """An instant query of Prometheus at ``at`` (through the agent)."""
    path = control_plane.PROMETHEUS.proxy_path("/api/v1/query")
    argv = ["curl", "-sS", "--unix-socket", str(cluster.state_dir / "api.sock"), "-G",
            f"http://agent{path}", "--data-urlencode", f"query={query}",
            "--data-urlencode", f"time={at}"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    if proc.returncode != 0:
        return None
    answer = json.loads(proc.stdout)
    result = answer.get("data", {}).get("result") or []
    return float(result[0]["value"][1]) if result else None


def test_prometheus_down_is_one_line_and_a_restart_keeps_what_was_scraped(
    cluster: LocalCluster,
) -> None:
    query = f'sum(request_total{{namespace="{NS}", direction="inbound"}})'
    at = time.time() - 5
    before = wait_for(lambda: prometheus_value(cluster, query, at), 30, what="a stored sample")
    set_prometheus_replicas(cluster, 0)
    try:
        proc = weft(cluster, "stat", "deploy", "-n", NS)
        assert proc.returncode != 0 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "rometheus" in lines[0], proc.stderr
    finally:
        set_prometheus_replicas(cluster, 1)
    after = wait_for(lambda: prometheus_value(cluster, query, at), 60, what="Prometheus back")
    assert after == before
