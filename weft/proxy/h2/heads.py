"""Header blocks as the proxy sees them: the few values it reads, and the block it forwards."""

from __future__ import annotations

import re

from weft.proxy.classify import is_grpc
from weft.proxy.errors import ProxyError
from weft.proxy.h2.hpack_codec import Field, HpackDecoder, encode_block, encode_field

# RFC 9113 §8.2.2: connection-specific fields make a message malformed (``te`` too, unless it is
# exactly ``trailers``).
CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
CLIENT_ID = b"l5d-client-id"  # set only by the inbound proxy, from the verified client identity
DST_OVERRIDE = b"l5d-dst-override"  # names the logical destination; used, never forwarded
ORIG_PROTO = b"l5d-orig-proto"  # an HTTP/1.x message carried over HTTP/2 (weft.proxy.orig_proto)

# Pseudo-header fields (RFC 9113 §8.3), as bits of Head.pseudo.
METHOD = 1
SCHEME = 2
PATH = 4
AUTHORITY = 8
STATUS = 16
_PSEUDO = {
    b":method": METHOD,
    b":scheme": SCHEME,
    b":path": PATH,
    b":authority": AUTHORITY,
    b":status": STATUS,
}
_REQUEST_PSEUDO = METHOD | SCHEME | PATH | AUTHORITY

# RFC 9113 §8.2.1: field names are RFC 9110 tokens without upper case; values hold no NUL, CR,
# LF or other controls but HTAB, and neither start nor end with whitespace.
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_BAD_VALUE = re.compile(rb"[^\t\x20-\x7e\x80-\xff]|\A[ \t]|[ \t]\Z")
_valid_names: dict[bytes, bool] = {}


class Head:
    """A decoded request head, response head or trailers, ready to forward.

    ``block`` is the statelessly re-encoded block without ``l5d-client-id`` and
    ``l5d-dst-override``; ``authority`` is ``:authority``, else ``host``, and ``label`` the same
    without a ``:80`` suffix; ``name`` the logical destination (``l5d-dst-override``, else the
    authority); ``method`` and ``path`` the pseudo-headers; ``status`` is ``:status`` (0 when
    absent); ``grpc`` whether ``content-type`` names gRPC; ``grpc_status`` the ``grpc-status``
    value when present; ``content_length`` its value (-1 when absent); ``orig_proto`` the
    ``l5d-orig-proto`` value (empty when absent) and ``fields`` what was decoded, for a request
    forwarded as HTTP/1 (``weft.proxy.downgrade``).

    What makes the block malformed (RFC 9113 §8.1.1) as a request, a response or trailers is
    worked out once, here (heads are cached per block): ``request_error``, ``response_error`` and
    ``trailers_error`` are empty for a block that is fine as one, else say what is wrong.
    """

    __slots__ = (
        "authority",
        "block",
        "content_length",
        "fields",
        "grpc",
        "grpc_status",
        "label",
        "method",
        "name",
        "orig_proto",
        "path",
        "request_error",
        "response_error",
        "status",
        "trailers_error",
    )

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields
        authority = host = override = method = path = orig_proto = b""
        status = 0
        content_length = -1
        grpc = False
        grpc_status: int | None = None
        parts: list[bytes] = []
        problem = ""
        pseudo = 0
        regular = False
        for name, value in fields:
            bit = _PSEUDO.get(name)
            if bit is not None:
                if regular or pseudo & bit:
                    problem = problem or _pseudo_problem(name, regular)
                pseudo |= bit
            else:
                regular = True
                valid = _valid_names.get(name)
                if valid is None:
                    valid = _valid_name(name)
                if not valid or name in CONNECTION_SPECIFIC or name == b"te":
                    problem = problem or _name_problem(name, value, valid)
            if _BAD_VALUE.search(value) is not None:
                problem = problem or f"invalid value in field {_text(name)}"
            if name == b":authority":
                authority = value
            elif name == b":status":
                status = _number(value) or 0 if len(value) == 3 else 0
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
            elif name == b"content-length":
                length = _number(value)
                if length is None or 0 <= content_length != length:
                    problem = problem or "invalid content-length"
                content_length = -1 if length is None else length
            elif name == DST_OVERRIDE:
                override = value
                continue
            elif name == CLIENT_ID:
                continue
            elif name == ORIG_PROTO:
                orig_proto = value
            parts.append(encode_field(name, value))
        self.block = b"".join(parts)
        self.status = status
        self.grpc = grpc
        self.grpc_status = grpc_status
        self.content_length = content_length
        text = (authority or host).decode("latin-1")
        self.authority = text or None
        self.label = text[:-3] if text.endswith(":80") else text
        self.name = override.decode("latin-1").strip() if override else self.authority
        self.method = method
        self.path = path
        self.orig_proto = orig_proto
        self.request_error = problem or _request_problem(pseudo, method, path)
        self.response_error = problem or _response_problem(pseudo, status)
        self.trailers_error = problem or ("pseudo-header field in trailers" if pseudo else "")


def _request_problem(pseudo: int, method: bytes, path: bytes) -> str:
    """What is wrong with a request's pseudo-header fields (RFC 9113 §8.3.1, §8.5), if anything."""
    if pseudo & STATUS:
        return ":status in a request"
    if not pseudo & METHOD:
        return "missing :method"
    if method == b"CONNECT":
        if pseudo & (SCHEME | PATH):
            return "CONNECT with :scheme or :path"
        return "" if pseudo & AUTHORITY else "CONNECT without :authority"
    if not pseudo & SCHEME:
        return "missing :scheme"
    if not pseudo & PATH:
        return "missing :path"
    return "" if path else "empty :path"


def _response_problem(pseudo: int, status: int) -> str:
    """What is wrong with a response head's pseudo-header fields (RFC 9113 §8.3.2), if anything."""
    if pseudo & _REQUEST_PSEUDO:
        return "request pseudo-header field in a response"
    return "" if 100 <= status <= 999 else "missing or invalid :status"


def _pseudo_problem(name: bytes, regular: bool) -> str:
    where = "after a regular field" if regular else "twice"
    return f"pseudo-header field {_text(name)} {where}"


def _name_problem(name: bytes, value: bytes, valid: bool) -> str:
    if not valid:
        kind = "unknown pseudo-header field" if name[:1] == b":" else "invalid field name"
        return f"{kind} {_text(name)}"
    if name == b"te":
        return "" if value == b"trailers" else "te other than trailers"
    return f"connection-specific field {_text(name)}"


def _valid_name(name: bytes) -> bool:
    """Whether ``name`` is a valid HTTP/2 field name (cached: names repeat)."""
    valid = _FIELD_NAME.match(name) is not None
    if len(_valid_names) < 4096:
        _valid_names[name] = valid
    return valid


def _text(name: bytes) -> str:
    return repr(name.decode("latin-1"))


def block_fields(block: bytes) -> list[Field]:
    """The fields of a block this proxy encoded: its encoder is stateless, so no dynamic table
    is needed to decode it."""
    return HpackDecoder().decode(block)


def _number(value: bytes) -> int | None:
    return int(value) if value.isdigit() and len(value) < 19 else None


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
