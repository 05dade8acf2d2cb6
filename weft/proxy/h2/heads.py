"""Header blocks as the proxy sees them: the few values it reads, and the block it forwards."""

from __future__ import annotations

from weft.proxy.classify import is_grpc
from weft.proxy.errors import ProxyError
from weft.proxy.h2.hpack_codec import Field, HpackDecoder, encode_block, encode_field

# RFC 9113 §8.2.2: connection-specific fields must not appear in HTTP/2, nor be forwarded;
# nor is ``l5d-client-id``, which only the inbound proxy sets, from the verified client identity.
CONNECTION_HEADERS = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"l5d-client-id",
    )
)
DST_OVERRIDE = b"l5d-dst-override"  # names the logical destination; used, never forwarded
ORIG_PROTO = b"l5d-orig-proto"  # an HTTP/1.x message carried over HTTP/2 (weft.proxy.orig_proto)


class Head:
    """A decoded request head, response head or trailers, ready to forward.

    ``block`` is the statelessly re-encoded block without connection-specific fields (nor
    ``l5d-dst-override``); ``authority`` is ``:authority``, else ``host``, and ``label`` the same
    without a ``:80`` suffix; ``name`` the logical destination (``l5d-dst-override``, else the
    authority); ``method`` and ``path`` the pseudo-headers; ``status`` is ``:status`` (0 when
    absent); ``grpc`` whether ``content-type`` names gRPC; ``grpc_status`` the ``grpc-status``
    value when present; ``orig_proto`` the ``l5d-orig-proto`` value (empty when absent) and
    ``fields`` what was decoded, for a request forwarded as HTTP/1 (``weft.proxy.downgrade``).
    """

    __slots__ = (
        "authority",
        "block",
        "fields",
        "grpc",
        "grpc_status",
        "label",
        "method",
        "name",
        "orig_proto",
        "path",
        "status",
    )

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields
        authority = host = override = method = path = orig_proto = b""
        status = 0
        grpc = False
        grpc_status: int | None = None
        parts: list[bytes] = []
        for name, value in fields:
            if name in CONNECTION_HEADERS or (name == b"te" and value != b"trailers"):
                continue
            if name == b":authority":
                authority = value
            elif name == b":status":
                status = _number(value) or 0
            elif name == b"content-type":
                grpc = is_grpc(value)
            elif name == b"grpc-status":
                grpc_status = _number(value)
            elif name == b"host":
                host = value
            elif name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == DST_OVERRIDE:
                override = value
                continue
            elif name == ORIG_PROTO:
                orig_proto = value
            parts.append(encode_field(name, value))
        self.block = b"".join(parts)
        self.status = status
        self.grpc = grpc
        self.grpc_status = grpc_status
        text = (authority or host).decode("latin-1")
        self.authority = text or None
        self.label = text[:-3] if text.endswith(":80") else text
        self.name = override.decode("latin-1").strip() if override else self.authority
        self.method = method
        self.path = path
        self.orig_proto = orig_proto


def block_fields(block: bytes) -> list[Field]:
    """The fields of a block this proxy encoded: its encoder is stateless, so no dynamic table
    is needed to decode it."""
    return HpackDecoder().decode(block)


def _number(value: bytes) -> int | None:
    return int(value) if value.isdigit() and len(value) < 10 else None


def _header_value(text: str) -> bytes:
    """``text`` as a safe header value: printable ASCII, anything else as ``?``."""
    return "".join(c if " " <= c <= "~" else "?" for c in text).encode("ascii")


def grpc_message(text: str) -> bytes:
    """Percent-encode ``text`` as gRPC requires for ``grpc-message``."""
    out = bytearray()
    for byte in text.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def error_response(err: ProxyError, grpc: bool) -> tuple[int, int | None, bytes]:
    """``(status, grpc_status, block)`` of the complete response the proxy answers ``err`` with.

    HTTP: ``:status`` = ``err.status``, an empty body and ``l5d-proxy-error``. gRPC: a trailers-only
    response, ``:status 200`` with ``grpc-status``, ``grpc-message`` and ``l5d-proxy-error``.
    """
    reason = _header_value(err.reason)
    if grpc:
        fields = [
            (b":status", b"200"),
            (b"content-type", b"application/grpc"),
            (b"grpc-status", b"%d" % err.grpc_status),
            (b"grpc-message", grpc_message(err.reason)),
            (b"l5d-proxy-error", reason),
        ]
        return 200, err.grpc_status, encode_block(fields)
    fields = [
        (b":status", b"%d" % err.status),
        (b"content-length", b"0"),
        (b"l5d-proxy-error", reason),
    ]
    return err.status, None, encode_block(fields)
