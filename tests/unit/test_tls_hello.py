"""TLS ClientHello sniffing: real hellos from the ssl module, hand-built ones and fuzzing."""

from __future__ import annotations

import array
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weft.proxy.tls_hello import (
    MAX_HELLO_BYTES,
    ClientHello,
    Hello,
    looks_like_tls,
    parse_client_hello,
)

IDENTITY = "web.emojivoto.serviceaccount.identity.weft.cluster.local"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def real_hello(
    server_hostname: str | None = IDENTITY,
    alpn: list[str] | None = None,
    maximum_version: ssl.TLSVersion | None = None,
) -> bytes:
    """The first flight an ``ssl`` client sends: its ClientHello record."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    if maximum_version is not None:
        ctx.maximum_version = maximum_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    return outgoing.read()


HELLO = real_hello(alpn=["h2", "http/1.1"])
HELLO_NO_SNI = real_hello(None, alpn=["h2", "http/1.1"])
HELLO_TLS12 = real_hello(alpn=["h2", "http/1.1"], maximum_version=ssl.TLSVersion.TLSv1_2)
HELLO_NO_ALPN = real_hello()
REAL_HELLOS = [HELLO, HELLO_NO_SNI, HELLO_TLS12, HELLO_NO_ALPN]


# --- hand-built ClientHellos -------------------------------------------------------------------


def u8(n: int) -> bytes:
    """One-byte big-endian length."""
    return n.to_bytes(1, "big")


def u16(n: int) -> bytes:
    """Two-byte big-endian length."""
    return n.to_bytes(2, "big")


def u24(n: int) -> bytes:
    """Three-byte big-endian length."""
    return n.to_bytes(3, "big")


def record(payload: bytes, version: bytes = b"\x03\x01") -> bytes:
    """A handshake record around ``payload``."""
    return b"\x16" + version + u16(len(payload)) + payload


def handshake(body: bytes, msg_type: int = 1) -> bytes:
    """A handshake message (ClientHello by default) around ``body``."""
    return u8(msg_type) + u24(len(body)) + body


# legacy_version and random: the fixed start of every ClientHello body.
HEAD = b"\x03\x03" + bytes(range(32))
# An empty session_id, two cipher suites and the null compression method.
MIDDLE = b"\x00" + u16(4) + b"\x13\x01\x13\x02" + b"\x01\x00"


def body(exts: bytes | None) -> bytes:
    """A ClientHello body with extension list ``exts`` (no extensions block when None)."""
    return HEAD + MIDDLE + (b"" if exts is None else u16(len(exts)) + exts)


def build(exts: bytes | None) -> bytes:
    """A whole ClientHello record with extension list ``exts``."""
    return record(handshake(body(exts)))


def ext(ext_type: int, data: bytes) -> bytes:
    """One extension."""
    return u16(ext_type) + u16(len(data)) + data


def sni(*names: bytes, name_type: int = 0) -> bytes:
    """A server_name extension listing ``names``."""
    entries = b"".join(u8(name_type) + u16(len(n)) + n for n in names)
    return ext(0, u16(len(entries)) + entries)


def alpn(*protocols: bytes) -> bytes:
    """An ALPN extension offering ``protocols``."""
    entries = b"".join(u8(len(p)) + p for p in protocols)
    return ext(16, u16(len(entries)) + entries)


GREASE = ext(0x0A0A, b"") + ext(10, u16(4) + b"\x00\x1d\x00\x17")


# --- real hellos ---------------------------------------------------------------------------------


def test_real_hello_sni_and_alpn() -> None:
    assert 300 < len(HELLO) < 1000
    assert parse_client_hello(HELLO) == ClientHello(server_name=IDENTITY, alpn=("h2", "http/1.1"))


def test_real_hello_without_server_hostname() -> None:
    assert parse_client_hello(HELLO_NO_SNI) == ClientHello(
        server_name=None, alpn=("h2", "http/1.1")
    )


def test_real_tls12_hello() -> None:
    assert parse_client_hello(HELLO_TLS12) == ClientHello(
        server_name=IDENTITY, alpn=("h2", "http/1.1")
    )


def test_real_hello_without_alpn() -> None:
    assert parse_client_hello(HELLO_NO_ALPN) == ClientHello(server_name=IDENTITY, alpn=())


def test_upper_case_server_hostname_is_lowered() -> None:
    hello = real_hello("Web.EXAMPLE.test")
    assert parse_client_hello(hello) == ClientHello(server_name="web.example.test", alpn=())


@pytest.mark.parametrize("hello", REAL_HELLOS)
def test_every_prefix_of_a_real_hello_needs_more(hello: bytes) -> None:
    for n in range(len(hello)):
        assert parse_client_hello(hello[:n]) is Hello.NEED_MORE, n


@pytest.mark.parametrize("hello", REAL_HELLOS)
def test_real_hello_looks_like_tls(hello: bytes) -> None:
    assert looks_like_tls(hello)
    assert looks_like_tls(hello[:1])


def test_bytes_after_the_hello_are_ignored() -> None:
    expected = parse_client_hello(HELLO)
    assert parse_client_hello(HELLO + b"\x17\x03\x03\x00\x10" + bytes(16)) == expected
    assert parse_client_hello(HELLO + bytes(2 * MAX_HELLO_BYTES)) == expected


def test_memoryview_input() -> None:
    expected = parse_client_hello(HELLO)
    assert parse_client_hello(memoryview(HELLO)) == expected
    assert parse_client_hello(memoryview(bytearray(HELLO))[: len(HELLO) - 1]) is Hello.NEED_MORE
    # Views are read as their raw bytes, whatever their format or layout.
    padded = HELLO + bytes(-len(HELLO) % 4)
    assert parse_client_hello(memoryview(array.array("I", padded))) == expected
    doubled = bytes(b for byte in HELLO for b in (byte, 0))
    assert parse_client_hello(memoryview(doubled)[::2]) == expected


# --- not TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n",
        b"G",
        H2_PREFACE,
        b"\x16\x01",  # version major 1
        b"\x16\x03\x05",  # minor version past TLS 1.3
        b"\x16\x03\x01\x41",  # record longer than 2**14 already
        b"\x16\x03\x01\x40\x01",  # record of 2**14 + 1
        b"\x16\x03\x01\x00\x03",  # record too short for a handshake header
        b"\x16\x03\x01\x02\x00\x02",  # ServerHello, not ClientHello
        b"\x16\x03\x01\x02\x00\x01\x01",  # handshake of 2**16 or more
        b"\x16\x03\x01\x00\x40\x01\x00\x00\x41",  # handshake longer than the record
        b"\x17\x03\x03\x00\x20",  # application data
        b"\x80\x2e\x01\x03\x01",  # SSLv2-compatible hello
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ],
)
def test_not_tls(data: bytes) -> None:
    assert parse_client_hello(data) is Hello.NOT_TLS
    assert parse_client_hello(data + HELLO) is Hello.NOT_TLS


@pytest.mark.parametrize("data", [b"", b"\x16", b"\x16\x03", b"\x16\x03\x03\x40", HELLO[:9]])
def test_consistent_beginnings_need_more(data: bytes) -> None:
    # b"" included: with MSG_PEEK an empty read is EOF, which the caller notices by itself.
    assert parse_client_hello(data) is Hello.NEED_MORE


def test_looks_like_tls() -> None:
    assert looks_like_tls(b"\x16")
    assert looks_like_tls(b"\x16\x03")
    assert looks_like_tls(b"\x16\x03\x04")
    assert not looks_like_tls(b"")
    assert not looks_like_tls(b"GET / HTTP/1.1\r\n")
    assert not looks_like_tls(H2_PREFACE)
    assert not looks_like_tls(b"\x16\x01")
    assert not looks_like_tls(b"\x16\x03\x05")
    assert not looks_like_tls(b"\x17\x03\x03")


# --- hand-built hellos ---------------------------------------------------------------------------


def test_hand_built_hello() -> None:
    hello = build(GREASE + sni(b"Api.Example.COM") + alpn(b"h2") + ext(21, bytes(10)))
    assert parse_client_hello(hello) == ClientHello(server_name="api.example.com", alpn=("h2",))
    assert all(parse_client_hello(hello[:n]) is Hello.NEED_MORE for n in range(len(hello)))


def test_no_extensions_block() -> None:
    assert parse_client_hello(build(None)) == ClientHello(server_name=None, alpn=())
    assert parse_client_hello(build(b"")) == ClientHello(server_name=None, alpn=())


def test_first_host_name_wins() -> None:
    hello = build(sni(b"first.test", b"second.test"))
    assert parse_client_hello(hello) == ClientHello(server_name="first.test", alpn=())


def test_other_name_types_are_skipped() -> None:
    other = u8(7) + u16(3) + b"\xff\x00\x80"
    host = u8(0) + u16(6) + b"a.test"
    entries = other + host
    hello = build(ext(0, u16(len(entries)) + entries))
    assert parse_client_hello(hello) == ClientHello(server_name="a.test", alpn=())
    only_other = build(sni(b"a.test", name_type=7))
    assert parse_client_hello(only_other) == ClientHello(server_name=None, alpn=())


def test_session_id_and_ssl3_versions() -> None:
    hello = record(
        handshake(
            b"\x03\x00" + bytes(32) + u8(32) + bytes(32) + u16(2) + b"\x00\x2f" + b"\x01\x00"
        ),
        version=b"\x03\x00",
    )
    assert parse_client_hello(hello) == ClientHello(server_name=None, alpn=())


def test_alpn_names_are_latin1_decoded() -> None:
    hello = build(alpn(b"\x0a\x0a", b"h2", b"caf\xe9"))
    assert parse_client_hello(hello) == ClientHello(server_name=None, alpn=("\n\n", "h2", "café"))


def test_largest_record() -> None:
    base = build(sni(b"a.test") + ext(21, b""))
    pad = MAX_HELLO_BYTES - len(base)
    largest = build(sni(b"a.test") + ext(21, bytes(pad)))
    assert len(largest) == MAX_HELLO_BYTES
    assert parse_client_hello(largest) == ClientHello(server_name="a.test", alpn=())
    too_large = build(sni(b"a.test") + ext(21, bytes(pad + 1)))
    assert parse_client_hello(too_large) is Hello.NOT_TLS


def test_hello_fragmented_over_two_records_is_not_supported() -> None:
    message = handshake(body(sni(b"a.test")))
    assert parse_client_hello(record(message[:60]) + record(message[60:])) is Hello.NOT_TLS


def _patch(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


def _ext_body(exts: bytes, declared: int) -> bytes:
    return HEAD + MIDDLE + u16(declared) + exts


_SNI = sni(b"a.test")
MALFORMED = {
    "handshake length overflows record": _patch(build(_SNI), 6, u24(len(body(_SNI)) + 1)),
    "handshake length huge": _patch(build(_SNI), 6, u24(0xFFFFFF)),
    "record length short of handshake": _patch(build(_SNI), 3, u16(len(body(_SNI)) + 3)),
    "body version 2.0": record(handshake(b"\x02\x00" + HEAD[2:] + MIDDLE)),
    "body version 3.5": record(handshake(b"\x03\x05" + HEAD[2:] + MIDDLE)),
    "body shorter than random": record(handshake(HEAD[:20])),
    "session id of 33": record(handshake(HEAD + u8(33) + bytes(33) + MIDDLE[1:])),
    "session id overflows": record(handshake(HEAD + u8(32) + bytes(5))),
    "cipher suites overflow": record(handshake(HEAD + b"\x00" + u16(0xFFFE) + b"\x13\x01\x01\x00")),
    "cipher suites odd": record(handshake(HEAD + b"\x00" + u16(3) + b"\x13\x01\x13\x01\x00")),
    "cipher suites empty": record(handshake(HEAD + b"\x00" + u16(0) + b"\x01\x00")),
    "no compression methods": record(handshake(HEAD + b"\x00" + u16(2) + b"\x13\x01\x00")),
    "compression methods overflow": record(
        handshake(HEAD + b"\x00" + u16(2) + b"\x13\x01\xc8\x00")
    ),
    "extensions block overflows": record(handshake(_ext_body(_SNI, len(_SNI) + 1))),
    "extensions block short": record(handshake(_ext_body(_SNI, len(_SNI) - 1))),
    "extensions block length cut": record(handshake(HEAD + MIDDLE + b"\x00")),
    "extension overflows block": build(u16(21) + u16(100) + b"abc"),
    "extension header cut": build(_SNI + b"\x00\x15\x00"),
    "sni list overflows": build(ext(0, u16(50) + b"\x00" + u16(1) + b"a")),
    "sni list short": build(ext(0, u16(4) + b"\x00" + u16(1) + b"azz")),
    "sni name overflows": build(ext(0, u16(4) + b"\x00" + u16(9) + b"a")),
    "sni entry header cut": build(ext(0, u16(6) + b"\x00" + u16(1) + b"a\x00\x00")),
    "sni list empty": build(ext(0, u16(0))),
    "sni extension empty": build(ext(0, b"")),
    "sni host name empty": build(sni(b"")),
    "sni host name not ascii": build(sni("bücher.test".encode())),
    "sni host name with nul": build(sni(b"a.test\x00.evil")),
    "sni duplicated": build(sni(b"a.test") + GREASE + sni(b"b.test")),
    "sni duplicated, first without host name": build(sni(b"x", name_type=1) + sni(b"b.test")),
    "alpn list overflows": build(ext(16, u16(9) + b"\x02h2")),
    "alpn list short": build(ext(16, u16(3) + b"\x02h2\x00")),
    "alpn name overflows": build(ext(16, u16(3) + b"\x05h2")),
    "alpn name empty": build(ext(16, u16(4) + b"\x02h2\x00")),
    "alpn list empty": build(ext(16, u16(0))),
    "alpn extension empty": build(ext(16, b"")),
    "alpn duplicated": build(alpn(b"h2") + alpn(b"http/1.1")),
}


@pytest.mark.parametrize("hello", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_hello_is_not_tls(hello: bytes) -> None:
    assert parse_client_hello(hello) is Hello.NOT_TLS
    assert parse_client_hello(hello + HELLO) is Hello.NOT_TLS


def test_overflow_is_rejected_before_the_rest_arrives() -> None:
    too_long_sid = record(handshake(HEAD + u8(33) + bytes(33) + MIDDLE[1:] + bytes(100)))
    assert parse_client_hello(too_long_sid[:44]) is Hello.NOT_TLS
    overflowing_ext = build(u16(21) + u16(0xFFFF) + bytes(100))
    assert parse_client_hello(overflowing_ext[:-50]) is Hello.NOT_TLS


# --- fuzzing -------------------------------------------------------------------------------------


def _check_result(result: ClientHello | Hello) -> None:
    assert isinstance(result, ClientHello | Hello)
    if isinstance(result, ClientHello) and result.server_name is not None:
        assert result.server_name.isascii()
        assert result.server_name == result.server_name.lower()


@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data: bytes) -> None:
    result = parse_client_hello(data)
    _check_result(result)
    if data and data[0] != 0x16:
        assert result is Hello.NOT_TLS


@given(st.binary(max_size=600))
def test_random_bodies_in_valid_framing_never_raise(data: bytes) -> None:
    _check_result(parse_client_hello(record(handshake(data))))
    _check_result(parse_client_hello(record(handshake(HEAD + MIDDLE + data))))


@st.composite
def mutated_hellos(draw: st.DrawFn) -> bytes:
    """A real ClientHello with a few bytes flipped, inserted or deleted, and perhaps truncated."""
    data = bytearray(draw(st.sampled_from(REAL_HELLOS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif len(data) > 1:
            del data[at]
    cut = draw(st.integers(0, len(data)))
    return bytes(data[: cut if draw(st.booleans()) else len(data)])


@given(mutated_hellos(), st.data())
def test_mutated_real_hellos_never_raise_and_decisions_are_final(
    hello: bytes, data: st.DataObject
) -> None:
    full = parse_client_hello(hello)
    _check_result(full)
    # What a shorter peek decided must be what the longer one decides.
    prefix = parse_client_hello(hello[: data.draw(st.integers(0, len(hello)))])
    if prefix is not Hello.NEED_MORE:
        assert full == prefix


@given(
    st.text(st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=255),
    st.lists(st.binary(min_size=1, max_size=20), max_size=5),
    st.booleans(),
    st.data(),
)
def test_hand_built_sni_round_trips(
    host: str, protocols: list[bytes], grease_first: bool, data: st.DataObject
) -> None:
    exts = sni(host.encode("ascii")) + (alpn(*protocols) if protocols else b"")
    hello = build(GREASE + exts if grease_first else exts + GREASE)
    expected = ClientHello(
        server_name=host.lower(), alpn=tuple(p.decode("latin-1") for p in protocols)
    )
    assert parse_client_hello(hello) == expected
    assert parse_client_hello(memoryview(hello)) == expected
    cut = data.draw(st.integers(0, len(hello) - 1))
    assert parse_client_hello(hello[:cut]) is Hello.NEED_MORE
