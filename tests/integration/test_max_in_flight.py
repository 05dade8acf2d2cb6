"""LINKERD2_PROXY_INBOUND_MAX_IN_FLIGHT through a real proxy process: one bound per listener,
shared by its HTTP/1 and HTTP/2 requests, answered with the proxy's own 503."""

from __future__ import annotations

import shutil
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.loopback import LoopbackProxy, wait_for

REASON = "proxy max-concurrency exhausted (2 requests in flight)"


class _Held(socketserver.StreamRequestHandler):
    """Answers each request 200 once the server's ``release`` event is set."""

    server: _Backend

    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        with self.server.lock:
            self.server.arrived += 1
        self.server.release.wait(30)
        self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndone")


class _Backend(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Held)
        self.lock = threading.Lock()
        self.arrived = 0
        self.release = threading.Event()


@pytest.fixture
def backend() -> Iterator[_Backend]:
    server = _Backend()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def _send(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")
    return sock


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
         if line.lower().startswith(b"content-length:")),
        0,
    )  # fmt: skip
    while len(body) < length:
        body += sock.recv(65536)
    sock.close()
    return head + b"\r\n\r\n" + body


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_requests_beyond_max_in_flight_get_503_over_http1_and_http2(
    backend: _Backend, tmp_path: Path
) -> None:
    host, port = backend.server_address[:2]
    env = {"LINKERD2_PROXY_INBOUND_MAX_IN_FLIGHT": "2"}
    proxy = LoopbackProxy((str(host), int(port)), tmp_path, **env).start()
    try:
        held = [_send(proxy.inbound), _send(proxy.inbound)]
        wait_for(lambda: backend.arrived == 2, 20, "two requests at the backend")
        shed = _response(_send(proxy.inbound))
        assert shed.startswith(b"HTTP/1.1 503")
        assert f"l5d-proxy-error: {REASON}".encode() in shed
        h2 = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
             f"http://127.0.0.1:{proxy.inbound}/"],
            capture_output=True, timeout=20, check=True,
        )  # fmt: skip
        assert h2.stdout.startswith(b"HTTP/2 503")
        assert f"l5d-proxy-error: {REASON}".encode() in h2.stdout
        backend.release.set()
        assert all(_response(sock).endswith(b"done") for sock in held)
        assert _response(_send(proxy.inbound)).endswith(b"done")  # room again
        assert backend.arrived == 3
        metrics = proxy.metrics()
    finally:
        proxy.stop()
    sheds = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("response_total{") and 'status_code="503"' in line
    ]
    assert sum(sheds) == 2  # one HTTP/1 and one HTTP/2 request, by their authorities
