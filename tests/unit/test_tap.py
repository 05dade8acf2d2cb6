"""Tap's pure parts: match evaluation, event construction, limit accounting, the bounded queue
and gRPC's message framing."""

from __future__ import annotations

import ipaddress
from typing import Any, cast

import pytest

from weft.api import http_types_pb2, net_pb2, tap_pb2
from weft.proxy.h1head import head_fields, request_head
from weft.proxy.h2 import frames as fr
from weft.proxy.h2.heads import block_fields
from weft.proxy.h2.hpack_codec import encode_block
from weft.proxy.tap import events, wire
from weft.proxy.tap.match import MatchError, compile_match
from weft.proxy.tap.registry import Fields, RequestFacts, Tapped, Taps
from weft.proxy.tap.stream import TapStream

Match = tap_pb2.ObserveRequest.Match
StringMatch = Match.Http.StringMatch


def facts(
    direction: str = "outbound",
    source: tuple[str, int] = ("10.1.2.3", 40000),
    destination: tuple[str, int] | None = ("10.4.5.6", 8080),
    method: str = "GET",
    scheme: str | None = "http",
    authority: str = "web.emojivoto.svc.cluster.local:80",
    path: str = "/api/list?x=1",
    fields: Fields | None = None,
    **labels: Any,
) -> RequestFacts:
    return RequestFacts(
        direction,
        source,
        destination,
        method,
        scheme,
        authority,
        path,
        lambda: list(fields or []),
        src_tls=labels.get("src_tls", (("tls", "no_identity"), ("no_tls_reason", "loopback"))),
        dst_pairs=labels.get("dst_pairs", (("dst_namespace", "emojivoto"), ("dst_pod", "web-1"))),
        dst_tls=labels.get("dst_tls", (("tls", "true"), ("server_id", "web.emojivoto.sa"))),
        route_pairs=labels.get("route_pairs", (("rt_route", "GET /api/list"),)),
    )


def ipv4(text: str) -> net_pb2.IPAddress:
    return net_pb2.IPAddress(ipv4=int(ipaddress.IPv4Address(text)))


def ipv6(text: str) -> net_pb2.IPAddress:
    value = int(ipaddress.IPv6Address(text))
    return net_pb2.IPAddress(ipv6=net_pb2.IPv6(first=value >> 64, last=value & (2**64 - 1)))


def netmask(ip: net_pb2.IPAddress, mask: int, source: bool = False) -> Match:
    tcp = Match.Tcp(netmask=Match.Tcp.Netmask(ip=ip, mask=mask))
    return Match(source=tcp) if source else Match(destination=tcp)


def ports(low: int, high: int = 0, source: bool = False) -> Match:
    tcp = Match.Tcp(ports=Match.Tcp.PortRange(min=low, max=high))
    return Match(source=tcp) if source else Match(destination=tcp)


def http(**kwargs: Any) -> Match:
    return Match(http=Match.Http(**kwargs))


def negate(m: Match) -> Match:
    out = Match()
    getattr(out, "not").CopyFrom(m)
    return out


def all_of(*ms: Match) -> Match:
    return Match(all=Match.Seq(matches=ms))


def any_of(*ms: Match) -> Match:
    return Match(any=Match.Seq(matches=ms))


def matches(m: Match | None, f: RequestFacts | None = None) -> bool:
    return compile_match(m)(f or facts())


# -- match ----------------------------------------------------------------------------------


