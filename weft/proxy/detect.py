"""Protocol detection on the first bytes of a connection (pure, no I/O)."""

from __future__ import annotations

import enum
import re

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_DETECT_BYTES = 1024

# A complete HTTP/1.x request line: token SP request-target SP HTTP-version CRLF.
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/1\.[01]\r\n")
# Anything that could still grow into such a line.
_PARTIAL_LINE = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+( [\x21-\x7e]*( (H(T(T(P(/(1(\.([01]\r?)?)?)?)?)?)?)?)?)?)?\Z"
)


class Protocol(enum.Enum):
    """What a connection speaks."""

    HTTP1 = "http/1"
    HTTP2 = "h2"
    OPAQUE = "opaque"


def detect(buf: bytes) -> Protocol | None:
    """Classify ``buf``; ``None`` means more bytes are needed to decide.

    HTTP/2 needs the full prior-knowledge preface; HTTP/1 a complete, well-formed request line.
    Anything else, or no decision within :data:`MAX_DETECT_BYTES`, is opaque.
    """
    if buf[:24] == H2_PREFACE:
        return Protocol.HTTP2
    if len(buf) < 24 and H2_PREFACE.startswith(buf):
        return None
    head = buf[:MAX_DETECT_BYTES]
    if _REQUEST_LINE.match(head):
        return Protocol.HTTP1
    if len(head) < MAX_DETECT_BYTES and b"\n" not in head and _PARTIAL_LINE.match(head):
        return None
    return Protocol.OPAQUE
