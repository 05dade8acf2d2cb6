"""A retry budget: how many retries a destination may make, relative to its requests.

Within a sliding window of ``ttl`` seconds the budget allows ``min_per_second * ttl`` retries
plus ``ratio`` times the requests deposited; each retry withdraws one. The window is kept as
ten buckets, so old deposits and withdrawals fall out of it a tenth of ``ttl`` at a time.
"""

from __future__ import annotations

BUCKETS = 10


class RetryBudget:
    """Deposits (requests) and withdrawals (retries) over a sliding window."""

    __slots__ = ("deposits", "index", "ratio", "reserve", "slot", "started", "withdrawals")

    def __init__(self, ratio: float, min_per_second: float, ttl: float, now: float) -> None:
        self.ratio = ratio
        self.reserve = min_per_second * ttl
        self.slot = max(ttl, 0.001) / BUCKETS
        self.started = now
        self.index = 0  # the bucket ``now`` falls into, counted from ``started``
        self.deposits = [0] * BUCKETS
        self.withdrawals = [0] * BUCKETS

    def _advance(self, now: float) -> int:
        """Clear the buckets that fell out of the window; the current bucket's position."""
        index = int((now - self.started) / self.slot)
        if index > self.index:
            for k in range(self.index + 1, min(index, self.index + BUCKETS) + 1):
                self.deposits[k % BUCKETS] = 0
                self.withdrawals[k % BUCKETS] = 0
            self.index = index
        return self.index % BUCKETS

    def deposit(self, now: float) -> None:
        """Count a request that could be retried."""
        self.deposits[self._advance(now)] += 1

    def withdraw(self, now: float) -> bool:
        """Take one retry from the budget; False (nothing taken) when it is spent."""
        at = self._advance(now)
        balance = self.reserve + self.ratio * sum(self.deposits) - sum(self.withdrawals)
        if balance < 1.0:
            return False
        self.withdrawals[at] += 1
        return True