def test_no_match_selects_everything() -> None:
    assert matches(None)


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (netmask(ipv4("10.4.0.0"), 16), True),
        (netmask(ipv4("10.4.5.6"), 32), True),
        (netmask(ipv4("10.4.5.7"), 32), False),
        (netmask(ipv4("10.5.0.0"), 16), False),
        (netmask(ipv4("192.168.0.1"), 0), True),  # /0: every IPv4 address
        (netmask(ipv4("10.4.5.0"), 31), False),
        (netmask(ipv4("10.4.5.7"), 31), True),  # host bits beyond the mask are ignored
        (netmask(ipv6("::"), 0), False),  # an IPv6 network never holds an IPv4 address
        (netmask(ipv4("10.1.2.0"), 24, source=True), True),
        (netmask(ipv4("10.4.5.0"), 24, source=True), False),
        (ports(8080), True),  # max 0: min alone
        (ports(8081), False),
        (ports(8000, 8080), True),
        (ports(8080, 9000), True),
        (ports(8081, 9000), False),
        (ports(39999, 40001, source=True), True),
        (ports(1, 1024, source=True), False),
    ],
)
def test_tcp_matches(m: Match, expected: bool) -> None:
    assert matches(m) is expected


def test_tcp_matches_ipv6_and_missing_or_named_addresses() -> None:
    v6 = facts(destination=("fd00::1:5", 443))
    assert matches(netmask(ipv6("fd00::"), 64), v6)
    assert not matches(netmask(ipv6("fd01::"), 64), v6)
    assert not matches(netmask(ipv4("0.0.0.0"), 0), v6)
    assert not matches(netmask(ipv4("0.0.0.0"), 0), facts(destination=None))
    assert not matches(ports(1, 65535), facts(destination=None))
    assert not matches(netmask(ipv4("0.0.0.0"), 0), facts(destination=("backend", 80)))
    assert matches(ports(80), facts(destination=("backend", 80)))


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (http(method=http_types_pb2.HttpMethod(registered="GET")), True),
        (http(method=http_types_pb2.HttpMethod(registered="POST")), False),
        (http(method=http_types_pb2.HttpMethod(unregistered="GET")), True),
        (http(scheme=http_types_pb2.Scheme(registered="HTTP")), True),
        (http(scheme=http_types_pb2.Scheme(registered="HTTPS")), False),
        (http(scheme=http_types_pb2.Scheme(unregistered="HTTP")), True),  # no case
        (http(authority=StringMatch(exact="web.emojivoto.svc.cluster.local:80")), True),
        (http(authority=StringMatch(exact="web.emojivoto.svc.cluster.local")), False),
        (http(authority=StringMatch(prefix="web.")), True),
        (http(authority=StringMatch(prefix="emoji.")), False),
        (http(path=StringMatch(exact="/api/list")), True),  # the query is no part of the path
        (http(path=StringMatch(exact="/api/list?x=1")), False),
        (http(path=StringMatch(prefix="/api")), True),
        (http(path=StringMatch(prefix="/API")), False),
        (http(path=StringMatch(prefix="")), True),
    ],
)
def test_http_matches(m: Match, expected: bool) -> None:
    assert matches(m) is expected


def test_unregistered_method_and_scheme_from_fields() -> None:
    purge = facts(method="PURGE", scheme=None, fields=[(b":scheme", b"https"), (b"a", b"b")])
    assert matches(http(method=http_types_pb2.HttpMethod(unregistered="PURGE")), purge)
    assert matches(http(scheme=http_types_pb2.Scheme(registered="HTTPS")), purge)
    assert facts(scheme=None).scheme == ""


def test_label_matches_use_tap_keys() -> None:
    def label(key: str, value: str, route: bool = False) -> Match:
        found = Match.Label(key=key, value=value)
        return Match(route_label=found) if route else Match(destination_label=found)

    assert matches(label("namespace", "emojivoto"))  # dst_ is not part of the key
    assert matches(label("pod", "web-1"))
    assert not matches(label("dst_pod", "web-1"))
    assert not matches(label("pod", "web-2"))
    assert matches(label("tls", "true"))
    assert matches(label("server_id", "web.emojivoto.sa"))
    assert not matches(label("deployment", ""))  # absent is not empty
    assert matches(label("route", "GET /api/list", route=True))  # rt_ neither
    assert not matches(label("route", "GET /api/vote", route=True))
    inbound = facts(direction="inbound", dst_pairs=(), dst_tls=(("tls", "no_identity"),))
    assert matches(label("tls", "no_identity"), inbound)
    assert not matches(label("namespace", "emojivoto"), inbound)


