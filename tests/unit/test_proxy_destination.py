"""The proxy's side of the destination service: endpoint updates, logical destinations with
traffic splits, the initial wait, and the router that keeps one per name.

Updates are built with the generated classes and decoded from their bytes by the proxy's own
decoder (``weft.proxy_api``), as they arrive from the destination service."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from weft.api import destination_pb2 as pb
from weft.api import net_pb2
from weft.proxy.balance import Load
from weft.proxy.destination import (
    INITIAL_TIMEOUT,
    DestinationRouter,
    Discovered,
    Resolution,
    endpoint_of,
)
from weft.proxy.discovery import Addr, Endpoint
from weft.proxy.errors import ProxyError
from weft.proxy.routing import Fallbacks, Logical
from weft.proxy_api import destination as api

NAME = "web.emojivoto.serviceaccount.identity.weft.cluster.local"
WEB = "web.emojivoto.svc.cluster.local:80"


def addr(ip: str, port: int) -> net_pb2.TcpAddress:
    a, b, c, d = (int(x) for x in ip.split("."))
    value = (a << 24) | (b << 16) | (c << 8) | d
    return net_pb2.TcpAddress(ip=net_pb2.IPAddress(ipv4=value), port=port)


def weighted(ip: str, port: int, identity: str | None = None, **labels: str) -> pb.WeightedAddr:
    w = pb.WeightedAddr(addr=addr(ip, port), weight=10000, metric_labels=labels)
    if identity:
        w.tls_identity.dns_like_identity.name = identity
    return w


def decoded(update: pb.Update) -> api.Update:
    return api.decode_update(update.SerializeToString())


def add(*addrs: pb.WeightedAddr, **labels: str) -> api.Update:
    return decoded(pb.Update(add=pb.WeightedAddrSet(addrs=addrs, metric_labels=labels)))


def remove(*addrs: net_pb2.TcpAddress) -> api.Update:
    return decoded(pb.Update(remove=pb.AddrSet(addrs=addrs)))


def no_endpoints(exists: bool) -> api.Update:
    return decoded(pb.Update(no_endpoints=pb.NoEndpoints(exists=exists)))


def one(waddr: pb.WeightedAddr) -> api.WeightedAddr:
    update = add(waddr)
    assert isinstance(update, api.Add)
    return update.addrs[0]


def picked(load: Load | None) -> Addr:
    assert load is not None
    return load.endpoint.addr


class Loop:
    """Resolutions and logical destinations on the running loop, their timers cancelled after."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.fallbacks = Fallbacks()
        self.resolutions: list[Resolution] = []

    def resolution(self) -> Resolution:
        res = Resolution(self.loop)
        self.resolutions.append(res)
        return res

    def discovered(self, name: str = WEB) -> Discovered:
        return Discovered(self.fallbacks, name, self.resolution(), self.loop)

    def close(self) -> None:
        for res in self.resolutions:
            res.timer.cancel()


@pytest.fixture
async def env() -> AsyncIterator[Loop]:
    loop = Loop()
    yield loop
    loop.close()


# -- decoding -----------------------------------------------------------------------------


def test_ipv4_and_ipv6_addresses_decode() -> None:
    assert api.tcp_address(addr("10.1.2.3", 8080).SerializeToString()) == ("10.1.2.3", 8080)
    v6 = net_pb2.TcpAddress(
        ip=net_pb2.IPAddress(ipv6=net_pb2.IPv6(first=0x20010DB8 << 32, last=1)), port=80
    )
    assert api.tcp_address(v6.SerializeToString()) == ("2001:db8::1", 80)
    assert api.tcp_address(net_pb2.TcpAddress(port=80).SerializeToString()) is None


def test_an_added_address_carries_dst_labels_and_its_identity() -> None:
    endpoint = endpoint_of(one(weighted("10.0.0.5", 8080, NAME, pod="web-1")), {"service": "web"})
    assert endpoint == Endpoint(
        ("10.0.0.5", 8080), (("dst_pod", "web-1"), ("dst_service", "web")), NAME
    )
    assert endpoint_of(one(weighted("10.0.0.6", 8080)), {}) == Endpoint(
        ("10.0.0.6", 8080), (), None
    )


