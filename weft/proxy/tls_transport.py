"""TLS over a TCP transport that carries half-close, for the data plane's mTLS.

asyncio's TLS transports (uvloop's too) cannot half-close: they have no ``write_eof``, and a
close_notify from the peer shuts the whole connection down. A proxy has to carry each
direction's end on its own: a server that writes a line and closes, a client that half-closes
and waits for the answer. TLS 1.3 allows exactly that (RFC 8446 §6.1: close_notify ends one
direction; the other may go on), and it is what linkerd2-proxy does on the wire. So here:

- ``write_eof()`` sends close_notify after the last byte, then a TCP FIN; reading goes on;
- the peer's close_notify (or a FIN without one) is ``eof_received()``; writing goes on.

The cryptography is the ``ssl`` module's (OpenSSL through an ``SSLObject`` over memory BIOs);
this module only moves bytes between it, the TCP transport and the protocol above.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

log = logging.getLogger("weft.proxy.tls")

READ_SIZE = 65536  # most plaintext bytes taken from the TLS object at a time


class TlsTransport(asyncio.Transport):
    """The protocol's transport for one TLS connection; its TCP side is :class:`_Wire`.

    The protocol's ``connection_made`` is called once the handshake has completed (before any
    data), then ``handshake`` completes; a failed handshake sets it to the error instead.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        protocol: asyncio.BaseProtocol,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        super().__init__()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._context = context
        self._protocol: Any = protocol
        self._raw: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connected = False  # the handshake completed and the protocol knows
        self._paused = False  # the protocol asked for no data
        self._held: list[bytes] = []  # plaintext read early (before a close_notify went out)
        self._fin = False  # the TCP connection's read side has ended
        self._eof_in = False  # the peer's direction has ended (delivered or held)
        self._eof_delivered = False
        self._eof_out = False  # close_notify sent
        self._closing = False
        self._error: Exception | None = None

    def wire(self) -> _Wire:
        """The protocol for the TCP transport underneath (``loop.create_connection`` factory)."""
        return _Wire(self)

    # -- from the TCP transport -----------------------------------------------------------

    def _made(self, raw: asyncio.Transport) -> None:
        self._raw = raw
        self._step_handshake()

    def _data(self, data: bytes) -> None:
        self._incoming.write(data)
        if self._connected:
            self._read()
        elif not self.handshake.done():
            self._step_handshake()

    def _raw_eof(self) -> None:
        """A FIN: after the peer's close_notify that is expected; before it, the end anyway."""
        if not self._connected:
            self._fail(ConnectionResetError("connection closed during the TLS handshake"))
            return
        self._fin = True
        self._read()

    def _lost(self, exc: Exception | None) -> None:
        self._closing = True
        exc = exc or self._error
        if self._connected:
            self._connected = False
            self._protocol.connection_lost(exc)
        else:
            self._fail(exc or ConnectionResetError("connection closed during the TLS handshake"))

    # -- the handshake --------------------------------------------------------------------

    def _step_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:  # a refused certificate too (SSLCertVerificationError)
            self._flush()  # the alert that says why
            self._fail(exc)
            return
        self._flush()
        self._connected = True
        if not self.handshake.done():
            self.handshake.set_result(None)
        self._protocol.connection_made(self)
        self._read()  # what came with the handshake's last flight

    def _fail(self, exc: BaseException) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc)
            self.handshake.exception()  # retrieved here: the caller may have gone (timeout)
        if self._raw is not None:
            self._raw.abort()

    # -- reading --------------------------------------------------------------------------

    def _read(self) -> None:
        """Hand the protocol what can be decrypted (in one piece), unless it paused."""
        if self._held and not self._deliver_held():
            return
        if not self._eof_in and not self._paused and not self._closing:
            tls = self._ssl
            read = tls.read
            incoming = self._incoming
            chunks = []
            try:
                while True:
                    chunk = read(READ_SIZE)
                    if not chunk:  # close_notify
                        self._eof_in = True
                        break
                    chunks.append(chunk)
                    if not incoming.pending and not tls.pending() and not self._fin:
                        break  # all decrypted: spares the SSLWantReadError the next read raises
            except ssl.SSLWantReadError:
                if self._fin:
                    log.debug("TCP FIN without close_notify: taken as the end of the stream")
                    self._eof_in = True
            except ssl.SSLZeroReturnError:
                self._eof_in = True
            except ssl.SSLError as exc:
                self._error = exc
                self.abort()
                return
            if chunks:
                self._protocol.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if self._eof_in:
            self._deliver_eof()
        if self._outgoing.pending:  # post-handshake messages (a KeyUpdate's answer)
            self._flush()

    def _deliver_held(self) -> bool:
        """Hand over plaintext read ahead; False if the protocol paused before the end."""
        while self._held:
            if self._paused or self._closing:
                return False
            self._protocol.data_received(self._held.pop(0))
        return True

    def _deliver_eof(self) -> None:
        if self._eof_delivered or self._paused or self._held or self._closing:
            return
        self._eof_delivered = True
        if not self._protocol.eof_received():
            self.close()

    def _read_ahead(self) -> None:
        """Take every whole record out of the incoming buffer and hold its plaintext.

        OpenSSL fails a shutdown that meets application data still waiting to be read, so this
        runs before close_notify is sent; what it holds is delivered as reading allows.
        """
        while not self._eof_in:
            try:
                chunk = self._ssl.read(READ_SIZE)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                chunk = b""
            except ssl.SSLError:
                return
            if not chunk:
                self._eof_in = True
                return
            self._held.append(chunk)

    # -- writing --------------------------------------------------------------------------

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self._raw is not None:
            self._raw.write(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it (ignored once closing or after :meth:`write_eof`)."""
        if not data or self._closing or self._eof_out:
            return
        self._ssl.write(data)
        raw = self._raw
        if raw is not None:
            raw.write(self._outgoing.read())

    def can_write_eof(self) -> bool:
        """Always: the end of this direction is a close_notify."""
        return True

    def write_eof(self) -> None:
        """Send close_notify after what was written, then a TCP FIN; reading goes on."""
        if self._eof_out or self._closing or self._raw is None:
            return
        self._send_close_notify()
        self._raw.write_eof()

    def _send_close_notify(self) -> None:
        self._eof_out = True
        self._read_ahead()
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass  # ours is out; the peer's comes when it is done
        except ssl.SSLError as exc:
            log.debug("TLS shutdown: %s", exc)
        self._flush()

    # -- the rest of the transport interface ----------------------------------------------

    def close(self) -> None:
        """Send close_notify (unless sent), then close the TCP connection once flushed."""
        if self._closing:
            return
        if not self._eof_out and self._connected:
            self._send_close_notify()
        self._closing = True
        if self._raw is not None:
            self._raw.close()

    def abort(self) -> None:
        """Close the TCP connection at once."""
        self._closing = True
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        """Whether :meth:`close` or :meth:`abort` was called, or the connection is gone."""
        return self._closing

    def pause_reading(self) -> None:
        """Deliver nothing until :meth:`resume_reading`."""
        if self._paused:
            return
        self._paused = True
        if self._raw is not None:
            self._raw.pause_reading()

    def resume_reading(self) -> None:
        """Deliver again, starting with what is already decrypted or buffered."""
        if not self._paused:
            return
        self._paused = False
        if self._raw is not None and not self._closing:
            self._raw.resume_reading()
            asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        if not self._paused and self._connected and not self._closing:
            self._read()

    def is_reading(self) -> bool:
        """Whether data is delivered."""
        return not self._paused and not self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Deliver to ``protocol`` from now on."""
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol data is delivered to."""
        return self._protocol  # type: ignore[no-any-return]

    def get_write_buffer_size(self) -> int:
        """Encrypted bytes the TCP transport still holds."""
        return self._raw.get_write_buffer_size() if self._raw is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Flow-control limits of the TCP transport's buffer."""
        if self._raw is not None:
            self._raw.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``ssl_object``, ``peercert``, ``sslcontext``, ``cipher``, else the TCP transport's."""
        if name == "ssl_object":
            return self._ssl
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "sslcontext":
            return self._context
        if name == "cipher":
            return self._ssl.cipher()
        if self._raw is None:
            return default
        return self._raw.get_extra_info(name, default)


class _Wire(asyncio.Protocol):
    """The TCP transport's protocol: passes everything to its :class:`TlsTransport`."""

    def __init__(self, tls: TlsTransport) -> None:
        self.tls = tls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tls._made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.tls._data(data)

    def eof_received(self) -> bool:
        self.tls._raw_eof()
        return True  # our direction stays open until the protocol ends it

    def connection_lost(self, exc: Exception | None) -> None:
        self.tls._lost(exc)

    def pause_writing(self) -> None:
        if self.tls._connected:
            self.tls._protocol.pause_writing()

    def resume_writing(self) -> None:
        if self.tls._connected:
            self.tls._protocol.resume_writing()


async def connect_tls(
    factory: Callable[[], asyncio.BaseProtocol],
    sock: socket.socket,
    context: ssl.SSLContext,
    server_hostname: str,
) -> TlsTransport:
    """Complete a client handshake on a connected socket; ``factory()``'s protocol gets the
    connection. Cancelling (a timeout) aborts it."""
    loop = asyncio.get_running_loop()
    tls = TlsTransport(context, factory(), server_side=False, server_hostname=server_hostname)
    await loop.create_connection(tls.wire, sock=sock)
    await _handshaken(tls)
    return tls


async def accept_tls(
    factory: Callable[[], asyncio.BaseProtocol], sock: socket.socket, context: ssl.SSLContext
) -> TlsTransport:
    """Complete a server handshake on an accepted socket; ``factory()``'s protocol gets it."""
    loop = asyncio.get_running_loop()
    tls = TlsTransport(context, factory(), server_side=True)
    await loop.connect_accepted_socket(tls.wire, sock)
    await _handshaken(tls)
    return tls


async def _handshaken(tls: TlsTransport) -> None:
    try:
        await asyncio.shield(tls.handshake)
    except BaseException:
        tls.abort()
        raise
