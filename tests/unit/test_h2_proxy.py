"""The HTTP/2 forwarder over loopback: grpcio, curl, h2load and raw HTTP/2 peers through one hop.

The hop is ``serve_http2`` behind a bare asyncio acceptor (what the listener does once it has
seen the preface), with the standalone ``OriginalDestination`` router pointed at the backend.
Backends are a ``grpc.aio`` server, or a small server on the ``h2`` library (test-only, so the
proxy's own frame code is checked against an independent implementation).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    DataReceived,
    Event,
    PingAckReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.exceptions import StreamClosedError
from h2.settings import SettingCodes, Settings
from prometheus_client.parser import text_string_to_metric_families

from harness.loop_errors import no_loop_errors  # noqa: F401 (an autouse fixture)
from harness.loopback import refused_port
from weft.proxy.config import ProxyConfig
from weft.proxy.context import ConnContext, ConnTracker, InFlight
from weft.proxy.deadlines import Deadlines
from weft.proxy.downgrade import AppConn
from weft.proxy.h2 import frames as fr
from weft.proxy.http1 import H1Pool, H1Upstream
from weft.proxy.http2 import H2Pool, ServerConn, serve_http2
from weft.proxy.metrics import ProxyMetrics
from weft.proxy.routing import OriginalDestination
from weft.proxy.tap.registry import Taps
from weft.proxy.tls import Dialer

pytestmark = pytest.mark.anyio

Addr = tuple[str, int]
MAX_MESSAGE = 32 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
]
TIMEOUT = 20.0


async def wait_until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def needs(tool: str) -> pytest.MarkDecorator:
    """Skip a test when ``tool`` is not installed."""
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"{tool} is not installed")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test (bound, not listening)."""
    with refused_port() as port:
        yield port


# --- the hop ------------------------------------------------------------------------------------


class Proxy:
    """One inbound hop: an acceptor that hands every connection to ``serve_http2``."""

    def __init__(self, target: Addr | None, env: dict[str, str] | None = None) -> None:
        self.target = target
        self.config = ProxyConfig.from_env({"LINKERD2_PROXY_IDENTITY_DISABLED": "1", **(env or {})})
        self.metrics = ProxyMetrics(self.config.metrics_retain_idle)
        self.tracker = ConnTracker()
        self.h1_pool: H1Pool[H1Upstream] = H1Pool()
        self.h2_pool = H2Pool()
        self.downgrade_pool: H1Pool[AppConn] = H1Pool()
        self.taps = Taps()
        self.in_flight = InFlight(self.config.inbound.max_in_flight)
        self.deadlines = Deadlines()
        self.server: asyncio.Server | None = None
        self.port = 0

    def context(self, transport: asyncio.Transport) -> ConnContext:
        labels = (("direction", "inbound"), ("peer", "src"), ("tls", "disabled"))
        return ConnContext(
            direction="inbound",
            config=self.config,
            dcfg=self.config.inbound,
            metrics=self.metrics,
            router=OriginalDestination(),
            tracker=self.tracker,
            h1_pool=self.h1_pool,
            h2_pool=self.h2_pool,
            downgrade_pool=self.downgrade_pool,
            peer=transport.get_extra_info("peername"),
            orig_dst=None,
            target=self.target,
            tls=(("tls", "disabled"),),
            stats=self.metrics.tcp.stats(labels).open(),
            dialer=Dialer(None, outbound=False),
            taps=self.taps,
            in_flight=self.in_flight,
            deadlines=self.deadlines,
        )

    async def start(self) -> int:
        proxy = self

        class Accept(asyncio.Protocol):
            buf = b""

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: asyncio.Transport = transport  # type: ignore[assignment]

            def data_received(self, data: bytes) -> None:
                self.buf += data
                if len(self.buf) >= len(fr.PREFACE):
                    ctx = proxy.context(self.transport)
                    ctx.stats.read += len(self.buf)
                    serve_http2(self.transport, ctx, self.buf)

        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(Accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        await self.tracker.drain(1.0)
        self.h2_pool.close()

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """The samples of one series in the proxy's Prometheus exposition."""
        text = self.metrics.render().decode()
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]

    def requests(self) -> int:
        return int(sum(value for _, value in self.samples("request_total")))

    def responses(self) -> dict[tuple[str, str, str | None, str | None], int]:
        """``response_total`` by (status_code, classification, grpc_status, error)."""
        return {
            (
                labels["status_code"],
                labels["classification"],
                labels.get("grpc_status"),
                labels.get("error"),
            ): int(value)
            for labels, value in self.samples("response_total")
        }

    def server_conns(self) -> list[ServerConn]:
        return [c for c in self.tracker.active if isinstance(c, ServerConn)]