def test_nesting_all_any_not() -> None:
    get = http(method=http_types_pb2.HttpMethod(registered="GET"))
    post = http(method=http_types_pb2.HttpMethod(registered="POST"))
    api = http(path=StringMatch(prefix="/api"))
    assert matches(all_of())
    assert not matches(any_of())
    assert matches(all_of(get, api))
    assert not matches(all_of(get, api, post))
    assert matches(any_of(post, api))
    assert not matches(any_of(post, negate(api)))
    assert matches(negate(post))
    assert not matches(negate(negate(post)))
    assert matches(all_of(any_of(post, all_of(get, negate(ports(1, 80)))), negate(any_of())))


@pytest.mark.parametrize(
    ("m", "error"),
    [
        (Match(), "match: empty match"),
        (all_of(Match()), r"match.all\[0\]: empty match"),
        (negate(Match()), "match.not: empty match"),
        (netmask(ipv4("10.0.0.0"), 33), "mask 33 is longer than 32 bits"),
        (netmask(ipv6("::"), 129), "mask 129 is longer than 128 bits"),
        (netmask(net_pb2.IPAddress(), 8), "neither IPv4 nor IPv6"),
        (Match(source=Match.Tcp()), "match.source: neither netmask nor ports"),
        (ports(9000, 8000), "invalid range 9000-8000"),
        (ports(70000), "invalid range 70000-0"),
        (Match(http=Match.Http()), "match.http: empty http match"),
        (http(path=StringMatch()), "match.http.path: neither exact nor prefix"),
        (http(method=http_types_pb2.HttpMethod()), "match.http.method: neither registered"),
        (http(scheme=http_types_pb2.Scheme(unregistered="")), "match.http.scheme: neither"),
    ],
)
def test_invalid_matches_are_refused(m: Match, error: str) -> None:
    with pytest.raises(MatchError, match=error):
        compile_match(m)


def test_nesting_is_bounded() -> None:
    m = http(path=StringMatch(prefix="/"))
    for _ in range(40):
        m = negate(m)
    with pytest.raises(MatchError, match="nested more than 32 levels"):
        compile_match(m)


# -- events ---------------------------------------------------------------------------------


def tapped(**kwargs: Any) -> Tapped:
    t = Tapped(facts(**kwargs), now=100.0)
    return t


def decode(data: bytes) -> tap_pb2.TapEvent:
    return tap_pb2.TapEvent.FromString(data)


def test_request_init_event() -> None:
    fields = [(b":method", b"GET"), (b"Accept", b"text/plain"), (b"x-b", b"\xff")]
    t = tapped(fields=fields)
    event = decode(events.request_init(t, 7, 3, extract=True))
    init = event.http.request_init
    assert (init.id.base, init.id.stream) == (7, 3)
    assert init.method.registered == http_types_pb2.HttpMethod.GET
    assert init.scheme.registered == http_types_pb2.Scheme.HTTP
    assert init.authority == "web.emojivoto.svc.cluster.local:80"
    assert init.path == "/api/list"
    assert [(h.name, h.value) for h in init.headers.headers] == [
        ("accept", b"text/plain"),
        ("x-b", b"\xff"),
    ]
    assert event.proxy_direction == tap_pb2.TapEvent.OUTBOUND
    assert event.source == net_pb2.TcpAddress(ip=ipv4("10.1.2.3"), port=40000)
    assert event.destination == net_pb2.TcpAddress(ip=ipv4("10.4.5.6"), port=8080)
    assert dict(event.source_meta.labels) == {"tls": "no_identity", "no_tls_reason": "loopback"}
    assert dict(event.destination_meta.labels) == {
        "namespace": "emojivoto",
        "pod": "web-1",
        "tls": "true",
        "server_id": "web.emojivoto.sa",
    }
    assert dict(event.route_meta.labels) == {"route": "GET /api/list"}
    without = decode(events.request_init(t, 7, 3, extract=False)).http.request_init
    assert not without.HasField("headers")


