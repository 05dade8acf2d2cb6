"""RFC 9113 conformance of the proxy's HTTP/2 frame layer, section by section.

Each test drives one hop (``serve_http2`` behind an acceptor: ``Proxy`` from test_h2_proxy) with
raw frames from a client written here, in front of a raw server also written here. Frames are
built and parsed with hyperframe and hpack, an implementation independent of the proxy's, so a
test writes exactly the frames its section is about and asserts exactly what comes back (GOAWAY
and its code, RST_STREAM and its code) and what, if anything, reached the server. The sections
are those a forwarding intermediary must enforce itself rather than leave to the server behind
it; the client-facing side is tested first, then the same rules against a misbehaving server.
Where the proxy behaved correctly before, the test just proves it.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import hpack
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from harness.loop_errors import no_loop_errors  # noqa: F401 (an autouse fixture)
from tests.unit.test_h2_proxy import Proxy, wait_until

pytestmark = pytest.mark.anyio

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR = ErrorCodes.NO_ERROR
PROTOCOL_ERROR = ErrorCodes.PROTOCOL_ERROR
INTERNAL_ERROR = ErrorCodes.INTERNAL_ERROR
FLOW_CONTROL_ERROR = ErrorCodes.FLOW_CONTROL_ERROR
STREAM_CLOSED = ErrorCodes.STREAM_CLOSED
FRAME_SIZE_ERROR = ErrorCodes.FRAME_SIZE_ERROR
REFUSED_STREAM = ErrorCodes.REFUSED_STREAM
CANCEL = ErrorCodes.CANCEL
COMPRESSION_ERROR = ErrorCodes.COMPRESSION_ERROR
# SETTINGS identifiers (RFC 9113 §6.5.2).
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 1, 2, 3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 4, 5, 6
# Frame types, for frames written byte by byte.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 2, 3, 4, 6, 7, 8
CONTINUATION = 9
END_STREAM, END_HEADERS, PADDED = 0x1, 0x4, 0x8

Fields = list[tuple[bytes, bytes]]
Seen = tuple[Any, ...]  # a received frame, summarised (see RawPeer.summary)


def request(path: str = "/", method: str = "GET", *extra: tuple[bytes, bytes]) -> Fields:
    """A request head with every pseudo-header field."""
    return [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"conformance.test"),
        *extra,
    ]


def raw(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    """A frame written byte by byte (for the malformed ones a frame library will not build)."""
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def data(sid: int, payload: bytes = b"", end: bool = False) -> bytes:
    """DATA."""
    return bytes(DataFrame(sid, payload, flags=["END_STREAM"] if end else []).serialize())


def rst(sid: int, code: int) -> bytes:
    """RST_STREAM."""
    return bytes(RstStreamFrame(sid, error_code=code).serialize())


def window(sid: int, increment: int) -> bytes:
    """WINDOW_UPDATE (any increment, 0 and overflowing ones included)."""
    return raw(WINDOW_UPDATE, 0, sid, struct.pack(">L", increment))


def priority(sid: int, depends_on: int) -> bytes:
    """PRIORITY."""
    return bytes(PriorityFrame(sid, depends_on=depends_on, stream_weight=15).serialize())


def settings(values: dict[int, int]) -> bytes:
    """SETTINGS (not an ACK)."""
    return bytes(SettingsFrame(0, settings=values).serialize())


def goaway(last: int, code: int) -> bytes:
    """GOAWAY."""
    return bytes(GoAwayFrame(0, last_stream_id=last, error_code=code).serialize())


class RawPeer(asyncio.Protocol):
    """One end of an HTTP/2 connection that speaks raw frames.

    It ACKs SETTINGS and PINGs and records every frame it receives as a tuple (header blocks
    decoded, CONTINUATIONs joined); ``on_frame`` sees each as it arrives.
    """

    def __init__(self, first: bytes, server: bool, on_frame: Callable[[RawPeer, Seen], None]):
        self.first = first  # written on connect: a preface and SETTINGS, or a server's greeting
        self.awaiting_preface = server  # a server reads the client preface before frames
        self.on_frame = on_frame
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.received: list[Seen] = []
        self.cursor = 0
        self.buf = bytearray()
        self.block: tuple[int, bool, bytearray] | None = None
        self.acked: set[bytes] = set()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.lost: Exception | None = None  # why the connection ended, if not by an EOF

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.first:
            self.send(self.first)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc

    def send(self, *chunks: bytes) -> None:
        """Write ``chunks`` at once (unless the connection is closing)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(chunks))

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()

    def headers(
        self, sid: int, fields: Fields, end: bool = True, depends_on: int | None = None
    ) -> bytes:
        """A HEADERS frame (encoded with this end's HPACK state), with a priority if given."""
        flags = ["END_HEADERS", *(["END_STREAM"] if end else [])]
        frame = HeadersFrame(sid, self.encoder.encode(fields), flags=flags)
        if depends_on is not None:
            frame.flags.add("PRIORITY")
            frame.depends_on, frame.stream_weight = depends_on, 15
        return bytes(frame.serialize())

    def data_received(self, chunk: bytes) -> None:
        buf = self.buf
        buf += chunk
        if self.awaiting_preface:
            if len(buf) < len(PREFACE):
                return
            assert buf[: len(PREFACE)] == PREFACE
            del buf[: len(PREFACE)]
            self.awaiting_preface = False
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(buf[:9])))
            if len(buf) < 9 + length:
                return
            frame.parse_body(memoryview(bytes(buf[9 : 9 + length])))
            del buf[: 9 + length]
            seen = self.summary(frame)
            if seen is not None:
                self.received.append(seen)
                self.on_frame(self, seen)

    def summary(self, frame: Frame) -> Seen | None:
        """``frame`` as a tuple; answers SETTINGS and PING; None inside a header block."""
        sid = frame.stream_id
        end = "END_STREAM" in frame.flags
        if isinstance(frame, SettingsFrame):
            if "ACK" in frame.flags:
                return ("SETTINGS_ACK",)
            self.send(bytes(SettingsFrame(0, flags=["ACK"]).serialize()))
            return ("SETTINGS", dict(frame.settings))
        if isinstance(frame, PingFrame):
            if "ACK" in frame.flags:
                self.acked.add(bytes(frame.opaque_data))
                return ("PING_ACK",)
            self.send(bytes(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize()))
            return ("PING",)
        if isinstance(frame, HeadersFrame | ContinuationFrame):
            if isinstance(frame, HeadersFrame):
                self.block = (sid, end, bytearray())
            assert self.block is not None
            block_sid, block_end, block = self.block
            block += frame.data
            if "END_HEADERS" not in frame.flags:
                return None
            self.block = None
            return ("HEADERS", block_sid, self.decoder.decode(bytes(block), raw=True), block_end)
        if isinstance(frame, DataFrame):
            return ("DATA", sid, bytes(frame.data), end)
        if isinstance(frame, RstStreamFrame):
            return ("RST_STREAM", sid, frame.error_code)
        if isinstance(frame, GoAwayFrame):
            return ("GOAWAY", frame.last_stream_id, frame.error_code)
        if isinstance(frame, WindowUpdateFrame):
            return ("WINDOW_UPDATE", sid, frame.window_increment)
        if isinstance(frame, PushPromiseFrame):
            return ("PUSH_PROMISE", sid)
        if isinstance(frame, PriorityFrame):
            return ("PRIORITY", sid)
        assert isinstance(frame, ExtensionFrame)
        return ("EXTENSION", frame.type)

    async def sync(self) -> None:
        """A PING round trip (or the connection's end): whatever the other end wrote before its
        ACK has arrived."""
        opaque = os.urandom(8)
        self.send(bytes(PingFrame(0, opaque).serialize()))
        await wait_until(lambda: opaque in self.acked or self.closed, "a PING ACK")

    def news(self) -> list[Seen]:
        """The frames received since the last ``answers``, SETTINGS, PING and WINDOW_UPDATE
        frames left out."""
        skip = ("SETTINGS", "SETTINGS_ACK", "PING", "PING_ACK", "WINDOW_UPDATE")
        return [seen for seen in self.received[self.cursor :] if seen[0] not in skip]

    async def answers(self, count: int = 0) -> list[Seen]:
        """The news once there are ``count`` of them (answers from the server take a while)
        and a PING round trip has shown that nothing else the proxy wrote is on its way."""
        await wait_until(lambda: len(self.news()) >= count or self.closed, f"{count} frames")
        await self.sync()
        new, self.cursor = self.news(), len(self.received)
        return new

    async def expect(self, frames: list[Seen]) -> None:
        """The proxy sent exactly ``frames`` since the last ``answers``."""
        assert await self.answers(len(frames)) == frames

    async def hang_up(self) -> Exception | None:
        """End our side (EOF) unless the connection has ended; once it has, why (None: an EOF
        from the other end, not a reset)."""
        if not self.closed and self.transport is not None:
            self.transport.write_eof()
        await wait_until(lambda: self.closed, "the connection to close")
        return self.lost

    async def error(self) -> list[Seen]:
        """After the other end closed the connection: what it sent since the last call."""
        await wait_until(lambda: self.closed, "the connection to close")
        return await self.answers()


