"""HTTP/1.x messages carried as HTTP/2 between meshed proxies: the heads both ways (pure).

A client proxy sends an HTTP/1.x request to an endpoint that discovery hints is meshed (``h2``)
as an HTTP/2 request with ``l5d-orig-proto: HTTP/1.1`` (or ``HTTP/1.0``) on its shared
connection to the peer (``weft.proxy.upgrade``); the server proxy forwards such a request to its
app as HTTP/1.x and answers with HTTP/2, ``l5d-orig-proto`` set to the response's version
(``weft.proxy.downgrade``); the client proxy writes that response to its client as HTTP/1.1.
These are Linkerd's ``orig_proto`` upgrade and downgrade: a stock linkerd2-proxy on either side
interoperates.

The functions here translate heads only; bodies travel as DATA frames, framed for HTTP/1 by the
callers (trailers are not carried: an HTTP/1 message's chunked trailers are dropped, an HTTP/2
message's trailers end the HTTP/1 body). Whatever reaches an HTTP/1 peer is checked: a field an
HTTP/2 peer sent that would break the HTTP/1 framing (CR, LF or NUL anywhere, a name that is
not a token, a space in the method or target) raises :class:`MalformedHead`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from weft.proxy.h1head import HOP_BY_HOP, Headers
from weft.proxy.h2.hpack_codec import Field

ORIG_PROTO = b"l5d-orig-proto"
HTTP_11 = b"HTTP/1.1"
HTTP_10 = b"HTTP/1.0"
CLIENT_ID = b"l5d-client-id"
DST_OVERRIDE = b"l5d-dst-override"

# Fields never carried from an HTTP/2 request to an HTTP/1 app: connection-specific ones, the
# headers the proxies set or consume, and those the request line and Host replace.
_NOT_TO_APP = HOP_BY_HOP | {b"host", ORIG_PROTO, CLIENT_ID, DST_OVERRIDE}
# Fields never carried from an HTTP/2 response to an HTTP/1 client.
_NOT_TO_CLIENT = HOP_BY_HOP | {ORIG_PROTO}

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_valid_names: set[bytes] = set()  # field names already checked to be tokens
MAX_VALID_NAMES = 4096


class MalformedHead(ValueError):
    """An HTTP/2 head that cannot be written as HTTP/1 (it would break the framing)."""


def version_value(version: bytes) -> bytes:
    """The ``l5d-orig-proto`` value of an HTTP/1 version (``b"1.1"``, ``b"1.0"``)."""
    return HTTP_10 if version == b"1.0" else HTTP_11


def orig_version(value: bytes) -> bytes | None:
    """The HTTP/1 version an ``l5d-orig-proto`` value names, or None for anything else."""
    if value == HTTP_11:
        return b"1.1"
    if value == HTTP_10:
        return b"1.0"
    return None


# -- outbound: an HTTP/1 request as HTTP/2, the HTTP/2 response as HTTP/1 --------------------


def request_fields(method: bytes, target: bytes, headers: Headers, version: bytes) -> list[Field]:
    """The HTTP/2 fields of an HTTP/1.x request whose ``headers`` are already end to end.

    ``:authority`` is an absolute-form target's authority (without user info), else ``Host``;
    ``:scheme`` the target's scheme, else ``http``; ``:path`` the rest of the target (``/`` when
    empty). Names are lower-cased, ``Host`` and any ``l5d-orig-proto`` the client sent are left
    out, and ``l5d-orig-proto`` names ``version``.
    """
    scheme = b"http"
    authority = b""
    path = target
    if target[:1] != b"/" and target != b"*":
        sep = target.find(b"://")
        if sep > 0:
            scheme = target[:sep].lower()
            rest = target[sep + 3 :]
            cut = len(rest)
            for mark in (b"/", b"?", b"#"):
                at = rest.find(mark)
                if 0 <= at < cut:
                    cut = at
            authority = rest[:cut].rpartition(b"@")[2]
            path = rest[cut:]
            if path[:1] != b"/":
                path = b"/" + path
    fields: list[Field] = [(b":method", method), (b":scheme", scheme)]
    out: list[Field] = []
    for name, value in headers:
        lower = name.lower()
        if lower == b"host":
            if not authority:
                authority = value
        elif lower != ORIG_PROTO:
            out.append((lower, value))
    if authority:
        fields.append((b":authority", authority))
    fields.append((b":path", path))
    fields += out
    fields.append((ORIG_PROTO, version_value(version)))
    return fields


class Response(NamedTuple):
    """An HTTP/2 response head as an HTTP/1 client gets it: the status, the headers to write,
    whether they give the body's length and that length (-1 when it is not one number)."""

    status: int
    headers: Headers
    has_length: bool
    length: int


