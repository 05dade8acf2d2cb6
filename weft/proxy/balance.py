"""Load balancing as linkerd2-proxy does it: power of two choices over peak-EWMA latency.

Each endpoint keeps a latency estimate that jumps up to any slower observation at once (the
"peak") and decays towards faster ones with a time constant (``DECAY``), starting from
``DEFAULT_RTT``. Its load is that estimate times one plus its requests in flight. A request goes
to the less loaded of two endpoints drawn at random, so a slow or busy endpoint gets markedly
fewer requests without every request scanning every endpoint.
"""

from __future__ import annotations

import math
import random
import time

from weft.proxy.discovery import Addr, Endpoint

DEFAULT_RTT_MS = 30.0
DECAY = 10.0  # seconds


class Load:
    """One endpoint's latency estimate and requests in flight."""

    __slots__ = ("cost", "endpoint", "pending", "stamp")

    def __init__(self, endpoint: Endpoint, now: float) -> None:
        self.endpoint = endpoint
        self.cost = DEFAULT_RTT_MS
        self.stamp = now
        self.pending = 0

    def start(self) -> None:
        """A request was sent here."""
        self.pending += 1

    def done(self, rtt_ms: float, now: float) -> None:
        """A request sent here ended after ``rtt_ms``: fold it into the estimate."""
        if self.pending:
            self.pending -= 1
        if rtt_ms > self.cost:
            self.cost = rtt_ms
        else:
            weight = math.exp((self.stamp - now) / DECAY)
            self.cost = self.cost * weight + rtt_ms * (1.0 - weight)
        self.stamp = now

    def load(self) -> float:
        """The estimate, weighted by what is in flight."""
        return self.cost * (self.pending + 1)


class Balancer:
    """The endpoints of one concrete destination, and the choice between them."""

    __slots__ = ("loads", "order")

    def __init__(self) -> None:
        self.loads: dict[Addr, Load] = {}
        self.order: list[Load] = []

    def update(self, endpoints: dict[Addr, Endpoint]) -> None:
        """Take the current endpoint set; endpoints that stay keep their estimates."""
        now = time.monotonic()
        loads: dict[Addr, Load] = {}
        for addr, endpoint in endpoints.items():
            load = self.loads.get(addr)
            if load is None:
                load = Load(endpoint, now)
            else:
                load.endpoint = endpoint
            loads[addr] = load
        self.loads = loads
        self.order = list(loads.values())

    def pick(self) -> Load | None:
        """The less loaded of two endpoints drawn at random; None when there is none."""
        order = self.order
        n = len(order)
        if n < 2:
            return order[0] if n else None
        # random() is one C call where randrange() is three Python ones; Load.load() inline.
        i = int(_random() * n)
        j = int(_random() * (n - 1))
        if j >= i:
            j += 1
        a, b = order[i], order[j]
        return a if a.cost * (a.pending + 1) <= b.cost * (b.pending + 1) else b


_random = random.random
