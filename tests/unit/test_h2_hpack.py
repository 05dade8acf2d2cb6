"""HPACK: the RFC 7541 Appendix C examples, the stateless encoder, and hostile input."""

from __future__ import annotations

import contextlib

import hpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from weft.proxy.h2.hpack_codec import (
    STATIC_TABLE,
    TABLE_SIZE_ZERO,
    Field,
    HpackDecoder,
    HpackError,
    encode_block,
    encode_field,
    encode_integer,
)

# A decoded block, the dynamic table after it (newest first), and the table size.
Example = tuple[list[Field], list[Field], int]

AUTH = (b":authority", b"www.example.com")
NO_CACHE = (b"cache-control", b"no-cache")
CUSTOM = (b"custom-key", b"custom-value")
GET_HTTP_ROOT = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")]
GET_HTTPS_INDEX = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html")]

# RFC 7541 C.3 (literal strings) and C.4 (the same requests, Huffman-coded).
REQUESTS: list[Example] = [
    ([*GET_HTTP_ROOT, AUTH], [AUTH], 57),
    ([*GET_HTTP_ROOT, AUTH, NO_CACHE], [NO_CACHE, AUTH], 110),
    ([*GET_HTTPS_INDEX, AUTH, CUSTOM], [CUSTOM, NO_CACHE, AUTH], 164),
]
C3 = [
    "828684410f7777772e6578616d706c652e636f6d",
    "828684be58086e6f2d6361636865",
    "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
]
C4 = [
    "828684418cf1e3c2e5f23a6ba0ab90f4ff",
    "828684be5886a8eb10649cbf",
    "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf",
]

PRIVATE = (b"cache-control", b"private")
DATE1 = (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT")
DATE2 = (b"date", b"Mon, 21 Oct 2013 20:13:22 GMT")
LOCATION = (b"location", b"https://www.example.com")
GZIP = (b"content-encoding", b"gzip")
COOKIE = (b"set-cookie", b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")

# RFC 7541 C.5 (literal) and C.6 (Huffman): responses with a 256-byte table, so entries are evicted.
RESPONSES: list[Example] = [
    (
        [(b":status", b"302"), PRIVATE, DATE1, LOCATION],
        [LOCATION, DATE1, PRIVATE, (b":status", b"302")],
        222,
    ),
    (
        [(b":status", b"307"), PRIVATE, DATE1, LOCATION],
        [(b":status", b"307"), LOCATION, DATE1, PRIVATE],
        222,
    ),
    ([(b":status", b"200"), PRIVATE, DATE2, LOCATION, GZIP, COOKIE], [COOKIE, GZIP, DATE2], 215),
]
C5 = [
    "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d54"
    "6e1768747470733a2f2f7777772e6578616d706c652e636f6d",
    "4803333037c1c0bf",
    "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f"
    "3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076"
    "657273696f6e3d31",
]
C6 = [
    "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f"
    "0b97c8e9ae82ae43d3",
    "4883640effc1c0bf",
    "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335df"
    "dfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
]


@pytest.mark.parametrize(
    ("blocks", "expected", "table_size"),
    [(C3, REQUESTS, 4096), (C4, REQUESTS, 4096), (C5, RESPONSES, 256), (C6, RESPONSES, 256)],
    ids=["C.3", "C.4", "C.5", "C.6"],
)
def test_rfc7541_appendix_c_examples(
    blocks: list[str], expected: list[Example], table_size: int
) -> None:
    decoder = HpackDecoder(max_table_size=table_size)
    for block, (headers, table, size) in zip(blocks, expected, strict=True):
        assert decoder.decode(bytes.fromhex(block)) == headers
        assert decoder.table == table
        assert decoder.size == size


def test_static_table_matches_the_hpack_library() -> None:
    assert tuple(hpack.table.HeaderTable.STATIC_TABLE) == STATIC_TABLE


def test_generation_moves_only_when_the_table_changes() -> None:
    decoder = HpackDecoder()
    decoder.decode(bytes.fromhex(C3[0]))  # inserts :authority
    generation = decoder.generation
    indexed = bytes.fromhex("828684be")  # only indexed fields, one of them dynamic
    assert decoder.decode(indexed) == [*GET_HTTP_ROOT, AUTH]
    assert decoder.generation == generation
    decoder.decode(bytes.fromhex(C3[1]))  # inserts cache-control
    assert decoder.generation != generation


field_names = st.from_regex(rb"\A[a-z][a-z0-9-]{0,20}\Z").filter(lambda n: n != b"")
field_values = st.binary(max_size=300).map(lambda v: bytes(b % 95 + 32 for b in v))
fields = st.lists(
    st.one_of(st.tuples(field_names, field_values), st.sampled_from(STATIC_TABLE)), max_size=30
)


@given(fields)
def test_encoder_output_decodes_the_same_everywhere_and_leaves_no_table(
    headers: list[tuple[bytes, bytes]],
) -> None:
    block = encode_block(headers)
    ours = HpackDecoder(max_list_size=1 << 20)
    assert ours.decode(block) == headers
    assert ours.table == []
    theirs = hpack.Decoder()
    theirs.max_header_list_size = 1 << 20
    assert [tuple(f) for f in theirs.decode(block, raw=True)] == headers


def test_encoder_uses_static_indexes_and_never_indexes_credentials() -> None:
    assert encode_field(b":method", b"GET") == b"\x82"
    assert encode_field(b":status", b"200") == b"\x88"
    assert encode_field(b"content-type", b"x") == b"\x0f\x10\x01x"  # name index 31, no indexing
    assert encode_field(b"authorization", b"s") == b"\x1f\x08\x01s"  # never indexed
    assert encode_field(b"x-a", b"b") == b"\x00\x03x-a\x01b"
    assert TABLE_SIZE_ZERO == b"\x20"


def test_integer_encoding_matches_rfc7541_c1() -> None:
    assert encode_integer(10, 5, 0) == b"\x0a"
    assert encode_integer(1337, 5, 0) == b"\x1f\x9a\x0a"
    assert encode_integer(42, 8, 0) == b"\x2a"


@pytest.mark.parametrize("value", [0, 1, 30, 31, 127, 128, 255, 1337, 2**20, 2**31 - 1])
def test_integers_round_trip(value: int) -> None:
    decoder = HpackDecoder()
    decoder.allowed_size = 2**31
    decoder.decode(encode_integer(value, 5, 0x20))  # a table size update: a 5-bit prefix
    assert decoder.max_size == value


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",  # index 0
        b"\xbe",  # dynamic index 62 with an empty table
        b"\xff\xff\xff\xff\xff\xff\x7f",  # absurd integer
        b"\x3f\xe2\x1f",  # table size update to 4097, above the limit (4096)
        b"\x82\x20",  # table size update after a field
        b"\x40\x05ab",  # truncated name
        b"\x00\x81\xff",  # invalid Huffman (EOS padding too long)
    ],
)
def test_malformed_blocks_are_compression_errors(block: bytes) -> None:
    with pytest.raises(HpackError):
        HpackDecoder().decode(block)


def test_header_list_size_is_limited() -> None:
    decoder = HpackDecoder(max_list_size=1000)
    block = encode_block([(b"x-big", b"v" * 600), (b"x-big2", b"v" * 600)])
    with pytest.raises(HpackError):
        decoder.decode(block)


@given(st.binary(max_size=500))
def test_arbitrary_bytes_raise_nothing_but_hpack_error(block: bytes) -> None:
    with contextlib.suppress(HpackError):
        HpackDecoder().decode(block)
