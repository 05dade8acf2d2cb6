"""The proxies' Prometheus metrics after a known amount of traffic (fresh proxies per test)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import dataclass

import pytest

from harness.mesh import Mesh, Pod, Sample, parse_samples, select, total, wait_equal, wait_for

pytestmark = pytest.mark.netns

PORT = 8080
LATENCY_BUCKETS = [
    "1", "2", "3", "4", "5", "10", "20", "30", "40", "50", "100", "200", "300", "400", "500",
    "1000", "2000", "3000", "4000", "5000", "10000", "20000", "30000", "40000", "50000", "+Inf",
]  # fmt: skip


@dataclass
class Pair:
    client: Pod
    server: Pod

    @property
    def authority(self) -> str:
        return f"{self.server.ip}:{PORT}"

    def url(self, path: str, port: int = PORT) -> str:
        return f"http://{self.server.ip}:{port}{path}"


@pytest.fixture
def pair(mesh: Mesh) -> Pair:
    server = mesh.add_pod("server")
    client = mesh.add_pod("client")
    server.spawn_app("echo", "echo.py", "--port", str(PORT), port=PORT)
    server.spawn_app("banner", "tcp_app.py", "banner", "--port", "3306", port=3306)
    return Pair(client, server)


def curl_ok(pod: Pod, *args: str) -> list[str]:
    """Run curl on the URLs among ``args`` (bodies discarded); returns the status codes."""
    argv: list[str] = []
    for arg in args:
        argv += ["-o", "/dev/null", arg] if arg.startswith("http://") else [arg]
    proc = pod.curl("-w", "%{http_code}\\n", *argv)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def metric(pod: Pod, name: str, **labels: str) -> float:
    return total(parse_samples(pod.metrics()), name, **labels)


def test_http1_requests_and_connections_are_counted_exactly(pair: Pair) -> None:
    # 7 requests on one keep-alive connection, then 3 connections with one request each.
    urls = [pair.url(f"/k/{i}") for i in range(7)]
    args: list[str] = []
    for url in urls:
        args += ["-o", "/dev/null", url]
    proc = pair.client.curl("-w", "%{http_code} %{num_connects}\\n", *args)
    assert proc.stdout.split() == ["200", "1"] + ["200", "0"] * 6, proc.stdout + proc.stderr
    for i in range(3):
        assert curl_ok(pair.client, pair.url(f"/single/{i}")) == ["200"]

    client, server = pair.client, pair.server
    out = {"direction": "outbound"}
    inb = {"direction": "inbound"}
    ok = {"status_code": "200", "classification": "success"}

    def snapshot() -> tuple[float, ...]:
        c = parse_samples(client.metrics())
        s = parse_samples(server.metrics())
        return (
            total(c, "request_total", authority=pair.authority, **out),
            total(c, "response_total", authority=pair.authority, **out, **ok),
            total(s, "request_total", authority=pair.authority, **inb),
            total(s, "response_total", authority=pair.authority, **inb, **ok),
            total(c, "tcp_open_total", peer="src", **out),
        )

    wait_equal(snapshot, (10, 10, 10, 10, 4), 10, what="(req, rsp) outbound, inbound, conns")
    c = parse_samples(client.metrics())
    s = parse_samples(server.metrics())
    # Nothing was counted in the other direction of either proxy.
    assert total(c, "request_total", **inb) == 0
    assert total(s, "request_total", **out) == 0
    assert total(c, "tcp_open_total", **inb) == 0
    # The client proxy dialled at most one connection per client connection; each one was
    # accepted by the server's inbound proxy.
    dialled = total(c, "tcp_open_total", peer="dst", **out)
    assert 1 <= dialled <= 4
    assert total(s, "tcp_open_total", peer="src", **inb) == dialled
    assert 1 <= total(s, "tcp_open_total", peer="dst", **inb) <= dialled
    # Label sets.
    for samples in (c, s):
        for name, labels, _ in select(samples, "request_total"):
            assert {"direction", "authority", "tls"} <= set(labels), (name, labels)
        for name, labels, _ in select(samples, "response_total"):
            assert {"direction", "authority", "tls", "status_code", "classification"} <= set(
                labels
            ), (name, labels)
        for name, labels, _ in select(samples, "tcp_open_total"):
            assert {"direction", "peer", "tls"} <= set(labels), (name, labels)
            assert labels["tls"] == "disabled"
        latency = select(samples, "response_latency_ms_bucket", status_code="200")
        assert [labels["le"] for _, labels, _ in latency] == LATENCY_BUCKETS
        assert latency[-1][2] == 10


def test_response_classification(pair: Pair) -> None:
    assert curl_ok(pair.client, *[pair.url("/status/500")] * 3) == ["500"] * 3
    assert curl_ok(pair.client, *[pair.url("/status/404")] * 2) == ["404"] * 2
    assert curl_ok(pair.client, pair.url("/", port=9999)) == ["502"]

    def classes(pod: Pod, direction: str) -> tuple[float, ...]:
        samples = parse_samples(pod.metrics())
        rsp = [s for s in samples if s[0] == "response_total" and s[1]["direction"] == direction]
        return (
            total(rsp, "response_total", status_code="500", classification="failure"),
            total(rsp, "response_total", status_code="404", classification="success"),
            total(rsp, "response_total", status_code="502", classification="failure"),
        )

    wait_equal(lambda: classes(pair.client, "outbound"), (3, 2, 1), 10, what="outbound classes")
    wait_equal(lambda: classes(pair.server, "inbound"), (3, 2, 1), 10, what="inbound classes")
    refused = select(
        parse_samples(pair.client.metrics()), "response_total", authority=f"{pair.server.ip}:9999"
    )
    assert [s[1]["status_code"] for s in refused] == ["502"]


def test_http2_requests_are_counted_exactly(pair: Pair) -> None:
    # Five concurrent streams on one connection (nghttp; curl 7.88 cannot reuse h2c).
    urls = [pair.url(f"/h2/{i}") for i in range(5)]
    out = pair.client.run(["nghttp", "-nv", "--no-dep", *urls]).stdout
    assert out.count(":status: 200") == 5, out

    def snapshot() -> tuple[float, ...]:
        c = parse_samples(pair.client.metrics())
        s = parse_samples(pair.server.metrics())
        return (
            total(c, "request_total", direction="outbound"),
            total(c, "response_total", direction="outbound", classification="success"),
            total(s, "request_total", direction="inbound"),
            total(c, "tcp_open_total", direction="outbound", peer="src"),
        )

    wait_equal(snapshot, (5, 5, 5, 1), 10, what="h2 (out req, out rsp, in req, out conns)")


def test_opaque_connections_are_counted_with_bytes(pair: Pair) -> None:
    for _ in range(2):
        proc = pair.client.run(
            pair.client.python("tcp_app.py", "probe", str(pair.server.ip), "3306")
        )
        assert json.loads(proc.stdout)["banner"] == "BANNER 3306\r\n"

    def snapshot() -> tuple[float, ...]:
        c = parse_samples(pair.client.metrics())
        s = parse_samples(pair.server.metrics())
        return (
            total(c, "tcp_open_total", direction="outbound", peer="src"),
            total(c, "tcp_close_total", direction="outbound", peer="src"),
            total(s, "tcp_open_total", direction="inbound", peer="src"),
            total(s, "tcp_close_total", direction="inbound", peer="src"),
            total(c, "request_total"),
        )

    wait_equal(snapshot, (2, 2, 2, 2, 0), 10, what="opaque (opens, closes) and no requests")
    c = parse_samples(pair.client.metrics())
    # Each connection: the client wrote "ping\n" (5 bytes) and read the banner plus echo.
    assert total(c, "tcp_read_bytes_total", direction="outbound", peer="src") == 2 * 5
    assert total(c, "tcp_write_bytes_total", direction="outbound", peer="src") == 2 * (13 + 5)


def duplicate_series(text: str) -> list[str]:
    """Series that appear more than once (by name and label set, and by raw line key)."""
    parsed = Counter(
        (name, tuple(sorted(labels.items()))) for name, labels, _ in parse_samples(text)
    )
    dups = [f"{name}{dict(labels)}" for (name, labels), n in parsed.items() if n > 1]
    raw = Counter(
        line.rsplit(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")
    )
    dups += [key for key, n in raw.items() if n > 1]
    types = Counter(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE "))
    dups += [f"TYPE {name}" for name, n in types.items() if n > 1]
    return dups


def test_exposition_is_valid_and_has_no_duplicates(pair: Pair) -> None:
    # Traffic of every kind, so every family has series (outcomes are checked elsewhere).
    assert curl_ok(pair.client, pair.url("/a"), pair.url("/status/503")) == ["200", "503"]
    assert curl_ok(pair.client, pair.url("/", port=9999)) == ["502"]
    pair.client.curl("--http2-prior-knowledge", "-o", "/dev/null", pair.url("/b"))
    pair.client.run(pair.client.python("tcp_app.py", "probe", str(pair.server.ip), "3306"))
    wait_for(
        lambda: metric(pair.server, "request_total", direction="inbound") >= 3,
        10,
        what="inbound requests to be counted",
    )
    for pod in (pair.client, pair.server):
        text = pod.metrics()
        samples: list[Sample] = parse_samples(text)
        assert samples
        assert duplicate_series(text) == []
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        # 0 = clean, 3 = lint findings only (e.g. the `_ms` unit suffix); 1 = invalid.
        assert check.returncode in (0, 3), f"{pod.name}: promtool: {check.stdout}{check.stderr}"
