"""One Observe call: its filter, its limit, and a bounded queue of encoded events.

Events are encoded and framed when they happen and wait in the queue until the client's flow
control lets the server send them. The queue holds at most ``max_events`` events and
``max_bytes`` bytes: a client that reads too slowly loses events (counted, and logged at debug),
it never makes the proxy buffer without bound. Once ``limit`` requests have matched, the tap
matches no more; it is :attr:`done` when their responses have all ended.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from weft.proxy.tap import events, wire
from weft.proxy.tap.match import Predicate
from weft.proxy.tap.registry import RequestFacts, Tapped, Taps

log = logging.getLogger("weft.proxy.tap")

MAX_EVENTS = 1000
MAX_BYTES = 1 << 20

Build = Callable[[Tapped, int, int, bool], bytes]


class TapStream:
    """A tap as the registry sees it (:class:`~weft.proxy.tap.registry.TapSink`), with the
    queue its server drains. ``wake`` is called whenever there is something new to send."""

    def __init__(
        self,
        taps: Taps,
        base: int,
        predicate: Predicate,
        limit: int,
        extract: bool,
        wake: Callable[[], None],
        max_events: int = MAX_EVENTS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.taps = taps
        self.base = base
        self.predicate = predicate
        self.limit = limit
        self.extract = extract
        self.wake = wake
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.spent = limit <= 0
        self.claimed = 0  # requests matched
        self.open = 0  # matched requests whose response has not ended
        self.queue: deque[bytes] = deque()
        self.queued = 0  # bytes in the queue
        self.dropped = 0
        self.closed = False

    @property
    def done(self) -> bool:
        """The limit is reached and every matched request's response has ended."""
        return self.spent and not self.open

    def matches(self, facts: RequestFacts) -> bool:
        """Whether the filter selects the request."""
        return self.predicate(facts)

    def claim(self) -> int:
        """Count a matched request; the tap is spent once ``limit`` have matched."""
        number = self.claimed
        self.claimed = number + 1
        self.open += 1
        if self.claimed >= self.limit:
            self.spent = True
        return number

    def request_init(self, tapped: Tapped, stream: int) -> None:
        """Queue the RequestInit event."""
        self._push(events.request_init, tapped, stream)

    def response_init(self, tapped: Tapped, stream: int) -> None:
        """Queue the ResponseInit event."""
        self._push(events.response_init, tapped, stream)

    def response_end(self, tapped: Tapped, stream: int) -> None:
        """Queue the ResponseEnd event; the request no longer holds the stream open."""
        self.open -= 1
        self._push(events.response_end, tapped, stream)
        if self.done:
            self.wake()

    def _push(self, build: Build, tapped: Tapped, stream: int) -> None:
        if self.closed:
            return
        if len(self.queue) >= self.max_events:
            self._drop()
            return
        data = wire.frame(build(tapped, self.base, stream, self.extract))
        if self.queued + len(data) > self.max_bytes:
            self._drop()
            return
        self.queue.append(data)
        self.queued += len(data)
        self.wake()

    def _drop(self) -> None:
        self.dropped += 1
        self.taps.dropped += 1
        log.debug("tap %d: client too slow, dropped an event (%d so far)", self.base, self.dropped)

    def take(self, n: int) -> bytes:
        """Up to ``n`` queued bytes, in order (a frame may be split across calls)."""
        queue = self.queue
        parts = []
        while queue and n > 0:
            head = queue[0]
            if len(head) <= n:
                queue.popleft()
                parts.append(head)
                n -= len(head)
            else:
                parts.append(head[:n])
                queue[0] = head[n:]
                n = 0
        data = b"".join(parts)
        self.queued -= len(data)
        return data

    def close(self) -> None:
        """Stop at once: forget the queue and leave the registry."""
        self.closed = True
        self.queue.clear()
        self.queued = 0
        self.taps.remove(self)
