"""Destination updates as protobuf messages, checked down to the wire where it matters."""

from __future__ import annotations

import pytest

from weft.api import destination_pb2 as pb
from weft.api import net_pb2
from weft.controller.destination.addresses import Add, Address, NoEndpoints, Remove
from weft.controller.destination.convert import (
    WEIGHT,
    ip_address,
    tcp_address,
    tcp_address_to_str,
    update_message,
    weighted_addr,
)

IDENTITY = "web.emojivoto.serviceaccount.identity.weft.cluster.local"
LABELS = (("pod", "web-1"), ("serviceaccount", "web"))
MESHED = Address("10.1.2.3", 8080, LABELS, IDENTITY, True)
PLAIN = Address("10.1.2.4", 8080, LABELS, None, False)


def test_ipv4_is_a_big_endian_u32() -> None:
    assert ip_address("10.1.2.3").ipv4 == 0x0A010203
    wire = net_pb2.IPAddress(ipv4=0x0A010203).SerializeToString()
    # Field 1, wire type 5 (fixed32), then the little-endian bytes of the number.
    assert wire == b"\x0d\x03\x02\x01\x0a"
    assert ip_address("10.1.2.3").SerializeToString() == wire


def test_ipv6_halves() -> None:
    ip = ip_address("2001:db8::1")
    assert ip.WhichOneof("ip") == "ipv6"
    assert ip.ipv6.first == 0x20010DB800000000
    assert ip.ipv6.last == 1


@pytest.mark.parametrize(
    ("ip", "port"), [("10.1.2.3", 8080), ("0.0.0.0", 1), ("255.255.255.255", 65535), ("::1", 53)]
)
def test_tcp_address_round_trip(ip: str, port: int) -> None:
    wire = tcp_address(ip, port).SerializeToString()
    assert tcp_address_to_str(net_pb2.TcpAddress.FromString(wire)) == (ip, port)


def test_tcp_address_without_ip_is_rejected() -> None:
    with pytest.raises(ValueError):
        tcp_address_to_str(net_pb2.TcpAddress(port=80))


def test_meshed_weighted_addr() -> None:
    message = weighted_addr(MESHED)
    assert tcp_address_to_str(message.addr) == ("10.1.2.3", 8080)
    assert message.weight == WEIGHT == 10000
    assert dict(message.metric_labels) == dict(LABELS)
    assert message.tls_identity.dns_like_identity.name == IDENTITY
    assert message.protocol_hint.WhichOneof("protocol") == "h2"
    numbers = {field.number for field, _ in message.ListFields()}
    assert numbers == {1, 3, 4, 5, 6}


def test_tls_identity_is_field_5_on_the_wire() -> None:
    wire = weighted_addr(MESHED).SerializeToString()
    name = IDENTITY.encode()
    # DnsLikeIdentity{name = 1}, inside TlsIdentity{dns_like_identity = 1}, as WeightedAddr field 5
    # (tag 5 << 3 | length-delimited).
    dns_like = b"\x0a" + bytes([len(name)]) + name
    tls_identity = b"\x0a" + bytes([len(dns_like)]) + dns_like
    assert bytes([5 << 3 | 2, len(tls_identity)]) + tls_identity in wire
    without = pb.WeightedAddr.FromString(wire)
    without.ClearField("tls_identity")
    assert name not in without.SerializeToString()


def test_unmeshed_weighted_addr_has_no_identity_or_hint() -> None:
    message = weighted_addr(PLAIN)
    assert not message.HasField("tls_identity")
    assert not message.HasField("protocol_hint")
    disabled = weighted_addr(Address("10.1.2.5", 80, (), None, True))
    assert not disabled.HasField("tls_identity")
    assert disabled.protocol_hint.HasField("h2")


def test_add_update() -> None:
    set_labels = (("namespace", "emojivoto"), ("service", "web"))
    message = update_message(Add((MESHED, PLAIN), set_labels))
    assert message.WhichOneof("update") == "add"
    assert dict(message.add.metric_labels) == {"namespace": "emojivoto", "service": "web"}
    assert [tcp_address_to_str(a.addr) for a in message.add.addrs] == [
        ("10.1.2.3", 8080),
        ("10.1.2.4", 8080),
    ]


def test_remove_and_no_endpoints_updates() -> None:
    message = update_message(Remove((("10.1.2.3", 8080), ("10.1.2.4", 9090))))
    assert message.WhichOneof("update") == "remove"
    assert [tcp_address_to_str(a) for a in message.remove.addrs] == [
        ("10.1.2.3", 8080),
        ("10.1.2.4", 9090),
    ]
    for exists in (True, False):
        message = update_message(NoEndpoints(exists))
        assert message.WhichOneof("update") == "no_endpoints"
        assert message.no_endpoints.exists is exists
    # A set oneof member is on the wire even when it holds only defaults.
    assert update_message(NoEndpoints(False)).SerializeToString() == b"\x1a\x00"
