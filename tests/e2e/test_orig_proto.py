"""HTTP/1.1 between meshed pods carried as HTTP/2 (``l5d-orig-proto``), in a real local cluster.

A meshed ``client`` pod loads a meshed HTTP/1 app (``tests/e2e/apps/echo.py``, which says in
``x-echo-proto`` and in its log which protocol it was spoken to in) through its Service's name.
Discovery hints ``h2`` for the app's meshed endpoint, so the client's proxy sends the requests as
HTTP/2 streams over mTLS and the app's proxy hands them to the app as HTTP/1.1: many requests
from many client connections cross on one or two connections between the proxies, and both
proxies count them as the HTTP/1 traffic they are. An unmeshed pod plays a stock Linkerd
client proxy, sending an upgraded request to the app's pod in plaintext.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.local_cluster import APPS, LocalCluster, running_cluster
from harness.mesh import Sample, parse_samples, select, wait_for

pytestmark = pytest.mark.netns

POD_CIDR = "10.224.0.0/16"
SERVICE_CIDR = "10.225.0.0/16"
NS = "origproto"
OUTSIDE = "origproto-plain"
HOST = f"web.{NS}.svc.cluster.local"
CLIENTS = 20
REQUESTS = 2000

Obj = dict[str, Any]

MANIFEST = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}, annotations: {{linkerd.io/inject: enabled}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {OUTSIDE}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: app
        command: [{sys.executable}, {APPS / "echo.py"}, --port, "8080"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /status/200, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata: {{labels: {{app: client}}}}
    spec:
      containers:
      - {{name: sleep, command: [sleep, infinity]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: outsider, namespace: {OUTSIDE}}}
spec:
  selector: {{matchLabels: {{app: outsider}}}}
  template:
    metadata: {{labels: {{app: outsider}}}}
    spec:
      containers:
      - {{name: sleep, command: [sleep, infinity]}}
"""


class Pods:
    """The module's pods: the app, the meshed client and the unmeshed outsider."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        web = cluster.wait_deployment(NS, "web", 1, timeout=120)[0]
        self.web = str(web["metadata"]["name"])
        self.web_ip = str(web["status"]["podIP"])
        self.client = str(
            cluster.wait_deployment(NS, "client", 1, timeout=120)[0]["metadata"]["name"]
        )
        outsider = cluster.wait_deployment(OUTSIDE, "outsider", 1, timeout=120)[0]
        self.outsider = str(outsider["metadata"]["name"])

    def client_metrics(self) -> list[Sample]:
        return parse_samples(self.cluster.proxy_metrics(self.client, NS))

    def web_metrics(self) -> list[Sample]:
        return parse_samples(self.cluster.proxy_metrics(self.web, NS))

    def app_requests(self) -> list[str]:
        """The app's ``REQ <proto> <method> <path>`` log lines so far."""
        log = self.cluster.logs(self.web, NS, "app")
        return [line for line in log.splitlines() if line.startswith("REQ ")]

    def curl(self, *args: str, pod: str = "", namespace: str = NS) -> str:
        """curl in the client pod (or another); its output."""
        argv = ["curl", "-sS", "--fail", "--max-time", "10", *args]
        return self.cluster.exec(pod or self.client, namespace, argv).stdout


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pods]:
    with running_cluster(tmp_path_factory.mktemp("clusters"), POD_CIDR, SERVICE_CIDR) as c:
        c.apply(MANIFEST)
        found = Pods(c)
        # The client's proxy has discovered the app once a request by name goes through.
        wait_for(
            lambda: "x-echo-proto" in found.curl("-D", "-", "-o", "/dev/null", f"http://{HOST}/"),
            60,
            what="a first request through the mesh",
        )
        yield found


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(value for _, _, value in select(samples, name, **labels))