def test_the_h2_protocol_hint_marks_a_meshed_endpoint() -> None:
    hinted = weighted("10.0.0.5", 8080, NAME)
    hinted.protocol_hint.h2.SetInParent()
    assert endpoint_of(one(hinted), {}) == Endpoint(("10.0.0.5", 8080), (), NAME, h2=True)
    opaque = weighted("10.0.0.5", 3306, NAME)
    opaque.protocol_hint.opaque.SetInParent()
    assert endpoint_of(one(opaque), {}) == Endpoint(("10.0.0.5", 3306), (), NAME, h2=False)


# -- Resolution ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_updates_fold_into_the_balancer(env: Loop) -> None:
    res = env.resolution()
    assert not res.first.done() and res.exists is None and res.pick() is None
    res.apply(add(weighted("10.0.0.5", 80, NAME), weighted("10.0.0.6", 80), pod="p"), first=True)
    assert res.first.done() and res.exists is True
    assert set(res.balancer.loads) == {("10.0.0.5", 80), ("10.0.0.6", 80)}
    assert res.balancer.loads[("10.0.0.5", 80)].endpoint == Endpoint(
        ("10.0.0.5", 80), (("dst_pod", "p"),), NAME
    )
    random.seed(7)
    assert {picked(res.pick()) for _ in range(50)} == {("10.0.0.5", 80), ("10.0.0.6", 80)}
    kept = res.balancer.loads[("10.0.0.6", 80)]
    res.apply(add(weighted("10.0.0.7", 80)))
    assert set(res.endpoints) == {("10.0.0.5", 80), ("10.0.0.6", 80), ("10.0.0.7", 80)}
    assert res.balancer.loads[("10.0.0.6", 80)] is kept
    res.apply(remove(addr("10.0.0.5", 80), addr("10.0.0.7", 80), addr("10.0.0.99", 80)))
    assert set(res.balancer.loads) == {("10.0.0.6", 80)}
    assert all(res.pick() is kept for _ in range(5))
    res.apply(no_endpoints(True))
    assert res.pick() is None and res.exists is True and res.endpoints == {}
    res.apply(no_endpoints(False))
    assert res.pick() is None and res.exists is False


@pytest.mark.anyio
async def test_a_first_update_replaces_the_set(env: Loop) -> None:
    res = env.resolution()
    res.apply(add(weighted("10.0.0.5", 80), weighted("10.0.0.6", 80)), first=True)
    # A new stream's first answer replaces what an old stream left behind.
    res.apply(add(weighted("10.0.0.9", 80)), first=True)
    assert list(res.endpoints) == [("10.0.0.9", 80)]
    assert list(res.balancer.loads) == [("10.0.0.9", 80)]
    assert picked(res.pick()) == ("10.0.0.9", 80)
    res.apply(remove(addr("10.0.0.9", 80)), first=True)
    assert res.endpoints == {} and res.pick() is None


@pytest.mark.anyio
async def test_waiters_complete_on_every_update(env: Loop) -> None:
    res = env.resolution()
    for update in (add(weighted("10.0.0.5", 80)), remove(addr("10.0.0.5", 80)), no_endpoints(True)):
        waiter: asyncio.Future[None] = env.loop.create_future()
        res.waiters.append(waiter)
        assert not waiter.done()
        res.apply(update)
        assert waiter.done()
        assert res.waiters == []
    # A waiter already cancelled by its owner is left alone.
    cancelled: asyncio.Future[None] = env.loop.create_future()
    cancelled.cancel()
    res.waiters.append(cancelled)
    res.apply(add(weighted("10.0.0.5", 80)))
    assert cancelled.cancelled()


