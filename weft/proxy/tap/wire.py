"""gRPC's framing of messages in an HTTP/2 stream, and its status codes (pure)."""

from __future__ import annotations

import struct

from weft.proxy.h2.heads import grpc_message

OK = 0
INVALID_ARGUMENT = 3
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12

_PREFIX = struct.Struct(">BL")  # compressed flag, message length
PREFIX_SIZE = _PREFIX.size


class FrameError(ValueError):
    """A request body that is not a sequence of uncompressed gRPC messages of bounded size."""


def frame(message: bytes) -> bytes:
    """``message`` with its gRPC prefix (uncompressed)."""
    return _PREFIX.pack(0, len(message)) + message


def status_fields(code: int, message: str = "") -> list[tuple[bytes, bytes]]:
    """``grpc-status`` (and ``grpc-message``, percent-encoded) header fields."""
    fields = [(b"grpc-status", b"%d" % code)]
    if message:
        fields.append((b"grpc-message", grpc_message(message)))
    return fields


class MessageReader:
    """Splits a request body, fed in pieces, into gRPC messages of at most ``max_size`` bytes."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The messages ``data`` completes; :class:`FrameError` for compressed or oversized ones."""
        buf = self.buf + data
        messages = []
        while len(buf) >= PREFIX_SIZE:
            compressed, size = _PREFIX.unpack_from(buf)
            if compressed:
                raise FrameError("compressed messages are not supported")
            if size > self.max_size:
                raise FrameError(f"message of {size} bytes exceeds {self.max_size}")
            if len(buf) < PREFIX_SIZE + size:
                break
            messages.append(buf[PREFIX_SIZE : PREFIX_SIZE + size])
            buf = buf[PREFIX_SIZE + size :]
        self.buf = buf
        return messages
