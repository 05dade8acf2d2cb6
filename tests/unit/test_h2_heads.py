"""What the proxy reads from header blocks and what it forwards or answers itself."""

from __future__ import annotations

from weft.proxy.errors import ProxyError
from weft.proxy.h2.heads import Head, error_response
from weft.proxy.h2.hpack_codec import HpackDecoder


def decoded(block: bytes) -> list[tuple[bytes, bytes]]:
    return HpackDecoder().decode(block)


def test_connection_specific_fields_are_not_forwarded() -> None:
    head = Head(
        [
            (b":method", b"POST"),
            (b":authority", b"svc.ns:80"),
            (b"connection", b"keep-alive"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-connection", b"close"),
            (b"transfer-encoding", b"chunked"),
            (b"upgrade", b"h2c"),
            (b"te", b"gzip"),
            (b"x-kept", b"1"),
        ]
    )
    assert decoded(head.block) == [
        (b":method", b"POST"),
        (b":authority", b"svc.ns:80"),
        (b"x-kept", b"1"),
    ]


def test_te_trailers_is_forwarded() -> None:
    assert decoded(Head([(b"te", b"trailers")]).block) == [(b"te", b"trailers")]


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
