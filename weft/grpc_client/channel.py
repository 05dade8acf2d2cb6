"""gRPC calls to one server on asyncio: one HTTP/2 connection at a time (TLS, or plaintext
with prior knowledge), made on first use and again after it is lost or told to go away.

Callers that find no usable connection share one connection attempt; a failed attempt fails
them all with UNAVAILABLE and the reason (refused, timed out, the server's certificate), and the
next call tries again: back-off belongs to the callers, which know what they are retrying.
A call's deadline covers connecting too; a call that is cancelled or runs out of time resets
its stream, so the server sees it end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator
from typing import cast

from weft.grpc_client.calls import (
    CANCELLED,
    DEADLINE_EXCEEDED,
    INTERNAL,
    MAX_MESSAGE,
    OK,
    UNAVAILABLE,
    CallState,
    RpcError,
    request_fields,
)
from weft.grpc_client.h2 import ClientConnection
from weft.proxy.h2.frames import H2Error, error_name
from weft.proxy.tap.wire import frame


class _Link(asyncio.Protocol):
    """One connection: its transport and its HTTP/2 state."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.h2 = ClientConnection()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.room = asyncio.Event()  # set whenever a stream may have ended

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TLS one is not registered
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            self.h2.receive(data)
        except H2Error as exc:
            self.close(f"{self.peer} broke HTTP/2 ({error_name(exc.code)}): {exc}")
            return
        self.flush()
        self.room.set()

    def eof_received(self) -> bool:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self._forget(f"the connection to {self.peer} was lost{reason}")

    def flush(self) -> None:
        """Write whatever the HTTP/2 state has queued."""
        out = self.h2.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def close(self, reason: str) -> None:
        """GOAWAY (unless one went already), then close; open calls end with UNAVAILABLE and
        ``reason``."""
        self._forget(reason)
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def _forget(self, reason: str) -> None:
        self.lost = True
        for handler in self.h2.close():
            handler.on_lost(reason)
        self.room.set()


class Channel:
    """Calls to ``addr``: over TLS with ``tls`` (the server's certificate checked against
    ``server_name``), else plaintext HTTP/2."""

    def __init__(
        self,
        addr: tuple[str, int],
        tls: ssl.SSLContext | None,
        server_name: str,
        *,
        connect_timeout: float = 10.0,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self.addr = addr
        self.tls = tls
        self.server_name = server_name
        self.peer = f"{server_name} at {addr[0]}:{addr[1]}" if tls else f"{addr[0]}:{addr[1]}"
        self.authority = server_name if tls and server_name else f"{addr[0]}:{addr[1]}"
        self.connect_timeout = connect_timeout
        self.max_message = max_message
        self.closed = False
        self._link: _Link | None = None
        self._links: set[_Link] = set()  # the current one and any still draining
        self._connecting: asyncio.Future[_Link] | None = None

    async def unary(self, method: str, request: bytes, timeout: float) -> bytes:
        """One request, one response; raises :class:`RpcError` (DEADLINE_EXCEEDED after
        ``timeout`` seconds, connecting included)."""
        try:
            async with asyncio.timeout(timeout):
                replies = self._call(method, request, timeout)
                async with contextlib.aclosing(replies):
                    messages = [message async for message in replies]
        except TimeoutError:
            raise RpcError(DEADLINE_EXCEEDED, f"no answer within {timeout:g}s") from None
        if len(messages) != 1:
            raise RpcError(INTERNAL, f"{len(messages)} messages in answer to a unary call")
        return messages[0]

    def server_stream(self, method: str, request: bytes) -> AsyncGenerator[bytes, None]:
        """The messages of a server-streaming call; ends when the server ends it with OK, else
        raises :class:`RpcError`. Leaving it early (or cancelling) cancels the call."""
        return self._call(method, request, None)

    def close(self) -> None:
        """Close every connection; calls still open end with UNAVAILABLE."""
        self.closed = True
        self._link = None
        for link in list(self._links):
            link.close(f"the channel to {self.peer} was closed")
        self._links.clear()

    async def _call(
        self, method: str, request: bytes, timeout: float | None
    ) -> AsyncGenerator[bytes, None]:
        wakeup = asyncio.Event()
        call = CallState(wakeup.set, self.max_message)
        fields = request_fields(method, self.authority, tls=self.tls is not None, timeout=timeout)
        link, sid = await self._open(call, fields, frame(request))
        try:
            while True:
                while call.messages:
                    yield call.messages.popleft()
                if call.status is not None:
                    break
                wakeup.clear()
                await wakeup.wait()
        except (asyncio.CancelledError, GeneratorExit):
            call.fail(CANCELLED, "cancelled")
            raise
        finally:
            link.h2.reset(sid)  # no-op unless the stream is still open: abandoned or failed here
            link.flush()
            link.room.set()
        assert call.status is not None
        code, details = call.status
        if code != OK:
            raise RpcError(code, details)

    async def _open(
        self, call: CallState, fields: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[_Link, int]:
        while True:
            link = await self._connected()  # one that accepts streams
            if link.h2.has_room():
                sid = link.h2.open(call, fields, body)
                link.flush()
                return link, sid
            link.room.clear()  # at the server's MAX_CONCURRENT_STREAMS: wait for one to end
            await link.room.wait()

    async def _connected(self) -> _Link:
        if self.closed:
            raise RpcError(UNAVAILABLE, f"the channel to {self.peer} is closed")
        link = self._link
        if link is not None and not link.lost and link.h2.accepting():
            return link
        if self._connecting is None:
            attempt = asyncio.ensure_future(self._connect())
            attempt.add_done_callback(self._connect_done)
            self._connecting = attempt
        return await asyncio.shield(self._connecting)

    def _connect_done(self, attempt: asyncio.Future[_Link]) -> None:
        self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved: a failure every waiter left behind is not "lost"

    async def _connect(self) -> _Link:
        loop = asyncio.get_running_loop()
        link = _Link(self.peer)
        host, port = self.addr
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.tls is None:
                    await loop.create_connection(lambda: link, host, port)
                else:
                    await loop.create_connection(
                        lambda: link,
                        host,
                        port,
                        ssl=self.tls,
                        server_hostname=self.server_name,
                        ssl_handshake_timeout=self.connect_timeout,
                    )
        except ssl.SSLCertVerificationError as exc:
            detail = exc.verify_message or exc.reason or str(exc)
            raise RpcError(UNAVAILABLE, f"TLS handshake with {self.peer} failed: {detail}") from exc
        except ssl.SSLError as exc:
            detail = exc.reason or str(exc)
            raise RpcError(UNAVAILABLE, f"TLS handshake with {self.peer} failed: {detail}") from exc
        except TimeoutError:
            detail = f"connecting to {self.peer} timed out after {self.connect_timeout:g}s"
            raise RpcError(UNAVAILABLE, detail) from None
        except OSError as exc:
            detail = exc.strerror or str(exc)
            raise RpcError(UNAVAILABLE, f"cannot connect to {self.peer}: {detail}") from exc
        if self.closed:
            link.close(f"the channel to {self.peer} was closed")
            raise RpcError(UNAVAILABLE, f"the channel to {self.peer} is closed")
        self._link = link
        self._links = {other for other in self._links if not other.lost}
        self._links.add(link)
        return link
