"""The proxy's side of Destination.Get: updates folded into endpoints, round robin, fallback."""

from __future__ import annotations

import asyncio

import pytest

from weft.api import destination_pb2 as pb
from weft.api import net_pb2
from weft.proxy.destination import DestinationRouter, Resolution, endpoint_of, tcp_address
from weft.proxy.discovery import Endpoint
from weft.proxy.errors import ProxyError

NAME = "web.emojivoto.serviceaccount.identity.weft.cluster.local"


def addr(ip: str, port: int) -> net_pb2.TcpAddress:
    a, b, c, d = (int(x) for x in ip.split("."))
    value = (a << 24) | (b << 16) | (c << 8) | d
    return net_pb2.TcpAddress(ip=net_pb2.IPAddress(ipv4=value), port=port)


def weighted(ip: str, port: int, identity: str | None = None, **labels: str) -> pb.WeightedAddr:
    w = pb.WeightedAddr(addr=addr(ip, port), weight=10000, metric_labels=labels)
    if identity:
        w.tls_identity.dns_like_identity.name = identity
    return w


def add(*addrs: pb.WeightedAddr, **labels: str) -> pb.Update:
    return pb.Update(add=pb.WeightedAddrSet(addrs=addrs, metric_labels=labels))


def test_ipv4_and_ipv6_addresses_decode() -> None:
    assert tcp_address(addr("10.1.2.3", 8080)) == ("10.1.2.3", 8080)
    v6 = net_pb2.TcpAddress(
        ip=net_pb2.IPAddress(ipv6=net_pb2.IPv6(first=0x20010DB8 << 32, last=1)), port=80
    )
    assert tcp_address(v6) == ("2001:db8::1", 80)
    assert tcp_address(net_pb2.TcpAddress(port=80)) is None


def test_an_added_address_carries_dst_labels_and_its_identity() -> None:
    endpoint = endpoint_of(weighted("10.0.0.5", 8080, NAME, pod="web-1"), {"service": "web"})
    assert endpoint == Endpoint(
        ("10.0.0.5", 8080), (("dst_pod", "web-1"), ("dst_service", "web")), NAME
    )
    assert endpoint_of(weighted("10.0.0.6", 8080), {}) == Endpoint(("10.0.0.6", 8080), (), None)


@pytest.mark.anyio
async def test_updates_fold_into_a_round_robin_set() -> None:
    res = Resolution(asyncio.get_running_loop())
    assert not res.first.done()
    res.apply(add(weighted("10.0.0.5", 80, NAME), weighted("10.0.0.6", 80, NAME)), first=True)
    assert res.first.done() and res.exists
    picks = {res.pick().addr for _ in range(4)}  # type: ignore[union-attr]
    assert picks == {("10.0.0.5", 80), ("10.0.0.6", 80)}
    res.apply(pb.Update(remove=pb.AddrSet(addrs=[addr("10.0.0.5", 80)])))
    assert {res.pick().addr for _ in range(3)} == {("10.0.0.6", 80)}  # type: ignore[union-attr]
    res.apply(pb.Update(no_endpoints=pb.NoEndpoints(exists=True)))
    assert res.pick() is None and res.exists
    # A new stream's first answer replaces what an old stream left behind.
    res.apply(add(weighted("10.0.0.9", 80)), first=True)
    assert list(res.endpoints) == [("10.0.0.9", 80)]
    res.timer.cancel()


@pytest.mark.anyio
async def test_the_router_falls_back_to_the_original_destination_or_fails_fast() -> None:
    router = DestinationRouter(("127.0.0.1", 1), "dst", "", None)
    loop = asyncio.get_running_loop()
    target = ("10.96.0.10", 80)
    # Unknown (no answer yet): the original destination, in plaintext.
    assert router.endpoint("web", target) == Endpoint(target)
    res = router.resolutions[target] = Resolution(loop)
    res.apply(pb.Update(no_endpoints=pb.NoEndpoints(exists=False)))
    assert router.endpoint("web", target) == Endpoint(target)
    res.apply(pb.Update(no_endpoints=pb.NoEndpoints(exists=True)))
    with pytest.raises(ProxyError) as err:
        router.endpoint("web", target)
    assert err.value.status == 503
    res.timer.cancel()
    router.close()
