"""The pure parts of the proxy's gRPC client: the client side of an HTTP/2 connection
(weft.grpc_client.h2) and one call's gRPC rules (weft.grpc_client.calls).

The server side here is the frame layer itself: the client's bytes are parsed with
``FrameReader`` and the server's frames built with the frame builders and the HPACK encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from weft.grpc_client import calls
from weft.grpc_client.calls import CallState, RpcError, request_fields, timeout_value
from weft.grpc_client.h2 import RECEIVE_WINDOW, ClientConnection
from weft.proxy.h2 import frames as fr
from weft.proxy.h2.hpack_codec import Field, HpackDecoder, encode_block

# -- a server's view of what the client sends -------------------------------------------------


@dataclass
class Seen(fr.FrameReader):
    """Frames the client sent, as (kind, stream, details)."""

    got: list[tuple[str, int, object]] = field(default_factory=list)
    data: list[tuple[int, bytes, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self.decoder = HpackDecoder()

    def on_data(self, sid: int, payload: memoryview, end: bool, flow_len: int) -> None:
        self.got.append(("data", sid, (bytes(payload), end)))
        self.data.append((sid, bytes(payload), end))

    def on_headers(self, sid: int, block: bytes, end: bool) -> None:
        self.got.append(("headers", sid, (self.decoder.decode(block), end)))

    def on_rst(self, sid: int, code: int) -> None:
        self.got.append(("rst", sid, code))

    def on_settings(self, settings: list[tuple[int, int]]) -> None:
        self.got.append(("settings", 0, settings))

    def on_ping(self, opaque: bytes) -> None:
        self.got.append(("ping", 0, opaque))

    def on_goaway(self, last_sid: int, code: int) -> None:
        self.got.append(("goaway", last_sid, code))

    def on_window_update(self, sid: int, increment: int) -> None:
        self.got.append(("window", sid, increment))


def server_view(conn: ClientConnection, seen: Seen | None = None) -> Seen:
    """Feed what ``conn`` queued (without the preface) to a server's frame reader."""
    seen = seen or Seen()
    out = conn.data_to_send()
    if out.startswith(fr.PREFACE):
        out = out[len(fr.PREFACE) :]
    seen.feed(out)
    return seen


def sent(conn: ClientConnection, seen: Seen | None = None) -> list[tuple[str, int, object]]:
    view = seen or Seen()
    before = len(view.got)
    server_view(conn, view)
    return view.got[before:]


def data_sent(conn: ClientConnection) -> list[tuple[int, int, bool]]:
    """(stream, bytes, END_STREAM) of each DATA frame the client queued."""
    return [(sid, len(data), end) for sid, data, end in server_view(conn).data]


@dataclass
class Recorder:
    """A StreamHandler that records what it hears."""

    events: list[tuple[str, object]] = field(default_factory=list)

    def on_headers(self, fields: list[Field], end: bool) -> None:
        self.events.append(("headers", (fields, end)))

    def on_data(self, data: bytes, end: bool) -> None:
        self.events.append(("data", (data, end)))

    def on_reset(self, code: int) -> None:
        self.events.append(("reset", code))

    def on_lost(self, reason: str) -> None:
        self.events.append(("lost", reason))


HEAD: list[Field] = [(b":method", b"POST"), (b":path", b"/a.B/C")]
RESPONSE: list[Field] = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def response_headers(sid: int, fields: list[Field], end: bool = False) -> bytes:
    return fr.headers_frames(sid, encode_block(fields), end, fr.DEFAULT_MAX_FRAME)


def started() -> ClientConnection:
    conn = ClientConnection()
    conn.receive(fr.settings_frame([]))
    conn.data_to_send()
    return conn


# -- the connection ------------------------------------------------------------------------


def test_a_connection_opens_with_the_preface_settings_and_a_bigger_window() -> None:
    conn = ClientConnection()
    out = conn.data_to_send()
    assert out.startswith(fr.PREFACE)
    seen = Seen()
    seen.feed(out[len(fr.PREFACE) :])
    assert seen.got == [
        (
            "settings",
            0,
            [(fr.SETTINGS_ENABLE_PUSH, 0), (fr.SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW)],
        ),
        ("window", 0, RECEIVE_WINDOW - fr.DEFAULT_WINDOW),
    ]
    # The server's SETTINGS are acknowledged; its PINGs answered.
    conn.receive(fr.settings_frame([(fr.SETTINGS_MAX_CONCURRENT_STREAMS, 100)]))
    conn.receive(fr.frame_header(8, fr.PING, 0, 0) + b"12345678")
    out = conn.data_to_send()
    assert out == fr.SETTINGS_ACK + fr.ping_ack(b"12345678")


