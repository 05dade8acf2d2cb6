"""TLS ClientHello sniffing on the first bytes of a connection (pure, no I/O).

The inbound proxy peeks at what a client sent first.  :func:`parse_client_hello` tells it whether
those bytes are a TLS ClientHello and, if so, which SNI server name and ALPN protocols it offers,
so it can decide between terminating TLS, passing TLS through and serving plaintext.

The answer only ever moves forward as bytes arrive: once a prefix yields ``NOT_TLS`` or a
:class:`ClientHello`, every longer buffer that starts with it yields the same.  ``NEED_MORE`` is
returned while what has arrived is a consistent beginning of a ClientHello (including the empty
buffer; an empty peek means EOF, which the caller sees for itself).

Only a ClientHello carried whole in the first handshake record is understood.  TLS allows a
handshake message to be fragmented over several records, but no mainstream client does that for
its ClientHello; such a hello (handshake length larger than the first record's payload) is
reported as ``NOT_TLS`` and would be treated as opaque traffic.  The parser never raises on any
byte string: malformed input is ``NOT_TLS``.

This is a classifier, not a validator: it checks every length it walks over and the fields it
reports (a repeated server_name or ALPN extension is ``NOT_TLS``, being ambiguous), but leaves the
contents of other extensions, cipher suites and the like to the TLS library that terminates.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

_HANDSHAKE = 0x16  # TLS record content type
_CLIENT_HELLO = 0x01  # handshake message type
_MAX_VERSION_MINOR = 4  # 0x0300 (SSL 3.0) .. 0x0304 (TLS 1.3)
_MAX_RECORD = 1 << 14  # largest TLSPlaintext fragment (RFC 8446 §5.1)
_RECORD_HEADER = 5  # type(1) version(2) length(2)
_HANDSHAKE_HEADER = 4  # type(1) length(3)
_MAX_SESSION_ID = 32
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16
_HOST_NAME = 0  # NameType host_name
_TYPE_LEN = struct.Struct(">HH").unpack_from  # an extension header: type(2) length(2)

MAX_HELLO_BYTES = _RECORD_HEADER + _MAX_RECORD
"""The most bytes worth peeking for a ClientHello: one full record; anything longer is not one."""


class Hello(enum.Enum):
    """The verdict on bytes that are not (yet) a complete ClientHello."""

    NEED_MORE = "need-more"  # could still be a ClientHello: peek again when more bytes arrive
    NOT_TLS = "not-tls"  # definitely not a ClientHello this parser accepts


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What the proxy needs from a complete ClientHello."""

    server_name: str | None  # first SNI host_name, lower-cased ASCII; None when none is sent
    alpn: tuple[str, ...]  # ALPN protocol names in offer order (latin-1 decoded); () when absent


class _Truncated(Exception):
    """Internal: a read went past the bytes received so far but within the declared lengths."""


class _Malformed(Exception):
    """Internal: a read went past a declared length, or a field holds an impossible value."""


def _need(end: int, limit: int, have: int) -> None:
    """Check that bytes up to ``end`` lie within ``limit`` (declared) and ``have`` (received)."""
    if end > limit:
        raise _Malformed
    if end > have:
        raise _Truncated


def looks_like_tls(first: bytes) -> bool:
    """Whether the first byte(s) could start a TLS handshake record (0x16, version 3.x)."""
    n = len(first)
    if n == 0 or first[0] != _HANDSHAKE:
        return False
    if n > 1 and first[1] != 3:
        return False
    return n <= 2 or first[2] <= _MAX_VERSION_MINOR


def parse_client_hello(data: bytes | memoryview) -> ClientHello | Hello:
    """Parse the ClientHello at the start of ``data``, or say why there is none (yet).

    Bytes after the ClientHello (e.g. TLS 1.3 early data) are ignored.  A ``memoryview`` is read
    as its raw bytes.
    """
    buf = data if isinstance(data, bytes) else _raw_bytes(memoryview(data))
    try:
        return _parse(buf)
    except _Truncated:
        return Hello.NEED_MORE
    except _Malformed:
        return Hello.NOT_TLS


def _raw_bytes(view: memoryview) -> bytes:
    """At most :data:`MAX_HELLO_BYTES` of ``view``'s underlying bytes."""
    if view.c_contiguous:
        return view.cast("B")[:MAX_HELLO_BYTES].tobytes()
    return view.tobytes()[:MAX_HELLO_BYTES]


