"""HTTP/1 heads as the proxy reads and rewrites them (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from weft.proxy import h1head

names = st.sampled_from(
    [b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"l5d-dst-override",
     b"L5D-Dst-Override", b"X-Other"]
)  # fmt: skip
values = st.sampled_from([b"a", b"12", b"chunked", b"gzip, chunked", b"chunked, gzip", b""])


@given(st.lists(st.tuples(names, values), max_size=8))
def test_request_facts_read_what_the_single_lookups_read(headers: h1head.Headers) -> None:
    assert h1head.request_facts(headers) == (
        h1head.is_chunked(headers),
        h1head.header_value(headers, b"content-length"),
        h1head.header_value(headers, b"host"),
        h1head.header_value(headers, b"l5d-dst-override"),
    )


def test_reason_phrases_are_the_standard_ones() -> None:
    assert h1head.reason_phrase(204) == b"No Content"
    assert h1head.reason_phrase(204) == b"No Content"  # from the cache
    assert h1head.reason_phrase(599) == b"Unknown"
