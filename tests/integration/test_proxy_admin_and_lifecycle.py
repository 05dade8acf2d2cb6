"""The admin contract, proxy-produced errors, detection timeout and graceful shutdown (loopback)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.loopback import LoopbackProxy, refused_port, wait_for


class _Slow(BaseHTTPRequestHandler):
    """``/slow`` answers only once the test sets ``release``; everything else at once."""

    protocol_version = "HTTP/1.1"
    release = threading.Event()
    arrived = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/slow":
            self.arrived.set()
            self.release.wait(30)
        body = b"done\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[tuple[str, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield ("127.0.0.1", server.server_address[1])
    _Slow.release.set()
    server.shutdown()


Reply = tuple[int, bytes, dict[str, str]]


def _get(url: str, data: bytes | None = None, method: str = "GET") -> Reply:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as rsp:
            return rsp.status, rsp.read(), dict(rsp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def test_admin_endpoints(backend: tuple[str, int], tmp_path: Path) -> None:
    proxy = LoopbackProxy(backend, tmp_path, LINKERD2_PROXY_LOG="warn,linkerd=info").start()
    try:
        assert _get(proxy.admin_url("/ready"))[:2] == (200, b"ready\n")
        assert _get(proxy.admin_url("/live"))[:2] == (200, b"live\n")
        status, body, _ = _get(proxy.admin_url("/env.json?LINKERD2_PROXY_LOG"))
        assert status == 200 and json.loads(body) == {"LINKERD2_PROXY_LOG": "warn,linkerd=info"}
        assert _get(proxy.admin_url("/env.json?A=1"))[0] == 400
        assert _get(proxy.admin_url("/proxy-log-level"))[1] == b"warn,linkerd=info\n"
        assert _get(proxy.admin_url("/proxy-log-level"), b"debug", "PUT")[0] == 204
        assert _get(proxy.admin_url("/proxy-log-level"))[1] == b"debug\n"
        assert _get(proxy.admin_url("/proxy-log-level"), b"loud", "PUT")[0] == 400
        assert _get(proxy.admin_url("/proxy-log-level"), b"", "POST")[0] == 405
        assert _get(proxy.admin_url("/shutdown"), b"", "POST")[0] == 404  # not enabled
        assert _get(proxy.admin_url("/nope"))[0] == 404
    finally:
        proxy.stop()


def test_shutdown_endpoint_stops_the_proxy(backend: tuple[str, int], tmp_path: Path) -> None:
    proxy = LoopbackProxy(backend, tmp_path, LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED="1").start()
    try:
        assert _get(proxy.admin_url("/shutdown"), b"", "GET")[0] == 405
        assert _get(proxy.admin_url("/shutdown"), b"", "POST")[:2] == (200, b"shutdown\n")
        assert proxy.proc is not None
        assert proxy.proc.wait(10) == 0
    finally:
        proxy.stop()


def test_connect_refused_answers_502_with_reason(tmp_path: Path) -> None:
    with refused_port() as port:
        proxy = LoopbackProxy(("127.0.0.1", port), tmp_path).start()
        try:
            status, _, headers = _get(f"http://127.0.0.1:{proxy.inbound}/")
            assert status == 502
            assert "refused" in headers["l5d-proxy-error"]
            metrics = proxy.metrics()
            assert 'classification="failure"' in metrics and 'status_code="502"' in metrics
        finally:
            proxy.stop()


def test_silent_client_is_treated_as_opaque_after_detect_timeout(tmp_path: Path) -> None:
    """A server-speaks-first protocol on a port with detection still gets its banner."""
    listener = socket.create_server(("127.0.0.1", 0))

    def banner() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"220 hello from a server that speaks first\r\n")
        conn.close()

    threading.Thread(target=banner, daemon=True).start()
    proxy = LoopbackProxy(
        listener.getsockname(), tmp_path, LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT="300ms"
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.inbound), timeout=10) as sock:
            assert sock.recv(100).startswith(b"220 hello")
    finally:
        proxy.stop()
        listener.close()


def test_sigterm_drains_in_flight_requests(backend: tuple[str, int], tmp_path: Path) -> None:
    _Slow.release.clear()
    _Slow.arrived.clear()
    proxy = LoopbackProxy(backend, tmp_path, LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD="20s").start()
    assert proxy.proc is not None
    try:
        result: list[Reply] = []
        client = threading.Thread(
            target=lambda: result.append(_get(f"http://127.0.0.1:{proxy.inbound}/slow"))
        )
        client.start()
        assert _Slow.arrived.wait(10)
        proxy.proc.send_signal(signal.SIGTERM)
        # Once the listener is closed, new connections are refused ...
        wait_for(lambda: _refused(proxy.inbound), 10, "the listener to close")
        assert proxy.proc.poll() is None, "the proxy must wait for the in-flight request"
        # ... while the in-flight request still completes.
        _Slow.release.set()
        client.join(10)
        assert result and result[0][:2] == (200, b"done\n")
        assert proxy.proc.wait(10) == 0
    finally:
        proxy.stop()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_unusable_trust_anchors_stop_the_proxy_with_one_line(tmp_path: Path) -> None:
    proxy = LoopbackProxy(
        ("127.0.0.1", 1),
        tmp_path,
        LINKERD2_PROXY_IDENTITY_LOCAL_NAME="web.emojivoto.serviceaccount.identity.weft.cluster.local",
        LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS="-----BEGIN CERTIFICATE-----\nnot base64\n",
        LINKERD2_PROXY_IDENTITY_TOKEN_FILE=str(tmp_path / "token"),
        LINKERD2_PROXY_IDENTITY_SVC_ADDR="127.0.0.1:1",
        LINKERD2_PROXY_IDENTITY_SVC_NAME="weft-identity.weft.serviceaccount.identity.weft.cluster.local",
    )
    del proxy.env["LINKERD2_PROXY_IDENTITY_DISABLED"]
    done = subprocess.run(
        [sys.executable, "-m", "weft", "proxy"],
        env=proxy.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("weft proxy: LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS: no usable PEM")
