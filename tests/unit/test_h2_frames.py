"""The sans-I/O HTTP/2 frame layer: builders and reader agree, and bad input is a protocol error."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weft.proxy.h2 import frames as fr


class Recorder(fr.FrameReader):
    """Records every hook call as a tuple."""

    def __init__(self, max_frame_size: int = fr.DEFAULT_MAX_FRAME) -> None:
        super().__init__(max_frame_size=max_frame_size, max_block=1 << 20)
        self.calls: list[tuple[object, ...]] = []

    def on_data(self, sid: int, payload: memoryview, end: bool, flow_len: int) -> None:
        self.calls.append(("data", sid, bytes(payload), end, flow_len))

    def on_headers(self, sid: int, block: bytes, end: bool) -> None:
        self.calls.append(("headers", sid, block, end))

    def on_headers_error(self, sid: int, block: bytes, code: int) -> None:
        self.calls.append(("headers_error", sid, block, code))

    def on_rst(self, sid: int, code: int) -> None:
        self.calls.append(("rst", sid, code))

    def on_settings(self, settings: list[tuple[int, int]]) -> None:
        self.calls.append(("settings", settings))

    def on_ping(self, opaque: bytes) -> None:
        self.calls.append(("ping", opaque))

    def on_goaway(self, last_sid: int, code: int) -> None:
        self.calls.append(("goaway", last_sid, code))

    def on_window_update(self, sid: int, increment: int) -> None:
        self.calls.append(("window", sid, increment))

    def on_stream_error(self, sid: int, code: int) -> None:
        self.calls.append(("stream_error", sid, code))


BIG_BLOCK = bytes(range(256)) * 100  # 25,600 bytes: HEADERS plus a CONTINUATION

WIRE = b"".join(
    [
        fr.settings_frame(
            [(fr.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (fr.SETTINGS_ENABLE_PUSH, 0)]
        ),
        fr.SETTINGS_ACK,
        fr.headers_frames(1, b"\x82\x86", False, fr.DEFAULT_MAX_FRAME),
        fr.data_frame(1, b"hello"),
        fr.data_frame(1, b"", end_stream=True),
        fr.headers_frames(3, BIG_BLOCK, True, fr.DEFAULT_MAX_FRAME),
        fr.window_update(0, 1000),
        fr.window_update(3, 7),
        fr.rst_stream(3, fr.CANCEL),
        fr.frame_header(8, fr.PING, 0, 0) + b"12345678",
        fr.ping_ack(b"abcdefgh"),  # an ACK needs no answer: not reported
        fr.frame_header(5, fr.PRIORITY, 0, 5) + b"\x00\x00\x00\x01\x10",  # skipped
        fr.frame_header(3, 0xEE, 0, 1) + b"???",  # unknown type: skipped
        fr.goaway(3, fr.NO_ERROR, b"bye"),
    ]
)

EXPECTED: list[tuple[object, ...]] = [
    ("settings", [(fr.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20), (fr.SETTINGS_ENABLE_PUSH, 0)]),
    ("headers", 1, b"\x82\x86", False),
    ("data", 1, b"hello", False, 5),
    ("data", 1, b"", True, 0),
    ("headers", 3, BIG_BLOCK, True),
    ("window", 0, 1000),
    ("window", 3, 7),
    ("rst", 3, fr.CANCEL),
    ("ping", b"12345678"),
    ("goaway", 3, fr.NO_ERROR),
]


def test_builders_and_reader_round_trip() -> None:
    reader = Recorder()
    reader.feed(WIRE)
    assert reader.calls == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(WIRE)), max_size=30))
def test_any_split_of_the_stream_gives_the_same_frames(cuts: list[int]) -> None:
    reader = Recorder()
    points = [0, *sorted(cuts), len(WIRE)]
    for start, end in itertools.pairwise(points):
        reader.feed(WIRE[start:end])
    assert reader.calls == EXPECTED


def test_padding_is_stripped_but_counted_for_flow_control() -> None:
    reader = Recorder()
    payload = b"\x03" + b"abc" + b"\x00\x00\x00"
    reader.feed(fr.frame_header(len(payload), fr.DATA, fr.PADDED | fr.END_STREAM, 1) + payload)
    block = b"\x02" + b"\x00\x00\x00\x00\x10" + b"\x82" + b"\x00\x00"
    flags = fr.PADDED | fr.PRIORITY_FLAG | fr.END_HEADERS
    reader.feed(fr.frame_header(len(block), fr.HEADERS, flags, 3) + block)
    assert reader.calls == [("data", 1, b"abc", True, 7), ("headers", 3, b"\x82", False)]


def test_large_header_blocks_are_split_by_the_peer_frame_size() -> None:
    wire = fr.headers_frames(9, BIG_BLOCK, False, 16384)
    assert wire[3] == fr.HEADERS and not wire[4] & fr.END_HEADERS
    second = 9 + 16384
    assert wire[second + 3] == fr.CONTINUATION and wire[second + 4] & fr.END_HEADERS
    reader = Recorder()
    reader.feed(wire)
    assert reader.calls == [("headers", 9, BIG_BLOCK, False)]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (fr.frame_header(16385, fr.DATA, 0, 1), fr.FRAME_SIZE_ERROR),
        (fr.data_frame(0, b"x"), fr.PROTOCOL_ERROR),
        (fr.frame_header(1, fr.HEADERS, fr.END_HEADERS, 0) + b"\x82", fr.PROTOCOL_ERROR),
        (fr.frame_header(2, fr.DATA, fr.PADDED, 1) + b"\x05x", fr.PROTOCOL_ERROR),
        (
            fr.frame_header(1, fr.HEADERS, 0, 1) + b"\x82" + fr.data_frame(1, b"x"),
            fr.PROTOCOL_ERROR,
        ),
        (fr.frame_header(1, fr.CONTINUATION, fr.END_HEADERS, 1) + b"\x82", fr.PROTOCOL_ERROR),
        (fr.frame_header(4, fr.PUSH_PROMISE, 0, 1) + b"\x00\x00\x00\x02", fr.PROTOCOL_ERROR),
        (fr.frame_header(5, fr.SETTINGS, 0, 0) + b"\x00" * 5, fr.FRAME_SIZE_ERROR),
        (fr.settings_frame([(fr.SETTINGS_ENABLE_PUSH, 2)]), fr.PROTOCOL_ERROR),
        (fr.settings_frame([(fr.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 31)]), fr.FLOW_CONTROL_ERROR),
        (fr.settings_frame([(fr.SETTINGS_MAX_FRAME_SIZE, 100)]), fr.PROTOCOL_ERROR),
        (fr.window_update(0, 0), fr.PROTOCOL_ERROR),
        (fr.frame_header(3, fr.WINDOW_UPDATE, 0, 0) + b"\x00\x00\x01", fr.FRAME_SIZE_ERROR),
        (fr.frame_header(4, fr.PING, 0, 0) + b"1234", fr.FRAME_SIZE_ERROR),
        (fr.frame_header(4, fr.RST_STREAM, 0, 0) + b"\x00\x00\x00\x08", fr.PROTOCOL_ERROR),
        (fr.frame_header(4, fr.GOAWAY, 0, 0) + b"\x00\x00\x00\x01", fr.FRAME_SIZE_ERROR),
    ],
)
def test_malformed_frames_are_connection_errors(wire: bytes, code: int) -> None:
    with pytest.raises(fr.H2Error) as info:
        Recorder().feed(wire)
    assert info.value.code == code


def test_stream_level_errors_are_reported_for_that_stream_only() -> None:
    reader = Recorder()
    reader.feed(fr.window_update(5, 0) + fr.frame_header(4, fr.PRIORITY, 0, 7) + b"\x00" * 4)
    assert reader.calls == [
        ("stream_error", 5, fr.PROTOCOL_ERROR),
        ("stream_error", 7, fr.FRAME_SIZE_ERROR),
    ]


def test_a_stream_that_depends_on_itself_is_a_stream_error() -> None:
    reader = Recorder()
    itself = b"\x00\x00\x00\x07\x10"  # depends on stream 7, weight 17
    flags = fr.PRIORITY_FLAG | fr.END_HEADERS
    reader.feed(fr.frame_header(6, fr.HEADERS, flags, 7) + itself + b"\x82")
    reader.feed(fr.frame_header(6, fr.HEADERS, fr.PRIORITY_FLAG, 7) + itself + b"\x82")
    reader.feed(fr.frame_header(1, fr.CONTINUATION, fr.END_HEADERS, 7) + b"\x86")
    reader.feed(fr.frame_header(5, fr.PRIORITY, 0, 7) + itself)
    reader.feed(fr.frame_header(5, fr.PRIORITY, 0, 9) + itself)  # depends on another: fine
    assert reader.calls == [
        ("headers_error", 7, b"\x82", fr.PROTOCOL_ERROR),
        ("headers_error", 7, b"\x82\x86", fr.PROTOCOL_ERROR),
        ("stream_error", 7, fr.PROTOCOL_ERROR),
    ]


def test_a_connection_preface_must_be_a_settings_frame() -> None:
    reader = fr.FrameReader(expect_settings=True)
    with pytest.raises(fr.H2Error) as info:
        reader.feed(fr.SETTINGS_ACK)
    assert info.value.code == fr.PROTOCOL_ERROR
    reader = Recorder()
    reader.expect_settings = True
    wire = fr.settings_frame([]) + fr.data_frame(1, b"x")
    reader.feed(wire[:5])  # arriving in pieces is fine
    reader.feed(wire[5:])
    assert reader.calls == [("settings", []), ("data", 1, b"x", False, 1)]


def test_oversized_header_blocks_are_refused() -> None:
    reader = fr.FrameReader(max_block=20000)
    with pytest.raises(fr.H2Error) as info:
        reader.feed(fr.headers_frames(1, BIG_BLOCK, False, fr.DEFAULT_MAX_FRAME))
    assert info.value.code == fr.ENHANCE_YOUR_CALM


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_nothing_but_h2error(data: bytes) -> None:
    reader = Recorder(max_frame_size=1024)
    with contextlib.suppress(fr.H2Error):
        reader.feed(data)
        reader.feed(data[::-1])


def test_error_names_are_the_lower_case_rfc_names() -> None:
    assert fr.error_name(fr.CANCEL) == "cancel"
    assert fr.error_name(fr.REFUSED_STREAM) == "refused_stream"
    assert fr.error_name(0xD) == "http_1_1_required"
    assert fr.error_name(0x99) == "unknown_error_153"