def test_many_requests_cross_on_few_connections_and_count_as_http1(pods: Pods) -> None:
    client_before, web_before = pods.client_metrics(), pods.web_metrics()
    app_before = len(pods.app_requests())
    out = pods.cluster.exec(
        pods.client, NS,
        ["h2load", "--h1", "-c", str(CLIENTS), "-n", str(REQUESTS), f"http://{HOST}/bytes/100"],
        timeout=120,
    ).stdout  # fmt: skip
    assert f"{REQUESTS} succeeded, 0 failed" in out and f"{REQUESTS} 2xx" in out, out
    client_after, web_after = pods.client_metrics(), pods.web_metrics()

    def grew(before: list[Sample], after: list[Sample], name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # Twenty HTTP/1 client connections; one or two mTLS connections between the proxies.
    assert grew(client_before, client_after, "tcp_open_total", direction="outbound",
                peer="src") == CLIENTS  # fmt: skip
    dst = grew(client_before, client_after, "tcp_open_total", direction="outbound", peer="dst")
    src = grew(web_before, web_after, "tcp_open_total", direction="inbound", peer="src", tls="true")
    assert dst <= 2 and src <= 2, (dst, src)
    # The app was spoken to in HTTP/1.1 every time (readiness probes come in between).
    seen = [line for line in pods.app_requests()[app_before:] if line.endswith(" /bytes/100")]
    assert len(seen) == REQUESTS and set(seen) == {"REQ HTTP/1.1 GET /bytes/100"}
    # Both ends count the requests as HTTP/1: status and classification, no gRPC status.
    for samples_before, samples_after, labels in (
        (client_before, client_after, {"direction": "outbound", "dst_service": "web"}),
        (web_before, web_after, {"direction": "inbound", "tls": "true"}),
    ):
        assert grew(samples_before, samples_after, "request_total", **labels) == REQUESTS
        assert grew(samples_before, samples_after, "response_total", **labels) == REQUESTS
        for _, found, _ in select(samples_after, "response_total", **labels):
            assert (found["status_code"], found["classification"]) == ("200", "success"), found
            assert "grpc_status" not in found and "error" not in found, found


def test_bodies_framing_and_identity_survive_the_crossing(pods: Pods, tmp_path: Path) -> None:
    # A large request body, sent by curl chunked and with a length, comes back intact.
    body = hashlib.sha256(b"seed").digest() * 40000  # 1.28 MB
    (tmp_path / "body").write_bytes(body)
    expected = hashlib.sha256(body).hexdigest()
    for extra in ((), ("-H", "Transfer-Encoding: chunked")):
        info = json.loads(pods.curl(*extra, "--data-binary", f"@{tmp_path / 'body'}",
                                    f"http://{HOST}/info"))  # fmt: skip
        assert (info["proto"], info["body_len"], info["body_sha256"]) == (
            "HTTP/1.1",
            len(body),
            expected,
        )
        headers = {name.lower(): value for name, value in info["headers"]}
        assert headers["host"] == HOST and "l5d-orig-proto" not in headers
        assert (
            headers["l5d-client-id"] == f"default.{NS}.serviceaccount.identity.weft.cluster.local"
        )
    # The app's chunked and close-delimited responses reach the client whole, chunked.
    for path in ("/chunked/300000", "/close/300000"):
        head = pods.curl("-D", "-", "-o", "/dev/null", f"http://{HOST}{path}").lower()
        assert "transfer-encoding: chunked" in head and "l5d-orig-proto" not in head, head
        size = pods.curl("-o", "/dev/null", "-w", "%{size_download}", f"http://{HOST}{path}")
        assert size == "300000"
    # HEAD gets the length and no body; 204 and 304 have none either.
    head = pods.curl("-I", f"http://{HOST}/bytes/77").lower()
    assert "content-length: 77" in head and "x-echo-proto: http/1.1" in head
    assert pods.curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{HOST}/status/204") == "204"


def test_a_peer_proxys_upgraded_request_reaches_the_app_as_http1(pods: Pods) -> None:
    # What a stock linkerd2-proxy client sends to a meshed endpoint, here from an unmeshed pod
    # in plaintext: HTTP/2 with l5d-orig-proto. The app must see HTTP/1.1 (it answered 505).
    url = f"http://{pods.web_ip}:8080/info"
    upgraded = pods.curl("--http2-prior-knowledge", "-H", "l5d-orig-proto: HTTP/1.1", "-D", "-",
                         url, pod=pods.outsider, namespace=OUTSIDE)  # fmt: skip
    head, _, body = upgraded.partition("\n\n")  # the exec output has universal newlines
    assert head.startswith("HTTP/2 200"), head
    assert "l5d-orig-proto: HTTP/1.1" in head and "x-echo-proto: HTTP/1.1" in head, head
    info = json.loads(body)
    assert info["proto"] == "HTTP/1.1"
    assert "l5d-orig-proto" not in {name.lower() for name, _ in info["headers"]}
    # Without the header an HTTP/2 request stays HTTP/2, as before.
    plain = pods.curl("--http2-prior-knowledge", "-D", "-", "-o", "/dev/null", url,
                      pod=pods.outsider, namespace=OUTSIDE)  # fmt: skip
    assert "x-echo-proto: HTTP/2" in plain and "l5d-orig-proto" not in plain.lower(), plain
    # The app's proxy counted it (and the probes) without a gRPC status.
    found = select(pods.web_metrics(), "response_total", direction="inbound", tls="no_identity")
    assert found and all("grpc_status" not in labels for _, labels, _ in found)
