"""The tap hooks in the HTTP/1 and HTTP/2 handlers, with retries and route timeouts: a real
:class:`~weft.proxy.server.Listener` on loopback, in-process, whose taps hold a recording sink.

A retryable route hides the failed attempt from the client, so a tap must see one request,
initialised once, and the response the client got.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from tests.unit.test_proxy_h2_routes import DST, FlakyBackend, ProfiledRouter
from weft.proxy.config import ProxyConfig
from weft.proxy.context import INBOUND, ConnTracker
from weft.proxy.metrics import ProxyMetrics
from weft.proxy.profiles import Profile, Route
from weft.proxy.server import Listener
from weft.proxy.tap.registry import RequestFacts, Tapped, Taps

pytestmark = pytest.mark.anyio

PROFILE = Profile(
    name=DST,
    routes=(
        Route(
            labels=(("rt_route", "flaky"),),
            matches=lambda method, path: path in ("/flaky", "/test.Flaky/Unary"),
            retryable=True,
        ),
        Route(
            labels=(("rt_route", "slow"),),
            matches=lambda method, path: path == "/test.Flaky/Slow",
            timeout=0.3,
        ),
    ),
)


class Recorder:
    """A tap sink that takes every request and records what it is told."""

    spent = False

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.claimed = 0

    def matches(self, facts: RequestFacts) -> bool:
        return True

    def claim(self) -> int:
        self.claimed += 1
        return self.claimed - 1

    def request_init(self, tapped: Tapped, stream: int) -> None:
        f = tapped.facts
        self.seen.append(("request_init", stream, f.method, f.path, f.route_labels))

    def response_init(self, tapped: Tapped, stream: int) -> None:
        self.seen.append(("response_init", stream, tapped.status))

    def response_end(self, tapped: Tapped, stream: int) -> None:
        end = ("response_end", stream, tapped.response_bytes, tapped.grpc_status, tapped.reset_code)
        self.seen.append(end)


async def listener(backend: int, taps: Taps) -> tuple[Listener, int]:
    """An inbound listener forwarding to ``backend`` with :data:`PROFILE`."""
    config = ProxyConfig.from_env(
        {
            "LINKERD2_PROXY_IDENTITY_DISABLED": "1",
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR": "127.0.0.1:0",
            "LINKERD2_PROXY_INBOUND_FORWARD": f"127.0.0.1:{backend}",
        }
    )
    metrics = ProxyMetrics(config.metrics_retain_idle)
    router = ProfiledRouter(PROFILE)
    hop = Listener(INBOUND, config, config.inbound, metrics, router, ConnTracker(), taps=taps)
    _, port = await hop.start()
    return hop, port


async def test_http1_retry_is_one_request_with_the_final_response() -> None:
    attempts: list[int] = []

    async def flaky(request: web.Request) -> web.Response:
        attempts.append(1)
        if len(attempts) % 2:
            return web.Response(status=503, body=b"try again")
        return web.Response(body=b"ok")

    app = web.Application()
    app.router.add_get("/flaky", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    taps = Taps()
    recorder = Recorder()
    taps.add(recorder)
    hop, port = await listener(runner.addresses[0][1], taps)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(f"http://127.0.0.1:{port}/flaky") as rsp:
                    assert rsp.status == 200 and await rsp.read() == b"ok"
    finally:
        hop.stop_accepting()
        await runner.cleanup()
    assert len(attempts) == 4  # each request was sent twice
    route = {"route": "flaky"}
    assert recorder.seen == [
        ("request_init", 0, "GET", "/flaky", route),
        ("response_init", 0, 200),
        ("response_end", 0, 2, None, None),
        ("request_init", 1, "GET", "/flaky", route),
        ("response_init", 1, 200),
        ("response_end", 1, 2, None, None),
    ]


@pytest.fixture
async def grpc_backend() -> AsyncIterator[FlakyBackend]:
    backend = FlakyBackend()
    await backend.start()
    yield backend
    await backend.server.stop(None)


async def test_http2_retry_is_one_request_with_the_final_response(
    grpc_backend: FlakyBackend,
) -> None:
    taps = Taps()
    recorder = Recorder()
    taps.add(recorder)
    hop, port = await listener(grpc_backend.port, taps)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Flaky/Unary")
            assert await call(b"x" * 5000, timeout=5) == b"ok:" + b"x" * 8
    finally:
        hop.stop_accepting()
    assert grpc_backend.bodies == [b"x" * 5000] * 2
    assert recorder.seen == [
        ("request_init", 0, "POST", "/test.Flaky/Unary", {"route": "flaky"}),
        ("response_init", 0, 200),
        ("response_end", 0, 5 + 11, 0, None),
    ]


async def test_http2_route_timeout_is_reported_as_the_proxy_answered(
    grpc_backend: FlakyBackend,
) -> None:
    taps = Taps()
    recorder = Recorder()
    taps.add(recorder)
    hop, port = await listener(grpc_backend.port, taps)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await channel.unary_unary("/test.Flaky/Slow")(b"", timeout=5)
            assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        hop.stop_accepting()
    assert recorder.seen == [
        ("request_init", 0, "POST", "/test.Flaky/Slow", {"route": "slow"}),
        ("response_init", 0, 200),  # gRPC errors are trailers-only responses
        ("response_end", 0, 0, 4, None),  # DEADLINE_EXCEEDED
    ]
