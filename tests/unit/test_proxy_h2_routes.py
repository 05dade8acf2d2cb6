"""Profile routes over HTTP/2 on loopback: gRPC retries (with the request body replayed) and
route timeouts, through the real frame layer, against a real grpc.aio server and client.

The profile is given to the hop directly (no destination service), so the test sees exactly
what the proxy does with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest

from tests.unit.test_h2_proxy import Proxy
from weft.proxy.context import ConnContext
from weft.proxy.discovery import Addr
from weft.proxy.profiles import Profile, Route
from weft.proxy.routing import Fallbacks, Logical

pytestmark = pytest.mark.anyio

DST = "flaky.test.svc.cluster.local:80"


@dataclass
class FlakyBackend:
    """``/test.Flaky/Unary`` fails every other call with UNAVAILABLE (as a trailers-only
    response); ``/test.Flaky/Slow`` answers after 2 s. Every request body is recorded."""

    port: int = 0
    bodies: list[bytes] = field(default_factory=list)
    server: grpc.aio.Server = field(init=False)

    async def start(self) -> None:
        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            self.bodies.append(request)
            if len(self.bodies) % 2:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
            return b"ok:" + request[:8]

        async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await asyncio.sleep(2.0)
            return b"late"

        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
        }
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Flaky", handlers),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()


class ProfiledRouter:
    """Every request goes to one logical destination with a fixed profile."""

    def __init__(self, profile: Profile) -> None:
        self.destination = Logical(Fallbacks(), DST)
        self.destination.set_profile(profile)

    def logical(self, name: str | None, target: Addr | None) -> Logical:
        return self.destination


class ProfiledProxy(Proxy):
    """The loopback hop of test_h2_proxy with a profile."""

    def __init__(self, target: Addr, profile: Profile) -> None:
        super().__init__(target)
        self.router = ProfiledRouter(profile)

    def context(self, transport: asyncio.Transport) -> ConnContext:
        ctx = super().context(transport)
        ctx.router = self.router
        return ctx


PROFILE = Profile(
    name=DST,
    routes=(
        Route(
            labels=(("rt_route", "unary"),),
            matches=lambda method, path: path == "/test.Flaky/Unary",
            retryable=True,
        ),
        Route(
            labels=(("rt_route", "slow"),),
            matches=lambda method, path: path == "/test.Flaky/Slow",
            timeout=0.3,
        ),
    ),
)


@pytest.fixture
async def hop() -> AsyncIterator[tuple[ProfiledProxy, FlakyBackend]]:
    backend = FlakyBackend()
    await backend.start()
    proxy = ProfiledProxy(("127.0.0.1", backend.port), PROFILE)
    await proxy.start()
    yield proxy, backend
    await proxy.close()
    await backend.server.stop(None)


def total(proxy: Proxy, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample_labels, value in proxy.samples(name)
        if all(sample_labels.get(k) == v for k, v in labels.items())
    )


async def test_failed_grpc_calls_are_retried_with_their_body(
    hop: tuple[ProfiledProxy, FlakyBackend],
) -> None:
    proxy, backend = hop
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
        call = channel.unary_unary("/test.Flaky/Unary")
        bodies = [bytes([i]) * (1000 + 4096 * i) for i in range(6)]
        for body in bodies:
            assert await call(body, timeout=5) == b"ok:" + body[:8]
    assert backend.bodies == [b for body in bodies for b in (body, body)]  # each sent twice
    route = {"dst": DST, "rt_route": "unary"}
    assert total(proxy, "route_request_total", **route) == 6
    assert total(proxy, "route_response_total", classification="success", **route) == 6
    assert total(proxy, "route_actual_request_total", **route) == 12
    assert total(proxy, "route_actual_response_total", classification="failure", **route) == 6
    assert total(proxy, "response_total", grpc_status="14") == 6  # per attempt, per endpoint


async def test_a_spent_budget_lets_the_failure_through(
    hop: tuple[ProfiledProxy, FlakyBackend],
) -> None:
    proxy, backend = hop
    budget = proxy.router.destination.budget(time.monotonic())
    budget.reserve = 0.0  # no retries without deposits, and the ratio alone allows none yet
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await channel.unary_unary("/test.Flaky/Unary")(b"x", timeout=5)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert backend.bodies == [b"x"]
    skipped = total(proxy, "route_retry_skipped_total", rt_route="unary", skipped="budget")
    assert skipped == 1


async def test_a_route_timeout_ends_the_call_with_deadline_exceeded(
    hop: tuple[ProfiledProxy, FlakyBackend],
) -> None:
    proxy, _ = hop
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await channel.unary_unary("/test.Flaky/Slow")(b"", timeout=5)
        elapsed = time.monotonic() - started
    assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "timed out after 0.3s" in (failed.value.details() or "")
    assert 0.3 <= elapsed < 1.5
    failures = total(
        proxy, "route_response_total", rt_route="slow", classification="failure", error="timeout"
    )
    assert failures == 1
