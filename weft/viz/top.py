"""``top``'s aggregation of tap events (pure): completed requests per source, destination,
method and path (or ServiceProfile route), with count, best, worst and last latency and
success rate, as Linkerd's ``top`` computes them.

A request is complete at its ResponseEnd; its latency is the end's time since the request's
head. It succeeded if the response status was below 500, a gRPC status (if any) was OK and the
stream was not reset. Requests whose events have not all arrived wait in a bounded table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from weft.viz.tap_events import Peer, RequestInit, ResponseEnd, ResponseInit, TapEvent

DEFAULT_ROUTE = "[DEFAULT]"
MAX_PENDING = 10_000
SORTS = ("count", "best", "worst", "last", "success", "path")


@dataclass
class TopRow:
    """The requests of one source, destination, method and path (or route) so far."""

    source: str
    destination: str
    method: str
    path: str  # the route when grouping by route
    count: int = 0
    best_ns: int = 0
    worst_ns: int = 0
    last_ns: int = 0
    successes: int = 0

    @property
    def success_rate(self) -> float:
        """Successful share of the requests."""
        return self.successes / self.count if self.count else 0.0

    def identity(self) -> tuple[str, str, str, str]:
        """What the row is about (the sort's tie-breaker)."""
        return (self.path, self.method, self.source, self.destination)

    def record(self, latency_ns: int, success: bool) -> None:
        """Count one completed request."""
        self.best_ns = latency_ns if self.count == 0 else min(self.best_ns, latency_ns)
        self.worst_ns = max(self.worst_ns, latency_ns)
        self.last_ns = latency_ns
        self.count += 1
        self.successes += success


# Each sort: its key, and whether the natural order is descending (most, slowest first).
_SORTS: dict[str, tuple[Callable[[TopRow], int | float | str], bool]] = {
    "count": (lambda r: r.count, True),
    "best": (lambda r: r.best_ns, True),
    "worst": (lambda r: r.worst_ns, True),
    "last": (lambda r: r.last_ns, True),
    "success": (lambda r: r.success_rate, False),
    "path": (lambda r: r.path, False),
}


@dataclass
class _Pending:
    init: RequestInit
    route: str
    status: int | None = None
    since_request_ns: int = 0


def display_name(peer: Peer) -> str:
    """A peer as ``top`` names it: its pod, else its IP."""
    return peer.labels.get("pod") or peer.ip


class TopTable:
    """Rows built from a stream of tap events."""

    def __init__(
        self, by_route: bool = False, hide_sources: bool = False, max_pending: int = MAX_PENDING
    ) -> None:
        self.by_route = by_route
        self.hide_sources = hide_sources
        self.max_pending = max_pending
        self._pending: dict[tuple[str, str, str, int, int], _Pending] = {}
        self._rows: dict[tuple[str, str, str, str], TopRow] = {}

    @property
    def pending(self) -> int:
        """Requests seen whose response has not ended yet."""
        return len(self._pending)

    def add(self, event: TapEvent) -> bool:
        """Take one event; True when it completed a request (a row changed)."""
        http = event.http
        key = (
            event.direction,
            event.source.address,
            event.destination.address,
            http.id.base,
            http.id.stream,
        )
        if isinstance(http, RequestInit):
            route = event.route_labels.get("route") or DEFAULT_ROUTE
            self._pending[key] = _Pending(http, route)
            while len(self._pending) > self.max_pending:  # drop the oldest
                del self._pending[next(iter(self._pending))]
            return False
        pending = self._pending.get(key)
        if pending is None:
            return False  # its head came before we started listening, or was dropped
        if isinstance(http, ResponseInit):
            pending.status = http.http_status
            pending.since_request_ns = http.since_request_init_ns
            return False
        del self._pending[key]
        self._complete(event, pending, http)
        return True

    def _complete(self, event: TapEvent, pending: _Pending, end: ResponseEnd) -> None:
        latency = end.since_request_init_ns or pending.since_request_ns + end.since_response_init_ns
        success = (
            pending.status is not None
            and pending.status < 500
            and end.grpc_status in (None, 0)
            and end.reset_error is None
        )
        source = "" if self.hide_sources else display_name(event.source)
        destination = display_name(event.destination)
        method = "" if self.by_route else pending.init.method
        path = pending.route if self.by_route else pending.init.path
        row_key = (source, destination, method, path)
        row = self._rows.get(row_key)
        if row is None:
            row = self._rows[row_key] = TopRow(source, destination, method, path)
        row.record(latency, success)

    def rows(self, sort: str = "count", reverse: bool = False) -> list[TopRow]:
        """The rows ordered by ``sort`` (one of :data:`SORTS`; counts and latencies highest
        first, success rate lowest first, paths alphabetically), ``reverse`` flips it."""
        key, descending = _SORTS[sort]
        ordered = sorted(self._rows.values(), key=TopRow.identity)
        return sorted(ordered, key=key, reverse=descending != reverse)
