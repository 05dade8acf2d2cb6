"""Protocol detection on first bytes."""

from hypothesis import given
from hypothesis import strategies as st

from weft.proxy.detect import H2_PREFACE, MAX_DETECT_BYTES, Protocol, detect


def test_h2_preface_is_http2() -> None:
    assert detect(H2_PREFACE + b"\x00\x00\x00\x04") is Protocol.HTTP2


def test_partial_preface_waits_for_more() -> None:
    assert detect(H2_PREFACE[:10]) is None


def test_request_line_is_http1() -> None:
    assert detect(b"GET /index.html HTTP/1.1\r\nHost: x\r\n") is Protocol.HTTP1
    assert detect(b"OPTIONS * HTTP/1.0\r\n") is Protocol.HTTP1


def test_partial_request_line_waits() -> None:
    assert detect(b"GET /index.html HT") is None
    assert detect(b"POST") is None


def test_server_speaks_first_banner_is_opaque() -> None:
    assert detect(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03") is Protocol.OPAQUE  # TLS hello
    assert detect(b"SSH-2.0-OpenSSH_9.2\r\n") is Protocol.OPAQUE


def test_http2_version_in_request_line_is_not_http1() -> None:
    assert detect(b"GET / HTTP/2.0\r\n") is Protocol.OPAQUE


def test_long_undecided_prefix_becomes_opaque() -> None:
    assert detect(b"GET /" + b"a" * MAX_DETECT_BYTES) is Protocol.OPAQUE


@given(st.binary(max_size=2048))
def test_detection_always_decides_within_the_limit(data: bytes) -> None:
    result = detect(data)
    if len(data) >= MAX_DETECT_BYTES:
        assert result is not None


@given(st.binary(max_size=600), st.integers(min_value=0, max_value=600))
def test_detection_is_stable_as_bytes_arrive(data: bytes, cut: int) -> None:
    """A decision on a prefix never changes when more bytes arrive."""
    early = detect(data[:cut])
    if early is not None:
        assert detect(data) is early


@given(
    st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"X-CUSTOM"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~%?=&", min_size=1, max_size=200),
    st.sampled_from([b"1.0", b"1.1"]),
)
def test_any_wellformed_request_line_is_http1(method: bytes, path: str, version: bytes) -> None:
    line = method + b" /" + path.encode() + b" HTTP/" + version + b"\r\n"
    assert detect(line) is Protocol.HTTP1
    for cut in range(1, len(line) - 1):
        assert detect(line[:cut]) in (None, Protocol.HTTP1)
