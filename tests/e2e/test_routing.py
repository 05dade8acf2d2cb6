"""Discovery and per-request routing end to end, in a real local cluster.

One cluster serves the module; every workload lives in the meshed namespace ``routing`` and is
started at once by the fixture (pods start in parallel). A meshed ``client`` pod drives load with
``tests/e2e/apps/load.py``; the backends are ``tests/e2e/apps/backend.py``, which answer
``<name> <pod>`` so every response says which replica served it. Per-endpoint counts come from
those bodies and from the client proxy's ``dst_pod`` labels (learned from discovery).

- spread: three replicas share ~300 requests;
- a slow replica gets markedly fewer requests (peak-EWMA, power of two choices);
- scaling 3 -> 1 -> 3 under steady load fails no request;
- a retryable route hides half of a backend's failures within the retry budget (and replays a
  POST body intact);
- a route timeout answers 504 at the deadline;
- a 90/10 TrafficSplit;
- a grpcio client of ``Destination.Get`` sees exactly the endpoint changes;
- a 30 s outage of the destination service fails no request, and proxies resubscribe.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from harness.local_cluster import APPS, LocalCluster, metric_total, running_cluster
from harness.mesh import REPO_ROOT, base_env, parse_samples, select, wait_equal, wait_for
from weft.api import destination_pb2, destination_pb2_grpc
from weft.local import control_plane
from weft.local.cluster_config import ClusterConfig

pytestmark = pytest.mark.netns

POD_CIDR = "10.236.0.0/16"
SERVICE_CIDR = "10.237.0.0/16"
NS = "routing"
DOMAIN = "svc.cluster.local"
APP_PORT = 8080
SERVICE_PORT = 80
BACKEND = APPS / "backend.py"
LOAD = APPS / "load.py"
DESTINATION = "weft-destination"
DESTINATION_ID = "weft-destination.weft.serviceaccount.identity.weft.cluster.local"

Obj = dict[str, Any]

# The ServiceProfile of the ``routes`` service, as the issue states it.
RETRY_RATIO = 0.2
MIN_RETRIES_PER_SECOND = 10
BUDGET_TTL = 10.0
ROUTES_PROFILE = f"""
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {{name: routes.{NS}.{DOMAIN}, namespace: {NS}}}
spec:
  routes:
  - name: flaky
    condition: {{method: GET, pathRegex: /flaky}}
    isRetryable: true
  - name: slow
    condition: {{pathRegex: /slow.*}}
    timeout: 300ms
  retryBudget:
    retryRatio: {RETRY_RATIO}
    minRetriesPerSecond: {MIN_RETRIES_PER_SECOND}
    ttl: 10s
"""
# The POST route is on a second Service over the same pods, so that its retry budget (one per
# profile) is its own and not spent by the GET flood.
POST_PROFILE = f"""
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {{name: routes-post.{NS}.{DOMAIN}, namespace: {NS}}}
spec:
  routes:
  - name: flaky-post
    condition: {{method: POST, pathRegex: /flaky-post}}
    isRetryable: true
  retryBudget: {{retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}}
"""
TRAFFIC_SPLIT = f"""
apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {{name: split, namespace: {NS}}}
spec:
  service: split
  backends:
  - {{service: split-v1, weight: 900m}}
  - {{service: split-v2, weight: 100m}}
"""


# -- manifests ----------------------------------------------------------------------------


def deployment(name: str, replicas: int, labels: dict[str, str], *args: str) -> Obj:
    """A Deployment of ``backend.py --name <name> <args>`` on port 8080, ready on /healthz."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "backend:test",
                            "command": ["python", str(BACKEND), "--port", str(APP_PORT)],
                            "args": ["--name", name, *args],
                            "env": [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                }
                            ],
                            "ports": [{"name": "http", "containerPort": APP_PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 1,
                            },
                        }
                    ]
                },
            },
        },
    }