def answer(peer: RawPeer, sid: int, path: bytes) -> None:
    """The raw server's default answer: ``/hold…`` and ``/keep…`` never, ``/big`` 100 bytes,
    anything else 200 with body ``ok``."""
    if path.startswith((b"/hold", b"/keep")):
        return
    body = bytes(range(100)) if path == b"/big" else b"ok"
    peer.send(peer.headers(sid, [(b":status", b"200")], end=False), data(sid, body, end=True))


@dataclass
class RawServer:
    """The server behind the hop, on raw frames. ``greeting`` is what it sends first (its
    SETTINGS by default); ``respond`` answers each complete request (``answer`` by default)."""

    greeting: bytes = field(default_factory=lambda: settings({}))
    respond: Callable[[RawPeer, int, bytes], None] = answer
    on_head: Callable[[RawPeer, int, Fields], None] = lambda *_: None  # at each request head
    peers: list[RawPeer] = field(default_factory=list)
    log: list[tuple[RawPeer, Seen]] = field(default_factory=list)
    paths: dict[tuple[int, int], bytes] = field(default_factory=dict)

    def protocol(self) -> RawPeer:
        """A connection's protocol (the listener's factory)."""
        peer = RawPeer(self.greeting, server=True, on_frame=self.on_frame)
        self.peers.append(peer)
        return peer

    def on_frame(self, peer: RawPeer, seen: Seen) -> None:
        """Log ``seen``; answer a request once it is complete."""
        self.log.append((peer, seen))
        if seen[0] not in ("HEADERS", "DATA"):
            return
        key = (id(peer), seen[1])
        if seen[0] == "HEADERS" and key not in self.paths:
            self.paths[key] = dict(seen[2]).get(b":path", b"")
            self.on_head(peer, seen[1], seen[2])
        if seen[-1]:
            self.respond(peer, seen[1], self.paths[key])

    def path(self, peer: RawPeer, sid: int) -> bytes:
        """The path of the request on ``peer``'s stream ``sid``."""
        return self.paths.get((id(peer), sid), b"?")


@dataclass
class Hop:
    """A proxy hop in front of a raw server, and the raw clients a test opened."""

    proxy: Proxy
    server: RawServer
    listener: asyncio.Server
    clients: list[RawPeer] = field(default_factory=list)

    async def client(self, values: dict[int, int] | None = None, first: bytes = b"") -> RawPeer:
        """A raw client, connected, its preface and SETTINGS (``values``) sent, or ``first``."""
        first = first or PREFACE + settings(values or {})
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_connection(
            lambda: RawPeer(first, server=False, on_frame=lambda *_: None),
            "127.0.0.1",
            self.proxy.port,
        )
        self.clients.append(peer)
        return peer

    async def forwarded(self) -> list[Seen]:
        """What reached the server so far, stream ids replaced by request paths. A sentinel
        request sent afterwards on another client connection reaches the server (over the same
        upstream connection) after everything forwarded before it."""
        sentinel = await self.client()
        sentinel.send(sentinel.headers(1, request("/sentinel")))
        await wait_until(
            lambda: b"/sentinel" in self.server.paths.values(), "the sentinel at the server"
        )
        seen: list[Seen] = []
        for peer, s in self.server.log:
            if s[0] not in ("HEADERS", "DATA", "RST_STREAM"):
                continue
            path = self.server.path(peer, s[1])
            if path == b"/sentinel":
                break
            seen.append((s[0], path, *s[3 if s[0] == "HEADERS" else 2 :]))
        return seen


@pytest.fixture
async def make_hop() -> AsyncIterator[Callable[..., Awaitable[Hop]]]:
    """Builds hops: ``await make_hop(env={...}, server=RawServer(...))``."""
    hops: list[Hop] = []

    async def make(env: dict[str, str] | None = None, server: RawServer | None = None) -> Hop:
        server = server or RawServer()
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(server.protocol, "127.0.0.1", 0)
        proxy = Proxy(("127.0.0.1", listener.sockets[0].getsockname()[1]), env)
        await proxy.start()
        hop = Hop(proxy, server, listener)
        hops.append(hop)
        return hop

    yield make
    for hop in hops:
        for peer in hop.clients:
            peer.close()
        await hop.proxy.close()
        for peer in hop.server.peers:
            peer.close()
        hop.listener.close()


@pytest.fixture
async def hop(make_hop: Callable[..., Awaitable[Hop]]) -> Hop:
    """A hop in front of a RawServer with its defaults."""
    return await make_hop()


