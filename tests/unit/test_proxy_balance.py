"""Peak-EWMA latency estimates and power-of-two-choices balancing (weft.proxy.balance)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from weft.proxy.balance import DECAY, DEFAULT_RTT_MS, Balancer, Load
from weft.proxy.discovery import Addr, Endpoint


def endpoints(*ports: int) -> dict[Addr, Endpoint]:
    return {("10.0.0.1", port): Endpoint(("10.0.0.1", port)) for port in ports}


def settle(load: Load, rtt_ms: float) -> None:
    """Bring ``load``'s estimate to ``rtt_ms`` (one observation long after the last)."""
    if rtt_ms >= load.cost:
        load.done(rtt_ms, load.stamp)
    else:
        load.done(rtt_ms, load.stamp + 100 * DECAY)


def test_a_new_load_starts_at_the_default_rtt() -> None:
    load = Load(Endpoint(("10.0.0.1", 80)), 5.0)
    assert DEFAULT_RTT_MS == 30.0 and DECAY == 10.0
    assert load.cost == 30.0
    assert load.pending == 0
    assert load.load() == 30.0


def test_a_slower_observation_raises_the_estimate_at_once() -> None:
    load = Load(Endpoint(("10.0.0.1", 80)), 0.0)
    load.done(250.0, 0.001)
    assert load.cost == 250.0
    load.done(400.0, 0.002)
    assert load.cost == 400.0


def test_faster_observations_decay_towards_it_with_a_10s_time_constant() -> None:
    load = Load(Endpoint(("10.0.0.1", 80)), 100.0)
    load.done(10.0, 105.0)  # 5 s after the start
    weight = math.exp(-5.0 / 10.0)
    expected = 30.0 * weight + 10.0 * (1.0 - weight)
    assert load.cost == pytest.approx(expected)
    assert 10.0 < load.cost < 30.0
    # One time constant later, another observation: the gap shrinks by e.
    before = load.cost
    load.done(10.0, 115.0)
    assert load.cost - 10.0 == pytest.approx((before - 10.0) / math.e)
    # An observation at the same instant does not move the estimate.
    load.done(1.0, 115.0)
    assert load.cost == pytest.approx(10.0 + (before - 10.0) / math.e)


def test_pending_requests_multiply_the_load() -> None:
    load = Load(Endpoint(("10.0.0.1", 80)), 0.0)
    load.start()
    load.start()
    assert load.pending == 2
    assert load.load() == pytest.approx(3 * 30.0)
    load.done(30.0, 0.0)
    assert load.pending == 1
    assert load.load() == pytest.approx(2 * 30.0)
    load.done(30.0, 0.0)
    load.done(30.0, 0.0)  # more completions than starts never go below zero
    assert load.pending == 0
    assert load.load() == pytest.approx(30.0)


def test_endpoints_that_stay_keep_their_estimates_and_removed_ones_are_dropped() -> None:
    balancer = Balancer()
    balancer.update(endpoints(80, 81))
    kept = balancer.loads[("10.0.0.1", 80)]
    settle(kept, 200.0)
    relabelled = Endpoint(("10.0.0.1", 80), (("dst_pod", "web-1"),))
    balancer.update({("10.0.0.1", 80): relabelled, **endpoints(82)})
    assert set(balancer.loads) == {("10.0.0.1", 80), ("10.0.0.1", 82)}
    assert balancer.loads[("10.0.0.1", 80)] is kept
    assert kept.cost == 200.0
    assert kept.endpoint is relabelled  # the new labels are used
    assert balancer.loads[("10.0.0.1", 82)].cost == DEFAULT_RTT_MS
    assert {load.endpoint.addr for load in balancer.order} == set(balancer.loads)
    # A removed endpoint that comes back starts afresh.
    balancer.update(endpoints(81))
    assert balancer.loads[("10.0.0.1", 81)].cost == DEFAULT_RTT_MS


def test_a_slow_endpoint_gets_few_picks_and_the_fast_ones_share() -> None:
    random.seed(1234)
    balancer = Balancer()
    balancer.update(endpoints(80, 81, 82))
    settle(balancer.loads[("10.0.0.1", 80)], 50.0)
    settle(balancer.loads[("10.0.0.1", 81)], 2.0)
    settle(balancer.loads[("10.0.0.1", 82)], 2.0)
    picks: Counter[int] = Counter()
    for _ in range(3000):
        load = balancer.pick()
        assert load is not None
        picks[load.endpoint.addr[1]] += 1
    assert picks[80] < 300
    assert picks[81] + picks[82] > 2700
    assert abs(picks[81] - picks[82]) < 300


def test_with_one_endpoint_it_is_picked_and_with_none_nothing_is() -> None:
    balancer = Balancer()
    assert balancer.pick() is None
    balancer.update(endpoints(80))
    only = balancer.loads[("10.0.0.1", 80)]
    assert all(balancer.pick() is only for _ in range(10))
    balancer.update({})
    assert balancer.pick() is None


def test_an_endpoint_with_many_pending_requests_gets_fewer_picks() -> None:
    random.seed(99)
    balancer = Balancer()
    balancer.update(endpoints(80, 81, 82))
    busy = balancer.loads[("10.0.0.1", 80)]
    for _ in range(20):
        busy.start()
    picks: Counter[int] = Counter()
    for _ in range(3000):
        load = balancer.pick()
        assert load is not None
        picks[load.endpoint.addr[1]] += 1
    assert picks[80] < 300
    assert picks[81] > 1000 and picks[82] > 1000