def service(name: str, selector: dict[str, str]) -> Obj:
    """A Service on port 80 in front of the pods ``selector`` picks."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}],
        },
    }


def client(name: str) -> Obj:
    """An idle meshed pod to run load and curl from."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "sleep", "command": ["sleep", "infinity"]}]},
            },
        },
    }


# Deployments the fixture starts, with their replica counts.
REPLICAS = {
    "client": 1,
    "spread": 3,
    "lb-fast": 2,
    "lb-slow": 1,
    "scale": 3,
    "routes": 1,
    "split-apex": 1,
    "split-v1": 1,
    "split-v2": 1,
    "watch": 2,
    "steady": 2,
}
SLOW_MS = 50
DRAIN_MS = 2000  # scaled-down backends keep serving this long after SIGTERM (a preStop sleep)


def workload(name: str, replicas: int | None = None) -> Obj:
    """The Deployment called ``name`` (with ``replicas`` instead of its initial count)."""
    count = REPLICAS[name] if replicas is None else replicas
    if name == "client":
        return client(name)
    if name == "lb-fast":
        return deployment(name, count, {"app": "lb", "tier": "fast"})
    if name == "lb-slow":
        return deployment(name, count, {"app": "lb", "tier": "slow"}, "--delay-ms", str(SLOW_MS))
    if name == "routes":
        return deployment(name, count, {"app": name}, "--fail-rate", "0.5")
    if name == "split-apex":
        return deployment(name, count, {"app": name}, "--name", "apex")
    if name in ("split-v1", "split-v2"):
        return deployment(name, count, {"app": name}, "--name", name.removeprefix("split-"))
    return deployment(name, count, {"app": name}, "--drain-ms", str(DRAIN_MS))


def manifest(*objects: Obj) -> str:
    """YAML documents."""
    return yaml.safe_dump_all(objects, sort_keys=False)


def namespace_manifest() -> str:
    """The namespace, every workload and service, the profiles and the split."""
    objects: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": NS, "annotations": {"linkerd.io/inject": "enabled"}},
        }
    ]
    objects += [workload(name) for name in REPLICAS]
    objects += [service(name, {"app": name}) for name in ("spread", "scale", "watch", "steady")]
    objects += [
        service("lb", {"app": "lb"}),
        service("routes", {"app": "routes"}),
        service("routes-post", {"app": "routes"}),
        service("split", {"app": "split-apex"}),
        service("split-v1", {"app": "split-v1"}),
        service("split-v2", {"app": "split-v2"}),
    ]
    return "---\n".join([manifest(*objects), ROUTES_PROFILE, POST_PROFILE, TRAFFIC_SPLIT])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("clusters"), POD_CIDR, SERVICE_CIDR) as c:
        c.apply(namespace_manifest())
        for name, replicas in REPLICAS.items():
            c.wait_deployment(NS, name, replicas, timeout=120)
        yield c


# -- helpers ------------------------------------------------------------------------------


def names(pods: list[Obj]) -> set[str]:
    """The pods' names."""
    return {p["metadata"]["name"] for p in pods}


def client_pod(cluster: LocalCluster, name: str = "client") -> str:
    """The name of the (single) pod of a client Deployment."""
    return str(cluster.wait_deployment(NS, name, 1)[0]["metadata"]["name"])


def load_argv(url: str, *args: str) -> list[str]:
    """``load.py`` against ``url``."""
    return ["python", str(LOAD), url, *args]


def run_load(cluster: LocalCluster, pod: str, url: str, *args: str, timeout: float = 90) -> Obj:
    """Run ``load.py`` in ``pod`` to the end; its JSON result."""
    proc = cluster.exec(pod, NS, load_argv(url, *args), timeout=timeout)
    result: Obj = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


