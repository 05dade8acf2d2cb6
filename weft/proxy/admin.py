"""The admin server: ``/metrics``, ``/ready``, ``/live``, ``/shutdown``, ``/env.json``,
``/proxy-log-level`` (linkerd2-proxy's admin contract)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import unquote

import httptools

from weft.proxy.log import LogControl, LogFilterError
from weft.proxy.metrics import ProxyMetrics

log = logging.getLogger("weft.proxy.admin")

Response = tuple[int, bytes, list[tuple[str, str]]]


class AdminState:
    """What the admin endpoints read and act on."""

    def __init__(
        self,
        metrics: ProxyMetrics,
        logs: LogControl,
        env: Mapping[str, str],
        shutdown_enabled: bool,
        on_shutdown: Callable[[], None],
    ) -> None:
        self.metrics = metrics
        self.logs = logs
        self.env = env
        self.shutdown_enabled = shutdown_enabled
        self.on_shutdown = on_shutdown
        self.ready = False


def _text(status: int, body: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return status, body.encode(), [("content-type", "text/plain"), *(headers or [])]


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def handle(state: AdminState, method: str, url: bytes, body: bytes, peer: str) -> Response:
    """Route one admin request (pure apart from the state's callbacks)."""
    parsed = httptools.parse_url(url)
    path = parsed.path.decode()
    query = parsed.query.decode() if parsed.query else ""
    if path == "/metrics":
        if method != "GET":
            return _text(405, "method not allowed\n", [("allow", "GET")])
        state.metrics.retire_idle()
        return 200, state.metrics.render(), [("content-type", "text/plain; version=0.0.4")]
    if path == "/ready":
        return _text(200, "ready\n") if state.ready else _text(503, "not ready\n")
    if path == "/live":
        return _text(200, "live\n")
    if path == "/env.json":
        if method != "GET":
            return _text(405, "method not allowed\n", [("allow", "GET")])
        names = [unquote(n) for n in query.split("&") if n]
        if any("=" in n for n in names):
            return _text(400, "env.json takes variable names, not name=value pairs\n")
        env = dict(state.env)
        selected = {n: env.get(n) for n in names} if names else env
        return 200, json.dumps(selected).encode(), [("content-type", "application/json")]
    if path == "/proxy-log-level":
        if not _is_loopback(peer):
            return _text(403, "access to /proxy-log-level is only allowed from localhost\n")
        if method == "GET":
            return _text(200, state.logs.current + "\n")
        if method == "PUT":
            try:
                state.logs.set(body.decode().strip())
            except (LogFilterError, UnicodeDecodeError) as exc:
                return _text(400, f"{exc}\n")
            log.info("log level set to %s", state.logs.current)
            return 204, b"", []
        return _text(405, "method not allowed\n", [("allow", "GET, PUT")])
    if path == "/shutdown":
        if not state.shutdown_enabled:
            return _text(404, "shutdown endpoint is not enabled\n")
        if method != "POST":
            return _text(405, "method not allowed\n", [("allow", "POST")])
        if not _is_loopback(peer):
            return _text(403, "shutdown is only allowed from localhost\n")
        state.on_shutdown()
        return _text(200, "shutdown\n")
    return _text(404, "not found\n")


class _AdminConn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection to the admin server."""

    def __init__(self, state: AdminState) -> None:
        self.state = state
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.peer = ""
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = (transport.get_extra_info("peername") or ("",))[0]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        status, body, headers = handle(self.state, method, self.url, b"".join(self.body), self.peer)
        self.url, self.body = b"", []
        keep_alive = self.parser.should_keep_alive()
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines.append(f"content-length: {len(body)}")
        if not keep_alive:
            lines.append("connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        if not keep_alive:
            self.transport.close()


_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


async def start_admin(state: AdminState, host: str, port: int) -> asyncio.Server:
    """Serve the admin endpoints on ``host:port``."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _AdminConn(state), host, port, reuse_address=True)
