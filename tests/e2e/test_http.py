"""HTTP through both proxies with real kernel redirection.

client (meshed; its outbound proxy intercepts) -> server pod IP (its inbound proxy intercepts)
-> the echo app, which listens on 0.0.0.0:8080 and is reached by the inbound proxy through
127.0.0.1:8080. ``plain`` is an unmeshed client and ``bare`` an unmeshed server.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.mesh import PROXY_GID, Mesh, Pod, parse_samples, total, wait_equal

pytestmark = pytest.mark.netns

PORT = 8080


@dataclass
class Pods:
    client: Pod
    server: Pod
    plain: Pod
    bare: Pod
    workdir: Path

    def url(self, path: str = "/", pod: Pod | None = None, port: int = PORT) -> str:
        return f"http://{(pod or self.server).ip}:{port}{path}"


@pytest.fixture(scope="module")
def pods(module_mesh: Mesh) -> Iterator[Pods]:
    server = module_mesh.add_pod("server")
    client = module_mesh.add_pod("client")
    plain = module_mesh.add_pod("plain", meshed=False)
    bare = module_mesh.add_pod("bare", meshed=False)
    server.spawn_app("echo", "echo.py", "--port", str(PORT), port=PORT)
    bare.spawn_app("echo", "echo.py", "--port", str(PORT), port=PORT)
    yield Pods(client, server, plain, bare, module_mesh.workdir)


@dataclass
class Transfer:
    status: int
    version: str
    num_connects: int
    body: bytes
    headers: str


def curl_many(
    pod: Pod, urls: list[str], workdir: Path, *args: str, name: str = "t"
) -> list[Transfer]:
    """Fetch ``urls`` in one curl invocation (so keep-alive can reuse the connection)."""
    argv: list[str] = []
    for i, url in enumerate(urls):
        argv += ["-o", str(workdir / f"{name}-{i}.out"), url]
    proc = pod.curl(
        "-i", *args, "-w", "%{http_code} %{http_version} %{num_connects}\\n", *argv, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(urls), proc.stdout
    out = []
    for i, line in enumerate(lines):
        code, version, connects = line.split()
        raw = (workdir / f"{name}-{i}.out").read_bytes()
        heads: list[bytes] = []
        while True:  # skip interim (1xx) heads
            head, _, raw = raw.partition(b"\r\n\r\n")
            heads.append(head)
            if not re.match(rb"HTTP/\S+ 1\d\d", head):
                break
        text = b"\r\n".join(heads).decode("latin-1")
        out.append(Transfer(int(code), version, int(connects), raw, text))
    return out


def header(transfer: Transfer, name: str) -> str | None:
    """The last value of header ``name`` in the response head(s)."""
    values = re.findall(rf"(?im)^{re.escape(name)}:\s*(.*?)\r?$", transfer.headers)
    return values[-1] if values else None


def test_http1_keepalive_several_requests_on_one_connection(pods: Pods) -> None:
    paths = [f"/keepalive/{i}" for i in range(5)]
    transfers = curl_many(pods.client, [pods.url(p) for p in paths], pods.workdir, name="ka")
    assert [t.status for t in transfers] == [200] * 5
    assert [t.version for t in transfers] == ["1.1"] * 5
    assert [t.num_connects for t in transfers] == [1, 0, 0, 0, 0]  # one client connection
    seen = [json.loads(t.body) for t in transfers]
    assert [s["path"] for s in seen] == paths
    assert all(s["method"] == "GET" for s in seen)
    hosts = [dict((k.lower(), v) for k, v in s["headers"])["host"] for s in seen]
    assert hosts == [f"{pods.server.ip}:{PORT}"] * 5
    server_log = pods.server.procs[-1].output()
    assert all(f"REQ HTTP/1.1 GET {p}\n" in server_log for p in paths)


def test_http1_chunked_upload(pods: Pods) -> None:
    payload = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes, in chunks
    src = pods.workdir / "chunked.bin"
    src.write_bytes(payload)
    transfer = curl_many(
        pods.client,
        [pods.url("/upload")],
        pods.workdir,
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        f"@{src}",
        name="chunked",
    )[0]
    assert transfer.status == 200
    seen = json.loads(transfer.body)
    assert seen["method"] == "POST"
    assert seen["body_len"] == len(payload)
    assert seen["body_sha256"] == hashlib.sha256(payload).hexdigest()


def test_http1_large_bodies_both_ways(pods: Pods) -> None:
    payload = hashlib.sha256(b"seed").digest() * (8 * 1024 * 1024 // 32)  # 8 MiB
    src = pods.workdir / "large.bin"
    src.write_bytes(payload)
    up, down = curl_many(
        pods.client,
        [pods.url("/echo"), pods.url("/bytes/20000000")],
        pods.workdir,
        "--data-binary",
        f"@{src}",
        "-H",
        "content-type: application/x-test",
        name="large",
    )
    assert up.status == 200
    assert hashlib.sha256(up.body).digest() == hashlib.sha256(payload).digest()
    assert header(up, "content-type") == "application/x-test"
    assert down.status == 200 and len(down.body) == 20_000_000
    assert down.body[:32] == b"0123456789abcdef" * 2 and down.body == down.body[:16] * 1_250_000


def nghttp_statuses(pod: Pod, urls: list[str]) -> tuple[list[str], int]:
    """Request ``urls`` concurrently on ONE HTTP/2 connection with nghttp.

    Returns the ``:status`` of each response (by stream) and the number of connections made.
    (curl 7.88 cannot reuse a prior-knowledge h2c connection, so nghttp does this.)
    """
    proc = pod.run(["nghttp", "-nv", "--no-dep", *urls], timeout=60)
    statuses = re.findall(r"recv \(stream_id=\d+\) :status: (\d+)", proc.stdout)
    return statuses, proc.stdout.count("] Connected")


def test_http2_prior_knowledge(pods: Pods) -> None:
    t = curl_many(pods.client, [pods.url("/h2/0")], pods.workdir, "--http2-prior-knowledge")[0]
    assert (t.status, t.version) == (200, "2")
    assert json.loads(t.body)["proto"] == "HTTP/2"
    big = curl_many(
        pods.client, [pods.url("/bytes/3000000")], pods.workdir, "--http2-prior-knowledge"
    )[0]
    assert (big.status, big.version, len(big.body)) == (200, "2", 3_000_000)


def test_http2_many_streams_on_one_connection(pods: Pods) -> None:
    urls = [pods.url(f"/h2/stream/{i}") for i in range(6)]
    statuses, connections = nghttp_statuses(pods.client, urls)
    assert statuses == ["200"] * 6
    assert connections == 1
    server_log = pods.server.procs[-1].output()
    assert all(f"REQ HTTP/2 GET /h2/stream/{i}\n" in server_log for i in range(6))


def test_http2_upload(pods: Pods) -> None:
    payload = b"h2 body " * 300_000
    src = pods.workdir / "h2up.bin"
    src.write_bytes(payload)
    t = curl_many(
        pods.client,
        [pods.url("/echo")],
        pods.workdir,
        "--http2-prior-knowledge",
        "--data-binary",
        f"@{src}",
        name="h2up",
    )[0]
    assert t.status == 200 and t.version == "2"
    assert t.body == payload


def test_h2load_all_2xx(pods: Pods) -> None:
    proc = pods.client.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "8", "-t", "1", pods.url("/load")], timeout=120
    )
    out = proc.stdout
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded", out), out
    assert re.search(r"status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx", out), out


def test_wrk_all_2xx(pods: Pods) -> None:
    proc = pods.client.run(
        ["wrk", "-t", "2", "-c", "8", "-d", "2s", "--timeout", "5s", pods.url("/wrk")],
        timeout=60,
    )
    out = proc.stdout
    done = re.search(r"(\d+) requests in", out)
    assert done and int(done.group(1)) > 100, out
    assert "Non-2xx or 3xx responses" not in out, out
    assert "Socket errors" not in out, out


def test_connect_refused_at_meshed_server_is_502(pods: Pods) -> None:
    # Nothing listens on 9999 in the server pod: its inbound proxy's connect is refused.
    t = curl_many(pods.client, [pods.url("/", port=9999)], pods.workdir, name="refused-in")[0]
    assert t.status == 502
    assert header(t, "l5d-proxy-error")


def test_connect_refused_at_unmeshed_destination_is_502(pods: Pods) -> None:
    # The bare pod has no proxy: the client's outbound proxy gets the refusal itself.
    t = curl_many(
        pods.client, [pods.url("/", pod=pods.bare, port=9999)], pods.workdir, name="refused-out"
    )[0]
    assert t.status == 502
    assert header(t, "l5d-proxy-error")


def test_connect_refused_over_http2_is_502(pods: Pods) -> None:
    t = curl_many(
        pods.client,
        [pods.url("/", port=9999)],
        pods.workdir,
        "--http2-prior-knowledge",
        name="refused-h2",
    )[0]
    assert t.status == 502 and t.version == "2"
    assert header(t, "l5d-proxy-error")


def test_unmeshed_client_to_meshed_server(pods: Pods) -> None:
    before = parse_samples(pods.server.metrics())
    t = curl_many(pods.plain, [pods.url("/from-plain")], pods.workdir, name="plain")[0]
    assert t.status == 200 and json.loads(t.body)["path"] == "/from-plain"

    wait_equal(
        lambda: total(parse_samples(pods.server.metrics()), "request_total", direction="inbound"),
        total(before, "request_total", direction="inbound") + 1,
        10,
        what="inbound request_total",
    )


def test_meshed_client_to_unmeshed_server(pods: Pods) -> None:
    t = curl_many(pods.client, [pods.url("/to-bare", pod=pods.bare)], pods.workdir, name="b")[0]
    assert t.status == 200 and json.loads(t.body)["path"] == "/to-bare"
    assert "REQ HTTP/1.1 GET /to-bare" in pods.bare.procs[-1].output()


def _request_counts(pod: Pod) -> tuple[float, float]:
    s = parse_samples(pod.metrics())
    return (
        total(s, "request_total", direction="outbound"),
        total(s, "request_total", direction="inbound"),
    )


def test_app_calling_its_own_pod_ip_bypasses_the_proxy(pods: Pods) -> None:
    # Linkerd's `-o lo -j RETURN`: traffic to the pod's own address leaves through lo and is
    # not redirected, so neither proxy sees it.
    before = _request_counts(pods.server)
    t = curl_many(pods.server, [pods.url("/self")], pods.workdir, name="self")[0]
    assert t.status == 200 and json.loads(t.body)["path"] == "/self"
    assert _request_counts(pods.server) == before


def test_proxy_gid_traffic_to_own_pod_ip_goes_through_inbound(pods: Pods) -> None:
    # proxy-init rule (a): traffic owned by the proxy's GID, out lo to a non-127.0.0.1 address,
    # is sent to PROXY_INIT_REDIRECT, i.e. through the inbound proxy (and not outbound).
    out_before, in_before = _request_counts(pods.server)
    proc = pods.server.run(
        [
            *("setpriv", f"--regid={PROXY_GID}", "--clear-groups", "--"),
            *("curl", "-sS", "--max-time", "10", pods.url("/as-proxy")),
        ]
    )
    assert json.loads(proc.stdout)["path"] == "/as-proxy"
    wait_equal(
        lambda: _request_counts(pods.server),
        (out_before, in_before + 1),
        10,
        what="(outbound, inbound) request_total",
    )


def test_admin_port_is_not_redirected(pods: Pods) -> None:
    # 4191 is an ignored inbound port: an unmeshed pod reaches the admin server directly.
    status, body = pods.plain.http_get(f"http://{pods.server.ip}:4191/ready")
    assert (status, body) == (200, "ready\n")
    samples = parse_samples(pods.server.metrics())
    assert not [
        s
        for s in samples
        if s[0] == "request_total" and s[1].get("authority", "").endswith(":4191")
    ]


def test_direct_connection_to_inbound_port_does_not_loop(pods: Pods) -> None:
    def opened() -> tuple[float, float]:
        s = parse_samples(pods.server.metrics())
        return (
            total(s, "tcp_open_total", direction="inbound", peer="src"),
            total(s, "tcp_open_total", direction="inbound", peer="dst"),
        )

    src_before, dst_before = opened()
    proc = pods.plain.curl("-i", pods.url("/direct", port=4143), timeout=10)
    # Either the connection is refused/closed or the proxy answers an error itself; it must not
    # dial itself (a loop) or hang.
    assert proc.returncode != 28, "curl timed out: the proxy hung on a direct connection"
    assert " 200 " not in proc.stdout.split("\r\n", 1)[0]
    wait_equal(lambda: opened()[0], src_before + 1, 10, what="inbound src tcp_open_total")
    assert opened()[1] == dst_before  # nothing dialled
    assert pods.server.admin_get("/ready") == (200, "ready\n")


def test_direct_connection_to_outbound_port_does_not_loop(pods: Pods) -> None:
    proc = pods.client.curl("-i", "http://127.0.0.1:4140/direct", timeout=10)
    assert proc.returncode != 28, "curl timed out: the proxy hung on a direct connection"
    assert " 200 " not in proc.stdout.split("\r\n", 1)[0]
    assert pods.client.admin_get("/ready") == (200, "ready\n")