def ok(sid: int) -> list[Seen]:
    """What the client gets for a request the server answered 200 ``ok``."""
    return [("HEADERS", sid, [(b":status", b"200")], False), ("DATA", sid, b"ok", True)]


def chunks(sid: int, size: int, end: bool = False) -> bytes:
    """``size`` body bytes on ``sid`` in DATA frames of at most 16384 bytes."""
    body = b"x" * size
    parts = [body[pos : pos + 16384] for pos in range(0, size, 16384)]
    return b"".join(data(sid, part, end and i == len(parts) - 1) for i, part in enumerate(parts))


def server_peer(hop: Hop, path: bytes) -> tuple[RawPeer, int]:
    """The server's connection and stream that got the request for ``path``."""
    for (peer_id, sid), seen_path in hop.server.paths.items():
        if seen_path == path:
            return next(p for p in hop.server.peers if id(p) == peer_id), sid
    raise AssertionError(f"no request for {path!r} at the server")


# --- §3.4 the connection preface --------------------------------------------------------------


async def test_the_proxy_s_preface_is_settings_with_its_limits(hop: Hop) -> None:
    client = await hop.client()
    await client.expect([])
    assert client.received[0] == (
        "SETTINGS",
        {
            ENABLE_PUSH: 0,
            INITIAL_WINDOW_SIZE: 65535,
            MAX_HEADER_LIST_SIZE: 65536,
            MAX_CONCURRENT_STREAMS: 200,
        },
    )
    assert ("SETTINGS_ACK",) in client.received  # the client's SETTINGS were acknowledged


async def test_a_preface_not_followed_by_settings_is_a_protocol_error(hop: Hop) -> None:
    client = await hop.client(first=PREFACE + bytes(PingFrame(0, b"12345678").serialize()))
    assert await client.error() == [("GOAWAY", 0, PROTOCOL_ERROR)]


# --- §4.1, §4.2 frame format and size -----------------------------------------------------------


async def test_unknown_types_undefined_flags_and_the_reserved_bit_are_ignored(hop: Hop) -> None:
    client = await hop.client()
    block = client.encoder.encode(request())
    client.send(
        raw(0xEE, 0xFF, 1, b"??"), raw(HEADERS, 0x2 | END_HEADERS | END_STREAM, 1 | 1 << 31, block)
    )
    await client.expect(ok(1))


async def test_frames_up_to_the_frame_size_pass_and_larger_ones_are_frame_size_errors(
    hop: Hop,
) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/", "POST"), end=False), data(1, b"x" * 16384, True))
    await client.expect(ok(1))
    client.send(raw(DATA, 0, 3, b"x" * 16385))
    assert await client.error() == [("GOAWAY", 1, FRAME_SIZE_ERROR)]


# --- §4.3 header compression and decompression --------------------------------------------------


async def test_an_undecodable_header_block_is_a_compression_error(hop: Hop) -> None:
    client = await hop.client()
    client.send(raw(HEADERS, END_HEADERS | END_STREAM, 1, b"\xff\xff\xff\x7f"))
    assert await client.error() == [("GOAWAY", 0, COMPRESSION_ERROR)]


async def test_refused_header_blocks_still_update_the_decoder(hop: Hop) -> None:
    client = await hop.client()
    token = (b"x-token", b"abc")  # the client's encoder adds it to the dynamic table ...
    client.send(client.headers(1, request("/", "GET", token, (b"te", b"gzip"))))
    client.send(client.headers(3, request("/", "GET", token)))  # ... and refers to it here
    await client.expect([("RST_STREAM", 1, PROTOCOL_ERROR), *ok(3)])
    heads = [s for _, s in hop.server.log if s[0] == "HEADERS"]
    assert token in heads[0][2]


async def test_a_header_block_must_not_be_interrupted(hop: Hop) -> None:
    client = await hop.client()
    block = client.encoder.encode(request())
    client.send(raw(HEADERS, END_STREAM, 1, block[:3]), priority(3, 0))
    assert await client.error() == [("GOAWAY", 0, PROTOCOL_ERROR)]


# --- §5.1 stream states -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [data(1, b"x"), rst(1, CANCEL), window(1, 100), raw(CONTINUATION, END_HEADERS, 1, b"\x82")],
    ids=["DATA", "RST_STREAM", "WINDOW_UPDATE", "CONTINUATION"],
)
async def test_frames_on_an_idle_stream_are_a_protocol_error(hop: Hop, frame: bytes) -> None:
    client = await hop.client()
    client.send(frame)
    assert await client.error() == [("GOAWAY", 0, PROTOCOL_ERROR)]
    assert await hop.forwarded() == []


async def test_priority_on_an_idle_stream_is_allowed_and_opens_nothing(hop: Hop) -> None:
    client = await hop.client()
    client.send(priority(5, 0), client.headers(1, request()))
    await client.expect(ok(1))


@pytest.mark.parametrize("kind", ["DATA", "HEADERS"])
async def test_frames_after_the_client_s_end_stream_are_stream_closed_errors(
    hop: Hop, kind: str
) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/hold")))  # half-closed (remote) for the proxy
    client.send(data(1, b"late") if kind == "DATA" else client.headers(1, [(b"x-t", b"1")]))
    await client.expect([("RST_STREAM", 1, STREAM_CLOSED)])
    assert await hop.forwarded() == [
        ("HEADERS", b"/hold", True),
        ("RST_STREAM", b"/hold", CANCEL),
    ]


async def test_window_update_priority_and_rst_stream_are_allowed_when_half_closed(
    hop: Hop,
) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/hold")), window(1, 10), priority(1, 0))
    await client.expect([])
    client.send(rst(1, CANCEL))
    await client.expect([])  # never a RST_STREAM in answer to a RST_STREAM
    assert await hop.forwarded() == [
        ("HEADERS", b"/hold", True),
        ("RST_STREAM", b"/hold", CANCEL),
    ]


@pytest.mark.parametrize("kind", ["DATA", "HEADERS"])
async def test_frames_on_a_stream_closed_by_end_stream_are_a_stream_closed_connection_error(
    hop: Hop, kind: str
) -> None:
    client = await hop.client()
    client.send(client.headers(1, request()))
    await client.expect(ok(1))
    client.send(data(1, b"x") if kind == "DATA" else client.headers(1, request()))
    assert await client.error() == [("GOAWAY", 1, STREAM_CLOSED)]


async def test_window_update_rst_stream_and_priority_on_a_closed_stream_are_ignored(
    hop: Hop,
) -> None:
    client = await hop.client()
    client.send(client.headers(1, request()))
    await client.expect(ok(1))
    client.send(window(1, 10), rst(1, CANCEL), priority(1, 0), client.headers(3, request()))
    await client.expect(ok(3))