def test_a_request_is_headers_then_its_body_with_end_stream() -> None:
    conn = started()
    sid = conn.open(Recorder(), HEAD, b"hello")
    assert sid == 1
    assert sent(conn) == [("headers", 1, (HEAD, False)), ("data", 1, (b"hello", True))]
    assert conn.open(Recorder(), HEAD, b"") == 3
    assert sent(conn) == [("headers", 3, (HEAD, False)), ("data", 3, (b"", True))]


def test_sends_wait_for_the_servers_windows_and_frame_size() -> None:
    conn = ClientConnection()
    conn.receive(fr.settings_frame([(fr.SETTINGS_INITIAL_WINDOW_SIZE, 10)]))
    conn.data_to_send()
    body = bytes(range(100)) * 400  # 40 000 bytes
    conn.open(Recorder(), HEAD, body)
    view = server_view(conn)
    assert view.data == [(1, body[:10], False)]  # the stream's 10-byte window
    conn.receive(fr.window_update(1, 30_000))  # the connection still has 65 535 - 10
    assert data_sent(conn) == [(1, 16384, False), (1, 13616, False)]  # whole frames, then the rest
    conn.receive(fr.window_update(1, 100_000))
    # 65 535 on the connection: 30 010 were sent, 35 525 are left for the 9 990 still pending.
    assert data_sent(conn) == [(1, 9990, True)]  # END_STREAM with the last byte


def test_a_connection_window_blocks_every_stream_until_updated() -> None:
    conn = started()
    conn.open(Recorder(), HEAD, b"x" * 70_000)
    sent(conn)
    assert conn.send_window == 65_535 - 65_535
    conn.open(Recorder(), HEAD, b"y")
    assert [kind for kind, _, _ in sent(conn)] == ["headers"]  # its byte waits
    conn.receive(fr.window_update(0, 10_000))
    assert data_sent(conn) == [(3, 1, True)]  # stream 1 has used its own window too
    conn.receive(fr.window_update(1, 10_000))
    assert data_sent(conn) == [(1, 4465, True)]


def test_a_response_reaches_its_handler_and_the_stream_ends() -> None:
    conn = started()
    handler = Recorder()
    sid = conn.open(handler, HEAD, b"q")
    conn.data_to_send()
    conn.receive(
        response_headers(sid, RESPONSE)
        + fr.data_frame(sid, b"ab")
        + response_headers(sid, [(b"grpc-status", b"0")], end=True)
    )
    assert handler.events == [
        ("headers", (RESPONSE, False)),
        ("data", (b"ab", False)),
        ("headers", ([(b"grpc-status", b"0")], True)),
    ]
    assert conn.streams == {}
    # Frames for a stream that has ended are dropped (the connection window still counts them).
    conn.receive(fr.data_frame(sid, b"late"))
    assert conn.receive_window == RECEIVE_WINDOW - 6