@pytest.fixture
async def grpc_backend() -> AsyncIterator[GrpcBackend]:
    backend = GrpcBackend()
    await backend.start()
    yield backend
    await backend.server.stop(None)


@dataclass
class GrpcBackend:
    """A grpc.aio server with raw-bytes methods under ``/test.Echo/``."""

    port: int = 0
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    server: grpc.aio.Server = field(init=False)

    async def start(self) -> None:
        async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return request

        async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            for i in range(int(request)):
                yield b"m%d" % i

        async def bidi(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[bytes]:
            async for request in requests:
                yield request.upper()

        async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await context.abort(grpc.StatusCode.NOT_FOUND, "nope")
            return b""

        async def hang(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            yield b"first"
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            yield b"last"

        handler = grpc.method_handlers_generic_handler(
            "test.Echo",
            {
                "Unary": grpc.unary_unary_rpc_method_handler(unary),
                "Stream": grpc.unary_stream_rpc_method_handler(stream),
                "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
                "Hang": grpc.unary_stream_rpc_method_handler(hang),
                "Fail": grpc.unary_unary_rpc_method_handler(fail),
            },
        )
        self.server = grpc.aio.server(options=GRPC_OPTIONS)
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()


@pytest.fixture
async def grpc_hop(grpc_backend: GrpcBackend) -> AsyncIterator[Proxy]:
    proxy = Proxy(("127.0.0.1", grpc_backend.port))
    await proxy.start()
    yield proxy
    await proxy.close()


def channel(proxy: Proxy) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{proxy.port}", options=GRPC_OPTIONS)


# --- gRPC through the hop -----------------------------------------------------------------------


async def test_grpc_unary_server_streaming_and_bidi_pass_through(grpc_hop: Proxy) -> None:
    async with channel(grpc_hop) as ch:
        unary = ch.unary_unary("/test.Echo/Unary")
        assert [await unary(b"ping-%d" % i, timeout=TIMEOUT) for i in range(3)] == [
            b"ping-0",
            b"ping-1",
            b"ping-2",
        ]
        stream = ch.unary_stream("/test.Echo/Stream")
        assert [m async for m in stream(b"50", timeout=TIMEOUT)] == [b"m%d" % i for i in range(50)]
        bidi = ch.stream_stream("/test.Echo/Bidi")
        call = bidi(timeout=TIMEOUT)
        for word in (b"a", b"bc", b"def"):
            await call.write(word)
            assert await call.read() == word.upper()
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK

    assert grpc_hop.samples("request_total") == [
        ({"authority": f"127.0.0.1:{grpc_hop.port}", "direction": "inbound", "tls": "disabled"}, 5)
    ]
    assert grpc_hop.responses() == {("200", "success", "0", None): 5}
    dst = {"direction": "inbound", "peer": "dst", "tls": "disabled"}
    assert (dst, 1) in grpc_hop.samples("tcp_open_total")  # one shared upstream connection
    for name in ("tcp_read_bytes_total", "tcp_write_bytes_total"):
        assert all(value > 0 for _, value in grpc_hop.samples(name))


async def test_grpc_error_status_is_forwarded_and_classified_as_failure(grpc_hop: Proxy) -> None:
    async with channel(grpc_hop) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ch.unary_unary("/test.Echo/Fail")(b"", timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "nope"
    assert grpc_hop.responses() == {("200", "failure", "5", None): 1}


async def test_grpc_10mb_messages_pass_unchanged(grpc_hop: Proxy) -> None:
    message = hashlib.sha256(b"seed").digest() * (10 * 1024 * 1024 // 32)
    async with channel(grpc_hop) as ch:
        reply = await ch.unary_unary("/test.Echo/Unary")(message, timeout=TIMEOUT)
        assert reply == message
        call = ch.stream_stream("/test.Echo/Bidi")(timeout=TIMEOUT)
        await call.write(message)
        assert await call.read() == message.upper()
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.OK
    assert grpc_hop.responses() == {("200", "success", "0", None): 2}


async def test_cancelled_grpc_call_resets_the_server_stream(
    grpc_hop: Proxy, grpc_backend: GrpcBackend
) -> None:
    async with channel(grpc_hop) as ch:
        call = ch.unary_stream("/test.Echo/Hang")(b"", timeout=TIMEOUT)
        assert await call.read() == b"first"
        call.cancel()
        await asyncio.wait_for(grpc_backend.cancelled.wait(), TIMEOUT)
    assert grpc_hop.requests() == 1
    assert grpc_hop.responses() == {("200", "failure", None, "cancel"): 1}


async def test_connect_refused_is_grpc_unavailable_with_l5d_proxy_error(closed_port: int) -> None:
    port = closed_port
    proxy = Proxy(("127.0.0.1", port))
    await proxy.start()
    try:
        async with channel(proxy) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await ch.unary_unary("/test.Echo/Unary")(b"x", timeout=TIMEOUT)
    finally:
        await proxy.close()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(info.value.trailing_metadata() or ())
    assert trailers["l5d-proxy-error"] == f"connection refused by 127.0.0.1:{port}"
    assert proxy.responses() == {("200", "failure", "14", None): 1}


async def test_drain_lets_in_flight_calls_finish_then_closes(
    grpc_hop: Proxy, grpc_backend: GrpcBackend
) -> None:
    async with channel(grpc_hop) as ch:
        call = ch.unary_stream("/test.Echo/Hang")(b"", timeout=TIMEOUT)
        assert await call.read() == b"first"
        drained = asyncio.ensure_future(grpc_hop.tracker.drain(TIMEOUT))
        await wait_until(lambda: all(c.draining for c in grpc_hop.server_conns()), "draining")
        assert not drained.done()
        grpc_backend.release.set()
        assert await call.read() == b"last"
        assert await call.code() == grpc.StatusCode.OK
        assert await asyncio.wait_for(drained, TIMEOUT) == 0  # nothing had to be aborted
    assert grpc_hop.responses() == {("200", "success", "0", None): 1}


# --- a backend on the h2 library ----------------------------------------------------------------


class Backend(asyncio.Protocol):
    """An HTTP/2 server (``h2`` library) whose paths do what the tests need.

    ``/hello`` answers ``hello``; ``/echo`` echoes the body; ``/big/<n>`` sends n bytes;
    ``/stall`` acknowledges no request bytes until :meth:`release_stall`, then answers with the
    count; ``/reset/<code>`` resets the stream; ``/goaway`` refuses its own stream with GOAWAY;
    ``/die`` closes the connection at once; ``/crash`` closes it after part of a response;
    ``/hold`` never answers.
    """

    def __init__(self, state: BackendState) -> None:
        self.state = state
        config = H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False
        )
        self.conn = H2Connection(config)
        self.transport: asyncio.Transport | None = None
        self.paths: dict[int, bytes] = {}
        self.bodies: dict[int, bytearray] = {}
        self.pending: dict[int, bytearray] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.state.conns.append(self)
        if self.state.max_streams:
            self.conn.local_settings = Settings(
                client=False,
                initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: self.state.max_streams},
            )
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        if self.transport is not None:
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            self.handle(event)
        self.pump()
        self.flush()

    def handle(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            sid = event.stream_id
            path = dict(event.headers)[b":path"]
            self.paths[sid] = path
            self.bodies[sid] = bytearray()
            self.state.requests.append((path, event.headers))
            if path.startswith(b"/reset/"):
                self.conn.reset_stream(sid, int(path[7:]))
            elif path == b"/goaway":
                self.conn.close_connection(last_stream_id=max(sid - 2, 0))
                self.close()
            elif path == b"/die":
                self.close()
        elif isinstance(event, DataReceived):
            sid = event.stream_id
            self.bodies[sid] += event.data
            if self.paths[sid] == b"/stall" and not self.state.stall_released:
                self.state.stalled.append((self, sid, event.flow_controlled_length))
            else:
                self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
        elif isinstance(event, StreamEnded):
            self.respond(event.stream_id)
        elif isinstance(event, StreamReset):
            self.state.resets.append((self.paths.get(event.stream_id), event.error_code))

    def close(self) -> None:
        self.flush()
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def respond(self, sid: int) -> None:
        path = self.paths[sid]
        body = bytes(self.bodies[sid])
        if path == b"/crash":
            self.conn.send_headers(sid, [(b":status", b"200")])
            self.conn.send_data(sid, b"partial")
            self.close()
            return
        if path == b"/hello":
            reply = b"hello"
        elif path == b"/echo":
            reply = body
        elif path.startswith(b"/big/"):
            reply = bytes(range(256)) * (int(path[5:]) // 256)
        elif path == b"/stall":
            reply = b"%d" % len(body)
        else:
            return
        self.conn.send_headers(sid, [(b":status", b"200"), (b"x-backend", b"h2")])
        self.pending[sid] = bytearray(reply)

    def pump(self) -> None:
        """Send pending bodies as far as flow control allows."""
        for sid, buf in list(self.pending.items()):
            try:
                while buf:
                    window = self.conn.local_flow_control_window(sid)
                    n = min(window, self.conn.max_outbound_frame_size, len(buf))
                    if n <= 0:
                        break
                    self.conn.send_data(sid, bytes(buf[:n]))
                    del buf[:n]
                    self.state.sent += n
                if not buf:
                    self.conn.end_stream(sid)
                    del self.pending[sid]
            except StreamClosedError:
                del self.pending[sid]

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.closed += 1


@dataclass
class BackendState:
    """What the h2 backend saw, shared by its connections."""

    conns: list[Backend] = field(default_factory=list)
    requests: list[tuple[bytes, list[tuple[bytes, bytes]]]] = field(default_factory=list)
    resets: list[tuple[bytes | None, int]] = field(default_factory=list)
    stalled: list[tuple[Backend, int, int]] = field(default_factory=list)
    stall_released: bool = False
    sent: int = 0
    closed: int = 0
    max_streams: int = 0

    def stalled_bytes(self) -> int:
        return sum(n for _, _, n in self.stalled)

    def release_stall(self) -> None:
        self.stall_released = True
        for backend, sid, n in self.stalled:
            backend.conn.acknowledge_received_data(n, sid)
            backend.flush()


@pytest.fixture
async def h2_backend() -> AsyncIterator[tuple[BackendState, int]]:
    state = BackendState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Backend(state), "127.0.0.1", 0)
    yield state, server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def h2_hop(h2_backend: tuple[BackendState, int]) -> AsyncIterator[Proxy]:
    proxy = Proxy(("127.0.0.1", h2_backend[1]))
    await proxy.start()
    yield proxy
    await proxy.close()


class Client(asyncio.Protocol):
    """An HTTP/2 client on the ``h2`` library that records what happens to each stream."""

    def __init__(self, ack: bool = True) -> None:
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,  # send connection-specific fields when asked
        )
        self.conn = H2Connection(config)
        self.ack = ack
        self.transport: asyncio.Transport | None = None
        self.events: list[Event] = []
        self.body: dict[int, bytearray] = {}
        self.closed = False

    @classmethod
    async def connect(cls, port: int, **kwargs: bool) -> Client:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(**kwargs), "127.0.0.1", port)
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            self.events.append(event)
            if isinstance(event, DataReceived):
                self.body.setdefault(event.stream_id, bytearray()).extend(event.data)
                if self.ack:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    async def ping(self) -> None:
        """A PING round trip: everything the peer wrote before its ACK has been received."""
        opaque = os.urandom(8)
        self.conn.ping(opaque)
        self.flush()
        await wait_until(
            lambda: any(
                isinstance(e, PingAckReceived) and e.ping_data == opaque for e in self.events
            ),
            "a PING ACK",
        )

    def request(
        self,
        path: str,
        method: str = "GET",
        end: bool = True,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"http"),
            (b":path", path.encode()),
            (b":authority", b"backend.test"),
            *(extra or ()),
        ]
        self.conn.send_headers(sid, headers, end_stream=end)
        self.flush()
        return sid

    def stream_events(self, sid: int) -> Iterator[Event]:
        return (e for e in self.events if getattr(e, "stream_id", None) == sid)

    def ended(self, sid: int) -> bool:
        return any(isinstance(e, StreamEnded | StreamReset) for e in self.stream_events(sid))

    def reset_code(self, sid: int) -> int | None:
        for event in self.stream_events(sid):
            if isinstance(event, StreamReset):
                return int(event.error_code)
        return None

    def header(self, sid: int, name: bytes) -> bytes:
        """A response header (empty if absent)."""
        for event in self.stream_events(sid):
            if isinstance(event, ResponseReceived):
                return bytes(dict(event.headers).get(name, b""))
        return b""

    def status(self, sid: int) -> bytes:
        return self.header(sid, b":status")


