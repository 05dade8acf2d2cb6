"""HTTP/1 heads carried as HTTP/2 between proxies (``l5d-orig-proto``) and back (pure)."""

from __future__ import annotations

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from weft.proxy import orig_proto
from weft.proxy.h1head import HOP_BY_HOP, Headers
from weft.proxy.h2.heads import Head
from weft.proxy.h2.hpack_codec import HpackDecoder, encode_block
from weft.proxy.orig_proto import MalformedHead

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
RESERVED = {*HOP_BY_HOP, b"host", b"l5d-orig-proto", b"l5d-client-id", b"l5d-dst-override"}

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=20).map(str.encode)
names = tokens.filter(lambda n: n.lower() not in RESERVED and n.lower() != b"content-length")
values = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(str.encode)
headers = st.lists(st.tuples(names, values), max_size=8)
paths = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=30).map(
    lambda p: ("/" + p).encode()
)
versions = st.sampled_from([b"1.1", b"1.0"])
hosts = st.from_regex(r"\A[a-z][a-z0-9.-]{0,20}(:[0-9]{1,5})?\Z", fullmatch=True).map(str.encode)


class _Parsed:
    """What httptools parses out of one HTTP/1 request head."""

    def __init__(self, head: bytes) -> None:
        self.headers: Headers = []
        self.url = b""
        parser = httptools.HttpRequestParser(self)
        parser.feed_data(head)
        self.method = parser.get_method()
        self.version = parser.get_http_version().encode()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


def crossed(fields: list[tuple[bytes, bytes]]) -> Head:
    """``fields`` as the peer proxy decodes them from the wire."""
    return Head(HpackDecoder().decode(encode_block(fields)))


@given(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE"]), paths, hosts, headers, versions)
def test_a_request_head_crosses_and_comes_back_the_same(
    method: bytes, path: bytes, host: bytes, extra: Headers, version: bytes
) -> None:
    sent = [(b"Host", host), *extra]
    head = crossed(orig_proto.request_fields(method, path, sent, version))
    assert head.orig_proto == orig_proto.version_value(version)
    assert (head.method, head.path, head.authority) == (method, path, host.decode())
    got = orig_proto.orig_version(head.orig_proto)
    assert got == version
    request = orig_proto.request_head(head.fields, got, None, has_body=False)
    assert not request.chunked and request.length == -1
    parsed = _Parsed(request.head)
    assert (parsed.method, parsed.url, parsed.version) == (method, path, version)
    assert parsed.headers == [(b"Host", host), *[(n.lower(), v) for n, v in extra]]


@given(st.integers(100, 599).filter(lambda s: s != 101), headers, versions)
def test_a_response_head_crosses_and_comes_back_the_same(
    status: int, extra: Headers, version: bytes
) -> None:
    sent = [*extra, (b"Content-Length", b"12")]
    fields = orig_proto.response_fields(status, sent, version)
    assert fields[0] == (b":status", str(status).encode())
    assert fields[-1] == (b"l5d-orig-proto", orig_proto.version_value(version))
    response = orig_proto.response_from_fields(HpackDecoder().decode(encode_block(fields)))
    assert response.status == status
    assert response.headers == [(n.lower(), v) for n, v in sent]
    assert response.has_length and response.length == 12


def test_an_absolute_form_target_gives_scheme_authority_and_path() -> None:
    fields = orig_proto.request_fields(
        b"GET", b"http://user@svc.ns:8080?q=1", [(b"Host", b"ignored")], b"1.1"
    )
    assert fields[:4] == [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"svc.ns:8080"),
        (b":path", b"/?q=1"),
    ]
    assert (b"host", b"ignored") not in fields
    https = orig_proto.request_fields(b"GET", b"HTTPS://a.b/x/y", [], b"1.1")
    assert (b":scheme", b"https") in https and (b":path", b"/x/y") in https


def test_without_host_there_is_no_authority_and_a_client_orig_proto_is_replaced() -> None:
    fields = orig_proto.request_fields(b"OPTIONS", b"*", [(b"L5d-Orig-Proto", b"HTTP/9")], b"1.0")
    assert fields == [
        (b":method", b"OPTIONS"),
        (b":scheme", b"http"),
        (b":path", b"*"),
        (b"l5d-orig-proto", b"HTTP/1.0"),
    ]


