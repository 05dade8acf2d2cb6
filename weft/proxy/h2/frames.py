"""HTTP/2 frames (RFC 9113 §4, §6): a callback-driven reader and byte builders, no I/O."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from mypy_extensions import mypyc_attr

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

_ERROR_NAMES = (
    "no_error",
    "protocol_error",
    "internal_error",
    "flow_control_error",
    "settings_timeout",
    "stream_closed",
    "frame_size_error",
    "refused_stream",
    "cancel",
    "compression_error",
    "connect_error",
    "enhance_your_calm",
    "inadequate_security",
    "http_1_1_required",
)

_ERROR_CODES = {name: code for code, name in enumerate(_ERROR_NAMES)}

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65535
MAX_WINDOW = 2**31 - 1
DEFAULT_MAX_FRAME = 16384
MAX_MAX_FRAME = 2**24 - 1
MAX_STREAM_ID = 2**31 - 1

# length (24 bits, as a byte and a 16-bit half), type, flags, stream id (with the reserved bit).
FRAME_HEADER = struct.Struct(">BHBBL")
_U32 = struct.Struct(">L")
_U32_PAIR = struct.Struct(">LL")
_SETTING = struct.Struct(">HL")


def error_code(name: str) -> int | None:
    """The HTTP/2 error code :func:`error_name` gave ``name`` (None for other errors)."""
    if name.startswith("unknown_error_"):
        number = name[len("unknown_error_") :]
        return int(number) if number.isdigit() else None
    return _ERROR_CODES.get(name)


def error_name(code: int) -> str:
    """The lower-case name of an HTTP/2 error code (``cancel``), as metrics label it."""
    if 0 <= code < len(_ERROR_NAMES):
        return _ERROR_NAMES[code]
    return f"unknown_error_{code}"


class H2Error(Exception):
    """A connection error: the peer broke the protocol and gets ``GOAWAY(code)``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@mypyc_attr(allow_interpreted_subclasses=True)  # tests subclass it to record what it reads