async def test_client_reset_reaches_the_server_with_its_code(
    h2_hop: Proxy, h2_backend: tuple[BackendState, int]
) -> None:
    state, _ = h2_backend
    client = await Client.connect(h2_hop.port)
    sid = client.request("/hold")
    await wait_until(lambda: state.requests, "the request upstream")
    client.conn.reset_stream(sid, fr.ENHANCE_YOUR_CALM)
    client.flush()
    await wait_until(lambda: state.resets, "the reset upstream")
    assert state.resets == [(b"/hold", fr.ENHANCE_YOUR_CALM)]
    assert h2_hop.responses() == {("0", "failure", None, "enhance_your_calm"): 1}


async def test_server_reset_reaches_the_client_with_its_code(h2_hop: Proxy) -> None:
    client = await Client.connect(h2_hop.port)
    sids = [client.request("/reset/8"), client.request("/reset/2"), client.request("/hello")]
    await wait_until(lambda: all(client.ended(s) for s in sids), "three answers")
    assert [client.reset_code(s) for s in sids] == [fr.CANCEL, fr.INTERNAL_ERROR, None]
    assert bytes(client.body[sids[2]]) == b"hello"
    assert h2_hop.responses() == {
        ("0", "failure", None, "cancel"): 1,
        ("0", "failure", None, "internal_error"): 1,
        ("200", "success", None, None): 1,
    }