@pytest.mark.parametrize("kind", ["DATA", "HEADERS"])
async def test_frames_after_the_client_reset_a_stream_are_stream_closed_errors(
    hop: Hop, kind: str
) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/hold", "POST"), end=False), rst(1, CANCEL))
    client.send(data(1, b"x") if kind == "DATA" else client.headers(1, [(b"x-t", b"1")]))
    await client.expect([("RST_STREAM", 1, STREAM_CLOSED)])
    assert await hop.forwarded() == [
        ("HEADERS", b"/hold", False),
        ("RST_STREAM", b"/hold", CANCEL),
    ]


async def test_frames_in_flight_when_the_proxy_reset_a_stream_are_dropped_and_credited(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    server = RawServer()
    server.on_head = lambda peer, sid, _: peer.send(rst(sid, CANCEL))
    hop = await make_hop({"LINKERD2_PROXY_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE": "65535"}, server)
    client = await hop.client()
    client.send(client.headers(1, request("/", "POST"), end=False))
    await client.expect([("RST_STREAM", 1, CANCEL)])
    # Frames the client sent before the reset reached it: dropped, and their bytes credited (the
    # next 40000 bytes would not fit in the 65535-byte connection window otherwise).
    client.send(chunks(1, 40000), client.headers(1, [(b"x-t", b"1")]), window(1, 5))
    await client.expect([])
    server.on_head = lambda *_: None
    client.send(client.headers(3, request("/", "POST"), end=False), chunks(3, 40000, end=True))
    await client.expect(ok(3))


# --- §5.1.1 stream identifiers ------------------------------------------------------------------


async def test_a_client_stream_with_an_even_id_is_a_protocol_error(hop: Hop) -> None:
    client = await hop.client()
    client.send(client.headers(2, request()))
    assert await client.error() == [("GOAWAY", 0, PROTOCOL_ERROR)]
    assert await hop.forwarded() == []


async def test_a_stream_id_below_one_already_used_is_a_protocol_error(hop: Hop) -> None:
    client = await hop.client()
    client.send(client.headers(5, request("/hold")), client.headers(3, request()))
    assert await client.error() == [("GOAWAY", 5, PROTOCOL_ERROR)]
    assert await hop.forwarded() == [
        ("HEADERS", b"/hold", True),
        ("RST_STREAM", b"/hold", CANCEL),
    ]


# --- §5.1.2 stream concurrency ------------------------------------------------------------------


async def test_streams_over_the_advertised_limit_are_refused(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    hop = await make_hop({"LINKERD2_PROXY_INBOUND_SERVER_HTTP2_MAX_CONCURRENT_STREAMS": "2"})
    client = await hop.client()
    client.send(*[client.headers(sid, request("/hold")) for sid in (1, 3, 5)])
    await client.expect([("RST_STREAM", 5, REFUSED_STREAM)])
    assert client.received[0][1][MAX_CONCURRENT_STREAMS] == 2
    client.send(rst(1, CANCEL), client.headers(7, request()))  # room again
    await client.expect(ok(7))
    assert hop.proxy.requests() == 3  # a refused stream was never a request
    assert await hop.forwarded() == [
        ("HEADERS", b"/hold", True),
        ("HEADERS", b"/hold", True),
        ("RST_STREAM", b"/hold", CANCEL),
        ("HEADERS", b"/", True),
    ]


# --- §5.2, §6.9 flow control ----------------------------------------------------------------------


async def test_data_beyond_the_connection_window_is_a_flow_control_error(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    server = RawServer(greeting=settings({INITIAL_WINDOW_SIZE: 0}))  # holds every byte sent on
    hop = await make_hop({"LINKERD2_PROXY_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE": "65535"}, server)
    client = await hop.client()
    client.send(client.headers(1, request()))
    await client.expect(ok(1))  # the upstream connection and its SETTINGS are up
    client.send(client.headers(3, request("/hold", "POST"), end=False), chunks(3, 40000))
    client.send(client.headers(5, request("/hold", "POST"), end=False), chunks(5, 40000))
    assert await client.error() == [("GOAWAY", 5, FLOW_CONTROL_ERROR)]


@pytest.mark.parametrize(
    ("frames", "answer"),
    [
        (window(0, 2**31 - 1), [("GOAWAY", 1, FLOW_CONTROL_ERROR)]),
        (window(1, 2**31 - 1), [("RST_STREAM", 1, FLOW_CONTROL_ERROR)]),
        (window(0, 0), [("GOAWAY", 1, PROTOCOL_ERROR)]),
        (window(1, 0), [("RST_STREAM", 1, PROTOCOL_ERROR)]),
        (raw(WINDOW_UPDATE, 0, 1, b"\x00\x00\x01"), [("GOAWAY", 1, FRAME_SIZE_ERROR)]),
        (
            window(1, 2**31 - 1 - 65535) + settings({INITIAL_WINDOW_SIZE: 65536}),
            [("GOAWAY", 1, FLOW_CONTROL_ERROR)],
        ),
    ],
    ids=[
        "connection overflow",
        "stream overflow",
        "zero on the connection",
        "zero on a stream",
        "length",
        "overflow by SETTINGS",
    ],
)
async def test_window_updates_that_overflow_or_add_nothing(
    hop: Hop, frames: bytes, answer: list[Seen]
) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/hold")), frames)
    if answer[0][0] == "GOAWAY":
        assert await client.error() == answer
    else:
        await client.expect(answer)


async def test_a_settings_change_can_make_a_stream_window_negative(hop: Hop) -> None:
    client = await hop.client({INITIAL_WINDOW_SIZE: 10})
    client.send(client.headers(1, request("/big")))
    await client.expect(
        [
            ("HEADERS", 1, [(b":status", b"200")], False),
            ("DATA", 1, bytes(range(10)), False),
        ]
    )
    client.send(settings({INITIAL_WINDOW_SIZE: 0}), window(1, 15))  # -10, then 5
    await client.expect([("DATA", 1, bytes(range(10, 15)), False)])
    client.send(window(1, 1000))
    await client.expect([("DATA", 1, bytes(range(15, 100)), True)])


async def test_padding_is_stripped_and_counted(hop: Hop) -> None:
    client = await hop.client()
    padded = raw(DATA, PADDED | END_STREAM, 1, b"\x05abc" + bytes(5))
    client.send(client.headers(1, request("/", "POST"), end=False), padded)
    await client.expect(ok(1))
    assert await hop.forwarded() == [("HEADERS", b"/", False), ("DATA", b"/", b"abc", True)]


# --- §5.3 priority --------------------------------------------------------------------------------


async def test_a_headers_frame_that_depends_on_its_own_stream_is_refused(hop: Hop) -> None:
    client = await hop.client()
    client.send(client.headers(1, request(), depends_on=1), client.headers(3, request()))
    await client.expect([("RST_STREAM", 1, PROTOCOL_ERROR), *ok(3)])
    assert await hop.forwarded() == [("HEADERS", b"/", True)]


async def test_a_priority_frame_that_depends_on_its_own_stream(hop: Hop) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/hold")), priority(1, 1))
    await client.expect([("RST_STREAM", 1, PROTOCOL_ERROR)])
    assert await hop.forwarded() == [
        ("HEADERS", b"/hold", True),
        ("RST_STREAM", b"/hold", CANCEL),
    ]
    client.send(priority(9, 9))  # an idle stream cannot be reset (§6.4): the connection ends
    assert await client.error() == [("GOAWAY", 1, PROTOCOL_ERROR)]


async def test_priority_is_parsed_and_otherwise_ignored(hop: Hop) -> None:
    client = await hop.client()
    client.send(client.headers(1, request(), depends_on=0), priority(1, 0), priority(3, 1))
    await client.expect(ok(1))
    client.send(client.headers(5, request("/hold")), raw(PRIORITY, 0, 5, bytes(4)))
    await client.expect([("RST_STREAM", 5, FRAME_SIZE_ERROR)])


# --- §5.4 error handling, §5.5 extensions ---------------------------------------------------------


async def test_a_connection_error_s_goaway_survives_a_client_that_keeps_sending(hop: Hop) -> None:
    client = await hop.client()
    bad = raw(DATA, 0, 0, b"x")  # DATA on stream 0, then a megabyte the proxy will not read
    client.send(client.headers(1, request("/", "POST"), end=False), bad, chunks(1, 1 << 20))
    await wait_until(lambda: ("GOAWAY", 1, PROTOCOL_ERROR) in client.received, "the GOAWAY")
    assert await client.hang_up() is None  # an EOF: a TCP reset can destroy the GOAWAY in flight


async def test_after_the_client_s_goaway_the_connection_ends_cleanly(hop: Hop) -> None:
    client = await hop.client()
    client.send(goaway(0, 0xFF), bytes(PingFrame(0, b"h2spec\x00\x00").serialize()))
    await wait_until(lambda: client.closed or b"h2spec\x00\x00" in client.acked, "an answer")
    assert await client.hang_up() is None


async def test_a_connection_error_names_the_last_stream_and_spares_other_connections(
    hop: Hop,
) -> None:
    bad, good = await hop.client(), await hop.client()
    bad.send(bad.headers(1, request("/hold")), bad.headers(3, request()))
    await bad.expect(ok(3))
    bad.send(raw(PING, 0, 1, b"12345678"))
    assert await bad.error() == [("GOAWAY", 3, PROTOCOL_ERROR)]
    good.send(good.headers(1, request()))
    await good.expect(ok(1))
    assert await hop.forwarded() == [
        ("HEADERS", b"/hold", True),
        ("HEADERS", b"/", True),
        ("RST_STREAM", b"/hold", CANCEL),
        ("HEADERS", b"/", True),
    ]


async def test_extensions_are_ignored_except_inside_a_header_block(hop: Hop) -> None:
    client = await hop.client()
    client.send(raw(0xEE, 0, 0, b"x"), raw(0xEE, 0, 1, b"y"), settings({0x99: 1}))
    client.send(client.headers(1, request()))
    await client.expect(ok(1))
    block = client.encoder.encode(request())
    client.send(raw(HEADERS, END_STREAM, 3, block[:2]), raw(0xEE, 0, 3, b""))
    assert await client.error() == [("GOAWAY", 1, PROTOCOL_ERROR)]


# --- §6 each frame type's constraints -------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (raw(DATA, 0, 0, b"x"), PROTOCOL_ERROR),
        (raw(DATA, PADDED, 1, b"\x05abc"), PROTOCOL_ERROR),
        (raw(HEADERS, END_HEADERS, 0, b"\x82"), PROTOCOL_ERROR),
        (raw(HEADERS, END_HEADERS | PADDED, 3, b"\x09\x82\x86"), PROTOCOL_ERROR),
        (raw(PRIORITY, 0, 0, bytes(5)), PROTOCOL_ERROR),
        (raw(RST_STREAM, 0, 0, bytes(4)), PROTOCOL_ERROR),
        (raw(RST_STREAM, 0, 1, bytes(3)), FRAME_SIZE_ERROR),
        (raw(RST_STREAM, 0, 3, bytes(4)), PROTOCOL_ERROR),  # idle
        (raw(SETTINGS, 0x1, 0, bytes(6)), FRAME_SIZE_ERROR),
        (raw(SETTINGS, 0, 1, b""), PROTOCOL_ERROR),
        (raw(SETTINGS, 0, 0, bytes(5)), FRAME_SIZE_ERROR),
        (settings({ENABLE_PUSH: 2}), PROTOCOL_ERROR),
        (settings({INITIAL_WINDOW_SIZE: 2**31}), FLOW_CONTROL_ERROR),
        (settings({MAX_FRAME_SIZE: 16383}), PROTOCOL_ERROR),
        (settings({MAX_FRAME_SIZE: 2**24}), PROTOCOL_ERROR),
        (raw(5, END_HEADERS, 1, struct.pack(">L", 2) + b"\x82"), PROTOCOL_ERROR),  # PUSH_PROMISE
        (raw(PING, 0, 1, bytes(8)), PROTOCOL_ERROR),
        (raw(PING, 0, 0, bytes(7)), FRAME_SIZE_ERROR),
        (raw(GOAWAY, 0, 1, bytes(8)), PROTOCOL_ERROR),
        (raw(GOAWAY, 0, 0, bytes(7)), FRAME_SIZE_ERROR),
        (raw(CONTINUATION, END_HEADERS, 0, b"\x82"), PROTOCOL_ERROR),
        (raw(CONTINUATION, END_HEADERS, 1, b"\x82"), PROTOCOL_ERROR),  # after END_HEADERS
    ],
    ids=[
        "DATA on stream 0",
        "DATA padding",
        "HEADERS on stream 0",
        "HEADERS padding",
        "PRIORITY on stream 0",
        "RST_STREAM on stream 0",
        "RST_STREAM length",
        "RST_STREAM on an idle stream",
        "SETTINGS ACK with a payload",
        "SETTINGS on a stream",
        "SETTINGS length",
        "ENABLE_PUSH 2",
        "INITIAL_WINDOW_SIZE above 2^31-1",
        "MAX_FRAME_SIZE below 16384",
        "MAX_FRAME_SIZE above 2^24-1",
        "PUSH_PROMISE from a client",
        "PING on a stream",
        "PING length",
        "GOAWAY on a stream",
        "GOAWAY length",
        "CONTINUATION on stream 0",
        "CONTINUATION after END_HEADERS",
    ],
)
async def test_frame_constraints_are_connection_errors(hop: Hop, frame: bytes, code: int) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/hold"), end=False), frame)
    assert await client.error() == [("GOAWAY", 1, code)]


async def test_well_formed_frames_of_every_type(hop: Hop) -> None:
    client = await hop.client({HEADER_TABLE_SIZE: 0, MAX_FRAME_SIZE: 20000})
    block = client.encoder.encode(request("/", "POST"))
    padded_headers = raw(HEADERS, PADDED, 1, b"\x03" + block[:4] + bytes(3))
    client.send(padded_headers, raw(CONTINUATION, 0, 1, block[4:6]))
    client.send(raw(CONTINUATION, END_HEADERS, 1, block[6:]), data(1, b"body", end=True))
    client.send(bytes(PingFrame(0, b"pingpong", flags=["ACK"]).serialize()))
    await client.expect(ok(1))
    client.send(bytes(PingFrame(0, b"abcdefgh").serialize()))
    await client.sync()
    assert b"abcdefgh" in client.acked  # a PING is answered with its payload ...
    assert b"pingpong" not in client.acked  # ... and a PING ACK is not answered
    assert await hop.forwarded() == [("HEADERS", b"/", False), ("DATA", b"/", b"body", True)]


async def test_after_the_client_s_goaway_streams_in_flight_finish_then_the_proxy_closes(
    hop: Hop,
) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/keep")), goaway(1, NO_ERROR))
    await wait_until(lambda: b"/keep" in hop.server.paths.values(), "the request upstream")
    peer, sid = server_peer(hop, b"/keep")
    answer(peer, sid, b"/")
    assert await client.error() == ok(1)


# --- §8.1 HTTP message framing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trailers", "end"),
    [([(b"x-t", b"1")], False), ([(b":path", b"/x")], True), ([(b"x-t", b"1")], True)],
    ids=["without END_STREAM", "with a pseudo-header field", "well formed"],
)
async def test_request_trailers(hop: Hop, trailers: Fields, end: bool) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/", "POST"), end=False), data(1, b"body"))
    client.send(client.headers(1, trailers, end=end))
    head_and_body = [("HEADERS", b"/", False), ("DATA", b"/", b"body", False)]
    if trailers == [(b"x-t", b"1")] and end:
        await client.expect(ok(1))
        assert await hop.forwarded() == [*head_and_body, ("HEADERS", b"/", True)]
    else:
        await client.expect([("RST_STREAM", 1, PROTOCOL_ERROR)])
        assert await hop.forwarded() == [*head_and_body, ("RST_STREAM", b"/", CANCEL)]