class FrameReader:
    """Splits a byte stream into frames and calls one ``on_*`` hook per meaningful frame.

    Frame-level rules are checked here (sizes, stream 0 vs non-zero, padding, CONTINUATION
    sequencing, setting ranges, a stream depending on itself); violations raise :class:`H2Error`.
    DATA payloads are handed on as memoryviews of the received bytes, without copying. PRIORITY
    and unknown frames are skipped. With ``expect_settings`` the first frame must be a SETTINGS
    frame, as a connection preface's is (RFC 9113 §3.4).
    """

    def __init__(
        self,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        max_block: int = 65536,
        expect_settings: bool = False,
    ) -> None:
        self.max_frame_size = max_frame_size
        self.max_block = max_block
        self.expect_settings = expect_settings
        self._pending = bytearray()
        self._need = 0
        self._cont_sid = 0
        self._cont_end = False
        self._cont_error = 0
        self._cont_block = bytearray()

    # Hooks, overridden by the connection.
    def on_data(self, sid: int, payload: memoryview, end: bool, flow_len: int) -> None:
        """A DATA frame; ``flow_len`` is what it costs in flow control (padding included)."""

    def on_headers(self, sid: int, block: bytes, end: bool) -> None:
        """A complete header block (HEADERS plus any CONTINUATION frames)."""

    def on_headers_error(self, sid: int, block: bytes, code: int) -> None:
        """A complete header block whose HEADERS frame is a stream error ``code`` (the stream
        depends on itself): the block must still be decoded (RFC 9113 §4.3)."""

    def on_rst(self, sid: int, code: int) -> None:
        """RST_STREAM."""

    def on_settings(self, settings: list[tuple[int, int]]) -> None:
        """A SETTINGS frame (not an ACK), its values already range-checked."""

    def on_ping(self, opaque: bytes) -> None:
        """A PING that wants an ACK."""

    def on_goaway(self, last_sid: int, code: int) -> None:
        """GOAWAY."""

    def on_window_update(self, sid: int, increment: int) -> None:
        """WINDOW_UPDATE with a non-zero increment."""

    def on_stream_error(self, sid: int, code: int) -> None:
        """A frame that is an error for stream ``sid`` only (RFC 9113 §5.4.2)."""

    def feed(self, data: bytes) -> None:
        """Consume ``data``; hooks run for every complete frame, the rest is kept for later."""
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._need:
                return
            data = bytes(pending)
            pending.clear()
        n = len(data)
        if n < 9:
            pending += data
            self._need = 9
            return
        if self.expect_settings:
            if data[3] != SETTINGS or data[4] & ACK:
                raise H2Error(PROTOCOL_ERROR, "the connection preface is not a SETTINGS frame")
            self.expect_settings = False
        view = memoryview(data)
        unpack = FRAME_HEADER.unpack_from
        max_frame = self.max_frame_size
        pos = 0
        while n - pos >= 9:
            hi, lo, ftype, flags, sid = unpack(data, pos)
            length = (hi << 16) | lo
            if length > max_frame:
                raise H2Error(FRAME_SIZE_ERROR, f"frame of {length} bytes exceeds {max_frame}")
            start = pos + 9
            end = start + length
            if end > n:
                break
            sid &= MAX_STREAM_ID
            pos = end
            if self._cont_sid and ftype != CONTINUATION:
                raise H2Error(PROTOCOL_ERROR, "header block interrupted")
            if ftype == DATA:
                if sid == 0:
                    raise H2Error(PROTOCOL_ERROR, "DATA on stream 0")
                if flags & PADDED:
                    pad = data[start] if length else 256
                    if pad >= length:
                        raise H2Error(PROTOCOL_ERROR, "padding exceeds DATA payload")
                    self.on_data(sid, view[start + 1 : end - pad], bool(flags & END_STREAM), length)
                else:
                    self.on_data(sid, view[start:end], bool(flags & END_STREAM), length)
            elif ftype == HEADERS:
                self._headers(sid, flags, view[start:end])
            else:
                self._control(ftype, flags, sid, view[start:end])
        if pos < n:
            pending += view[pos:]
            self._need = (
                9 if n - pos < 9 else 9 + ((data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2])
            )

    def _headers(self, sid: int, flags: int, payload: memoryview) -> None:
        if sid == 0:
            raise H2Error(PROTOCOL_ERROR, "HEADERS on stream 0")
        start = 0
        end = len(payload)
        if flags & PADDED:
            if not end:
                raise H2Error(PROTOCOL_ERROR, "PADDED HEADERS without pad length")
            end -= payload[0]
            start = 1
        if flags & PRIORITY_FLAG:
            start += 5
            if end >= start and _U32.unpack_from(payload, start - 5)[0] & MAX_STREAM_ID == sid:
                self._depends_on_itself(sid, flags, payload[start:end])
                return
        if end < start:
            raise H2Error(PROTOCOL_ERROR, "HEADERS padding or priority exceeds payload")
        block = payload[start:end]
        if flags & END_HEADERS:
            self.on_headers(sid, bytes(block), bool(flags & END_STREAM))
            return
        self._cont_sid = sid
        self._cont_end = bool(flags & END_STREAM)
        self._cont_error = 0
        self._cont_block = bytearray(block)

    def _depends_on_itself(self, sid: int, flags: int, block: memoryview) -> None:
        """HEADERS whose stream depends on itself: a stream error PROTOCOL_ERROR (RFC 9113
        §5.3.1), once its header block is complete."""
        if flags & END_HEADERS:
            self.on_headers_error(sid, bytes(block), PROTOCOL_ERROR)
            return
        self._cont_sid = sid
        self._cont_end = bool(flags & END_STREAM)
        self._cont_error = PROTOCOL_ERROR
        self._cont_block = bytearray(block)

    def _control(self, ftype: int, flags: int, sid: int, payload: memoryview) -> None:
        length = len(payload)
        if ftype == CONTINUATION:
            if not self._cont_sid or sid != self._cont_sid:
                raise H2Error(PROTOCOL_ERROR, "unexpected CONTINUATION")
            block = self._cont_block
            block += payload
            if len(block) > self.max_block:
                raise H2Error(ENHANCE_YOUR_CALM, "header block too large")
            if flags & END_HEADERS:
                self._cont_sid = 0
                self._cont_block = bytearray()
                if self._cont_error:
                    self.on_headers_error(sid, bytes(block), self._cont_error)
                else:
                    self.on_headers(sid, bytes(block), self._cont_end)
        elif ftype == WINDOW_UPDATE:
            if length != 4:
                raise H2Error(FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
            increment = _U32.unpack(payload)[0] & MAX_WINDOW
            if increment:
                self.on_window_update(sid, increment)
            elif sid:
                self.on_stream_error(sid, PROTOCOL_ERROR)
            else:
                raise H2Error(PROTOCOL_ERROR, "zero WINDOW_UPDATE on the connection")
        elif ftype == SETTINGS:
            self._settings(flags, sid, payload)
        elif ftype == PING:
            if sid:
                raise H2Error(PROTOCOL_ERROR, "PING on a stream")
            if length != 8:
                raise H2Error(FRAME_SIZE_ERROR, "PING length")
            if not flags & ACK:
                self.on_ping(bytes(payload))
        elif ftype == RST_STREAM:
            if not sid:
                raise H2Error(PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if length != 4:
                raise H2Error(FRAME_SIZE_ERROR, "RST_STREAM length")
            self.on_rst(sid, _U32.unpack(payload)[0])
        elif ftype == GOAWAY:
            if sid:
                raise H2Error(PROTOCOL_ERROR, "GOAWAY on a stream")
            if length < 8:
                raise H2Error(FRAME_SIZE_ERROR, "GOAWAY length")
            last, code = _U32_PAIR.unpack_from(payload)
            self.on_goaway(last & MAX_STREAM_ID, code)
        elif ftype == PRIORITY:
            if not sid:
                raise H2Error(PROTOCOL_ERROR, "PRIORITY on stream 0")
            if length != 5:
                self.on_stream_error(sid, FRAME_SIZE_ERROR)
            elif _U32.unpack_from(payload)[0] & MAX_STREAM_ID == sid:
                self.on_stream_error(sid, PROTOCOL_ERROR)  # depends on itself
        elif ftype == PUSH_PROMISE:
            raise H2Error(PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled")

    def _settings(self, flags: int, sid: int, payload: memoryview) -> None:
        if sid:
            raise H2Error(PROTOCOL_ERROR, "SETTINGS on a stream")
        length = len(payload)
        if flags & ACK:
            if length:
                raise H2Error(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if length % 6:
            raise H2Error(FRAME_SIZE_ERROR, "SETTINGS length")
        settings = [_SETTING.unpack_from(payload, i) for i in range(0, length, 6)]
        for key, value in settings:
            if key == SETTINGS_ENABLE_PUSH and value > 1:
                raise H2Error(PROTOCOL_ERROR, "ENABLE_PUSH must be 0 or 1")
            if key == SETTINGS_INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
                raise H2Error(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large")
            if key == SETTINGS_MAX_FRAME_SIZE and not DEFAULT_MAX_FRAME <= value <= MAX_MAX_FRAME:
                raise H2Error(PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
        self.on_settings(settings)


def frame_header(length: int, ftype: int, flags: int, sid: int) -> bytes:
    """The 9-byte header of a frame."""
    return FRAME_HEADER.pack(length >> 16, length & 0xFFFF, ftype, flags, sid)


def headers_frames(sid: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """HEADERS (plus CONTINUATION frames when ``block`` exceeds ``max_frame``)."""
    flags = END_STREAM if end_stream else 0
    n = len(block)
    if n <= max_frame:
        return FRAME_HEADER.pack(n >> 16, n & 0xFFFF, HEADERS, flags | END_HEADERS, sid) + block
    parts = [frame_header(max_frame, HEADERS, flags, sid), block[:max_frame]]
    for pos in range(max_frame, n, max_frame):
        chunk = block[pos : pos + max_frame]
        last = pos + max_frame >= n
        parts.append(frame_header(len(chunk), CONTINUATION, END_HEADERS if last else 0, sid))
        parts.append(chunk)
    return b"".join(parts)


def data_frame(sid: int, payload: bytes, end_stream: bool = False) -> bytes:
    """A whole DATA frame (tests and small bodies; the forwarding path writes header + slice)."""
    return frame_header(len(payload), DATA, END_STREAM if end_stream else 0, sid) + payload


def rst_stream(sid: int, code: int) -> bytes:
    """RST_STREAM."""
    return frame_header(4, RST_STREAM, 0, sid) + _U32.pack(code)


def settings_frame(settings: Iterable[tuple[int, int]]) -> bytes:
    """SETTINGS with the given (identifier, value) pairs."""
    body = b"".join(_SETTING.pack(key, value) for key, value in settings)
    return frame_header(len(body), SETTINGS, 0, 0) + body


SETTINGS_ACK = frame_header(0, SETTINGS, ACK, 0)


def ping_ack(opaque: bytes) -> bytes:
    """The ACK of a PING."""
    return frame_header(8, PING, ACK, 0) + opaque


def goaway(last_sid: int, code: int, debug: bytes = b"") -> bytes:
    """GOAWAY."""
    return frame_header(8 + len(debug), GOAWAY, 0, 0) + _U32_PAIR.pack(last_sid, code) + debug


def window_update(sid: int, increment: int) -> bytes:
    """WINDOW_UPDATE."""
    return frame_header(4, WINDOW_UPDATE, 0, sid) + _U32.pack(increment)
