"""Opaque TCP: a bidirectional byte copy with half-close and transport-level back-pressure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import cast

from weft.proxy.balance import Load
from weft.proxy.context import ConnContext
from weft.proxy.errors import ProxyError, errno_label, no_endpoints
from weft.proxy.metrics import ConnStats

log = logging.getLogger("weft.proxy.tcp")


class _Half(asyncio.Protocol):
    """One side of a copy: what it reads is written to ``other``."""

    transport: asyncio.Transport
    other: _Half

    def __init__(self, stats: ConnStats) -> None:
        self.stats = stats
        self.eof = False
        self.closed = False
        self.linked = False

    def data_received(self, data: bytes) -> None:
        n = len(data)
        self.stats.read += n
        self.other.stats.written += n
        self.other.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        other = self.other
        if other.eof or other.transport.is_closing():
            self.transport.close()
            other.transport.close()
        else:
            other.transport.write_eof()  # TCP FIN, or TLS close_notify then FIN
        return True  # keep our write side open: the peer may still be sending

    def pause_writing(self) -> None:
        self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        self.other.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.stats.close(errno_label(exc))
        if self.linked and not self.other.closed:
            self.other.transport.close()


class _Upstream(_Half):
    """The dialled side. It is linked to the accepted side as soon as it connects, so what a
    server says first (a greeting) is carried even before the dial's caller resumes."""

    def __init__(self, stats: ConnStats, down: OpaqueConn) -> None:
        super().__init__(stats)
        self.other = down

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        down = self.other
        if down.closed:
            self.transport.close()
            return
        down.other = self
        self.linked = down.linked = True


class OpaqueConn(_Half):
    """The accepted side; dials the upstream and then copies both ways."""

    def __init__(self, ctx: ConnContext, transport: asyncio.Transport) -> None:
        super().__init__(ctx.stats)
        self.ctx = ctx
        self.transport = transport
        self.task: asyncio.Task[None] | None = None
        self.early: list[bytes] = []  # the client's bytes while the upstream is dialled

    def data_received(self, data: bytes) -> None:
        if self.task is None:
            _Half.data_received(self, data)
            return
        # Reading is paused while dialling, but a transport may deliver once more (uvloop
        # starts reading after connection_made, where an opaque port is handed over).
        self.stats.read += len(data)
        self.early.append(data)
        self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.task is None:
            return _Half.eof_received(self)
        self.eof = True  # passed on once the upstream is there
        return True

    def drain(self) -> None:
        # An opaque stream has no request boundary: let it run until the grace period ends.
        pass

    def abort(self) -> None:
        self.transport.abort()
        if self.linked:
            self.other.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ctx.tracker.discard(self)
        super().connection_lost(exc)
        if self.task is not None:
            self.task.cancel()

    async def connect(self, initial: bytes, eof: bool) -> None:
        ctx = self.ctx
        load = None
        try:
            load = await self._pick()
            endpoint = load.endpoint
            upstream = _Upstream(ctx.dst_conn_stats(endpoint), self)
            load.start()
            started = time.monotonic()
            try:
                await ctx.dialer.connect(lambda: upstream, endpoint, ctx.dcfg.connect_timeout)
            except (OSError, TimeoutError) as exc:
                upstream.stats.close(errno_label(exc))
                raise
            now = time.monotonic()
            load.done((now - started) * 1000.0, now)
        except (OSError, TimeoutError, ProxyError) as exc:
            if load is not None and load.pending:
                now = time.monotonic()
                load.done(ctx.dcfg.connect_timeout * 1000.0, now)  # a failed connect is slow
            log.info("opaque connection from %s:%s dropped: %s", *ctx.peer, exc)
            self.transport.close()
            return
        finally:
            self.task = None
        if self.transport.is_closing() or upstream.transport.is_closing():
            upstream.transport.close()
            self.transport.close()
            return
        early, self.early = self.early, []
        data = initial + b"".join(early) if early else initial
        if data:
            upstream.stats.written += len(data)
            upstream.transport.write(data)
        self.transport.resume_reading()
        if eof or self.eof:
            self.eof_received()

    async def _pick(self) -> Load:
        """An endpoint for this connection, waiting up to the dispatch timeout for one."""
        ctx = self.ctx
        logical = ctx.router.logical(None, ctx.target)
        first = logical.waiting()
        if first is not None:  # discovery's first answer (it comes, or times out, promptly)
            await asyncio.shield(first)
        deadline = time.monotonic() + ctx.dcfg.dispatch_timeout
        while True:
            load = logical.pick(ctx.target)
            if load is not None:
                return load
            changed = logical.changed()
            left = deadline - time.monotonic()
            if changed is None or left <= 0:
                raise no_endpoints(logical.name or "this destination")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed, left)


def serve_opaque(
    transport: asyncio.Transport, ctx: ConnContext, initial: bytes, eof: bool = False
) -> None:
    """Take over an accepted connection as opaque TCP."""
    conn = OpaqueConn(ctx, transport)
    transport.set_protocol(conn)
    transport.pause_reading()
    ctx.tracker.add(conn)
    conn.task = asyncio.get_running_loop().create_task(conn.connect(initial, eof))
