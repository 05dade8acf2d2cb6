"""The proxy's gRPC client (weft.grpc_client.channel) against real grpcio servers on loopback:
plaintext and TLS (the server's name checked, the client's certificate presented), streaming,
deadlines and cancellations the server sees, messages past every flow-control window, the
server's stream limit, and a new connection after the server goes away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest

from harness.loopback import refused_port, reserved_port
from weft.grpc_client import calls
from weft.grpc_client.calls import RpcError
from weft.grpc_client.channel import Channel
from weft.identity import certs, trust
from weft.identity.client import control_context
from weft.identity.names import identity_name

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0
SERVICE = "/t.Test/"
DESTINATION_SVC = identity_name("weft-destination", "weft", "weft", "cluster.local")
IDENTITY_SVC = identity_name("weft-identity", "weft", "weft", "cluster.local")
WEB = identity_name("web", "emojivoto", "weft", "cluster.local")


@dataclass
class Handlers:
    """The test service: what its handlers saw."""

    peers: list[str] = field(default_factory=list)
    client_names: list[bytes] = field(default_factory=list)
    ended: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    holding: asyncio.Event = field(default_factory=asyncio.Event)

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.peers.append(context.peer())
        self.client_names.extend(context.auth_context().get("x509_subject_alternative_name", []))
        return request

    async def big(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return bytes(range(256)) * (int(request) // 256)

    async def hold(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.holding.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.ended.put_nowait("hold cancelled")
            raise
        return b"released"

    async def watch(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        released = False
        try:
            for i in range(3):
                yield request + b"%d" % i
            await self.release.wait()
            released = True
        finally:  # grpcio cancels the task on RST_STREAM, closes the generator on a lost link
            if not released:
                self.ended.put_nowait("watch ended early")

    async def deny(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, 'token is for "voting" (é)')
        raise AssertionError("abort returns by raising")


def generic_handler(h: Handlers) -> grpc.GenericRpcHandler:
    unary = grpc.unary_unary_rpc_method_handler
    return grpc.method_handlers_generic_handler(
        "t.Test",
        {
            "Echo": unary(h.echo),
            "Big": unary(h.big),
            "Hold": unary(h.hold),
            "Deny": unary(h.deny),
            "Watch": grpc.unary_stream_rpc_method_handler(h.watch),
        },
    )


@dataclass
class Pki:
    material: trust.TrustMaterial

    def issue(self, name: str) -> tuple[bytes, bytes]:
        """A key (PEM) and a certificate chain (PEM) for ``name``."""
        key = certs.new_key()
        csr = certs.check_csr(certs.make_csr(key, name), name)
        leaf = certs.issue_leaf(
            self.material.issuer,
            csr,
            name,
            lifetime=timedelta(hours=1),
            clock_skew=timedelta(seconds=20),
            now=datetime.now(UTC),
        )
        return certs.key_to_pem(key), certs.certs_to_pem([leaf, *self.material.issuer.chain])

    @property
    def anchors(self) -> bytes:
        return self.material.anchors_pem()


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki(trust.generate_trust("weft", "cluster.local", now=datetime.now(UTC)))


@contextlib.asynccontextmanager
async def serving(
    handlers: Handlers,
    pki: Pki | None = None,
    *,
    client_auth: bool = False,
    port: int = 0,
    options: list[tuple[str, Any]] | None = None,
) -> AsyncIterator[int]:
    """The test service on 127.0.0.1 (TLS as DESTINATION_SVC with ``pki``); its port."""
    server = grpc.aio.server(options=options or [])
    server.add_generic_rpc_handlers([generic_handler(handlers)])
    if pki is None:
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        key, chain = pki.issue(DESTINATION_SVC)
        tls = grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=pki.anchors, require_client_auth=client_auth
        )
        bound = server.add_secure_port(f"127.0.0.1:{port}", tls)
    await server.start()
    try:
        yield bound
    finally:
        await server.stop(None)


async def test_unary_and_server_streaming_calls_over_plaintext() -> None:
    handlers = Handlers()
    async with serving(handlers) as port:
        channel = Channel(("127.0.0.1", port), None, "")
        try:
            assert await channel.unary(SERVICE + "Echo", b"hello", TIMEOUT) == b"hello"
            assert await channel.unary(SERVICE + "Echo", b"", TIMEOUT) == b""
            replies = channel.server_stream(SERVICE + "Watch", b"w")
            got = []
            async with contextlib.aclosing(replies):
                async for reply in replies:
                    got.append(reply)
                    if len(got) == 3:
                        handlers.release.set()
            assert got == [b"w0", b"w1", b"w2"]
            with pytest.raises(RpcError) as info:
                await channel.unary(SERVICE + "Deny", b"", TIMEOUT)
            assert info.value.code == calls.PERMISSION_DENIED
            assert info.value.details == 'token is for "voting" (é)'
            with pytest.raises(RpcError) as info:
                await channel.unary(SERVICE + "Nope", b"", TIMEOUT)
            assert info.value.code == calls.UNIMPLEMENTED
        finally:
            channel.close()


async def test_tls_checks_the_servers_name_against_the_anchors(pki: Pki) -> None:
    handlers = Handlers()
    async with serving(handlers, pki) as port:
        good = Channel(("127.0.0.1", port), control_context(pki.anchors), DESTINATION_SVC)
        wrong = Channel(("127.0.0.1", port), control_context(pki.anchors), IDENTITY_SVC)
        other = trust.generate_trust("weft", "cluster.local", now=datetime.now(UTC))
        untrusted = Channel(
            ("127.0.0.1", port), control_context(other.anchors_pem()), DESTINATION_SVC
        )
        try:
            assert await good.unary(SERVICE + "Echo", b"tls", TIMEOUT) == b"tls"
            with pytest.raises(RpcError) as info:
                await wrong.unary(SERVICE + "Echo", b"", TIMEOUT)
            assert info.value.code == calls.UNAVAILABLE
            assert "Hostname mismatch" in info.value.details
            assert IDENTITY_SVC in info.value.details
            with pytest.raises(RpcError) as info:
                await untrusted.unary(SERVICE + "Echo", b"", TIMEOUT)
            assert info.value.code == calls.UNAVAILABLE
            assert "unable to get local issuer certificate" in info.value.details
            assert len(handlers.peers) == 1  # neither refused call reached the service
            assert handlers.client_names == []  # no client certificate was presented
        finally:
            for channel in (good, wrong, untrusted):
                channel.close()


async def test_mutual_tls_presents_the_workloads_certificate(pki: Pki) -> None:
    handlers = Handlers()
    async with serving(handlers, pki, client_auth=True) as port:
        key, chain = pki.issue(WEB)
        presenting = Channel(
            ("127.0.0.1", port), control_context(pki.anchors, chain, key), DESTINATION_SVC
        )
        anonymous = Channel(("127.0.0.1", port), control_context(pki.anchors), DESTINATION_SVC)
        try:
            assert await presenting.unary(SERVICE + "Echo", b"m", TIMEOUT) == b"m"
            assert handlers.client_names == [WEB.encode()]
            with pytest.raises(RpcError) as info:
                await anonymous.unary(SERVICE + "Echo", b"", TIMEOUT)
            assert info.value.code == calls.UNAVAILABLE
        finally:
            presenting.close()
            anonymous.close()


async def test_a_deadline_ends_the_call_and_the_server_sees_it_end() -> None:
    handlers = Handlers()
    async with serving(handlers) as port:
        channel = Channel(("127.0.0.1", port), None, "")
        try:
            with pytest.raises(RpcError) as info:
                await channel.unary(SERVICE + "Hold", b"", 0.3)
            assert info.value.code == calls.DEADLINE_EXCEEDED
            async with asyncio.timeout(TIMEOUT):
                assert await handlers.ended.get() == "hold cancelled"
            # The connection is still good for the next call.
            assert await channel.unary(SERVICE + "Echo", b"next", TIMEOUT) == b"next"
        finally:
            channel.close()


async def test_cancelling_a_stream_resets_it_at_the_server() -> None:
    handlers = Handlers()
    async with serving(handlers) as port:
        channel = Channel(("127.0.0.1", port), None, "")
        first = asyncio.Event()

        async def follow() -> None:
            async for _ in channel.server_stream(SERVICE + "Watch", b"x"):
                first.set()

        task = asyncio.create_task(follow())
        try:
            async with asyncio.timeout(TIMEOUT):
                await first.wait()
                task.cancel()
                assert await handlers.ended.get() == "watch ended early"
        finally:
            task.cancel()
            channel.close()


async def test_messages_past_every_flow_control_window_cross_both_ways() -> None:
    handlers = Handlers()
    async with serving(handlers) as port:
        channel = Channel(("127.0.0.1", port), None, "")
        try:
            request = bytes(range(256)) * 1024  # 256 KiB: past the server's 64 KiB windows
            assert await channel.unary(SERVICE + "Echo", request, TIMEOUT) == request
            size = 3 * 1024 * 1024  # past the client's 1 MiB windows, three times
            answer = await channel.unary(SERVICE + "Big", b"%d" % size, TIMEOUT)
            assert answer == bytes(range(256)) * (size // 256)
        finally:
            channel.close()


async def test_calls_wait_for_the_servers_stream_limit() -> None:
    handlers = Handlers()
    options = [("grpc.max_concurrent_streams", 1)]
    async with serving(handlers, options=options) as port:
        channel = Channel(("127.0.0.1", port), None, "")
        try:
            # Connected, so the server's SETTINGS (the limit) have arrived.
            assert await channel.unary(SERVICE + "Echo", b"", TIMEOUT) == b""
            held = asyncio.create_task(channel.unary(SERVICE + "Hold", b"", TIMEOUT))
            async with asyncio.timeout(TIMEOUT):
                await handlers.holding.wait()
            echo = asyncio.create_task(channel.unary(SERVICE + "Echo", b"e", TIMEOUT))
            done, _ = await asyncio.wait([held, echo], timeout=0.5)
            assert not done  # the echo waits for the one stream the held call uses
            assert handlers.peers == [handlers.peers[0]]  # only the first echo reached it
            handlers.release.set()
            async with asyncio.timeout(TIMEOUT):
                assert await held == b"released"
                assert await echo == b"e"
        finally:
            channel.close()


async def test_calls_share_a_connection_and_a_new_one_follows_a_lost_one() -> None:
    handlers = Handlers()
    with reserved_port() as port:
        channel = Channel(("127.0.0.1", port), None, "")
        try:
            async with serving(handlers, port=port):
                await asyncio.gather(
                    *(channel.unary(SERVICE + "Echo", b"%d" % i, TIMEOUT) for i in range(5))
                )
                assert len(set(handlers.peers)) == 1
                replies = channel.server_stream(SERVICE + "Watch", b"s")
                assert await anext(replies) == b"s0"
            # The server stopped: the open stream ends, new calls cannot connect...
            with pytest.raises(RpcError) as info:
                async with asyncio.timeout(TIMEOUT):
                    async for _ in replies:
                        pass
            assert info.value.code in (calls.UNAVAILABLE, calls.CANCELLED)
            with pytest.raises(RpcError) as info:
                await channel.unary(SERVICE + "Echo", b"", TIMEOUT)
            assert info.value.code == calls.UNAVAILABLE
            # ... until it is back: then a new connection carries them.
            async with serving(handlers, port=port):
                assert await channel.unary(SERVICE + "Echo", b"back", TIMEOUT) == b"back"
            assert len(set(handlers.peers)) == 2
        finally:
            channel.close()


async def test_connect_failures_and_a_closed_channel_are_unavailable() -> None:
    with refused_port() as port:
        channel = Channel(("127.0.0.1", port), None, "")
        with pytest.raises(RpcError) as info:
            await channel.unary(SERVICE + "Echo", b"", TIMEOUT)
        assert info.value.code == calls.UNAVAILABLE
        assert f"cannot connect to 127.0.0.1:{port}" in info.value.details
    handlers = Handlers()
    async with serving(handlers) as port:
        channel = Channel(("127.0.0.1", port), None, "")
        replies = channel.server_stream(SERVICE + "Watch", b"c")
        assert await anext(replies) == b"c0"
        channel.close()
        with pytest.raises(RpcError) as info:
            async for _ in replies:
                pass
        assert info.value.code == calls.UNAVAILABLE
        assert "closed" in info.value.details
        async with asyncio.timeout(TIMEOUT):
            assert await handlers.ended.get() == "watch ended early"
        with pytest.raises(RpcError, match="closed"):
            await channel.unary(SERVICE + "Echo", b"", TIMEOUT)
