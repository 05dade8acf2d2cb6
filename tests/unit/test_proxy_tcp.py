"""Opaque TCP through a client's outbound proxy and a server's inbound proxy on loopback, in
plaintext and over mTLS: every byte arrives, whichever side speaks first."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from tests.proxy_pair import ProxyPair

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0
CONNECTIONS = 60  # per test; the greeting race lost about one connection in ten
AT_ONCE = 20

Addr = tuple[str, int]


@pytest.fixture(autouse=True)
async def no_loop_errors() -> AsyncIterator[None]:
    """Fail a test if any callback raised (the loop would only log it)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield
    loop.set_exception_handler(None)
    assert not errors


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


@pytest.fixture
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    server = App(request.param)
    yield server
    server.close()


@asynccontextmanager
async def proxied(app: App, mtls: bool) -> AsyncIterator[ProxyPair]:
    pair = await ProxyPair(app.addr, mtls=mtls, opaque=True).start()
    try:
        yield pair
    finally:
        await pair.close()


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