def test_unregistered_method_and_scheme_and_addresses() -> None:
    t = tapped(method="PURGE", scheme="ftp", source=("fd00::1", 5), destination=("backend", 80))
    event = decode(events.request_init(t, 0, 0, extract=False))
    init = event.http.request_init
    assert init.method.unregistered == "PURGE"
    assert init.scheme.unregistered == "ftp"
    assert event.source.ip == ipv6("fd00::1") and event.source.port == 5
    assert not event.destination.HasField("ip") and event.destination.port == 80
    assert not decode(
        events.request_init(tapped(scheme=""), 0, 0, False)
    ).http.request_init.HasField("scheme")
    inbound = decode(events.request_init(tapped(direction="inbound"), 0, 0, False))
    assert inbound.proxy_direction == tap_pb2.TapEvent.INBOUND


def test_response_events_and_eos() -> None:
    t = tapped()
    t.response_at = 100.25
    t.status = 200
    t.response_headers = lambda: [(b":status", b"200"), (b"content-type", b"application/grpc")]
    rsp = decode(events.response_init(t, 1, 2, extract=True)).http.response_init
    assert (rsp.id.base, rsp.id.stream) == (1, 2)
    assert rsp.http_status == 200
    assert rsp.since_request_init.ToNanoseconds() == 250_000_000
    assert [(h.name, h.value) for h in rsp.headers.headers] == [
        ("content-type", b"application/grpc")
    ]

    t.ended_at = 101.0
    t.response_bytes = 45
    t.grpc_status = 5
    t.trailers = lambda: [(b"grpc-status", b"5")]
    end = decode(events.response_end(t, 1, 2, extract=True)).http.response_end
    assert end.since_request_init.ToNanoseconds() == 1_000_000_000
    assert end.since_response_init.ToNanoseconds() == 750_000_000
    assert end.response_bytes == 45
    assert end.eos.WhichOneof("end") == "grpc_status_code" and end.eos.grpc_status_code == 5
    assert [(h.name, h.value) for h in end.trailers.headers] == [("grpc-status", b"5")]

    t.reset_code = 8  # a reset wins over a status seen before it
    end = decode(events.response_end(t, 1, 2, extract=False)).http.response_end
    assert end.eos.WhichOneof("end") == "reset_error_code" and end.eos.reset_error_code == 8
    assert not end.HasField("trailers")


def test_a_response_end_without_a_response_has_no_response_time_nor_eos() -> None:
    t = tapped()
    t.ended_at = 100.5
    end = decode(events.response_end(t, 0, 0, extract=False)).http.response_end
    assert not end.HasField("since_response_init")
    assert not end.HasField("eos")
    assert end.since_request_init.ToNanoseconds() == 500_000_000


def test_the_common_part_is_encoded_once() -> None:
    t = tapped()
    first = events.request_init(t, 0, 0, extract=False)
    assert t.encoded is not None and first.startswith(t.encoded)
    t.facts.dst_pairs = ()  # later changes don't matter: the part is kept
    assert decode(events.response_end(t, 0, 0, False)).destination_meta.labels["pod"] == "web-1"


def test_requests_alike_share_the_common_part() -> None:
    first, second = tapped(), tapped()
    other_route = tapped(route_pairs=(("rt_route", "POST /api/vote"),))
    assert events.common(first) is events.common(second)
    assert events.common(other_route) != events.common(first)
    route = decode(events.response_end(other_route, 0, 0, False)).route_meta.labels
    assert dict(route) == {"route": "POST /api/vote"}


# -- registry: limits -----------------------------------------------------------------------


class Queue:
    """A wake-up counter standing in for the control connection."""

    def __init__(self) -> None:
        self.wakes = 0

    def __call__(self) -> None:
        self.wakes += 1


