"""HTTP/1.1 framing through one proxy hop: whatever the client sends, the server gets (property)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from io import BufferedIOBase
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.loopback import LoopbackProxy


def _read_exact(f: BufferedIOBase, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = f.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class _Echo(socketserver.StreamRequestHandler):
    """Answers each request with its method, target, x-* headers and body, framed as asked."""

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            method, target, _ = line.decode().split(" ", 2)
            headers: list[tuple[str, str]] = []
            while (h := self.rfile.readline()) not in (b"\r\n", b""):
                name, value = h.decode().split(":", 1)
                headers.append((name.strip().lower(), value.strip()))
            hmap = dict(headers)
            if hmap.get("transfer-encoding") == "chunked":
                body = b""
                while (size := int(self.rfile.readline().split(b";")[0], 16)) != 0:
                    body += _read_exact(self.rfile, size)
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
            else:
                body = _read_exact(self.rfile, int(hmap.get("content-length", "0")))
            xs = "".join(f"{k}={v};" for k, v in headers if k.startswith("x-"))
            payload = f"{method} {target} {xs}\n".encode() + body
            if hmap.get("x-reply") == "chunked":
                head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                mid = len(payload) // 2
                parts = [p for p in (payload[:mid], payload[mid:]) if p]
                framed = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
                self.wfile.write(head + framed)
            else:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload))
                self.wfile.write(payload)
            self.wfile.flush()


@pytest.fixture(scope="module")
def echo_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackProxy]:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    proxy = LoopbackProxy((str(host), port), Path(tmp_path_factory.mktemp("proxy"))).start()
    yield proxy
    proxy.stop()
    server.shutdown()


def _read_response(sock: socket.socket) -> bytes:
    f = sock.makefile("rb")
    status = f.readline()
    assert status.startswith(b"HTTP/1.1 200"), status
    headers = {}
    while (h := f.readline()) != b"\r\n":
        name, value = h.decode().split(":", 1)
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while (size := int(f.readline(), 16)) != 0:
            body += f.read(size)
            f.readline()
        f.readline()
        return body
    return bytes(f.read(int(headers["content-length"])))


header_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 -_.,=/", max_size=40)
requests = st.lists(
    st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~?=&", max_size=60),
        st.dictionaries(st.sampled_from(["x-a", "x-b", "x-trace-id"]), header_values, max_size=3),
        st.binary(max_size=5000),
        st.sampled_from(["length", "chunked", "none"]),
        st.sampled_from(["length", "chunked"]),
    ),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests, st.integers(min_value=1, max_value=97))
def test_requests_and_responses_pass_unchanged(
    echo_proxy: LoopbackProxy,
    reqs: list[tuple[str, str, dict[str, str], bytes, str, str]],
    step: int,
) -> None:
    """Several keep-alive requests, written in arbitrary pieces, arrive intact; replies too."""
    with socket.create_connection(("127.0.0.1", echo_proxy.inbound), timeout=10) as sock:
        for method, path, headers, body, framing, reply in reqs:
            if framing == "none":
                body = b""
            lines = [f"{method} /{path} HTTP/1.1", "Host: echo.test", f"x-reply: {reply}"]
            lines += [f"{k}: {v.strip()}" for k, v in headers.items()]
            if framing == "chunked":
                lines.append("Transfer-Encoding: chunked")
                parts = [body[i : i + 700] for i in range(0, len(body), 700)]
                payload = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
            else:
                lines.append(f"Content-Length: {len(body)}")
                payload = body
            raw = ("\r\n".join(lines) + "\r\n\r\n").encode() + payload
            for i in range(0, len(raw), step * 13):
                sock.sendall(raw[i : i + step * 13])
            got = _read_response(sock)
            xs = "".join(f"{k}={v.strip()};" for k, v in [("x-reply", reply), *headers.items()])
            assert got == f"{method} /{path} {xs}\n".encode() + body