def _parse(buf: bytes) -> ClientHello | Hello:
    """The parser proper: raises :class:`_Truncated` on short input, :class:`_Malformed` on bad."""
    have = len(buf)
    # Record header, judged byte by byte so that garbage is rejected as early as possible.
    if have == 0:
        return Hello.NEED_MORE
    if buf[0] != _HANDSHAKE:
        return Hello.NOT_TLS
    if have > 1 and buf[1] != 3:
        return Hello.NOT_TLS
    if have > 2 and buf[2] > _MAX_VERSION_MINOR:
        return Hello.NOT_TLS
    if have < _RECORD_HEADER:
        # A high length byte above 0x40 already means a record longer than 2**14.
        if have > 3 and buf[3] > _MAX_RECORD >> 8:
            return Hello.NOT_TLS
        return Hello.NEED_MORE
    record_len = (buf[3] << 8) | buf[4]
    if not _HANDSHAKE_HEADER <= record_len <= _MAX_RECORD:
        return Hello.NOT_TLS
    # Handshake header.
    if have > 5 and buf[5] != _CLIENT_HELLO:
        return Hello.NOT_TLS
    if have < 9:
        # The top length byte must be zero: the message must fit in one record of at most 2**14.
        if have > 6 and buf[6] != 0:
            return Hello.NOT_TLS
        return Hello.NEED_MORE
    body_len = (buf[6] << 16) | (buf[7] << 8) | buf[8]
    if body_len + _HANDSHAKE_HEADER > record_len:
        return Hello.NOT_TLS  # fragmented over several records (unsupported) or inconsistent
    end = 9 + body_len

    # ClientHello body: legacy_version(2) random(32) session_id<0..32>.
    _need(44, end, have)
    if buf[9] != 3 or buf[10] > _MAX_VERSION_MINOR:
        raise _Malformed
    sid_len = buf[43]
    if sid_len > _MAX_SESSION_ID:
        raise _Malformed
    pos = 44 + sid_len
    # cipher_suites<2..2^16-2>, an even number of bytes.
    _need(pos + 2, end, have)
    suites_len = (buf[pos] << 8) | buf[pos + 1]
    if suites_len < 2 or suites_len & 1:
        raise _Malformed
    pos += 2 + suites_len
    # compression_methods<1..2^8-1>.
    _need(pos + 1, end, have)
    methods_len = buf[pos]
    if methods_len < 1:
        raise _Malformed
    pos += 1 + methods_len
    _need(pos, end, have)
    if pos == end:
        return ClientHello(server_name=None, alpn=())  # no extensions block at all
    # extensions<8..2^16-1>, which must fill the rest of the message exactly.
    _need(pos + 2, end, have)
    if pos + 2 + ((buf[pos] << 8) | buf[pos + 1]) != end:
        raise _Malformed
    pos += 2

    server_name: str | None = None
    sni_seen = False
    alpn: tuple[str, ...] | None = None
    while pos < end:
        head_end = pos + 4  # the hot loop, so _need() is spelt out
        if head_end > end:
            raise _Malformed
        if head_end > have:
            raise _Truncated
        ext_type, ext_len = _TYPE_LEN(buf, pos)
        ext_end = head_end + ext_len
        if ext_end > end:
            raise _Malformed
        if ext_type == _EXT_SERVER_NAME:
            # Ambiguous if repeated; a None result from a first copy also counts as seen.
            if sni_seen:
                raise _Malformed
            sni_seen = True
            _need(ext_end, end, have)
            server_name = _server_name(buf, head_end, ext_end)
        elif ext_type == _EXT_ALPN:
            if alpn is not None:
                raise _Malformed
            _need(ext_end, end, have)
            alpn = _alpn(buf, head_end, ext_end)
        pos = ext_end
    if have < end:
        raise _Truncated  # the last extensions were skipped without being fully received
    return ClientHello(server_name=server_name, alpn=alpn or ())


def _server_name(buf: bytes, pos: int, end: int) -> str | None:
    """The first host_name in a server_name extension body ``buf[pos:end]`` (RFC 6066 §3)."""
    _need(pos + 2, end, end)
    if pos + 2 + ((buf[pos] << 8) | buf[pos + 1]) != end or end == pos + 2:
        raise _Malformed  # the list must fill the extension and hold at least one entry
    pos += 2
    found: str | None = None
    while pos < end:
        _need(pos + 3, end, end)
        name_type = buf[pos]
        name_end = pos + 3 + ((buf[pos + 1] << 8) | buf[pos + 2])
        _need(name_end, end, end)
        if name_type == _HOST_NAME and found is None:
            name = buf[pos + 3 : name_end]
            if not name or not name.isascii() or b"\x00" in name:
                raise _Malformed
            found = name.decode("ascii").lower()
        pos = name_end
    return found


def _alpn(buf: bytes, pos: int, end: int) -> tuple[str, ...]:
    """The protocol names in an ALPN extension body ``buf[pos:end]`` (RFC 7301 §3.1)."""
    _need(pos + 2, end, end)
    if pos + 2 + ((buf[pos] << 8) | buf[pos + 1]) != end or end == pos + 2:
        raise _Malformed  # the list must fill the extension and hold at least one name
    pos += 2
    names: list[str] = []
    while pos < end:
        name_end = pos + 1 + buf[pos]
        if name_end == pos + 1:
            raise _Malformed  # empty protocol names are not allowed
        _need(name_end, end, end)
        names.append(buf[pos + 1 : name_end].decode("latin-1"))
        pos = name_end
    return tuple(names)