# -- Discovered.pick ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_pick_goes_to_an_endpoint(env: Loop) -> None:
    d = env.discovered()
    d.own.apply(add(weighted("10.0.0.5", 80), weighted("10.0.0.6", 80)), first=True)
    assert picked(d.pick(("10.96.0.10", 80))) in {("10.0.0.5", 80), ("10.0.0.6", 80)}
    assert env.fallbacks.loads == {}


@pytest.mark.anyio
async def test_pick_is_none_when_the_destination_exists_without_endpoints(env: Loop) -> None:
    d = env.discovered()
    d.own.apply(no_endpoints(True), first=True)
    assert d.pick(("10.96.0.10", 80)) is None
    d.own.apply(add(weighted("10.0.0.5", 80)))
    d.own.apply(remove(addr("10.0.0.5", 80)))
    assert d.pick(("10.96.0.10", 80)) is None


@pytest.mark.anyio
async def test_an_unknown_or_unanswered_destination_goes_to_the_original_destination(
    env: Loop,
) -> None:
    d = env.discovered()
    target = ("10.96.0.10", 80)
    load = d.pick(target)  # nothing answered yet
    assert load is not None and load.endpoint == Endpoint(target)
    assert load is env.fallbacks.load(target, None)
    d.own.apply(no_endpoints(False), first=True)
    assert d.pick(target) is load
    with pytest.raises(ProxyError) as err:
        d.pick(None)
    assert err.value.status == 502 and WEB in err.value.reason


@pytest.mark.anyio
async def test_a_traffic_split_is_followed_by_weight(env: Loop) -> None:
    d = env.discovered()
    d.own.apply(add(weighted("10.0.0.1", 80)), first=True)
    v1, v2 = env.resolution(), env.resolution()
    v1.apply(add(weighted("10.1.0.1", 80), weighted("10.1.0.2", 80)), first=True)
    v2.apply(add(weighted("10.2.0.1", 80)), first=True)
    d.splits = ((v1, 9000), (v2, 1000))
    random.seed(2024)
    counts: Counter[str] = Counter()
    for _ in range(2000):
        counts[picked(d.pick(("10.96.0.10", 80)))[0].split(".")[1]] += 1
    assert set(counts) == {"1", "2"}  # never the apex's own endpoints
    assert abs(counts["2"] / 2000 - 0.10) < 0.03


@pytest.mark.anyio
async def test_a_split_backend_without_endpoints_is_skipped(env: Loop) -> None:
    d = env.discovered()
    d.own.apply(add(weighted("10.0.0.1", 80)), first=True)
    v1, v2 = env.resolution(), env.resolution()
    v2.apply(add(weighted("10.2.0.1", 80)), first=True)
    d.splits = ((v1, 9000), (v2, 1000))  # v1 has not answered yet
    random.seed(5)
    assert {picked(d.pick(None)) for _ in range(200)} == {("10.2.0.1", 80)}
    v2.apply(no_endpoints(True))
    # No backend has endpoints: the apex's own.
    assert {picked(d.pick(None)) for _ in range(20)} == {("10.0.0.1", 80)}
    d.own.apply(no_endpoints(True))
    assert d.pick(("10.96.0.10", 80)) is None  # known, but nothing to send to


@pytest.mark.anyio
async def test_changed_completes_on_the_next_update_of_own_or_a_split(env: Loop) -> None:
    d = env.discovered()
    backend = env.resolution()
    d.splits = ((backend, 1),)
    first = d.changed()
    assert first is not None and not first.done()
    d.own.apply(add(weighted("10.0.0.1", 80)))
    assert first.done()
    second = d.changed()
    assert second is not None and not second.done()
    backend.apply(add(weighted("10.2.0.1", 80)))
    assert second.done()
    # Later updates elsewhere do not trip over the completed future.
    d.own.apply(no_endpoints(True))


# -- Discovered.waiting -------------------------------------------------------------------


