"""The proxy's hand-written proxy-API codec (weft.proxy_api) against the generated classes.

Encoders must produce the bytes ``SerializeToString`` produces; decoders must read what the
generated classes encode, and read concatenations of messages (repeated fields, merged embedded
messages, the last ``oneof`` member) as protobuf's own parser does.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from weft.api import destination_pb2 as pb
from weft.api import http_types_pb2 as http_pb
from weft.api import identity_pb2, meta_pb2, net_pb2
from weft.proxy_api import destination as api
from weft.proxy_api.identity import certify_request, decode_certify_response
from weft.proxy_api.wire import MAX_DEPTH, WireError, encode_bytes, scan

WEB = "web.emojivoto.serviceaccount.identity.weft.cluster.local"


# -- the generated classes, read the way the proxy reads them (the expected values) -----------


def pb_addr(message: net_pb2.TcpAddress) -> api.Addr | None:
    kind = message.ip.WhichOneof("ip")
    if kind == "ipv4":
        return str(ipaddress.IPv4Address(message.ip.ipv4)), message.port
    if kind == "ipv6":
        value = (message.ip.ipv6.first << 64) | message.ip.ipv6.last
        return str(ipaddress.IPv6Address(value)), message.port
    return None


def pb_weighted(message: pb.WeightedAddr) -> api.WeightedAddr:
    tls = message.tls_identity
    name = None
    if tls.WhichOneof("strategy") == "dns_like_identity":
        name = tls.dns_like_identity.name or None
    addr = pb_addr(message.addr) if message.HasField("addr") else None
    h2 = message.protocol_hint.WhichOneof("protocol") == "h2"
    return api.WeightedAddr(addr, dict(message.metric_labels), name, h2)


def pb_update(message: pb.Update) -> api.Update:
    kind = message.WhichOneof("update")
    if kind == "add":
        return api.Add([pb_weighted(a) for a in message.add.addrs], dict(message.add.metric_labels))
    if kind == "remove":
        return api.Remove([pb_addr(a) for a in message.remove.addrs])
    if kind == "no_endpoints":
        return api.NoEndpoints(message.no_endpoints.exists)
    return None


def pb_request_match(message: pb.RequestMatch) -> api.RequestMatch:
    kind = message.WhichOneof("match")
    if kind in ("all", "any"):
        seq = getattr(message, kind).matches
        return api.RequestMatch(kind, tuple(pb_request_match(m) for m in seq))
    if kind == "not":
        return api.RequestMatch("not", (pb_request_match(getattr(message, "not")),))
    if kind == "path":
        return api.RequestMatch("path", regex=message.path.regex)
    if kind == "method":
        method = message.method
        if method.WhichOneof("type") == "registered":
            index = int(method.registered)
            name = api.METHODS[index] if 0 <= index < len(api.METHODS) else ""
        elif method.WhichOneof("type") == "unregistered":
            name = method.unregistered.upper()
        else:
            name = ""
        return api.RequestMatch("method", method=name)
    return api.RequestMatch()


def pb_response_match(message: pb.ResponseMatch) -> api.ResponseMatch:
    kind = message.WhichOneof("match")
    if kind in ("all", "any"):
        seq = getattr(message, kind).matches
        return api.ResponseMatch(kind, tuple(pb_response_match(m) for m in seq))
    if kind == "not":
        return api.ResponseMatch("not", (pb_response_match(getattr(message, "not")),))
    if kind == "status":
        return api.ResponseMatch("status", low=message.status.min, high=message.status.max)
    return api.ResponseMatch()


def seconds(d: duration_pb2.Duration) -> float:
    return d.seconds + d.nanos / 1e9


def pb_profile(message: pb.DestinationProfile) -> api.DestinationProfile:
    budget = None
    if message.HasField("retry_budget"):
        b = message.retry_budget
        budget = api.RetryBudget(b.retry_ratio, b.min_retries_per_second, seconds(b.ttl))
    routes = tuple(
        api.Route(
            condition=pb_request_match(r.condition),
            classes=tuple(
                (pb_response_match(c.condition), c.is_failure) for c in r.response_classes
            ),
            labels=dict(r.metrics_labels),
            retryable=r.is_retryable,
            timeout=seconds(r.timeout) if r.HasField("timeout") else None,
        )
        for r in message.routes
    )
    return api.DestinationProfile(
        routes=routes,
        retry_budget=budget,
        dst_overrides=tuple((d.authority, d.weight) for d in message.dst_overrides),
        fully_qualified_name=message.fully_qualified_name,
    )


# -- messages ------------------------------------------------------------------------------


def ipv4(text: str, port: int) -> net_pb2.TcpAddress:
    return net_pb2.TcpAddress(
        ip=net_pb2.IPAddress(ipv4=int(ipaddress.IPv4Address(text))), port=port
    )


def ipv6(text: str, port: int) -> net_pb2.TcpAddress:
    value = int(ipaddress.IPv6Address(text))
    ip = net_pb2.IPAddress(ipv6=net_pb2.IPv6(first=value >> 64, last=value & (2**64 - 1)))
    return net_pb2.TcpAddress(ip=ip, port=port)


def weighted(addr: net_pb2.TcpAddress, identity: str = "", **labels: str) -> pb.WeightedAddr:
    message = pb.WeightedAddr(addr=addr, weight=10000, metric_labels=labels)
    if identity:
        message.tls_identity.dns_like_identity.name = identity
    return message


def everything_addr() -> pb.WeightedAddr:
    """A WeightedAddr with every field the proxy skips set too."""
    message = weighted(ipv6("2001:db8::7", 8443), WEB, pod="web-1")
    message.protocol_hint.h2.SetInParent()
    message.protocol_hint.opaque_transport.inbound_port = 4143
    message.authority_override.authority_override = "web.example:80"
    message.http2.flow_control.initial_stream_window_size = 1 << 20
    message.http2.keep_alive.interval.seconds = 10
    message.resource_ref.resource.name = "web-1"
    message.tls_identity.server_name.name = "server-name"
    return message


UPDATES = {
    "add": pb.Update(
        add=pb.WeightedAddrSet(
            addrs=[
                weighted(ipv4("10.0.0.5", 8080), WEB, pod="web-1", ns="emojivoto"),
                weighted(ipv4("10.0.0.6", 8080)),
                weighted(ipv4("0.0.0.0", 0)),
                everything_addr(),
                pb.WeightedAddr(weight=1),  # no address at all
                pb.WeightedAddr(addr=net_pb2.TcpAddress(port=80)),  # an address without an IP
            ],
            metric_labels={"service": "web", "namespace": "emojivoto", "ünï": "cödé"},
        )
    ),
    "add-uri-identity": pb.Update(
        add=pb.WeightedAddrSet(
            addrs=[
                pb.WeightedAddr(
                    addr=ipv4("10.0.0.8", 80),
                    tls_identity=pb.TlsIdentity(
                        uri_like_identity=pb.TlsIdentity.UriLikeIdentity(uri="spiffe://x")
                    ),
                )
            ]
        )
    ),
    "remove": pb.Update(
        remove=pb.AddrSet(addrs=[ipv4("10.0.0.5", 8080), ipv6("::1", 80), net_pb2.TcpAddress()])
    ),
    "exists": pb.Update(no_endpoints=pb.NoEndpoints(exists=True)),
    "does-not-exist": pb.Update(no_endpoints=pb.NoEndpoints(exists=False)),
    "empty": pb.Update(),
    "empty-add": pb.Update(add=pb.WeightedAddrSet()),
}


def req_not(match: pb.RequestMatch) -> pb.RequestMatch:
    negated = pb.RequestMatch()
    getattr(negated, "not").CopyFrom(match)
    return negated


def rsp_not(match: pb.ResponseMatch) -> pb.ResponseMatch:
    negated = pb.ResponseMatch()
    getattr(negated, "not").CopyFrom(match)
    return negated


def method(**kind: Any) -> pb.RequestMatch:
    return pb.RequestMatch(method=http_pb.HttpMethod(**kind))


def full_profile() -> pb.DestinationProfile:
    path = pb.RequestMatch(path=pb.PathMatch(regex="/books/[^/]+"))
    condition = pb.RequestMatch(
        all=pb.RequestMatch.Seq(
            matches=[
                path,
                pb.RequestMatch(
                    any=pb.RequestMatch.Seq(
                        matches=[
                            method(registered=http_pb.HttpMethod.GET),
                            method(registered=http_pb.HttpMethod.TRACE),
                            method(unregistered="purge"),
                            req_not(method(registered=http_pb.HttpMethod.POST)),
                        ]
                    )
                ),
            ]
        )
    )
    failing = pb.ResponseMatch(
        any=pb.ResponseMatch.Seq(
            matches=[
                pb.ResponseMatch(status=pb.HttpStatusRange(min=500, max=599)),
                rsp_not(pb.ResponseMatch(status=pb.HttpStatusRange(min=200))),
                pb.ResponseMatch(
                    all=pb.ResponseMatch.Seq(
                        matches=[pb.ResponseMatch(status=pb.HttpStatusRange(max=429))]
                    )
                ),
            ]
        )
    )
    routes = [
        pb.Route(
            condition=condition,
            response_classes=[
                pb.ResponseClass(condition=failing, is_failure=True),
                pb.ResponseClass(condition=pb.ResponseMatch(), is_failure=False),
            ],
            metrics_labels={"route": "GET /books/{id}"},
            is_retryable=True,
            timeout=duration_pb2.Duration(seconds=2, nanos=500_000_000),
        ),
        pb.Route(condition=pb.RequestMatch(), metrics_labels={"route": "empty"}),
        pb.Route(timeout=duration_pb2.Duration(seconds=-1, nanos=-5)),
        pb.Route(timeout=duration_pb2.Duration()),
    ]
    message = pb.DestinationProfile(
        routes=routes,
        retry_budget=pb.RetryBudget(
            retry_ratio=0.2, min_retries_per_second=10, ttl=duration_pb2.Duration(seconds=10)
        ),
        dst_overrides=[
            pb.WeightedDst(authority="web-v1.emojivoto.svc.cluster.local.:80", weight=900),
            pb.WeightedDst(authority="web-v2.emojivoto.svc.cluster.local.:80", weight=100),
            pb.WeightedDst(authority="nobody:80"),
        ],
        opaque_protocol=True,
        fully_qualified_name="web.emojivoto.svc.cluster.local",
        endpoint=everything_addr(),
        parent_ref=meta_pb2.Metadata(default="parent"),
    )
    return message


PROFILES = {
    "full": full_profile(),
    "empty": pb.DestinationProfile(),
    "budget-without-ttl": pb.DestinationProfile(
        retry_budget=pb.RetryBudget(retry_ratio=1e-3, min_retries_per_second=2**32 - 1)
    ),
    "empty-budget": pb.DestinationProfile(retry_budget=pb.RetryBudget()),
}


# -- encoders: the generated classes' bytes ----------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "path", "token"),
    [
        ("k8s", "web.emojivoto.svc.cluster.local:80", "ns:emojivoto"),
        ("k8s", "10.96.0.30:8080", ""),
        ("", "", ""),
        ("k8s", "ünïcödé.example:80", '{"ns":"emojivoto","nodeName":"node-1"}'),
        ("k8s", "x" * 300, "y" * 20000),  # lengths past one varint byte, and past two
    ],
)
def test_get_destination_is_byte_for_byte_the_generated_encoding(
    scheme: str, path: str, token: str
) -> None:
    expected = pb.GetDestination(scheme=scheme, path=path, context_token=token)
    assert api.get_destination(scheme, path, token) == expected.SerializeToString()


@pytest.mark.parametrize(
    ("identity", "token", "csr"),
    [
        (WEB, b"eyJhbGciOi.token.sig", b"\x30\x82\x01\x00" + bytes(range(256))),
        ("", b"", b""),
        (WEB, b"\x00" * 70000, b"\xff"),
    ],
)
def test_certify_request_is_byte_for_byte_the_generated_encoding(
    identity: str, token: bytes, csr: bytes
) -> None:
    expected = identity_pb2.CertifyRequest(
        identity=identity, token=token, certificate_signing_request=csr
    )
    assert certify_request(identity, token, csr) == expected.SerializeToString()


@given(st.text(), st.binary(), st.binary())
def test_certify_request_matches_for_any_input(identity: str, token: bytes, csr: bytes) -> None:
    expected = identity_pb2.CertifyRequest(
        identity=identity, token=token, certificate_signing_request=csr
    )
    assert certify_request(identity, token, csr) == expected.SerializeToString()


# -- decoders: what the generated classes encode -----------------------------------------------


def test_certify_responses_decode() -> None:
    valid_until = Timestamp(seconds=1_900_000_000)
    message = identity_pb2.CertifyResponse(
        leaf_certificate=b"leaf-der",
        intermediate_certificates=[b"issuer-der", b"", b"root-der"],
        valid_until=valid_until,
    )
    decoded = decode_certify_response(message.SerializeToString())
    assert decoded.leaf == b"leaf-der"
    assert decoded.intermediates == [b"issuer-der", b"", b"root-der"]
    empty = decode_certify_response(b"")
    assert (empty.leaf, empty.intermediates) == (b"", [])


@pytest.mark.parametrize("name", sorted(UPDATES))
def test_updates_decode_as_the_generated_classes_read_them(name: str) -> None:
    message = UPDATES[name]
    assert api.decode_update(message.SerializeToString()) == pb_update(message)


def test_an_update_reads_as_the_proxy_needs_it() -> None:
    decoded = api.decode_update(UPDATES["add"].SerializeToString())
    assert isinstance(decoded, api.Add)
    assert decoded.labels == {"service": "web", "namespace": "emojivoto", "ünï": "cödé"}
    assert decoded.addrs[0] == api.WeightedAddr(
        ("10.0.0.5", 8080), {"pod": "web-1", "ns": "emojivoto"}, WEB
    )
    assert decoded.addrs[2].addr == ("0.0.0.0", 0)
    assert decoded.addrs[3] == api.WeightedAddr(
        ("2001:db8::7", 8443), {"pod": "web-1"}, WEB, h2=True
    )
    assert decoded.addrs[4].addr is None and decoded.addrs[5].addr is None
    remove = api.decode_update(UPDATES["remove"].SerializeToString())
    assert remove == api.Remove([("10.0.0.5", 8080), ("::1", 80), None])
    assert api.decode_update(UPDATES["does-not-exist"].SerializeToString()) == api.NoEndpoints(
        False
    )


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_decode_as_the_generated_classes_read_them(name: str) -> None:
    message = PROFILES[name]
    assert api.decode_profile(message.SerializeToString()) == pb_profile(message)


def test_a_profile_reads_as_the_proxy_needs_it() -> None:
    decoded = api.decode_profile(PROFILES["full"].SerializeToString())
    route = decoded.routes[0]
    assert route.timeout == 2.5 and route.retryable
    assert route.labels == {"route": "GET /books/{id}"}
    first, methods = route.condition.matches
    assert first == api.RequestMatch("path", regex="/books/[^/]+")
    assert [m.method for m in methods.matches[:3]] == ["GET", "TRACE", "PURGE"]
    assert methods.matches[3] == api.RequestMatch(
        "not", (api.RequestMatch("method", method="POST"),)
    )
    failing, is_failure = route.classes[0]
    assert is_failure and failing.matches[0] == api.ResponseMatch("status", low=500, high=599)
    assert decoded.routes[2].timeout == pytest.approx(-1.000000005)
    assert decoded.routes[3].timeout == 0.0
    assert decoded.retry_budget is not None
    assert decoded.retry_budget.retry_ratio == pytest.approx(0.2)
    assert decoded.dst_overrides[2] == ("nobody:80", 0)


# -- protobuf's parsing rules, checked against its parser --------------------------------------

PIECES = [
    *(m.SerializeToString() for m in UPDATES.values()),
    pb.Update(
        add=pb.WeightedAddrSet(addrs=[weighted(ipv4("10.9.9.9", 1), "other")])
    ).SerializeToString(),
    pb.Update(add=pb.WeightedAddrSet(metric_labels={"service": "other"})).SerializeToString(),
]


@given(st.lists(st.sampled_from(PIECES), max_size=6))
def test_concatenated_updates_merge_as_protobuf_merges_them(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert api.decode_update(data) == pb_update(pb.Update.FromString(data))


PROFILE_PIECES = [
    *(m.SerializeToString() for m in PROFILES.values()),
    pb.DestinationProfile(fully_qualified_name="other.svc").SerializeToString(),
    pb.DestinationProfile(
        retry_budget=pb.RetryBudget(ttl=duration_pb2.Duration(nanos=7))
    ).SerializeToString(),
]


@given(st.lists(st.sampled_from(PROFILE_PIECES), max_size=4))
def test_concatenated_profiles_merge_as_protobuf_merges_them(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert api.decode_profile(data) == pb_profile(pb.DestinationProfile.FromString(data))


@pytest.mark.parametrize(
    "data",
    [
        b"\x08\x01",  # Update.add (a message) as a varint: skipped as an unknown field
        b"\x0b\x08\x01\x0c",  # a group: skipped
        b"\x7a\x03abc",  # field 15, unknown
        b"\x1a\x00" + b"\x12\x00",  # no_endpoints, then remove: the last member wins
    ],
)
def test_odd_but_valid_updates_decode_as_protobuf_decodes_them(data: bytes) -> None:
    assert api.decode_update(data) == pb_update(pb.Update.FromString(data))


def test_uint32_values_are_truncated_as_protobuf_truncates_them() -> None:
    data = b"\x10" + bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x1F])  # TcpAddress.port = 2**35 - 1
    ip = net_pb2.IPAddress(ipv4=1).SerializeToString()
    data = b"\x0a" + bytes([len(ip)]) + ip + data
    assert api.tcp_address(data) == pb_addr(net_pb2.TcpAddress.FromString(data))


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05ab",  # a length past the end
        b"\x08",  # a key without its value
        b"\x0a\x02\x80\x80",  # an embedded message with a truncated varint
        b"\x00\x01",  # field number 0
        b"\x0b\x0c\x0c",  # END_GROUP without START_GROUP
        b"\x0f",  # wire type 7
        b"\x1a\x01\x08",  # no_endpoints' contents cut short
    ],
)
def test_broken_updates_are_refused_like_protobuf_refuses_them(data: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.Update.FromString(data)
    with pytest.raises(WireError):
        api.decode_update(data)


def test_strings_must_be_utf8() -> None:
    data = b"\x2a\x01\xff"  # DestinationProfile.fully_qualified_name
    with pytest.raises(DecodeError):
        pb.DestinationProfile.FromString(data)
    with pytest.raises(WireError, match="UTF-8"):
        api.decode_profile(data)


def test_nesting_is_bounded() -> None:
    match = pb.RequestMatch(path=pb.PathMatch(regex="/")).SerializeToString()
    for _ in range(MAX_DEPTH + 5):
        match = encode_bytes(3, match)  # RequestMatch.not
    data = encode_bytes(1, encode_bytes(1, match))  # DestinationProfile.routes[0].condition
    with pytest.raises(DecodeError):  # protobuf's parser has a limit too
        pb.DestinationProfile.FromString(data)
    with pytest.raises(WireError, match="nested"):
        api.decode_profile(data)
    deep_groups = b"\x0b" * (MAX_DEPTH + 5) + b"\x0c" * (MAX_DEPTH + 5)
    with pytest.raises(WireError, match="nested"):
        scan(deep_groups)
