"""gRPC over HTTP/2 for one client call (no I/O): the request head, the response's messages and
its status, as the gRPC protocol (PROTOCOL-HTTP2.md) and its status-mapping rules say."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from weft.proxy.h2 import frames
from weft.proxy.h2.hpack_codec import Field
from weft.proxy.tap.wire import FrameError, MessageReader

OK = 0
CANCELLED = 1
UNKNOWN = 2
DEADLINE_EXCEEDED = 4
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

CODE_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

# A response whose HTTP status is not 200 has the gRPC status its HTTP status maps to.
_HTTP_STATUS = {
    400: INTERNAL,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: UNIMPLEMENTED,
    429: UNAVAILABLE,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
}
# A stream reset by the server ends with the gRPC status its HTTP/2 error code maps to.
_RESET = {
    frames.REFUSED_STREAM: UNAVAILABLE,
    frames.CANCEL: CANCELLED,
    frames.ENHANCE_YOUR_CALM: RESOURCE_EXHAUSTED,
    0xC: PERMISSION_DENIED,  # INADEQUATE_SECURITY
}
MAX_MESSAGE = 4 * 1024 * 1024  # gRPC's default limit on a received message


def code_name(code: int) -> str:
    """``UNAVAILABLE`` for 14; ``CODE_99`` for codes gRPC does not define."""
    return CODE_NAMES[code] if 0 <= code < len(CODE_NAMES) else f"CODE_{code}"


class RpcError(Exception):
    """A call that ended with a status other than OK."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(f"{code_name(code)}: {details}")
        self.code = code
        self.details = details

    @property
    def code_name(self) -> str:
        """The status code's name, as gRPC spells it."""
        return code_name(self.code)


def timeout_value(seconds: float) -> bytes:
    """``grpc-timeout`` for ``seconds``: whole milliseconds (rounded up), or seconds when long."""
    millis = max(1, math.ceil(seconds * 1000))
    if millis < 10**8:
        return b"%dm" % millis
    return b"%dS" % min(math.ceil(seconds), 10**8 - 1)


def request_fields(
    method: str, authority: str, *, tls: bool, timeout: float | None = None
) -> list[Field]:
    """The request head of a call to ``method`` (``/package.Service/Method``)."""
    fields = [
        (b":method", b"POST"),
        (b":scheme", b"https" if tls else b"http"),
        (b":path", method.encode()),
        (b":authority", authority.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (b"user-agent", b"weft-proxy"),
    ]
    if timeout is not None:
        fields.append((b"grpc-timeout", timeout_value(timeout)))
    return fields


def _status_of(fields: list[Field]) -> tuple[int, str]:
    """``grpc-status`` and the percent-decoded ``grpc-message`` of trailers (or a trailers-only
    response); UNKNOWN when the status is missing or not a number."""
    code: int | None = None
    message = b""
    for name, value in fields:
        if name == b"grpc-status":
            code = int(value) if value.isdigit() else None
            if code is None:
                return UNKNOWN, f"grpc-status {value.decode('latin-1')!r} is not a number"
        elif name == b"grpc-message":
            message = unquote_to_bytes(value)
    if code is None:
        return UNKNOWN, "the response has no grpc-status"
    return code, message.decode("utf-8", "replace")


class CallState:
    """One call's response as it arrives: messages, then a status. ``wake`` is called whenever
    there is something new for the caller (a message, or the end)."""

    def __init__(self, wake: Callable[[], None], max_message: int = MAX_MESSAGE) -> None:
        self.wake = wake
        self.reader = MessageReader(max_message)
        self.messages: deque[bytes] = deque()
        self.status: tuple[int, str] | None = None  # set once the call has ended
        self.head_seen = False
        self.reset_by_us = False  # the channel must reset the stream: the call failed here

    def _end(self, code: int, details: str, reset: bool = False) -> None:
        if self.status is None:
            self.status = (code, details)
            self.reset_by_us = reset
            self.wake()

    def on_headers(self, fields: list[Field], end: bool) -> None:
        """The response head, or its trailers."""
        if self.head_seen:
            if not end:
                self._end(INTERNAL, "a second header block that does not end the stream", True)
            else:
                self._trailers(fields)
            return
        self.head_seen = True
        status = next((v for n, v in fields if n == b":status"), b"")
        if status != b"200":
            http = int(status) if status.isdigit() else 0
            code = _HTTP_STATUS.get(http, UNKNOWN)
            self._end(code, f"HTTP status {status.decode('latin-1') or 'missing'}", not end)
            return
        ctype = next((v for n, v in fields if n == b"content-type"), b"")
        if not ctype.startswith(b"application/grpc"):
            detail = f"content-type {ctype.decode('latin-1')!r} is not gRPC"
            self._end(UNKNOWN, detail, not end)
            return
        if end:  # trailers-only
            self._trailers(fields)

    def _trailers(self, fields: list[Field]) -> None:
        code, message = _status_of(fields)
        if code == OK and self.reader.buf:
            self._end(INTERNAL, "the stream ended inside a message")
        else:
            self._end(code, message)

    def on_data(self, data: bytes, end: bool) -> None:
        """Body bytes: complete messages are queued."""
        if self.status is not None:
            return
        if not self.head_seen:
            self._end(INTERNAL, "DATA before the response head", True)
            return
        try:
            messages = self.reader.feed(data)
        except FrameError as exc:
            self._end(INTERNAL, str(exc), True)
            return
        if messages:
            self.messages.extend(messages)
            self.wake()
        if end:
            self._end(INTERNAL, "the server ended the stream without a status")

    def on_reset(self, code: int) -> None:
        """RST_STREAM from the server (or ours after a stream error)."""
        name = frames.error_name(code)
        self._end(_RESET.get(code, INTERNAL), f"the stream was reset ({name})")

    def on_lost(self, reason: str) -> None:
        """The connection ended first."""
        self._end(UNAVAILABLE, reason)

    def fail(self, code: int, details: str) -> None:
        """End the call here (deadline, cancellation): the channel resets the stream."""
        self._end(code, details, True)