async def test_upstream_goaway_refuses_unseen_streams_and_a_new_connection_follows(
    h2_hop: Proxy, h2_backend: tuple[BackendState, int]
) -> None:
    state, _ = h2_backend
    client = await Client.connect(h2_hop.port)
    refused = client.request("/goaway")
    await wait_until(lambda: client.ended(refused), "the refused stream")
    assert client.reset_code(refused) == fr.REFUSED_STREAM
    ok = client.request("/hello")
    await wait_until(lambda: client.ended(ok), "the next request")
    assert client.status(ok) == b"200"
    assert len(state.conns) == 2
    assert not client.closed  # the client's own connection is unaffected


async def test_upload_to_a_stalled_server_is_bounded_by_flow_control(
    h2_hop: Proxy, h2_backend: tuple[BackendState, int]
) -> None:
    state, _ = h2_backend
    client = await Client.connect(h2_hop.port)
    sid = client.request("/stall", method="POST", end=False)
    body = os.urandom(1024 * 1024)
    stream_window = h2_hop.config.h2_initial_stream_window
    # The backend grants one default window and acknowledges nothing until released; the proxy
    # may hold at most the stream window it advertised on top, then the client must stop.
    sent = 0
    while sent < len(body):
        window = min(
            client.conn.local_flow_control_window(sid), client.conn.max_outbound_frame_size
        )
        if window <= 0:
            await client.ping()  # every WINDOW_UPDATE the proxy had written has arrived
            if client.conn.local_flow_control_window(sid) > 0:
                continue
            if not state.stall_released:
                await wait_until(
                    lambda: state.stalled_bytes() == fr.DEFAULT_WINDOW, "a full backend"
                )
                assert sent - state.stalled_bytes() <= stream_window
                state.release_stall()
            await wait_until(lambda: client.conn.local_flow_control_window(sid) > 0, "window")
            continue
        chunk = body[sent : sent + window]
        client.conn.send_data(sid, chunk)
        client.flush()
        sent += len(chunk)
    client.conn.end_stream(sid)
    client.flush()
    await wait_until(lambda: client.ended(sid), "the answer")
    assert bytes(client.body[sid]) == b"%d" % len(body)