@pytest.mark.parametrize(
    ("length", "body", "forwarded"),
    [
        (b"3", [b"abc"], [("DATA", b"/", b"abc", True)]),
        (b"5", [b"abcdef"], [("RST_STREAM", b"/", CANCEL)]),
        (b"5", [b"abc"], [("RST_STREAM", b"/", CANCEL)]),
        (b"5", [b"abc", b"def"], [("DATA", b"/", b"abc", False), ("RST_STREAM", b"/", CANCEL)]),
        (b"0", [b""], [("DATA", b"/", b"", True)]),
    ],
    ids=["equal", "longer", "shorter", "longer over two frames", "empty"],
)
async def test_content_length_must_equal_the_data_received(
    hop: Hop, length: bytes, body: list[bytes], forwarded: list[Seen]
) -> None:
    client = await hop.client()
    head = request("/", "POST", (b"content-length", length))
    frames = [data(1, part, end=i == len(body) - 1) for i, part in enumerate(body)]
    client.send(client.headers(1, head, end=False), *frames)
    if forwarded[-1][0] == "DATA":
        await client.expect(ok(1))
    else:
        await client.expect([("RST_STREAM", 1, PROTOCOL_ERROR)])
    assert await hop.forwarded() == [("HEADERS", b"/", False), *forwarded]


