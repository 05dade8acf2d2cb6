"""The data plane's TLS transport over real loopback sockets: the handshake and its failures,
half-close in either direction, and flow control that holds data and the end back in order."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from harness.proxy_pair import CLIENT_ID, SERVER_ID, issued_identity
from weft.identity import trust
from weft.identity.client import LocalIdentity
from weft.proxy.tls_transport import TlsTransport, accept_tls, connect_tls

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0


@dataclass
class Recorder(asyncio.Protocol):
    """Records what a transport delivers; ``eof_keeps_open`` is what ``eof_received`` says."""

    eof_keeps_open: bool = True
    transport: TlsTransport | None = None
    data: bytearray = field(default_factory=bytearray)
    events: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, TlsTransport)
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        assert "eof" not in self.events, "data after the end"
        self.data += data
        self.changed.set()

    def eof_received(self) -> bool:
        self.events.append("eof")
        self.changed.set()
        return self.eof_keeps_open

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        self.lost.set()
        self.changed.set()

    async def until(self, what: str, check: object) -> None:
        """Wait (bounded) until ``check()`` is true."""
        assert callable(check)
        async with asyncio.timeout(TIMEOUT):
            while not check():
                self.changed.clear()
                await self.changed.wait()

    @property
    def tls(self) -> TlsTransport:
        assert self.transport is not None
        return self.transport


@dataclass
class Ends:
    client: Recorder
    server: Recorder


@pytest.fixture(scope="module")
def identities() -> tuple[LocalIdentity, LocalIdentity]:
    material = trust.generate_trust(
        "weft", "cluster.local", now=datetime.now(UTC) - timedelta(minutes=1)
    )
    return issued_identity(material, CLIENT_ID), issued_identity(material, SERVER_ID)


async def handshake(
    identities: tuple[LocalIdentity, LocalIdentity],
    server_name: str,
    client: Recorder,
    server: Recorder,
) -> tuple[object, object]:
    """Dial and accept a loopback TCP connection with TLS; what each end's handshake gave."""
    client_id, server_id = identities
    assert client_id.current is not None and server_id.current is not None
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        client_sock = socket.socket()
        client_sock.setblocking(False)
        await loop.sock_connect(client_sock, listener.getsockname())
        dial = loop.create_task(
            connect_tls(lambda: client, client_sock, client_id.current.client, server_name)
        )
        sock, _ = await loop.sock_accept(listener)
        accepted = loop.create_task(accept_tls(lambda: server, sock, server_id.current.server))
        async with asyncio.timeout(TIMEOUT):
            return await asyncio.gather(dial, accepted, return_exceptions=True)
    finally:
        listener.close()


async def connect(
    identities: tuple[LocalIdentity, LocalIdentity],
    client: Recorder | None = None,
    server: Recorder | None = None,
) -> Ends:
    """A client and a server TLS transport over a loopback TCP connection."""
    ends = Ends(client or Recorder(), server or Recorder())
    for result in await handshake(identities, SERVER_ID, ends.client, ends.server):
        if isinstance(result, BaseException):
            raise result
    return ends


@pytest.fixture
async def ends(identities: tuple[LocalIdentity, LocalIdentity]) -> AsyncIterator[Ends]:
    pair = await connect(identities)
    yield pair
    pair.client.tls.abort()
    pair.server.tls.abort()


async def test_the_handshake_verifies_both_identities(ends: Ends) -> None:
    for end, peer in ((ends.client, SERVER_ID), (ends.server, CLIENT_ID)):
        ssl_object = end.tls.get_extra_info("ssl_object")
        assert ssl_object.version() == "TLSv1.3"
        san = dict(ssl_object.getpeercert()["subjectAltName"])
        assert san["DNS"] == peer
        assert end.tls.get_extra_info("peername")[0] == "127.0.0.1"
        assert end.events == ["made"]


async def test_a_wrong_server_name_fails_the_handshake_on_both_ends(
    identities: tuple[LocalIdentity, LocalIdentity],
) -> None:
    client, server = Recorder(), Recorder()
    other = "other.test.serviceaccount.identity.weft.cluster.local"
    dialled, accepted = await handshake(identities, other, client, server)
    assert isinstance(dialled, ssl.SSLCertVerificationError), dialled
    assert "Hostname mismatch" in dialled.verify_message
    assert isinstance(accepted, ssl.SSLError), accepted  # the client's alert
    assert client.events == server.events == []  # no protocol ever saw the connection


async def test_bytes_and_half_close_in_both_directions(ends: Ends) -> None:
    big = bytes(range(256)) * 20_000  # 5 MB: many records, back-pressure on the way
    ends.client.tls.write(big)
    ends.client.tls.write_eof()
    await ends.server.until("the client's bytes and end", lambda: "eof" in ends.server.events)
    assert bytes(ends.server.data) == big
    # The client's end does not end the server's direction.
    ends.server.tls.write(b"answer after your close_notify")
    await ends.client.until("the answer", lambda: ends.client.data)
    assert ends.client.events == ["made"]
    ends.server.tls.write_eof()
    await ends.client.until("the server's end", lambda: "eof" in ends.client.events)
    assert bytes(ends.client.data) == b"answer after your close_notify"
    ends.client.tls.close()
    ends.server.tls.close()
    await ends.client.until("lost", ends.client.lost.is_set)
    await ends.server.until("lost", ends.server.lost.is_set)


async def test_paused_reading_holds_data_and_the_end_in_order(ends: Ends) -> None:
    server = ends.server
    server.tls.pause_reading()
    assert not server.tls.is_reading()
    ends.client.tls.write(b"a" * 100_000)
    ends.client.tls.write_eof()
    # Sending our own close_notify while the peer's records wait unread must lose none.
    server.tls.write(b"bye")
    server.tls.write_eof()
    await ends.client.until("the server's end", lambda: "eof" in ends.client.events)
    assert bytes(ends.client.data) == b"bye"
    assert server.data == b"" and server.events == ["made"]
    server.tls.resume_reading()
    await server.until("the client's end", lambda: "eof" in server.events)
    assert bytes(server.data) == b"a" * 100_000


async def test_eof_received_false_closes_the_connection(
    identities: tuple[LocalIdentity, LocalIdentity],
) -> None:
    ends = await connect(identities, server=Recorder(eof_keeps_open=False))
    ends.client.tls.write(b"last words")
    ends.client.tls.write_eof()
    await ends.server.until("lost", ends.server.lost.is_set)
    assert ends.server.events == ["made", "eof", "lost"]
    assert bytes(ends.server.data) == b"last words"
    await ends.client.until("the server's end", lambda: "eof" in ends.client.events)
    ends.client.tls.close()


async def test_a_tcp_fin_without_close_notify_still_ends_the_stream(ends: Ends) -> None:
    ends.client.tls.write(b"truncated")
    fd = ends.client.tls.get_extra_info("socket").fileno()
    with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as raw:  # a duplicate
        raw.shutdown(socket.SHUT_WR)  # FIN, no close_notify
    await ends.server.until("the end", lambda: "eof" in ends.server.events)
    assert bytes(ends.server.data) == b"truncated"
