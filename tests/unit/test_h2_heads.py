"""What the proxy reads from header blocks and what it forwards or answers itself."""

from __future__ import annotations

import pytest

from weft.proxy.errors import ProxyError
from weft.proxy.h2.heads import Head, error_response
from weft.proxy.h2.hpack_codec import HpackDecoder


def decoded(block: bytes) -> list[tuple[bytes, bytes]]:
    return HpackDecoder().decode(block)


REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]


def test_a_well_formed_request_response_and_trailers() -> None:
    assert Head([*REQUEST, (b"te", b"trailers"), (b"x-a", b"1\t2")]).request_error == ""
    assert Head([(b":status", b"204"), (b"server", b"x")]).response_error == ""
    assert Head([(b"grpc-status", b"0")]).trailers_error == ""


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ([(b"connection", b"keep-alive")], "connection-specific field 'connection'"),
        ([(b"keep-alive", b"timeout=5")], "connection-specific field 'keep-alive'"),
        ([(b"proxy-connection", b"close")], "connection-specific field 'proxy-connection'"),
        ([(b"transfer-encoding", b"chunked")], "connection-specific field 'transfer-encoding'"),
        ([(b"upgrade", b"h2c")], "connection-specific field 'upgrade'"),
        ([(b"te", b"gzip")], "te other than trailers"),
        ([(b"te", b"trailers, gzip")], "te other than trailers"),
        ([(b"X-Upper", b"1")], "invalid field name 'X-Upper'"),
        ([(b"a b", b"1")], "invalid field name 'a b'"),
        ([(b"", b"1")], "invalid field name ''"),
        ([(b"x:y", b"1")], "invalid field name 'x:y'"),
        ([(b"x", b"a\r\nb: c")], "invalid value in field 'x'"),
        ([(b"x", b"a\x00")], "invalid value in field 'x'"),
        ([(b"x", b" a")], "invalid value in field 'x'"),
        ([(b"x", b"a\t")], "invalid value in field 'x'"),
        ([(b"x", b"\x7f")], "invalid value in field 'x'"),
        ([(b":protocol", b"websocket")], "unknown pseudo-header field ':protocol'"),
        (
            [(b"x", b"1"), (b":method", b"GET")],
            "pseudo-header field ':method' after a regular field",
        ),
        ([(b":path", b"/again")], "pseudo-header field ':path' twice"),
        ([(b"content-length", b"x")], "invalid content-length"),
        ([(b"content-length", b"1"), (b"content-length", b"2")], "invalid content-length"),
    ],
)
def test_malformed_fields_make_every_kind_of_block_malformed(
    fields: list[tuple[bytes, bytes]], error: str
) -> None:
    head = Head([*REQUEST, *fields])
    assert (head.request_error, head.response_error, head.trailers_error) == (error,) * 3


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")], ""),
        ([(b":scheme", b"http"), (b":path", b"/")], "missing :method"),
        ([(b":method", b"GET"), (b":path", b"/")], "missing :scheme"),
        ([(b":method", b"GET"), (b":scheme", b"https")], "missing :path"),
        ([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"")], "empty :path"),
        ([*REQUEST, (b":status", b"200")], ":status in a request"),
        ([(b":method", b"CONNECT"), (b":authority", b"db:5432")], ""),
        ([(b":method", b"CONNECT")], "CONNECT without :authority"),
        (
            [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")],
            "CONNECT with :scheme or :path",
        ),
    ],
)
def test_request_pseudo_header_fields(fields: list[tuple[bytes, bytes]], error: str) -> None:
    assert Head(fields).request_error == error


def test_response_and_trailers_pseudo_header_fields() -> None:
    assert Head([(b":status", b"200"), (b":path", b"/")]).response_error == (
        "request pseudo-header field in a response"
    )
    assert Head([(b"x", b"1")]).response_error == "missing or invalid :status"
    assert Head([(b":status", b"2000")]).response_error == "missing or invalid :status"
    assert Head([(b":status", b"200")]).trailers_error == "pseudo-header field in trailers"


def test_content_length_is_read() -> None:
    assert Head(REQUEST).content_length == -1
    assert Head([*REQUEST, (b"content-length", b"12")]).content_length == 12
    same = Head([*REQUEST, (b"content-length", b"3"), (b"content-length", b"3")])
    assert (same.content_length, same.request_error) == (3, "")


def test_proxy_headers_are_not_forwarded() -> None:
    head = Head([*REQUEST, (b"l5d-client-id", b"spoofed"), (b"l5d-dst-override", b"b:80")])
    assert decoded(head.block) == REQUEST
    assert head.name == "b:80"


def test_authority_routes_and_its_label_drops_port_80() -> None:
    head = Head([(b":authority", b"web.default.svc.cluster.local:80")])
    assert head.authority == "web.default.svc.cluster.local:80"
    assert head.label == "web.default.svc.cluster.local"
    other = Head([(b":authority", b"web:8080")])
    assert (other.authority, other.label) == ("web:8080", "web:8080")


def test_host_stands_in_for_a_missing_authority() -> None:
    assert Head([(b"host", b"a.b")]).authority == "a.b"
    assert Head([(b":method", b"GET")]).authority is None


def test_status_grpc_and_grpc_status_are_read() -> None:
    head = Head(
        [
            (b":status", b"200"),
            (b"content-type", b"application/grpc+proto"),
            (b"grpc-status", b"14"),
        ]
    )
    assert (head.status, head.grpc, head.grpc_status) == (200, True, 14)
    trailers = Head([(b"grpc-status", b"oops")])
    assert (trailers.status, trailers.grpc, trailers.grpc_status) == (0, False, None)


def test_grpc_errors_are_trailers_only_responses() -> None:
    err = ProxyError(502, "connection refused by 10.0.0.1:80 \u2014 100%", 14)
    status, grpc_status, block = error_response(err, grpc=True)
    assert (status, grpc_status) == (200, 14)
    assert decoded(block) == [
        (b":status", b"200"),
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"14"),
        (b"grpc-message", b"connection refused by 10.0.0.1:80 %E2%80%94 100%25"),
        (b"l5d-proxy-error", b"connection refused by 10.0.0.1:80 ? 100%"),
    ]


def test_http_errors_carry_the_status_and_the_reason() -> None:
    status, grpc_status, block = error_response(ProxyError(504, "timed out", 14), grpc=False)
    assert (status, grpc_status) == (504, None)
    assert decoded(block) == [
        (b":status", b"504"),
        (b"content-length", b"0"),
        (b"l5d-proxy-error", b"timed out"),
    ]