def stream(taps: Taps, limit: int, m: Match | None = None, **kwargs: Any) -> TapStream:
    s = TapStream(taps, len(taps.streams), compile_match(m), limit, False, Queue(), **kwargs)
    assert taps.add(s)
    return s


def test_limit_accounting() -> None:
    taps = Taps()
    assert not taps.active
    s = stream(taps, 2)
    assert taps.active
    first = taps.observe(facts(), 1.0)
    second = taps.observe(facts(), 2.0)
    assert first is not None and second is not None
    assert [n for _, n in first.taps] == [0] and [n for _, n in second.taps] == [1]
    assert s.spent and not taps.active  # the limit is reached: the hot path is idle again
    assert taps.observe(facts(), 3.0) is None
    assert len(s.queue) == 2  # two RequestInit events
    assert not s.done  # their responses have not ended
    first.response_init(1.5, 200)
    first.response_end(1.6)
    assert not s.done
    second.response_end(2.5)  # no response head: ended by a reset, say
    assert s.done
    assert taps.streams == {s}  # still served until the server ends it
    s.close()
    assert taps.streams == set() and not taps.active


def test_only_matching_taps_count_a_request() -> None:
    taps = Taps()
    gets = stream(taps, 5, http(method=http_types_pb2.HttpMethod(registered="GET")))
    posts = stream(taps, 5, http(method=http_types_pb2.HttpMethod(registered="POST")))
    both = stream(taps, 1)
    t = taps.observe(facts(method="POST"), 1.0)
    assert t is not None
    assert [s for s, _ in t.taps] == [posts, both]
    assert (gets.claimed, posts.claimed, both.claimed) == (0, 1, 1)
    assert taps.matching == [gets, posts]
    assert taps.active


def test_events_are_reported_once_in_order() -> None:
    taps = Taps()
    s = stream(taps, 1)
    t = taps.observe(facts(), 1.0)
    assert t is not None
    t.response_init(1.1, 503)
    t.response_init(1.2, 200)  # a second head (never sent) is not reported
    t.response_end(1.3, grpc_status=None)
    t.response_end(1.4, reset_code=8)
    assert t.status == 503 and t.reset_code is None
    frames = list(s.queue)
    reader = wire.MessageReader(1 << 20)
    messages = reader.feed(b"".join(frames))
    kinds = [tap_pb2.TapEvent.FromString(m).http.WhichOneof("event") for m in messages]
    assert kinds == ["request_init", "response_init", "response_end"]


def test_max_streams() -> None:
    taps = Taps(max_streams=2)
    stream(taps, 1)
    stream(taps, 1)
    extra = TapStream(taps, 9, compile_match(None), 1, False, Queue())
    assert not taps.add(extra)
    assert len(taps.streams) == 2


def test_a_closed_tap_reports_nothing_more() -> None:
    taps = Taps()
    s = stream(taps, 10)
    t = taps.observe(facts(), 1.0)
    assert t is not None
    s.close()
    assert not taps.active
    t.response_init(1.1, 200)
    t.response_end(1.2)
    assert not s.queue and s.queued == 0


# -- the bounded queue ----------------------------------------------------------------------


def test_queue_bound_by_events_drops_and_counts() -> None:
    taps = Taps()
    s = stream(taps, 100, max_events=4)
    for i in range(3):
        t = taps.observe(facts(), float(i))
        assert t is not None
        t.response_init(i + 0.1, 200)
    assert len(s.queue) == 4  # 6 events, room for 4
    assert s.dropped == 2 and taps.dropped == 2
    assert s.queued == sum(len(f) for f in s.queue)


def test_queue_bound_by_bytes() -> None:
    taps = Taps()
    probe = stream(taps, 1)
    assert taps.observe(facts(), 0.0) is not None
    size = len(probe.queue[0])  # the next frames are a few bytes longer (their ids)
    s = stream(taps, 100, max_bytes=size * 2 + 10)
    for i in range(5):
        taps.observe(facts(), float(i))
    assert len(s.queue) == 2 and s.dropped == 3
    # Draining makes room again.
    s.take(len(s.queue[0]))
    taps.observe(facts(), 9.0)
    assert len(s.queue) == 2 and s.dropped == 3


