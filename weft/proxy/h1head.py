"""HTTP/1.1 message heads as the proxy rewrites them: hop-by-hop headers and framing (pure)."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import NamedTuple

# Headers that describe one connection, never forwarded (RFC 9110 §7.6.1, RFC 9112).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

Headers = list[tuple[bytes, bytes]]

# Set by the inbound proxy from the client's verified certificate: never trusted from a sender.
CLIENT_ID = b"l5d-client-id"
# Names the logical destination of an outbound request; used by the proxy, never forwarded.
DST_OVERRIDE = b"l5d-dst-override"


def connection_tokens(headers: Headers) -> frozenset[bytes]:
    """The lower-cased option names listed in every ``Connection`` header."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def end_to_end(headers: Headers, keep_upgrade: bool = False) -> Headers:
    """``headers`` less hop-by-hop ones, those named by ``Connection``, ``l5d-client-id`` and
    ``l5d-dst-override``.

    With ``keep_upgrade`` the ``Upgrade`` header and a ``Connection: upgrade`` survive, so that a
    protocol switch can be negotiated with the next hop.
    """
    named = connection_tokens(headers)
    out: Headers = []
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in named or lower in (CLIENT_ID, DST_OVERRIDE):
            if keep_upgrade and lower == b"upgrade":
                out.append((name, value))
            continue
        out.append((name, value))
    if keep_upgrade:
        out.append((b"Connection", b"upgrade"))
    return out


def header_value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of ``name`` (lower-case) in ``headers``."""
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def head_fields(head: bytes) -> Headers:
    """The header fields of a head this proxy serialised (its first line left out)."""
    fields: Headers = []
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            fields.append((name, value.strip()))
    return fields


def request_facts(headers: Headers) -> tuple[bool, bytes | None, bytes | None, bytes | None]:
    """What framing and routing read from a request's headers, in one pass: whether the body is
    chunked (as :func:`is_chunked` says), and the first ``Content-Length``, ``Host`` and
    ``l5d-dst-override`` values."""
    te = length = host = override = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"host":
            if host is None:
                host = value
        elif lower == b"content-length":
            if length is None:
                length = value
        elif lower == b"transfer-encoding":
            if te is None:
                te = value
        elif lower == DST_OVERRIDE and override is None:
            override = value
    chunked = te is not None and te.rsplit(b",", 1)[-1].strip().lower() == b"chunked"
    return chunked, length, host, override


class RequestHead:
    """What the proxy reads from an HTTP/1 request head, worked out once per distinct head
    (clients repeat theirs, see :func:`request_of`): framing, the destination and the
    end-to-end fields to forward (``forwarded``, shared: never modified)."""

    __slots__ = ("authority", "blocks", "chunked", "forwarded", "has_body", "name")

    def __init__(self, method: bytes, url: bytes, tunnel: bool, headers: Headers) -> None:
        chunked, length, host, override = request_facts(headers)
        self.chunked = chunked
        self.has_body = chunked or (length is not None and length.strip() != b"0")
        if method == b"CONNECT":
            authority = url
        elif host is not None:
            authority = host
        elif url[:1] != b"/" and b"://" in url:
            rest = url.split(b"://", 1)[1]
            authority = re.split(rb"[/?#]", rest, maxsplit=1)[0]
        else:
            authority = b""
        self.authority = authority.decode("latin-1")
        # l5d-dst-override, else the authority: the logical destination
        self.name = override.decode("latin-1").strip() if override else self.authority
        self.forwarded = end_to_end(headers, keep_upgrade=tunnel and method != b"CONNECT")
        # The head as an HTTP/2 header block, by HTTP version (``weft.proxy.upgrade``).
        self.blocks: dict[bytes, bytes] = {}


REQUEST_CACHE_SIZE = 256  # distinct request heads kept
REQUEST_CACHE_MAX_HEAD = 1024  # bytes; bigger heads are rarely repeated
_request_heads: dict[tuple[bytes, bytes, bool, tuple[tuple[bytes, bytes], ...]], RequestHead] = {}


def request_of(method: bytes, url: bytes, tunnel: bool, headers: Headers, size: int) -> RequestHead:
    """The :class:`RequestHead` of a request (``tunnel``: a ``CONNECT`` or an ``Upgrade``;
    ``size``: its head's length), cached when the head is small."""
    if size > REQUEST_CACHE_MAX_HEAD:
        return RequestHead(method, url, tunnel, headers)
    key = (method, url, tunnel, tuple(headers))
    found = _request_heads.get(key)
    if found is None:
        found = RequestHead(method, url, tunnel, headers)
        if len(_request_heads) >= REQUEST_CACHE_SIZE:
            _request_heads.clear()
        _request_heads[key] = found
    return found


class SeenRequest(NamedTuple):
    """A whole keep-alive request without a body that the parser accepted, as it read it: the
    same bytes again (between two requests) are this request, taken without the parser."""

    method: bytes
    url: bytes
    version: bytes  # b"1.1" or b"1.0"
    known: RequestHead
    size: int  # the head's size as the parser counts it against the limit


# By the exact bytes of one read that held nothing but the head (see ``H1Server``).
SEEN_REQUESTS: dict[bytes, SeenRequest] = {}


def remember_request(data: bytes, seen: SeenRequest) -> None:
    """Keep ``seen`` as what ``data`` (one read, at most ``REQUEST_CACHE_MAX_HEAD`` bytes) is."""
    if len(SEEN_REQUESTS) >= REQUEST_CACHE_SIZE:
        SEEN_REQUESTS.clear()
    SEEN_REQUESTS[data] = seen


def is_chunked(headers: Headers) -> bool:
    """Whether the message body uses chunked transfer coding."""
    te = header_value(headers, b"transfer-encoding")
    return te is not None and te.rsplit(b",", 1)[-1].strip().lower() == b"chunked"


def request_head(method: bytes, target: bytes, headers: Headers, chunked: bool) -> bytes:
    """Serialize an HTTP/1.1 request head."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def response_head(
    status: int, reason: bytes, headers: Headers, chunked: bool, close: bool, version: bytes
) -> bytes:
    """Serialize a response head for a client speaking ``version`` (``b"1.1"`` or ``b"1.0"``)."""
    parts = [b"HTTP/", version, b" ", str(status).encode(), b" ", reason, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if close:
        parts.append(b"Connection: close\r\n")
    elif version == b"1.0":
        parts.append(b"Connection: keep-alive\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


_phrases: dict[int, bytes] = {}


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status``."""
    phrase = _phrases.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase.encode()
        except ValueError:
            phrase = b"Unknown"
        if 100 <= status <= 999:
            _phrases[status] = phrase
    return phrase


def error_response(status: int, reason: str, close: bool) -> bytes:
    """A proxy-generated response carrying ``l5d-proxy-error``."""
    safe = reason.encode("ascii", "replace").replace(b"\r", b" ").replace(b"\n", b" ")
    headers = [(b"l5d-proxy-error", safe), (b"Content-Length", b"0")]
    return response_head(status, reason_phrase(status), headers, False, close, b"1.1")


def chunk(data: bytes | memoryview) -> bytes:
    """Frame ``data`` as one chunk of a chunked body."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"