def test_receive_windows_are_returned_as_bytes_arrive() -> None:
    conn = started()
    sid = conn.open(Recorder(), HEAD, b"")
    conn.data_to_send()
    conn.receive(response_headers(sid, RESPONSE))
    chunk = b"z" * 16384
    for _ in range(RECEIVE_WINDOW // 2 // 16384):
        conn.receive(fr.data_frame(sid, chunk))
    assert sent(conn) == [
        ("window", 0, RECEIVE_WINDOW // 2),
        ("window", sid, RECEIVE_WINDOW // 2),
    ]


def test_a_server_reset_ends_only_its_stream() -> None:
    conn = started()
    one, two = Recorder(), Recorder()
    first = conn.open(one, HEAD, b"")
    second = conn.open(two, HEAD, b"")
    conn.receive(fr.rst_stream(first, fr.REFUSED_STREAM))
    assert one.events == [("reset", fr.REFUSED_STREAM)]
    assert two.events == [] and list(conn.streams) == [second]


def test_goaway_refuses_the_streams_it_did_not_take_and_no_new_ones_open() -> None:
    conn = started()
    handlers = [Recorder() for _ in range(3)]
    sids = [conn.open(h, HEAD, b"") for h in handlers]
    conn.receive(fr.goaway(sids[0], fr.NO_ERROR))
    assert handlers[0].events == []
    assert handlers[1].events == handlers[2].events == [("reset", fr.REFUSED_STREAM)]
    assert not conn.accepting() and not conn.has_room()
    with pytest.raises(RuntimeError):
        conn.open(Recorder(), HEAD, b"")
    # The stream it took still completes.
    conn.receive(response_headers(sids[0], [(b":status", b"200"), (b"grpc-status", b"0")], True))
    assert handlers[0].events[-1][0] == "headers"


def test_the_servers_stream_limit_is_respected() -> None:
    conn = started()
    conn.receive(fr.settings_frame([(fr.SETTINGS_MAX_CONCURRENT_STREAMS, 1)]))
    sid = conn.open(Recorder(), HEAD, b"")
    assert not conn.has_room() and conn.accepting()
    conn.reset(sid)
    assert conn.has_room()
    assert sent(conn)[-1] == ("rst", sid, fr.CANCEL)
    conn.reset(sid)  # once only
    assert conn.data_to_send() == b""


def test_windows_past_2_to_the_31_are_flow_control_errors() -> None:
    conn = started()
    handler = Recorder()
    sid = conn.open(handler, HEAD, b"")
    conn.receive(fr.window_update(sid, fr.MAX_WINDOW))  # the stream's: that stream ends
    assert handler.events == [("reset", fr.FLOW_CONTROL_ERROR)]
    assert sent(conn)[-1] == ("rst", sid, fr.FLOW_CONTROL_ERROR)
    with pytest.raises(fr.H2Error) as info:
        conn.receive(fr.window_update(0, fr.MAX_WINDOW))  # the connection's: it ends
    assert info.value.code == fr.FLOW_CONTROL_ERROR
    conn = started()
    conn.open(Recorder(), HEAD, b"")
    conn.receive(fr.window_update(1, fr.MAX_WINDOW - fr.DEFAULT_WINDOW))
    with pytest.raises(fr.H2Error):  # a bigger initial window would push stream 1 past it
        conn.receive(fr.settings_frame([(fr.SETTINGS_INITIAL_WINDOW_SIZE, 70_000)]))


def test_frames_on_streams_never_opened_are_connection_errors() -> None:
    for data in (fr.data_frame(1, b"x"), fr.data_frame(2, b"x"), fr.rst_stream(5, 0)):
        conn = started()
        with pytest.raises(fr.H2Error) as info:
            conn.receive(data)
        assert info.value.code == fr.PROTOCOL_ERROR


def test_a_bad_header_block_is_a_compression_error() -> None:
    conn = started()
    sid = conn.open(Recorder(), HEAD, b"")
    with pytest.raises(fr.H2Error) as info:
        conn.receive(fr.headers_frames(sid, b"\xff\xff\xff", False, 16384))
    assert info.value.code == fr.COMPRESSION_ERROR


def test_an_answer_before_the_request_is_sent_cancels_the_rest_of_it() -> None:
    conn = ClientConnection()
    conn.receive(fr.settings_frame([(fr.SETTINGS_INITIAL_WINDOW_SIZE, 0)]))
    handler = Recorder()
    sid = conn.open(handler, HEAD, b"body")
    conn.data_to_send()
    conn.receive(response_headers(sid, [*RESPONSE, (b"grpc-status", b"7")], end=True))
    assert handler.events == [("headers", ([*RESPONSE, (b"grpc-status", b"7")], True))]
    assert sent(conn) == [("rst", sid, fr.CANCEL)]
    assert conn.streams == {}


def test_closing_cancels_every_stream_with_one_goaway() -> None:
    conn = started()
    handlers = [Recorder(), Recorder()]
    for handler in handlers:
        conn.open(handler, HEAD, b"")
    conn.data_to_send()
    assert conn.close() == handlers
    assert conn.close() == []
    assert sent(conn) == [
        ("rst", 1, fr.CANCEL),
        ("rst", 3, fr.CANCEL),
        ("goaway", 0, fr.NO_ERROR),
    ]
    assert not conn.accepting()


# -- gRPC's rules for one call -----------------------------------------------------------------


def frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


class Woken:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def call() -> tuple[CallState, Woken]:
    woken = Woken()
    return CallState(woken), woken


def test_request_heads_carry_grpcs_fields_and_the_deadline() -> None:
    fields = dict(request_fields("/a.B/C", "svc.example", tls=True, timeout=5))
    assert fields[b":scheme"] == b"https" and fields[b":authority"] == b"svc.example"
    assert fields[b"content-type"] == b"application/grpc" and fields[b"te"] == b"trailers"
    assert fields[b"grpc-timeout"] == b"5000m"
    assert b"grpc-timeout" not in dict(request_fields("/a.B/C", "h:1", tls=False))
    assert timeout_value(0.0001) == b"1m"
    assert timeout_value(10**6) == b"1000000S"


def test_messages_split_across_data_frames_come_out_whole() -> None:
    state, woken = call()
    state.on_headers(RESPONSE, False)
    both = frame(b"first") + frame(b"") + frame(b"x" * 70000)
    for i in range(0, len(both), 7):
        state.on_data(both[i : i + 7], False)
    assert list(state.messages) == [b"first", b"", b"x" * 70000]
    state.on_headers([(b"grpc-status", b"0")], True)
    assert state.status == (calls.OK, "")
    assert woken.count >= 4


def test_a_status_with_a_percent_encoded_message() -> None:
    state, _ = call()
    state.on_headers(RESPONSE, False)
    trailers = [(b"grpc-status", b"7"), (b"grpc-message", b"token is for %22voting%22 %C3%A9")]
    state.on_headers(trailers, True)
    assert state.status == (calls.PERMISSION_DENIED, 'token is for "voting" é')


def test_a_trailers_only_response() -> None:
    state, _ = call()
    state.on_headers([*RESPONSE, (b"grpc-status", b"12"), (b"grpc-message", b"no")], True)
    assert state.status == (calls.UNIMPLEMENTED, "no") and not state.reset_by_us


@pytest.mark.parametrize(
    ("head", "end", "expected"),
    [
        ([(b":status", b"503")], True, (calls.UNAVAILABLE, "HTTP status 503")),
        ([(b":status", b"404")], False, (calls.UNIMPLEMENTED, "HTTP status 404")),
        ([(b":status", b"418")], True, (calls.UNKNOWN, "HTTP status 418")),
        ([], True, (calls.UNKNOWN, "HTTP status missing")),
        ([(b":status", b"200"), (b"content-type", b"text/html")], False, (calls.UNKNOWN, None)),
        ([*RESPONSE], True, (calls.UNKNOWN, "the response has no grpc-status")),
        ([*RESPONSE, (b"grpc-status", b"x")], True, (calls.UNKNOWN, None)),
    ],
)
def test_responses_that_are_not_grpc_get_the_mapped_status(
    head: list[Field], end: bool, expected: tuple[int, str | None]
) -> None:
    state, _ = call()
    state.on_headers(head, end)
    assert state.status is not None
    assert state.status[0] == expected[0]
    if expected[1] is not None:
        assert state.status[1] == expected[1]
    # A stream the server has not ended must be reset by the client.
    assert state.reset_by_us == (not end and state.status[0] != calls.OK)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (fr.REFUSED_STREAM, calls.UNAVAILABLE),
        (fr.CANCEL, calls.CANCELLED),
        (fr.ENHANCE_YOUR_CALM, calls.RESOURCE_EXHAUSTED),
        (fr.PROTOCOL_ERROR, calls.INTERNAL),
        (fr.NO_ERROR, calls.INTERNAL),
    ],
)
def test_resets_map_to_grpc_codes(code: int, expected: int) -> None:
    state, _ = call()
    state.on_reset(code)
    assert state.status is not None and state.status[0] == expected


def test_broken_streams_end_the_call_with_internal() -> None:
    state, _ = call()
    state.on_data(frame(b"early"), False)
    assert state.status is not None and state.status[0] == calls.INTERNAL and state.reset_by_us

    state, _ = call()
    state.on_headers(RESPONSE, False)
    state.on_data(b"\x01\x00\x00\x00\x01z", False)  # compressed, without grpc-encoding
    assert state.status is not None and state.status[0] == calls.INTERNAL and state.reset_by_us

    state, _ = call()
    state.on_headers(RESPONSE, False)
    state.on_data(frame(b"whole") + b"\x00\x00\x00\x00\x09part", True)
    assert list(state.messages) == [b"whole"]
    assert state.status == (calls.INTERNAL, "the server ended the stream without a status")

    state, _ = call()
    state.on_headers(RESPONSE, False)
    state.on_data(b"\x00\x00\x00\x00\x09part", False)
    state.on_headers([(b"grpc-status", b"0")], True)
    assert state.status == (calls.INTERNAL, "the stream ended inside a message")

    state = CallState(Woken(), max_message=4)
    state.on_headers(RESPONSE, False)
    state.on_data(frame(b"12345"), False)
    assert state.status is not None and "exceeds" in state.status[1]


def test_the_first_end_is_the_status() -> None:
    state, woken = call()
    state.on_lost("the connection to x was lost")
    state.fail(calls.CANCELLED, "cancelled")
    state.on_reset(fr.CANCEL)
    assert state.status == (calls.UNAVAILABLE, "the connection to x was lost")
    assert woken.count == 1 and not state.reset_by_us


def test_rpc_errors_name_their_code() -> None:
    error = RpcError(calls.PERMISSION_DENIED, "no")
    assert str(error) == "PERMISSION_DENIED: no" and error.code_name == "PERMISSION_DENIED"
    assert RpcError(99, "?").code_name == "CODE_99"