def test_only_the_two_http1_versions_are_orig_proto() -> None:
    assert orig_proto.orig_version(b"HTTP/1.1") == b"1.1"
    assert orig_proto.orig_version(b"HTTP/1.0") == b"1.0"
    assert orig_proto.orig_version(b"HTTP/2") is None
    assert orig_proto.orig_version(b"http/1.1") is None


def test_the_app_gets_host_client_id_and_no_connection_or_proxy_fields() -> None:
    fields = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"web.ns:8080"),
        (b":path", b"/vote"),
        (b"host", b"other"),
        (b"connection", b"close"),
        (b"te", b"trailers"),
        (b"l5d-client-id", b"forged"),
        (b"l5d-dst-override", b"x:1"),
        (b"l5d-orig-proto", b"HTTP/1.1"),
        (b"x-a", b"1"),
    ]
    request = orig_proto.request_head(fields, b"1.1", b"client.id", has_body=True)
    assert request.chunked and request.length == -1
    assert request.head == (
        b"POST /vote HTTP/1.1\r\nHost: web.ns:8080\r\nx-a: 1\r\n"
        b"l5d-client-id: client.id\r\nTransfer-Encoding: chunked\r\n\r\n"
    )


def test_a_body_with_a_length_keeps_it_and_lengths_must_agree() -> None:
    base = [(b":method", b"PUT"), (b":path", b"/")]
    request = orig_proto.request_head([*base, (b"content-length", b"5")], b"1.1", None, True)
    assert (request.chunked, request.length) == (False, 5)
    twice = [*base, (b"content-length", b"5"), (b"content-length", b"5")]
    assert orig_proto.request_head(twice, b"1.1", None, True).length == 5
    for bad in (
        [(b"content-length", b"5"), (b"content-length", b"6")],
        [(b"content-length", b"-1")],
    ):
        with pytest.raises(MalformedHead):
            orig_proto.request_head([*base, *bad], b"1.1", None, True)


@pytest.mark.parametrize(
    "fields",
    [
        [(b":method", b"GET"), (b":path", b"/a\r\nx: y")],
        [(b":method", b"GET"), (b":path", b"/a b")],
        [(b":method", b"G T"), (b":path", b"/")],
        [(b":method", b"GET"), (b":path", b"/"), (b"x-a", b"1\nx-b: 2")],
        [(b":method", b"GET"), (b":path", b"/"), (b"x-a", b"1\r")],
        [(b":method", b"GET"), (b":path", b"/"), (b"x-a", b"1\x00")],
        [(b":method", b"GET"), (b":path", b"/"), (b"x a", b"1")],
        [(b":method", b"GET"), (b":path", b"/"), (b"x:a", b"1")],
        [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"a\r\nb")],
        [(b":path", b"/")],
        [(b":method", b"GET")],
    ],
)
def test_what_would_break_http1_framing_is_refused(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(MalformedHead):
        orig_proto.request_head(fields, b"1.1", None, False)


def test_a_response_loses_orig_proto_and_connection_fields() -> None:
    response = orig_proto.response_from_fields(
        [
            (b":status", b"204"),
            (b"l5d-orig-proto", b"HTTP/1.1"),
            (b"transfer-encoding", b"chunked"),
            (b"x-a", b"1"),
        ]
    )
    assert response == orig_proto.Response(204, [(b"x-a", b"1")], False, -1)


def test_a_response_length_is_one_number_or_none() -> None:
    def length(*values: bytes) -> int:
        fields = [(b":status", b"200"), *((b"content-length", v) for v in values)]
        return orig_proto.response_from_fields(fields).length

    assert (length(b"12"), length(b"12", b"12"), length(b"12", b"13"), length(b"x")) == (
        12,
        12,
        -1,
        -1,
    )


@pytest.mark.parametrize(
    "fields",
    [
        [(b":status", b"101")],
        [(b":status", b"20")],
        [(b"x-a", b"1")],
        [(b":status", b"200"), (b"x-a", b"1\r\nx-b: 2")],
        [(b":status", b"200"), (b"x a", b"1")],
    ],
)
def test_a_response_http1_cannot_carry_is_refused(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(MalformedHead):
        orig_proto.response_from_fields(fields)
