"""Route timeouts, which are almost always cancelled, without a loop timer per request.

Every request on a ServiceProfile route arms its route's timeout and cancels it when the
response ends. uvloop's ``call_later`` opens a libuv timer handle and later closes it for each
one (see docs/decisions.md). Here deadlines that fall in the same tick share one bucket and one
loop timer, and cancelling one is a dict removal. A deadline never fires early, and at most a
tick and a millisecond late: the tick is ``TICK``, or ``COARSE_TICKS`` of them for a deadline
``COARSE_AFTER`` or more away (Linkerd's default route timeout is 10 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

TICK = 0.005  # seconds
COARSE_AFTER = 1.0  # seconds
COARSE_TICKS = 10
# uvloop's clock counts whole milliseconds, so its timers can fire up to one early.
LOOP_SLACK = 0.001  # seconds


class Deadline:
    """One armed timeout; :meth:`cancel` it when the work finishes first."""

    __slots__ = ("args", "bucket", "callback")

    def __init__(
        self, callback: Callable[..., object], args: tuple[Any, ...], bucket: dict[Deadline, None]
    ) -> None:
        self.callback = callback
        self.args = args
        self.bucket = bucket

    def cancel(self) -> None:
        """Do not fire (idempotent)."""
        self.bucket.pop(self, None)


class Deadlines:
    """One listener's deadlines, on ``time.monotonic()``'s clock (the loop's), by ``TICK``."""

    def __init__(self) -> None:
        self._buckets: dict[int, dict[Deadline, None]] = {}

    def call_later(
        self, now: float, delay: float, callback: Callable[..., object], *args: Any
    ) -> Deadline:
        """Call ``callback(*args)`` once ``delay`` seconds have passed since ``now`` (a
        ``time.monotonic()`` reading), unless cancelled first. Must be called from the running
        loop."""
        key = -int(-(now + delay) // TICK)  # the first tick at or after the deadline
        if delay >= COARSE_AFTER:
            key = -(-key // COARSE_TICKS) * COARSE_TICKS
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            asyncio.get_running_loop().call_at(key * TICK + LOOP_SLACK, self._fire, key)
        deadline = Deadline(callback, args, bucket)
        bucket[deadline] = None
        return deadline

    def _fire(self, key: int) -> None:
        bucket = self._buckets.pop(key)
        while bucket:
            deadline, _ = bucket.popitem()  # out first: its callback may cancel others
            try:
                deadline.callback(*deadline.args)
            except Exception as exc:  # one failing callback must not cost the others theirs
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "a deadline's callback failed", "exception": exc}
                )