class Load:
    """``load.py`` running in the background in a pod until :meth:`finish` (a stop file)."""

    def __init__(self, cluster: LocalCluster, pod: str, url: str, stop: Path, *args: str):
        self.stop = stop
        argv = load_argv(url, "--seconds", "300", "--stop-file", str(stop), *args)
        self.proc = cluster.exec_background(pod, NS, argv)

    def finish(self, timeout: float = 30) -> Obj:
        """Stop the load and return its result."""
        self.stop.touch()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        lines = out.strip().splitlines()
        assert lines, f"load.py exited {self.proc.returncode} without a result"
        result: Obj = json.loads(lines[-1])
        return result


def by_pod(result: Obj) -> Counter[str]:
    """Good responses per pod, from the ``<name> <pod>`` bodies."""
    counts: Counter[str] = Counter()
    for body, count in result["bodies"].items():
        counts[body.split()[-1]] += count
    return counts


def responses_by_pod(text: str, dst_service: str) -> Counter[str]:
    """The client proxy's outbound ``response_total`` per ``dst_pod`` of one service."""
    counts: Counter[str] = Counter()
    samples = select(
        parse_samples(text), "response_total", direction="outbound", dst_service=dst_service
    )
    for _, labels, value in samples:
        counts[labels.get("dst_pod", "")] += int(value)
    return counts


def delta(after: Counter[str], before: Counter[str]) -> Counter[str]:
    """What grew between two counts (keys that did not grow are left out)."""
    return Counter({k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)})


def scale(cluster: LocalCluster, name: str, replicas: int) -> None:
    """Re-apply a Deployment with another replica count (the runtime's ``kubectl scale``)."""
    out = cluster.apply(manifest(workload(name, replicas)))
    assert "configured" in out, out


# -- 1. spread ----------------------------------------------------------------------------


def test_requests_spread_over_three_replicas(cluster: LocalCluster) -> None:
    pods = names(cluster.wait_deployment(NS, "spread", 3))
    pod = client_pod(cluster)
    before = responses_by_pod(cluster.proxy_metrics(pod, NS), "spread")
    result = run_load(cluster, pod, "http://spread/", "--requests", "300", "--threads", "2")
    assert result["ok"] == 300 and result["failed"] == 0, result
    served = by_pod(result)
    assert set(served) == pods, served
    assert min(served.values()) / 300 >= 0.15, served
    # The client proxy attributes each response to the endpoint discovery named.
    wait_equal(
        lambda: delta(responses_by_pod(cluster.proxy_metrics(pod, NS), "spread"), before),
        served,
        10,
        what="response_total per dst_pod",
    )


def test_a_short_l5d_dst_override_picks_the_destination(cluster: LocalCluster) -> None:
    # The connection goes to spread's cluster IP; the header names split-v1 by its short name,
    # which the proxy completes with its pod's namespace (LINKERD2_PROXY_DESTINATION_CONTEXT).
    pod = client_pod(cluster)
    for _ in range(5):
        proc = cluster.exec(
            pod, NS, ["curl", "-sS", "--max-time", "5", "-H", "l5d-dst-override: split-v1",
                      "http://spread/"],
        )  # fmt: skip
        assert proc.stdout.startswith("v1 "), proc.stdout


# -- 2. a slow replica --------------------------------------------------------------------


def test_a_slow_replica_gets_markedly_fewer_requests(cluster: LocalCluster) -> None:
    fast = names(cluster.wait_deployment(NS, "lb-fast", 2))
    (slow,) = names(cluster.wait_deployment(NS, "lb-slow", 1))
    pod = client_pod(cluster)
    result = run_load(cluster, pod, "http://lb/", "--threads", "8", "--seconds", "5")
    assert result["failed"] == 0, result
    served = by_pod(result)
    assert set(served) <= fast | {slow}, served
    total = sum(served.values())
    assert total > 200, result
    fast_share = sum(served[f] for f in fast) / len(fast) / total
    slow_share = served[slow] / total
    assert slow_share < 0.5 * fast_share, (
        f"slow pod {slow_share:.1%} vs fast mean {fast_share:.1%}: {dict(served)}"
    )