def response_from_fields(fields: Sequence[Field]) -> Response:
    """The HTTP/1 view of an HTTP/2 response head: pseudo-headers, connection-specific fields
    and ``l5d-orig-proto`` left out. Raises :class:`MalformedHead`."""
    status = 0
    headers: Headers = []
    length = b""
    for name, value in fields:
        if name[:1] == b":":
            if name == b":status":
                status = int(value) if value.isdigit() and len(value) == 3 else 0
            continue
        if name in _NOT_TO_CLIENT:
            continue
        _check_field(name, value)
        if name == b"content-length":
            length = value if not length or value == length else b"-"
        headers.append((name, value))
    if not 100 <= status <= 999 or status == 101:  # HTTP/2 has no 101 (RFC 9113 §8.6)
        raise MalformedHead("response without a valid :status")
    return Response(status, headers, bool(length), int(length) if length.isdigit() else -1)


# -- inbound: an HTTP/2 request as HTTP/1, the HTTP/1 response as HTTP/2 ---------------------


class Request(NamedTuple):
    """An HTTP/2 request as its HTTP/1 app gets it: the head, whether the body is sent chunked,
    and the ``content-length`` the body must match (-1: none)."""

    head: bytes
    chunked: bool
    length: int


def request_head(
    fields: Sequence[Field], version: bytes, client_id: bytes | None, has_body: bool
) -> Request:
    """The HTTP/1.x form of an HTTP/2 request's ``fields`` (its body is chunked when it has one
    and no ``content-length``).

    ``:authority`` (else ``host``) becomes ``Host``; ``client_id`` is the verified client
    identity (``l5d-client-id``). Raises :class:`MalformedHead`, also for a ``content-length``
    that is not one number.
    """
    method = path = authority = host = length = b""
    kept: Headers = []
    for name, value in fields:
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            continue
        if name in _NOT_TO_APP:
            if name == b"host":
                host = value
            continue
        if name == b"content-length":
            if not value.isdigit() or (length and value != length):
                raise MalformedHead("content-length is not one number")
            length = value
        kept.append((name, value))
    if not method or not path:
        raise MalformedHead("request without :method or :path")
    if b" " in method or b" " in path:
        raise MalformedHead("space in :method or :path")
    chunked = has_body and not length
    parts = [method, b" ", path, b" HTTP/", version, b"\r\n"]
    lines = 2
    authority = authority or host
    if authority:
        parts += (b"Host: ", authority, b"\r\n")
        lines += 1
    for name, value in kept:
        if name not in _valid_names:
            _check_name(name)
        parts += (name, b": ", value, b"\r\n")
    lines += len(kept)
    if client_id is not None:
        parts += (CLIENT_ID, b": ", client_id, b"\r\n")
        lines += 1
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
        lines += 1
    parts.append(b"\r\n")
    head = b"".join(parts)
    _check_lines(head, lines)
    return Request(head, chunked, int(length) if length else -1)


def response_fields(status: int, headers: Headers, version: bytes) -> list[Field]:
    """The HTTP/2 fields of an app's HTTP/1.x response whose ``headers`` are already end to
    end: names lower-cased, ``l5d-orig-proto`` naming the response's ``version``."""
    fields: list[Field] = [(b":status", b"%d" % status)]
    for name, value in headers:
        lower = name.lower()
        if lower != ORIG_PROTO:
            fields.append((lower, value))
    fields.append((ORIG_PROTO, version_value(version)))
    return fields


# -- checks ----------------------------------------------------------------------------------


def _check_name(name: bytes) -> None:
    if _TOKEN.fullmatch(name) is None:
        raise MalformedHead(f"field name {name[:40]!r} is not a token")
    if len(_valid_names) >= MAX_VALID_NAMES:
        _valid_names.clear()
    _valid_names.add(name)


def _check_field(name: bytes, value: bytes) -> None:
    if name not in _valid_names:
        _check_name(name)
    if b"\r" in value or b"\n" in value or b"\0" in value:
        raise MalformedHead(f"CR, LF or NUL in the value of {name[:40]!r}")


def _check_lines(head: bytes, lines: int) -> None:
    """Every line break of ``head`` is one of its ``lines`` CRLFs, and it holds no NUL."""
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
        raise MalformedHead("CR, LF or NUL in a field")