@pytest.mark.anyio
async def test_waiting_ends_when_profile_and_endpoints_answered(env: Loop) -> None:
    d = env.discovered()
    first = d.waiting()
    assert first is not None and not first.done()
    d.profile_answered()
    await asyncio.sleep(0)
    assert not first.done()  # endpoints still missing
    d.own.apply(add(weighted("10.0.0.1", 80)), first=True)
    await asyncio.wait_for(first, 0.1)
    assert d.waiting() is None


@pytest.mark.anyio
async def test_waiting_ends_when_endpoints_then_profile_answered(env: Loop) -> None:
    d = env.discovered()
    first = d.waiting()
    assert first is not None
    d.own.apply(no_endpoints(False), first=True)
    await asyncio.sleep(0.01)
    assert not first.done()  # the profile is still missing
    d.profile_answered()
    assert first.done()
    assert d.waiting() is None


@pytest.mark.anyio
async def test_waiting_ends_after_the_initial_timeout(env: Loop) -> None:
    d = env.discovered()
    first = d.waiting()
    assert first is not None
    started = time.monotonic()
    await asyncio.wait_for(first, INITIAL_TIMEOUT + 0.3)
    assert time.monotonic() - started >= INITIAL_TIMEOUT - 0.05
    assert d.waiting() is None
    assert d.own.first.done() and d.own.exists is None  # its Get stream was released too
    target = ("10.96.0.10", 80)
    assert picked(d.pick(target)) == target  # nothing known: the original destination


# -- DestinationRouter --------------------------------------------------------------------


@pytest.fixture
async def router() -> AsyncIterator[DestinationRouter]:
    # A dead destination service and a long back-off: the streams fail once and stay quiet.
    r = DestinationRouter(("127.0.0.1", 1), "dst", "ns:emojivoto", None, backoff=(60.0, 60.0))
    assert r.namespace == "emojivoto"
    yield r
    r.close()


@pytest.mark.anyio
async def test_the_router_keeps_one_logical_per_name(router: DestinationRouter) -> None:
    target = ("10.96.0.10", 80)
    web = router.logical("web", target)
    assert isinstance(web, Discovered)
    assert web.name == WEB
    assert router.logical("web", target) is web
    assert router.logical("web.emojivoto.svc.cluster.local", target) is web
    assert router.logical("web.emojivoto", target) is web
    assert router.logical("WEB.emojivoto.svc.cluster.local.:80", ("10.96.0.11", 8080)) is web
    assert router.logical("web.emojivoto.svc.cluster.local:80", None) is web
    other = router.logical("web:8080", target)
    assert other is not web and other.name == "web.emojivoto.svc.cluster.local:8080"
    # Each logical destination has one Get stream of its own.
    assert set(router.resolutions) == {WEB, "web.emojivoto.svc.cluster.local:8080"}
    assert web.own is router.resolutions[WEB]
    # The streams to the dead service fail and wait to resubscribe; nothing else changes.
    await asyncio.sleep(0.05)
    assert web.task is not None and not web.task.done()
    assert web.own.task is not None and not web.own.task.done()
    assert router.logical("web", target) is web
    assert web.own.exists is None


@pytest.mark.anyio
async def test_the_router_keys_other_requests_by_target(router: DestinationRouter) -> None:
    target = ("10.96.0.10", 80)
    by_ip = router.logical("10.96.0.10:80", target)
    assert isinstance(by_ip, Discovered)
    assert by_ip.name == "10.96.0.10:80"
    assert router.logical(None, target) is by_ip
    assert router.logical("", target) is by_ip
    assert router.logical("[::1]:80", target) is by_ip
    assert router.logical("example.net", target) is not by_ip  # a completed name
    assert router.logical(None, ("10.96.0.10", 81)) is not by_ip


@pytest.mark.anyio
async def test_without_a_name_or_a_target_there_is_no_route(router: DestinationRouter) -> None:
    unrouted = router.logical(None, None)
    assert not isinstance(unrouted, Discovered)
    assert router.logical(None, None) is unrouted
    assert router.logical("10.0.0.1:80", None) is unrouted
    with pytest.raises(ProxyError) as err:
        unrouted.pick(None)
    assert err.value.status == 502


