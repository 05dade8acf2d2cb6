"""Opaque TCP through a client's outbound proxy and a server's inbound proxy on loopback, in
plaintext and over mTLS: every byte whichever side speaks first, the end of each direction
carried on its own, and connections released once both ends are done."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from harness.loop_errors import no_loop_errors  # noqa: F401 (an autouse fixture)
from harness.proxy_pair import ProxyPair

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0
CONNECTIONS = 60  # per test; the greeting race lost about one connection in ten
AT_ONCE = 20

Addr = tuple[str, int]


class App:
    """A blocking TCP server on its own threads, as an application in a pod would be;
    ``handle(conn)`` serves one connection and closes it."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.handle = handle
        self.sock = socket.create_server(("127.0.0.1", 0))
        host, port = self.sock.getsockname()[:2]
        self.addr: Addr = (host, port)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            self.handle(conn)

    def close(self) -> None:
        """Stop accepting (wakes the accepting thread)."""
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def greet_then_echo(conn: socket.socket) -> None:
    """Server speaks first (MySQL, SMTP...): a greeting on accept, then an echo until EOF."""
    conn.sendall(b"HELLO\r\n")
    while data := conn.recv(65536):
        conn.sendall(data)


def answer_a_line_then_close(conn: socket.socket) -> None:
    """Read one line, answer with one line, close."""
    conn.makefile("rb").readline()
    conn.sendall(b"LINE\n")


def count_until_eof(conn: socket.socket) -> None:
    """Read until the client's EOF, then say how many bytes came, and close."""
    total = 0
    while data := conn.recv(65536):
        total += len(data)
    conn.sendall(f"{total}\n".encode())


@pytest.fixture
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    server = App(request.param)
    yield server
    server.close()


@asynccontextmanager
async def proxied(app: App, mtls: bool, opaque: bool = True) -> AsyncIterator[ProxyPair]:
    """The proxy pair in front of ``app``; ``opaque``: its port skips protocol detection."""
    pair = await ProxyPair(app.addr, mtls=mtls, opaque=opaque).start()
    try:
        yield pair
    finally:
        await pair.close()


async def wait_until(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition`` until it is true; fail with ``what`` after :data:`TIMEOUT`."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def in_batches(count: int, one: Callable[[], object]) -> list[object]:
    """Run ``count`` connections, :data:`AT_ONCE` at a time."""
    results: list[object] = []
    for start in range(0, count, AT_ONCE):
        batch = [one() for _ in range(min(AT_ONCE, count - start))]
        results += await asyncio.gather(*batch)  # type: ignore[call-overload]
    return results


MTLS = pytest.mark.parametrize("mtls", [False, True], ids=["plaintext", "mtls"])


@MTLS
@pytest.mark.parametrize("client_first", [False, True], ids=["server-first", "client-first"])
@pytest.mark.parametrize("app", [greet_then_echo], indirect=True)
async def test_every_byte_arrives_whichever_side_speaks_first(
    app: App, mtls: bool, client_first: bool
) -> None:
    async def one() -> tuple[bytes, bytes]:
        reader, writer = await asyncio.open_connection(*pair.outbound)
        try:
            async with asyncio.timeout(TIMEOUT):
                if client_first:
                    writer.write(b"ping\n")  # at once: while the proxy is still dialling
                    return await reader.readline(), await reader.readline()
                greeting = await reader.readline()  # the server's, sent as it accepted
                writer.write(b"ping\n")
                return greeting, await reader.readline()
        finally:
            writer.close()

    async with proxied(app, mtls) as pair:
        results = await in_batches(CONNECTIONS, one)
    assert results == [(b"HELLO\r\n", b"ping\n")] * CONNECTIONS


@MTLS
@pytest.mark.parametrize("app", [answer_a_line_then_close], indirect=True)
async def test_a_server_that_closes_ends_the_clients_stream(app: App, mtls: bool) -> None:
    async def one() -> bytes:
        reader, writer = await asyncio.open_connection(*pair.outbound)
        try:
            writer.write(b"question\n")
            async with asyncio.timeout(TIMEOUT):
                return await reader.read()  # to EOF
        finally:
            writer.close()

    async with proxied(app, mtls) as pair:
        assert await in_batches(10, one) == [b"LINE\n"] * 10


@MTLS
@pytest.mark.parametrize("app", [count_until_eof], indirect=True)
async def test_a_client_half_close_crosses_and_the_answer_comes_back(app: App, mtls: bool) -> None:
    payload = b"x" * 300_000

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection(*pair.outbound)
        try:
            writer.write(payload)
            writer.write_eof()  # done sending; still listening
            async with asyncio.timeout(TIMEOUT):
                return await reader.read()
        finally:
            writer.close()

    async with proxied(app, mtls) as pair:
        assert await in_batches(10, one) == [b"300000\n"] * 10


@MTLS
@pytest.mark.parametrize("app", [greet_then_echo], indirect=True)
async def test_connections_a_client_closed_are_released(app: App, mtls: bool) -> None:
    async with proxied(app, mtls) as pair:
        writers = []
        for _ in range(5):
            reader, writer = await asyncio.open_connection(*pair.outbound)
            async with asyncio.timeout(TIMEOUT):
                assert await reader.readline() == b"HELLO\r\n"
            writers.append(writer)
        sides = [("outbound", "src"), ("outbound", "dst"), ("inbound", "src"), ("inbound", "dst")]
        assert [pair.open_connections(*side) for side in sides] == [5.0] * 4
        for writer in writers:
            writer.close()  # the echo server ends on EOF; everything closes behind it
        await wait_until(
            lambda: [pair.open_connections(*side) for side in sides] == [0.0] * 4,
            "every proxied connection to close",
        )


def tunnel_then_count(conn: socket.socket) -> None:
    """An HTTP/1 server that accepts a CONNECT (200) or an Upgrade (101), then counts the
    tunnelled bytes until the client's EOF, answers with the count and closes."""
    head = b""
    while b"\r\n\r\n" not in head:
        head += conn.recv(65536)
    head, _, rest = head.partition(b"\r\n\r\n")
    if head.startswith(b"CONNECT "):
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
    else:
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n")
        conn.sendall(b"Upgrade: weft-test\r\n\r\n")
    total = len(rest)
    while data := conn.recv(65536):
        total += len(data)
    conn.sendall(f"{total}\n".encode())


TUNNELS = {
    "connect": b"CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n\r\n",
    "upgrade": b"GET /t HTTP/1.1\r\nHost: t.test\r\nConnection: upgrade\r\n"
    b"Upgrade: weft-test\r\n\r\n",
}


@MTLS
@pytest.mark.parametrize("request_head", TUNNELS.values(), ids=TUNNELS.keys())
@pytest.mark.parametrize("app", [tunnel_then_count], indirect=True)
async def test_an_http1_tunnel_carries_half_close_and_is_released(
    app: App, mtls: bool, request_head: bytes
) -> None:
    async with proxied(app, mtls, opaque=False) as pair:
        reader, writer = await asyncio.open_connection(*pair.outbound)
        try:
            writer.write(request_head)
            async with asyncio.timeout(TIMEOUT):
                status = await reader.readuntil(b"\r\n\r\n")
                assert status.split(b" ")[1] in (b"200", b"101"), status
                writer.write(b"y" * 100_000)
                writer.write_eof()
                assert await reader.read() == b"100000\n"
        finally:
            writer.close()
        sides = [("outbound", "src"), ("outbound", "dst"), ("inbound", "src"), ("inbound", "dst")]
        await wait_until(
            lambda: [pair.open_connections(*side) for side in sides] == [0.0] * 4,
            "every proxied connection to close",
        )