async def test_slow_client_reader_holds_the_upstream_back(
    h2_hop: Proxy, h2_backend: tuple[BackendState, int]
) -> None:
    state, _ = h2_backend
    size = 48 * 1024 * 1024
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.connect(("127.0.0.1", h2_hop.port))
    sock.setblocking(False)
    _, client = await loop.create_connection(Client, sock=sock)
    client.conn.update_settings({fr.SETTINGS_INITIAL_WINDOW_SIZE: fr.MAX_WINDOW})
    client.conn.increment_flow_control_window(fr.MAX_WINDOW - fr.DEFAULT_WINDOW)
    client.flush()
    assert client.transport is not None
    client.transport.pause_reading()  # the client stops reading: only TCP buffers absorb
    sid = client.request(f"/big/{size}")
    await wait_until(h2_hop.server_conns, "the proxy to take the connection over")
    (down,) = h2_hop.server_conns()
    await wait_until(lambda: down.paused, "the proxy's downstream transport to fill up")
    (backend,) = state.conns
    await wait_until(
        lambda: backend.pending and backend.conn.local_flow_control_window(1) <= 0,
        "the backend to run out of window",
    )
    assert state.sent < size  # held back, not buffered in the proxy
    assert down.transport is not None
    buffered = down.transport.get_write_buffer_size()
    high = down.transport.get_write_buffer_limits()[1]
    # At most: the burst that crossed the high-water mark (one read, credited before the pause)
    # plus one stream window the backend may still send after it.
    assert buffered <= high + 256 * 1024 + 2 * h2_hop.config.h2_initial_stream_window
    client.transport.resume_reading()
    await wait_until(lambda: client.ended(sid), "the whole response")
    assert client.body[sid] == bytes(range(256)) * (size // 256)


async def test_protocol_error_gets_goaway_and_other_connections_carry_on(
    h2_hop: Proxy,
) -> None:
    good = await Client.connect(h2_hop.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", h2_hop.port)
    writer.write(fr.PREFACE + fr.settings_frame([]) + fr.data_frame(0, b"bad"))
    received = await asyncio.wait_for(reader.read(), TIMEOUT)  # until the proxy closes
    writer.close()
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 9 <= len(received):
        hi, lo, ftype, _, _ = fr.FRAME_HEADER.unpack_from(received, pos)
        end = pos + 9 + ((hi << 16) | lo)
        frames.append((ftype, received[pos + 9 : end]))
        pos = end
    goaways = [payload for ftype, payload in frames if ftype == fr.GOAWAY]
    assert len(goaways) == 1
    assert int.from_bytes(goaways[0][4:8], "big") == fr.PROTOCOL_ERROR
    sid = good.request("/hello")
    await wait_until(lambda: good.ended(sid), "a request on another connection")
    assert bytes(good.body[sid]) == b"hello"


@needs("curl")
async def test_curl_prior_knowledge_get_and_post(
    h2_hop: Proxy, h2_backend: tuple[BackendState, int]
) -> None:
    state, _ = h2_backend
    body = os.urandom(300 * 1024)
    get = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--http2-prior-knowledge", "-D", "-",
        f"http://127.0.0.1:{h2_hop.port}/hello",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(get.communicate(), TIMEOUT)
    assert get.returncode == 0
    head, _, text = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200")
    assert b"x-backend: h2" in head
    assert text == b"hello"
    post = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--http2-prior-knowledge", "--data-binary", "@-",
        f"http://127.0.0.1:{h2_hop.port}/echo",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    echoed, _ = await asyncio.wait_for(post.communicate(body), TIMEOUT)
    assert post.returncode == 0
    assert echoed == body
    assert [path for path, _ in state.requests] == [b"/hello", b"/echo"]
    assert h2_hop.requests() == 2
    assert h2_hop.responses() == {("200", "success", None, None): 2}


@needs("curl")
async def test_connect_refused_over_http_is_502_with_l5d_proxy_error(closed_port: int) -> None:
    port = closed_port
    proxy = Proxy(("127.0.0.1", port))
    await proxy.start()
    try:
        curl = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--http2-prior-knowledge", "-D", "-",
            f"http://127.0.0.1:{proxy.port}/x",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(curl.communicate(), TIMEOUT)
    finally:
        await proxy.close()
    assert out.startswith(b"HTTP/2 502")
    assert f"l5d-proxy-error: connection refused by 127.0.0.1:{port}".encode() in out
    assert proxy.responses() == {("502", "failure", None, None): 1}


@needs("h2load")
async def test_h2load_run_is_counted_exactly(h2_hop: Proxy) -> None:
    load = await asyncio.create_subprocess_exec(
        "h2load", "-n", "600", "-c", "4", "-m", "10", f"http://127.0.0.1:{h2_hop.port}/hello",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(load.communicate(), 60)
    assert b"600 succeeded, 0 failed, 0 errored" in out, out.decode()
    assert h2_hop.requests() == 600
    assert h2_hop.responses() == {("200", "success", None, None): 600}


async def test_grpc_trailers_are_forwarded(grpc_backend: GrpcBackend) -> None:
    proxy = Proxy(("127.0.0.1", grpc_backend.port))
    await proxy.start()
    try:
        client = await Client.connect(proxy.port)
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            sid,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", b"/test.Echo/Unary"),
                (b":authority", b"grpc.test"),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
            ],
        )
        client.conn.send_data(sid, b"\x00\x00\x00\x00\x02hi", end_stream=True)
        client.flush()
        await wait_until(lambda: client.ended(sid), "the gRPC answer")
    finally:
        await proxy.close()
    trailers = [e for e in client.stream_events(sid) if isinstance(e, TrailersReceived)]
    assert len(trailers) == 1
    assert dict(trailers[0].headers)[b"grpc-status"] == b"0"
    assert bytes(client.body[sid]) == b"\x00\x00\x00\x00\x02hi"


async def test_upstream_lost_before_the_response_is_a_502_from_the_proxy(h2_hop: Proxy) -> None:
    client = await Client.connect(h2_hop.port)
    sid = client.request("/die")
    await wait_until(lambda: client.ended(sid), "the answer")
    assert client.status(sid) == b"502"
    assert client.header(sid, b"l5d-proxy-error").startswith(b"upstream connection failed")
    assert h2_hop.responses() == {("502", "failure", None, None): 1}


async def test_upstream_lost_mid_response_resets_the_client_stream(h2_hop: Proxy) -> None:
    client = await Client.connect(h2_hop.port)
    sid = client.request("/crash")
    await wait_until(lambda: client.ended(sid), "the reset")
    assert client.status(sid) == b"200"
    assert bytes(client.body[sid]) == b"partial"
    assert client.reset_code(sid) == fr.INTERNAL_ERROR
    assert h2_hop.responses() == {("200", "failure", None, "internal_error"): 1}


async def test_no_route_is_answered_by_the_proxy() -> None:
    proxy = Proxy(None)
    await proxy.start()
    try:
        client = await Client.connect(proxy.port)
        sid = client.request("/x")
        await wait_until(lambda: client.ended(sid), "the answer")
    finally:
        await proxy.close()
    assert client.status(sid) == b"502"
    assert client.header(sid, b"l5d-proxy-error") == b"no route to backend.test"
    assert proxy.responses() == {("502", "failure", None, None): 1}


async def test_upstream_stream_limit_spreads_requests_over_more_connections(
    h2_hop: Proxy, h2_backend: tuple[BackendState, int]
) -> None:
    state, _ = h2_backend
    state.max_streams = 2
    client = await Client.connect(h2_hop.port)
    first = client.request("/hello")  # the upstream connection and its SETTINGS are in place
    await wait_until(lambda: client.ended(first), "the first answer")
    held = [client.request("/hold") for _ in range(5)]
    await wait_until(lambda: len(state.requests) == 6, "every request upstream")
    assert len(state.conns) == 3
    for sid in held:
        client.conn.reset_stream(sid, fr.CANCEL)
    client.flush()
    await wait_until(lambda: len(state.resets) == 5, "the resets upstream")


async def test_idle_upstream_connections_are_closed_and_redialled(
    h2_backend: tuple[BackendState, int],
) -> None:
    state, port = h2_backend
    env = {"LINKERD2_PROXY_INBOUND_HTTP1_CONNECTION_POOL_IDLE_TIMEOUT": "50ms"}
    proxy = Proxy(("127.0.0.1", port), env)
    await proxy.start()
    try:
        client = await Client.connect(proxy.port)
        first = client.request("/hello")
        await wait_until(lambda: state.closed == 1, "the idle upstream connection to close")
        second = client.request("/hello")
        await wait_until(lambda: client.ended(second), "the second answer")
    finally:
        await proxy.close()
    assert [client.status(sid) for sid in (first, second)] == [b"200", b"200"]
    assert len(state.conns) == 2
    dst = {"direction": "inbound", "peer": "dst", "tls": "disabled"}
    assert ({**dst, "errno": ""}, 1) in proxy.samples("tcp_close_total")


async def test_large_header_blocks_cross_in_continuation_frames(
    h2_hop: Proxy, h2_backend: tuple[BackendState, int]
) -> None:
    state, _ = h2_backend
    big = bytes(97 + i % 26 for i in range(40000))
    client = await Client.connect(h2_hop.port)
    sid = client.request("/hello", extra=[(b"x-big", big)])
    await wait_until(lambda: client.ended(sid), "the answer")
    assert client.status(sid) == b"200"
    assert dict(state.requests[0][1])[b"x-big"] == big


async def test_grpc_through_a_pair_of_hops(grpc_hop: Proxy) -> None:
    outer = Proxy(("127.0.0.1", grpc_hop.port))
    await outer.start()
    message = os.urandom(3 * 1024 * 1024)
    try:
        async with channel(outer) as ch:
            assert await ch.unary_unary("/test.Echo/Unary")(message, timeout=TIMEOUT) == message
            call = ch.stream_stream("/test.Echo/Bidi")(timeout=TIMEOUT)
            for word in (b"x", message):
                await call.write(word)
                assert await call.read() == word.upper()
            await call.done_writing()
            assert await call.code() == grpc.StatusCode.OK
    finally:
        await outer.close()
    assert outer.responses() == grpc_hop.responses() == {("200", "success", "0", None): 2}


async def test_mixed_traffic_with_resets_is_counted_once_and_leaves_no_streams(
    h2_hop: Proxy,
) -> None:
    rnd = random.Random(7)
    clients = [await Client.connect(h2_hop.port) for _ in range(4)]
    expected: list[tuple[Client, int, bytes | int | None]] = []  # body, reset code, or unknown
    for _ in range(300):
        client = rnd.choice(clients)
        kind = rnd.choice(("hello", "big", "reset", "cancel", "echo", "cancel-upload"))
        if kind == "hello":
            expected.append((client, client.request("/hello"), b"hello"))
        elif kind == "big":
            size = rnd.randrange(256, 300_000, 256)
            expected.append(
                (client, client.request(f"/big/{size}"), bytes(range(256)) * (size // 256))
            )
        elif kind == "reset":
            expected.append((client, client.request("/reset/8"), fr.CANCEL))
        elif kind == "cancel":
            client.conn.reset_stream(client.request("/hold"), fr.CANCEL)
        else:
            sid = client.request("/echo", method="POST", end=False)
            window = client.conn.local_flow_control_window(sid)
            body = os.urandom(rnd.randrange(0, 60_000))[:window]
            for pos in range(0, len(body), 16384):
                client.conn.send_data(sid, body[pos : pos + 16384])
            if kind == "cancel-upload":
                client.conn.reset_stream(sid, fr.CANCEL)
            else:
                client.conn.end_stream(sid)
                expected.append((client, sid, body))
        client.flush()
        if rnd.random() < 0.1:
            await asyncio.sleep(0)  # let some frames through between bursts
    for client, sid, outcome in expected:
        await wait_until(partial(client.ended, sid), f"stream {sid}")
        if isinstance(outcome, int):
            assert client.reset_code(sid) == outcome
        else:
            assert bytes(client.body.get(sid, b"")) == outcome
    upstreams = [c for conns in h2_hop.h2_pool.conns.values() for c in conns]
    await wait_until(
        lambda: not any(c.streams for c in [*h2_hop.server_conns(), *upstreams]),
        "every stream to be forgotten",
    )
    assert h2_hop.requests() == 300
    assert sum(h2_hop.responses().values()) == 300
    assert h2_hop.in_flight.count == 0  # every exchange left the listener's count


async def test_connection_specific_headers_make_the_request_malformed(
    h2_hop: Proxy, h2_backend: tuple[BackendState, int]
) -> None:
    state, _ = h2_backend
    client = await Client.connect(h2_hop.port)
    hop_by_hop = [
        (b"connection", b"keep-alive"),
        (b"keep-alive", b"timeout=5"),
        (b"proxy-connection", b"keep-alive"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"websocket"),
        (b"te", b"gzip"),
    ]
    refused = [client.request("/hello", extra=[field]) for field in hop_by_hop]
    ok = client.request("/hello", extra=[(b"te", b"trailers")])
    await wait_until(lambda: all(client.ended(sid) for sid in [*refused, ok]), "the answers")
    assert [client.reset_code(sid) for sid in refused] == [fr.PROTOCOL_ERROR] * len(hop_by_hop)
    assert client.status(ok) == b"200"
    ((_, headers),) = state.requests  # only the well-formed request was forwarded
    assert (b"te", b"trailers") in headers
    assert h2_hop.requests() == 7
    assert h2_hop.responses() == {
        ("0", "failure", None, "protocol_error"): 6,
        ("200", "success", None, None): 1,
    }