# -- idle destinations and the router's capacity --------------------------------------------

API = "api.emojivoto.svc.cluster.local:80"


def dead_router(idle_timeout: float = 60.0, capacity: int = 10000) -> DestinationRouter:
    """A router whose destination service is unreachable (its streams fail and stay quiet)."""
    return DestinationRouter(
        ("127.0.0.1", 1),
        "dst",
        "ns:emojivoto",
        None,
        backoff=(60.0, 60.0),
        idle_timeout=idle_timeout,
        capacity=capacity,
    )


def start_a_request(logical: Logical) -> Load:
    """Give the destination an endpoint and start a request on it."""
    assert isinstance(logical, Discovered)
    addr = ("10.1.0.5", 8080)
    logical.own.balancer.update({addr: Endpoint(addr)})
    load = logical.own.pick()
    assert load is not None
    load.start()
    return load


@pytest.mark.anyio
async def test_a_destination_idle_for_the_timeout_is_evicted_unless_in_flight() -> None:
    router = dead_router(idle_timeout=60.0)
    try:
        target = ("10.96.0.10", 80)
        web, api = router.logical("web", target), router.logical("api", target)
        assert isinstance(api, Discovered) and api.task is not None
        t = time.monotonic()
        assert router.sweep(t) == 0  # both looked up since the last sweep
        load = start_a_request(web)
        assert router.sweep(t + 59) == 0
        assert router.sweep(t + 61) == 1  # api: unused for 61 s; web: in flight
        assert set(router.logicals) == {WEB} and set(router.resolutions) == {WEB}
        await asyncio.sleep(0)
        assert api.task.cancelled() and api.own.task is not None and api.own.task.cancelled()
        assert router.sweep(t + 99) == 0  # still in flight
        load.done(5.0, t + 99.5)
        assert router.sweep(t + 158) == 0  # idle since the last sweep that saw it busy
        assert router.sweep(t + 160) == 1
        assert router.logicals == {} and router.resolutions == {}
        again = router.logical("web", target)  # used again: discovered afresh
        assert again is not web and set(router.resolutions) == {WEB}
    finally:
        router.close()


@pytest.mark.anyio
async def test_a_get_stream_stays_while_a_split_uses_it() -> None:
    router = dead_router(idle_timeout=1.0)
    try:
        target = ("10.96.0.10", 80)
        web, api = router.logical("web", target), router.logical("api", target)
        assert isinstance(web, Discovered) and isinstance(api, Discovered)
        web.splits = ((api.own, 10000),)  # as a TrafficSplit to api would
        t = time.monotonic()
        router.sweep(t)
        router.logical("web", target)
        assert router.sweep(t + 2) == 1  # api's own destination goes ...
        assert set(router.logicals) == {WEB}
        assert set(router.resolutions) == {WEB, API}  # ... its endpoints stay, for the split
        assert router.sweep(t + 4) == 1
        assert router.resolutions == {}
    finally:
        router.close()


@pytest.mark.anyio
async def test_at_capacity_the_least_recently_used_idle_destination_makes_room() -> None:
    router = dead_router(capacity=2)
    try:
        target = ("10.96.0.10", 80)
        web, api = router.logical("web", target), router.logical("api", target)
        router.sweep(time.monotonic())
        assert router.logical("web", target) is web  # used again since the sweep; api not
        vote = router.logical("vote", target)
        assert isinstance(vote, Discovered)
        assert set(router.logicals) == {WEB, vote.name}
        assert api.name not in router.resolutions
        start_a_request(web)
        start_a_request(vote)
        full = router.logical("api", target)  # every cached destination is in flight
        assert not isinstance(full, Discovered)
        with pytest.raises(ProxyError) as err:
            full.pick(target)
        assert err.value.status == 503
        assert err.value.reason == "router at capacity (2 destinations in use)"
        assert set(router.logicals) == {WEB, vote.name}
    finally:
        router.close()