# -- 3. scaling under load ----------------------------------------------------------------


def test_scaling_down_and_up_under_load_fails_no_request(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    first = names(cluster.wait_deployment(NS, "scale", 3))
    pod = client_pod(cluster)
    base = responses_by_pod(cluster.proxy_metrics(pod, NS), "scale")

    def served() -> Counter[str]:
        return delta(responses_by_pod(cluster.proxy_metrics(pod, NS), "scale"), base)

    # Scaled-down backends serve for DRAIN_MS after SIGTERM (as a preStop sleep lets them): the
    # client proxy must have stopped sending to them by then.
    load = Load(cluster, pod, "http://scale/", tmp_path / "stop", "--threads", "3")
    try:
        wait_for(lambda: set(served()) >= first, 20, what="traffic to all three replicas")
        scale(cluster, "scale", 1)
        (survivor,) = names(cluster.wait_deployment(NS, "scale", 1, timeout=60))
        mark = served()[survivor]
        wait_for(lambda: served()[survivor] > mark + 50, 20, what="traffic to the last replica")
        scale(cluster, "scale", 3)
        added = names(cluster.wait_deployment(NS, "scale", 3, timeout=60)) - {survivor}
        assert len(added) == 2 and not added & first
        wait_for(lambda: set(served()) >= added, 30, what="traffic to the new replicas")
    finally:
        result = load.finish()
    assert result["failed"] == 0, result
    assert result["ok"] > 500, result
    assert added <= set(by_pod(result)), result["bodies"]


# -- 4. retries ---------------------------------------------------------------------------


def route_total(text: str, name: str, route: str, **labels: str) -> float:
    """A route metric of the client proxy's outbound side."""
    return metric_total(text, name, rt_route=route, **labels)


def test_a_retryable_post_is_replayed_with_its_body_intact(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    body = os.urandom(10 * 1024)
    body_file = tmp_path / "body"
    body_file.write_bytes(body)
    echo = f"len={len(body)} sha256={hashlib.sha256(body).hexdigest()}"
    pod = client_pod(cluster)
    url = f"http://routes-post.{NS}.{DOMAIN}/flaky-post"
    before = cluster.proxy_metrics(pod, NS)
    # The first request to this service (sent before discovery has answered for it) fails its
    # first attempt for certain (x-fail-once); the retry must carry the whole body.
    proc = cluster.exec(
        pod, NS,
        ["curl", "-sS", "--max-time", "15", "-X", "POST", "-H", "Expect:",
         "-H", f"x-fail-once: {secrets.token_hex(8)}", "--data-binary", f"@{body_file}",
         "-w", "\n%{http_code}", url],
    )  # fmt: skip
    assert proc.stdout.split() == [*echo.split(), "200"], proc.stdout
    # Then 20 more, each attempt failing at random with p = 0.5: without retries all 20 would
    # succeed with p = 2^-20.
    result = run_load(
        cluster, pod, url, "--method", "POST", "--body-file", str(body_file),
        "--requests", "20", "--threads", "1",
    )  # fmt: skip
    assert result["statuses"] == {"200": 20}, result
    assert set(result["bodies"]) == {echo}, result["bodies"]
    after = cluster.proxy_metrics(pod, NS)
    requests = route_total(after, "route_request_total", "flaky-post") - route_total(
        before, "route_request_total", "flaky-post"
    )
    actual = route_total(after, "route_actual_request_total", "flaky-post") - route_total(
        before, "route_actual_request_total", "flaky-post"
    )
    assert requests == 21
    assert actual >= requests + 2, (requests, actual)  # bodies were replayed, and arrived intact


def test_retries_hide_failures_within_the_retry_budget(cluster: LocalCluster) -> None:
    pod = client_pod(cluster)
    url = f"http://routes.{NS}.{DOMAIN}/flaky"
    before = cluster.proxy_metrics(pod, NS)
    result = run_load(cluster, pod, url, "--rate", "100", "--seconds", "6", "--threads", "8")
    after = cluster.proxy_metrics(pod, NS)

    def grew(name: str, **labels: str) -> float:
        return route_total(after, name, "flaky", **labels) - route_total(
            before, name, "flaky", **labels
        )

    sent = result["ok"] + result["failed"]
    assert set(result["statuses"]) <= {"200", "500"}, result
    assert sent > 400, result
    requests = grew("route_request_total")
    actual = grew("route_actual_request_total")
    skipped = grew("route_retry_skipped_total", skipped="budget")
    assert requests == sent, (requests, result)
    success = result["ok"] / sent
    # Every client-visible success is exactly one successful attempt: per-attempt success rate.
    per_attempt = result["ok"] / actual
    assert abs(per_attempt - 0.5) < 0.1, (per_attempt, actual, result)  # the backend's 50 %
    assert success >= 0.6, (success, result)
    # No retry storm: retries stay within ratio x requests + the minimum rate over the budget's
    # window (at least its ttl; a fresh budget may spend min/s x ttl at once).
    window = max(result["elapsed"], BUDGET_TTL)
    bound = 1 + RETRY_RATIO + MIN_RETRIES_PER_SECOND * window / requests + 0.05
    assert actual / requests <= bound, (actual, requests, bound)
    assert skipped > 0, "the budget never stopped a retry"


# -- 5. timeout ---------------------------------------------------------------------------


def test_a_route_timeout_answers_504_at_the_deadline(cluster: LocalCluster) -> None:
    pod = client_pod(cluster)
    before = cluster.proxy_metrics(pod, NS)
    marker = "\n--weft:"
    proc = cluster.exec(
        pod, NS,
        ["curl", "-sS", "-o", "/dev/null", "-D", "-", "--max-time", "10",
         "-w", marker + "%{http_code} %{time_total}", f"http://routes.{NS}.{DOMAIN}/slow"],
    )  # fmt: skip
    head, _, tail = proc.stdout.rpartition(marker)
    status, elapsed = tail.split()
    headers = {
        k.strip().lower(): v.strip()
        for k, sep, v in (line.partition(":") for line in head.splitlines()[1:])
        if sep
    }
    assert status == "504", proc.stdout
    assert "l5d-proxy-error" in headers, headers
    assert 0.3 <= float(elapsed) < 1.5, elapsed  # the backend answers after 2 s

    def failures(text: str) -> float:
        return route_total(text, "route_response_total", "slow", classification="failure")

    wait_for(
        lambda: failures(cluster.proxy_metrics(pod, NS)) >= failures(before) + 1,
        10,
        what='route_response_total{rt_route="slow", classification="failure"}',
    )


# -- 6. traffic split ---------------------------------------------------------------------


def test_a_90_10_traffic_split(cluster: LocalCluster) -> None:
    pod = client_pod(cluster)
    url = f"http://split.{NS}.{DOMAIN}:{SERVICE_PORT}/"
    result = run_load(cluster, pod, url, "--requests", "1000", "--threads", "4")
    assert result["ok"] == 1000 and result["failed"] == 0, result
    versions: Counter[str] = Counter()
    for body, count in result["bodies"].items():
        versions[body.split()[0]] += count
    assert versions["apex"] == 0, versions
    assert versions["v1"] + versions["v2"] == 1000, versions
    # n = 1000, p = 0.1: sigma = sqrt(0.1 * 0.9 / 1000) = 0.95 %, so +-3 % is ~3.2 sigma.
    assert abs(versions["v2"] / 1000 - 0.10) <= 0.03, versions


# -- 7. Destination.Get from a grpcio client ----------------------------------------------


def _ip(addr: Any) -> str:
    return str(ipaddress.IPv4Address(addr.ip.ipv4))


def update_json(update: Any) -> Obj:
    """One ``Update`` as JSON: ``add`` [[ip, port, pod]...], ``remove`` [[ip, port]...] or
    ``no_endpoints``."""
    kind = update.WhichOneof("update")
    if kind == "add":
        return {
            "add": sorted(
                [_ip(w.addr), w.addr.port, w.metric_labels.get("pod", "")] for w in update.add.addrs
            )
        }
    if kind == "remove":
        return {"remove": sorted([_ip(a), a.port] for a in update.remove.addrs)}
    return {"no_endpoints": update.no_endpoints.exists}


def watch_destination(target: str, ca_file: str, server_name: str, path: str) -> None:
    """The watcher process: ``Destination.Get(path)`` over TLS, one JSON line per update."""
    creds = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
    options = [("grpc.ssl_target_name_override", server_name)]
    with grpc.secure_channel(target, creds, options=options) as channel:
        stub = destination_pb2_grpc.DestinationStub(channel)  # type: ignore[no-untyped-call]
        request = destination_pb2.GetDestination(scheme="k8s", path=path)
        for update in stub.Get(request):
            print(json.dumps(update_json(update)), flush=True)


class Watcher:
    """The watcher process in the cluster's node namespace, its lines read into a queue."""

    def __init__(self, cluster: LocalCluster, path: str) -> None:
        cfg = ClusterConfig.load(cluster.state_dir)
        (svc,) = [s for s in cluster.get("svc", "weft") if s["metadata"]["name"] == DESTINATION]
        target = f"{svc['spec']['clusterIP']}:{control_plane.DESTINATION_PORT}"
        ca = cluster.state_dir / "identity" / "ca.crt"
        code = "import sys; from tests.e2e.test_routing import watch_destination; " + (
            "watch_destination(*sys.argv[1:])"
        )
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", cfg.node_netns, sys.executable, "-c", code,
             target, str(ca), DESTINATION_ID, path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
            env=base_env(),
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def next(self, timeout: float = 20) -> Obj:
        """The next update (waits up to ``timeout`` seconds)."""
        try:
            update: Obj = json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            self.close()
            assert self.proc.stderr is not None
            raise AssertionError(
                f"no update within {timeout}s: {self.proc.stderr.read()}"
            ) from None
        return update

    def close(self) -> None:
        """Stop the watcher."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_a_grpcio_client_sees_exactly_the_endpoint_changes(cluster: LocalCluster) -> None:
    start = cluster.wait_deployment(NS, "watch", 2)
    watcher = Watcher(cluster, f"watch.{NS}.{DOMAIN}:{SERVICE_PORT}")
    try:
        first = watcher.next()
        assert first == {
            "add": sorted([p["status"]["podIP"], APP_PORT, p["metadata"]["name"]] for p in start)
        }
        scale(cluster, "watch", 3)
        grown = cluster.wait_deployment(NS, "watch", 3)
        (new,) = [p for p in grown if p["metadata"]["name"] not in names(start)]
        assert watcher.next() == {
            "add": [[new["status"]["podIP"], APP_PORT, new["metadata"]["name"]]]
        }
        scale(cluster, "watch", 2)
        left = names(cluster.wait_deployment(NS, "watch", 2))
        gone = [p for p in grown if p["metadata"]["name"] not in left]
        assert watcher.next() == {"remove": sorted([p["status"]["podIP"], APP_PORT] for p in gone)}
        assert watcher.lines.empty(), watcher.lines.get()
    finally:
        watcher.close()


# -- 8. control-plane outage --------------------------------------------------------------

OUTAGE_SECONDS = 30.0


def set_destination_replicas(cluster: LocalCluster, replicas: int) -> None:
    """Re-apply the control plane's ``weft-destination`` Deployment with ``replicas``."""
    cfg = ClusterConfig.load(cluster.state_dir)
    (dep,) = [
        o
        for o in control_plane.manifests(cfg)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == DESTINATION
    ]
    dep["spec"]["replicas"] = replicas
    out = cluster.apply(manifest(dep))
    assert "configured" in out, out
    cluster.wait_deployment("weft", DESTINATION, replicas, timeout=60)


def retry_lines(log: str, *names: str) -> list[str]:
    """The proxy's log lines about retrying (resubscribing) its streams for a destination known
    by any of ``names`` (its cluster IP, its fully qualified name)."""
    return [
        line
        for line in log.splitlines()
        if any(n in line for n in names) and re.search(r"retry|resubscrib", line, re.IGNORECASE)
    ]


def test_a_destination_outage_fails_no_request_and_proxies_resubscribe(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    backends = names(cluster.wait_deployment(NS, "steady", 2))
    pod = client_pod(cluster)
    (svc,) = [s for s in cluster.get("svc", NS) if s["metadata"]["name"] == "steady"]
    steady = (f"{svc['spec']['clusterIP']}:{SERVICE_PORT}", f"steady.{NS}.{DOMAIN}")

    def served() -> Counter[str]:
        return responses_by_pod(cluster.proxy_metrics(pod, NS), "steady")

    def meshed_ok() -> float:
        text = cluster.proxy_metrics(pod, NS)
        return metric_total(
            text, "response_total", direction="outbound", dst_service="steady", tls="true"
        )

    load = Load(cluster, pod, "http://steady/", tmp_path / "stop", "--threads", "3")
    restored = False
    try:
        wait_for(lambda: set(served()) >= backends, 20, what="mTLS traffic to both replicas")
        log_before = len(cluster.logs(pod, NS, "linkerd-proxy"))

        # The outage: no destination pod for OUTAGE_SECONDS.
        set_destination_replicas(cluster, 0)
        down_at = time.monotonic()
        meshed_at_down = meshed_ok()

        # A client started now cannot learn anything: it falls back to the original destination
        # (the cluster IP, kube-proxy's rules) in plaintext.
        cluster.apply(manifest(client("late-client")))
        late = client_pod(cluster, "late-client")
        result = run_load(cluster, late, "http://steady/", "--requests", "20", "--threads", "1")
        assert result["ok"] == 20 and result["failed"] == 0, result
        text = cluster.proxy_metrics(late, NS)
        fallback = metric_total(
            text, "response_total", direction="outbound", tls="no_identity",
            no_tls_reason="not_provided_by_service_discovery", classification="success",
        )  # fmt: skip
        assert fallback >= 20, text

        # The old client retries its stream with back-off, and keeps serving meanwhile.
        wait_for(
            lambda: retry_lines(cluster.logs(pod, NS, "linkerd-proxy")[log_before:], *steady),
            20,
            what="the client proxy logging its Get retries",
        )
        wait_for(lambda: meshed_ok() > meshed_at_down + 100, 20, what="mTLS traffic meanwhile")
        remaining = OUTAGE_SECONDS - (time.monotonic() - down_at)
        if remaining > 0:
            time.sleep(remaining)  # the outage's length is the point of the test
        retries = retry_lines(cluster.logs(pod, NS, "linkerd-proxy")[log_before:], *steady)
        # Back-off, not a storm: with 0.1 s doubling to 5 s, each stream (Get and GetProfile)
        # retries ~12 times in 30 s; a fixed 0.1 s retry loop would log ~300 lines per stream.
        assert 1 <= len(retries) <= 60, retries
        assert meshed_ok() > meshed_at_down + 1000

        set_destination_replicas(cluster, 1)
        restored = True
        # Proof of resubscription: a replica added now gets requests from the old client.
        scale(cluster, "steady", 3)
        (added,) = names(cluster.wait_deployment(NS, "steady", 3)) - backends
        wait_for(lambda: served()[added] > 0, 45, what=f"the client sending to {added}")
    finally:
        result = load.finish()
        if not restored:
            set_destination_replicas(cluster, 1)
    assert result["failed"] == 0, result
    assert result["ok"] > 2000, result
    assert added in by_pod(result), result["bodies"]