def test_take_splits_frames_in_order() -> None:
    taps = Taps()
    s = stream(taps, 10)
    for i in range(3):
        taps.observe(facts(), float(i))
    whole = b"".join(s.queue)
    pieces = []
    while s.queue:
        pieces.append(s.take(7))
    assert all(len(p) <= 7 for p in pieces)
    assert b"".join(pieces) == whole and s.queued == 0
    assert s.take(10) == b""


def test_the_stream_wakes_its_server() -> None:
    taps = Taps()
    s = stream(taps, 1)
    wake = s.wake
    assert isinstance(wake, Queue)
    t = taps.observe(facts(), 0.0)
    assert t is not None and wake.wakes == 1
    t.response_end(1.0)
    assert wake.wakes == 3  # the event, then "done"


# -- gRPC framing ---------------------------------------------------------------------------


def test_message_reader_splits_and_joins() -> None:
    reader = wire.MessageReader(100)
    data = wire.frame(b"hello") + wire.frame(b"") + wire.frame(b"x" * 50)
    out: list[bytes] = []
    for i in range(len(data)):
        out += reader.feed(data[i : i + 1])
    assert out == [b"hello", b"", b"x" * 50]
    assert reader.buf == b""
    assert reader.feed(data[:3]) == [] and reader.buf == data[:3]


def test_message_reader_refuses_compressed_and_oversized_messages() -> None:
    with pytest.raises(wire.FrameError, match="compressed"):
        wire.MessageReader(100).feed(b"\x01\x00\x00\x00\x01x")
    with pytest.raises(wire.FrameError, match="101 bytes exceeds 100"):
        wire.MessageReader(100).feed(b"\x00\x00\x00\x00\x65")


def test_status_fields() -> None:
    assert wire.status_fields(0) == [(b"grpc-status", b"0")]
    assert wire.status_fields(7, "tap: 100% no") == [
        (b"grpc-status", b"7"),
        (b"grpc-message", b"tap: 100%25 no"),
    ]


# -- helpers the hooks use ------------------------------------------------------------------


def test_h1_head_fields() -> None:
    head = request_head(b"GET", b"/x", [(b"Host", b"a:80"), (b"X-A", b"b: c")], chunked=True)
    assert head_fields(head) == [
        (b"Host", b"a:80"),
        (b"X-A", b"b: c"),
        (b"Transfer-Encoding", b"chunked"),
    ]


def test_h2_block_fields_and_error_codes() -> None:
    fields = [(b":status", b"200"), (b"grpc-status", b"0"), (b"x-long", b"v" * 300)]
    assert block_fields(encode_block(fields)) == fields
    for code in range(14):
        assert fr.error_code(fr.error_name(code)) == code
    assert fr.error_code(fr.error_name(0x42)) == 0x42
    assert fr.error_code("timeout") is None


def test_who_may_tap() -> None:
    from weft.proxy.tap.server import ControlServer

    tap = "weft-tap.weft.serviceaccount.identity.weft.cluster.local"
    web = "web.emojivoto.serviceaccount.identity.weft.cluster.local"
    server = ControlServer(Taps(), cast(Any, None), ("127.0.0.1", 0), tap)
    assert server.denial(tap) is None
    assert server.denial(web) == f"tap: client identity {web} is not {tap}"
    assert server.denial(None) == f"tap: client identity (none) is not {tap}"
    nobody = ControlServer(Taps(), cast(Any, None), ("127.0.0.1", 0), "")
    assert nobody.denial(tap) == (
        f"tap: client identity {tap} is not allowed (LINKERD2_PROXY_TAP_SVC_NAME unset)"
    )
    assert nobody.denial("") is not None