async def test_content_length_without_a_body_is_malformed(hop: Hop) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/", "POST", (b"content-length", b"5"))))
    await client.expect([("RST_STREAM", 1, PROTOCOL_ERROR)])
    assert await hop.forwarded() == []


# --- §8.2, §8.3 fields and pseudo-header fields ---------------------------------------------------

MALFORMED_REQUESTS = {
    "upper-case name": request("/", "GET", (b"X-Upper", b"1")),
    "name with a space": request("/", "GET", (b"x y", b"1")),
    "CR LF in a value": request("/", "GET", (b"x", b"a\r\nx-injected: 1")),
    "NUL in a value": request("/", "GET", (b"x", b"a\x00")),
    "leading space": request("/", "GET", (b"x", b" a")),
    "trailing tab": request("/", "GET", (b"x", b"a\t")),
    "connection": request("/", "GET", (b"connection", b"keep-alive")),
    "keep-alive": request("/", "GET", (b"keep-alive", b"timeout=5")),
    "proxy-connection": request("/", "GET", (b"proxy-connection", b"keep-alive")),
    "transfer-encoding": request("/", "GET", (b"transfer-encoding", b"chunked")),
    "upgrade": request("/", "GET", (b"upgrade", b"websocket")),
    "te other than trailers": request("/", "GET", (b"te", b"gzip")),
    "unknown pseudo-header": request("/", "GET", (b":protocol", b"websocket")),
    "response pseudo-header": request("/", "GET", (b":status", b"200")),
    "pseudo-header after a field": [*request()[:2], (b"x", b"1"), *request()[2:]],
    "duplicate :method": [(b":method", b"GET"), *request()],
    "duplicate :path": [*request(), (b":path", b"/again")],
    "no :method": request()[1:],
    "no :scheme": [f for f in request() if f[0] != b":scheme"],
    "no :path": [f for f in request() if f[0] != b":path"],
    "empty :path": request(""),
    "CONNECT with :path": [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")],
    "CONNECT without :authority": [(b":method", b"CONNECT")],
}


@pytest.mark.parametrize("head", MALFORMED_REQUESTS.values(), ids=MALFORMED_REQUESTS.keys())
async def test_malformed_requests_are_refused_and_never_forwarded(hop: Hop, head: Fields) -> None:
    client = await hop.client()
    client.send(client.headers(1, head), client.headers(3, request()))
    await client.expect([("RST_STREAM", 1, PROTOCOL_ERROR), *ok(3)])
    assert hop.proxy.responses() == {
        ("0", "failure", None, "protocol_error"): 1,
        ("200", "success", None, None): 1,
    }
    assert await hop.forwarded() == [("HEADERS", b"/", True)]


async def test_te_trailers_and_a_host_field_are_forwarded(hop: Hop) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/", "GET", (b"te", b"trailers"), (b"host", b"h"))))
    await client.expect(ok(1))
    ((_, head),) = [(p, s) for p, s in hop.server.log if s[0] == "HEADERS"]
    assert (b"te", b"trailers") in head[2]


# --- §8.5 CONNECT ---------------------------------------------------------------------------------


async def test_connect_is_forwarded_as_a_stream_of_data_both_ways(hop: Hop) -> None:
    def tunnel(peer: RawPeer, sid: int, head: Fields) -> None:
        if dict(head)[b":method"] == b"CONNECT":
            peer.send(peer.headers(sid, [(b":status", b"200")], end=False), data(sid, b"pong"))

    hop.server.on_head = tunnel
    client = await hop.client()
    client.send(client.headers(1, [(b":method", b"CONNECT"), (b":authority", b"db:5432")], False))
    client.send(data(1, b"ping"))
    await client.expect(
        [
            ("HEADERS", 1, [(b":status", b"200")], False),
            ("DATA", 1, b"pong", False),
        ]
    )
    assert (await hop.forwarded())[-1] == ("DATA", b"", b"ping", False)


# --- load: SETTINGS_MAX_CONCURRENT_STREAMS is per connection; MAX_IN_FLIGHT per listener ----------


async def test_requests_over_max_in_flight_are_shed_by_the_proxy(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    hop = await make_hop({"LINKERD2_PROXY_INBOUND_MAX_IN_FLIGHT": "2"})
    a, b = await hop.client(), await hop.client()
    a.send(a.headers(1, request("/keep-a")))
    b.send(b.headers(1, request("/keep-b")))
    await wait_until(lambda: len(hop.server.paths) == 2, "two requests in flight")
    grpc = request("/svc.S/M", "POST", (b"content-type", b"application/grpc"))
    a.send(a.headers(3, request()), a.headers(5, grpc))
    reason = b"proxy max-concurrency exhausted (2 requests in flight)"
    await a.expect(
        [
            (
                "HEADERS",
                3,
                [(b":status", b"503"), (b"content-length", b"0"), (b"l5d-proxy-error", reason)],
                True,
            ),
            (
                "HEADERS",
                5,
                [
                    (b":status", b"200"),
                    (b"content-type", b"application/grpc"),
                    (b"grpc-status", b"14"),
                    (b"grpc-message", reason),
                    (b"l5d-proxy-error", reason),
                ],
                True,
            ),
        ]
    )
    peer, sid = server_peer(hop, b"/keep-a")
    answer(peer, sid, b"/")  # one request ends: room for another
    a.send(a.headers(7, request()))
    await a.expect([*ok(1), *ok(7)])
    b.send(rst(1, CANCEL))
    await b.sync()
    await wait_until(lambda: hop.proxy.in_flight.count == 0, "nothing in flight")
    assert hop.proxy.responses() == {
        ("503", "failure", None, None): 1,
        ("200", "failure", "14", None): 1,
        ("200", "success", None, None): 2,
        ("0", "failure", None, "cancel"): 1,
    }


# --- the same rules towards the server: the proxy's upstream connections --------------------------


def server_errors(hop: Hop) -> list[Seen]:
    """The GOAWAY and RST_STREAM frames the server got."""
    return [s for _, s in hop.server.log if s[0] in ("GOAWAY", "RST_STREAM")]


def bad_gateway(sid: int, reason: bytes) -> list[Seen]:
    """The proxy's own 502 answer on ``sid``."""
    fields = [(b":status", b"502"), (b"content-length", b"0"), (b"l5d-proxy-error", reason)]
    return [("HEADERS", sid, fields, True)]


CLOSED = b"upstream connection failed: connection closed"


def answering(*frames: Callable[[int], bytes]) -> Callable[[RawPeer, int, bytes], None]:
    """A server's answer: ``frames`` built for the request's stream id, in one write."""

    def respond(peer: RawPeer, sid: int, path: bytes) -> None:
        peer.send(*(frame(sid) for frame in frames))

    return respond


@pytest.mark.parametrize(
    ("server", "code"),
    [
        (RawServer(greeting=bytes(PingFrame(0, b"12345678").serialize())), PROTOCOL_ERROR),
        (RawServer(greeting=settings({ENABLE_PUSH: 1})), PROTOCOL_ERROR),
        (RawServer(respond=answering(lambda sid: data(sid + 2, b"x"))), PROTOCOL_ERROR),
        (RawServer(respond=answering(lambda sid: rst(sid + 2, CANCEL))), PROTOCOL_ERROR),
        (RawServer(respond=answering(lambda sid: window(sid + 2, 1))), PROTOCOL_ERROR),
        (
            RawServer(
                respond=lambda peer, sid, _: peer.send(peer.headers(2, [(b":status", b"200")]))
            ),
            PROTOCOL_ERROR,
        ),
        (
            RawServer(respond=answering(lambda sid: raw(5, END_HEADERS, sid, bytes(4) + b"\x82"))),
            PROTOCOL_ERROR,
        ),
    ],
    ids=[
        "preface not SETTINGS",
        "ENABLE_PUSH 1",
        "DATA on an idle stream",
        "RST_STREAM on an idle stream",
        "WINDOW_UPDATE on an idle stream",
        "HEADERS on an even stream",
        "PUSH_PROMISE",
    ],
)
async def test_server_connection_errors_get_goaway_and_the_client_a_502(
    make_hop: Callable[..., Awaitable[Hop]], server: RawServer, code: int
) -> None:
    hop = await make_hop(server=server)
    client = await hop.client()
    client.send(client.headers(1, request()))
    await client.expect(bad_gateway(1, CLOSED))
    await wait_until(lambda: all(peer.closed for peer in server.peers), "the upstream to close")
    assert server_errors(hop) == [("GOAWAY", 0, code)]


async def test_server_data_after_its_end_stream_is_a_stream_closed_connection_error(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    respond = answering(lambda sid: ok_frames(sid), lambda sid: data(sid, b"more"))
    hop = await make_hop(server=RawServer(respond=respond))
    client = await hop.client()
    client.send(client.headers(1, request()))
    await client.expect(ok(1))
    await wait_until(lambda: all(peer.closed for peer in hop.server.peers), "the upstream to close")
    assert server_errors(hop) == [("GOAWAY", 0, STREAM_CLOSED)]


def ok_frames(sid: int) -> bytes:
    """A 200 ``ok`` answer as a server sends it (a literal :status, no table)."""
    return raw(HEADERS, END_HEADERS, sid, b"\x08\x03200") + data(sid, b"ok", end=True)


async def test_server_frames_in_flight_when_the_proxy_reset_a_stream_are_dropped(
    hop: Hop,
) -> None:
    client = await hop.client()
    client.send(client.headers(1, request("/keep")), rst(1, CANCEL))
    await wait_until(lambda: server_errors(hop), "the reset upstream")
    assert server_errors(hop) == [("RST_STREAM", 1, CANCEL)]
    peer, sid = server_peer(hop, b"/keep")
    peer.send(ok_frames(sid), window(sid, 10))  # crossed the reset
    client.send(client.headers(3, request()))
    await client.expect(ok(3))
    assert server_errors(hop) == [("RST_STREAM", 1, CANCEL)]  # no GOAWAY


MALFORMED_RESPONSES = {
    "no :status": ([(b"x", b"1")], b"missing or invalid :status"),
    "request pseudo-header": (
        [(b":status", b"200"), (b":path", b"/")],
        b"request pseudo-header field in a response",
    ),
    "connection-specific": (
        [(b":status", b"200"), (b"connection", b"close")],
        b"connection-specific field 'connection'",
    ),
    "upper-case name": ([(b":status", b"200"), (b"Server", b"x")], b"invalid field name 'Server'"),
    "content-length and no body": (
        [(b":status", b"200"), (b"content-length", b"3")],
        b"content-length with an empty body",
    ),
}


@pytest.mark.parametrize(
    ("head", "reason"), MALFORMED_RESPONSES.values(), ids=MALFORMED_RESPONSES.keys()
)
async def test_malformed_response_heads_become_the_proxy_s_502(
    make_hop: Callable[..., Awaitable[Hop]], head: Fields, reason: bytes
) -> None:
    respond = lambda peer, sid, _: peer.send(peer.headers(sid, head))  # noqa: E731
    hop = await make_hop(server=RawServer(respond=respond))
    client = await hop.client()
    client.send(client.headers(1, request()))
    await client.expect(bad_gateway(1, b"malformed HTTP/2 response: " + reason))
    assert server_errors(hop) == [("RST_STREAM", 1, PROTOCOL_ERROR)]
    assert hop.proxy.responses() == {("502", "failure", None, None): 1}


@pytest.mark.parametrize(
    "tail",
    [
        lambda sid: data(sid, b"ok") + raw(HEADERS, END_HEADERS, sid, b"\x88"),  # no END_STREAM
        lambda sid: data(sid, b"ok") + raw(HEADERS, END_HEADERS | END_STREAM, sid, b"\x88"),
        lambda sid: data(sid, b"toolong", end=True),
    ],
    ids=["trailers without END_STREAM", "trailers with :status", "DATA beyond content-length"],
)
async def test_a_malformed_response_body_or_trailers_reset_both_streams(
    make_hop: Callable[..., Awaitable[Hop]], tail: Callable[[int], bytes]
) -> None:
    head = b"\x08\x03200\x0f\x0d\x015"  # :status 200, content-length 5
    respond = answering(lambda sid: raw(HEADERS, END_HEADERS, sid, head), tail)
    hop = await make_hop(server=RawServer(respond=respond))
    client = await hop.client()
    client.send(client.headers(1, request()))
    await wait_until(lambda: ("RST_STREAM", 1, INTERNAL_ERROR) in client.received, "the reset")
    answers = await client.answers()
    assert answers[0] == ("HEADERS", 1, [(b":status", b"200"), (b"content-length", b"5")], False)
    assert answers[-1] == ("RST_STREAM", 1, INTERNAL_ERROR)
    assert server_errors(hop) == [("RST_STREAM", 1, PROTOCOL_ERROR)]


async def test_a_head_response_may_announce_a_length_without_a_body(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    head = [(b":status", b"200"), (b"content-length", b"5")]
    respond = lambda peer, sid, _: peer.send(peer.headers(sid, head))  # noqa: E731
    hop = await make_hop(server=RawServer(respond=respond))
    client = await hop.client()
    client.send(client.headers(1, request("/", "HEAD")))
    await client.expect([("HEADERS", 1, head, True)])


async def test_server_data_beyond_the_connection_window_is_a_flow_control_error(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    respond = answering(lambda sid: ok_frames(sid)[:-11], lambda sid: chunks(sid, 65536))
    env = {"LINKERD2_PROXY_HTTP2_INITIAL_CONNECTION_WINDOW_SIZE": "65535"}
    hop = await make_hop(env, RawServer(respond=respond))
    client = await hop.client({INITIAL_WINDOW_SIZE: 0})  # takes nothing: the proxy credits none
    client.send(client.headers(1, request()))
    await wait_until(lambda: server_errors(hop), "the GOAWAY upstream")
    assert server_errors(hop) == [("GOAWAY", 0, FLOW_CONTROL_ERROR)]
    await client.expect(
        [
            ("HEADERS", 1, [(b":status", b"200")], False),
            ("RST_STREAM", 1, INTERNAL_ERROR),
        ]
    )


async def test_the_server_s_stream_limit_is_honoured_with_more_connections_then_a_queue(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    server = RawServer(greeting=settings({MAX_CONCURRENT_STREAMS: 1}))
    hop = await make_hop({"LINKERD2_PROXY_INBOUND_DISPATCH_TIMEOUT": "10s"}, server)
    client = await hop.client()
    client.send(client.headers(1, request()))
    await client.expect(ok(1))  # the limit is known
    sids = [3 + 2 * i for i in range(9)]
    client.send(*[client.headers(sid, request(f"/keep{sid}")) for sid in sids])
    await wait_until(lambda: len(hop.server.paths) == 9, "eight more requests at the server")
    assert len(server.peers) == 8  # the most connections per endpoint, one stream each
    client.send(rst(3, CANCEL))  # a stream ends: the ninth request takes its place
    await wait_until(lambda: len(hop.server.paths) == 10, "the ninth request at the server")
    assert len(server.peers) == 8
    assert server_peer(hop, b"/keep19")[0] is server_peer(hop, b"/keep3")[0]


async def test_a_request_waiting_for_a_stream_gives_up_after_the_dispatch_timeout(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    server = RawServer(greeting=settings({MAX_CONCURRENT_STREAMS: 1}))
    hop = await make_hop({"LINKERD2_PROXY_INBOUND_DISPATCH_TIMEOUT": "100ms"}, server)
    client = await hop.client()
    client.send(client.headers(1, request()))
    await client.expect(ok(1))
    client.send(*[client.headers(3 + 2 * i, request("/keep")) for i in range(9)])
    await wait_until(lambda: any(s[0] == "HEADERS" and s[1] == 19 for s in client.received), "503")
    port = hop.listener.sockets[0].getsockname()[1]
    reason = f"no HTTP/2 stream to 127.0.0.1:{port}: the server's stream limit is reached"
    await client.expect(
        [
            (
                "HEADERS",
                19,
                [
                    (b":status", b"503"),
                    (b"content-length", b"0"),
                    (b"l5d-proxy-error", reason.encode()),
                ],
                True,
            )
        ]
    )


async def test_a_new_connection_assumes_the_endpoint_s_last_known_stream_limit(
    make_hop: Callable[..., Awaitable[Hop]],
) -> None:
    server = RawServer(greeting=settings({MAX_CONCURRENT_STREAMS: 2}))
    hop = await make_hop(server=server)
    client = await hop.client()
    client.send(client.headers(1, request()))
    await client.expect(ok(1))
    first = server.peers[0]
    first.send(goaway(1, NO_ERROR))
    first.close()
    await wait_until(lambda: not hop.proxy.h2_pool.conns, "the pool to forget the connection")
    # Three requests at once, before any new connection has the server's SETTINGS.
    client.send(*[client.headers(sid, request("/keep")) for sid in (3, 5, 7)])
    await wait_until(lambda: len(hop.server.paths) == 4, "three more requests at the server")
    streams = [sum(1 for p, _ in hop.server.paths if p == id(peer)) for peer in server.peers[1:]]
    assert streams == [2, 1]
