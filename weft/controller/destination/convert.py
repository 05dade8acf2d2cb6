"""Addresses and stream updates as ``io.linkerd.proxy.destination`` protobuf messages."""

from __future__ import annotations

import ipaddress
from typing import assert_never

from weft.api import destination_pb2 as pb
from weft.api import net_pb2
from weft.controller.destination.addresses import Add, Address, NoEndpoints, Remove, Update

# Linkerd gives every endpoint the same weight.
WEIGHT = 10_000

_HALF = 64
_HALF_MASK = (1 << _HALF) - 1


def ip_address(ip: str) -> net_pb2.IPAddress:
    """An IP address: IPv4 as a big-endian u32, IPv6 as two big-endian u64 halves."""
    parsed = ipaddress.ip_address(ip)
    if parsed.version == 4:
        return net_pb2.IPAddress(ipv4=int(parsed))
    value = int(parsed)
    return net_pb2.IPAddress(
        ipv6=net_pb2.IPv6(first=value >> _HALF, last=value & _HALF_MASK),
    )


def tcp_address(ip: str, port: int) -> net_pb2.TcpAddress:
    """``ip:port`` as a ``TcpAddress``."""
    return net_pb2.TcpAddress(ip=ip_address(ip), port=port)


def tcp_address_to_str(addr: net_pb2.TcpAddress) -> tuple[str, int]:
    """The (ip, port) a ``TcpAddress`` carries; ValueError when it has no IP."""
    which = addr.ip.WhichOneof("ip")
    if which == "ipv4":
        return str(ipaddress.IPv4Address(addr.ip.ipv4)), addr.port
    if which == "ipv6":
        value = (addr.ip.ipv6.first << _HALF) | addr.ip.ipv6.last
        return str(ipaddress.IPv6Address(value)), addr.port
    raise ValueError("TcpAddress without an IP address")


def weighted_addr(address: Address) -> pb.WeightedAddr:
    """An endpoint with its labels, and its identity and H2 hint when it is meshed."""
    message = pb.WeightedAddr(
        addr=tcp_address(address.ip, address.port),
        weight=WEIGHT,
        metric_labels=dict(address.labels),
    )
    if address.identity is not None:
        message.tls_identity.CopyFrom(
            pb.TlsIdentity(dns_like_identity=pb.TlsIdentity.DnsLikeIdentity(name=address.identity))
        )
    if address.h2:
        message.protocol_hint.CopyFrom(pb.ProtocolHint(h2=pb.ProtocolHint.H2()))
    return message


def update_message(update: Update) -> pb.Update:
    """One stream update as an ``Update`` message."""
    if isinstance(update, Add):
        return pb.Update(
            add=pb.WeightedAddrSet(
                addrs=[weighted_addr(a) for a in update.addrs],
                metric_labels=dict(update.labels),
            )
        )
    if isinstance(update, Remove):
        addrs = [tcp_address(ip, port) for ip, port in update.addrs]
        return pb.Update(remove=pb.AddrSet(addrs=addrs))
    if isinstance(update, NoEndpoints):
        return pb.Update(no_endpoints=pb.NoEndpoints(exists=update.exists))
    assert_never(update)
