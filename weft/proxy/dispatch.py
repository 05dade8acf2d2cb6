"""What one request owes its logical destination's profile: the route it matched, its retries,
and the ``route_*`` / ``route_actual_*`` series (shared by the HTTP/1 and HTTP/2 handlers).

``route_*`` counts the request once, from its headers to the response the client gets;
``route_actual_*`` counts every attempt, retries included. Both carry ``dst`` (the profile's
fully qualified name and port) and the route's ``rt_*`` labels; requests matching no route are
counted under ``dst`` alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weft.proxy.classify import FAILURE, classify
from weft.proxy.profiles import MAX_RETRY_BYTES, Route

if TYPE_CHECKING:
    from weft.proxy.metrics import EndpointStats, LabelPairs, ProxyMetrics
    from weft.proxy.routing import Logical


def request_path(target: bytes) -> str:
    """The path of a request target (origin form, or the path of an absolute URI)."""
    if target[:1] != b"/":
        scheme_end = target.find(b"://")
        if scheme_end >= 0:
            rest = target[scheme_end + 3 :]
            ends = [i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0]
            target = rest[min(ends) :] if ends else b""
            if target[:1] != b"/":
                target = b"/" + target
    return target.decode("latin-1")


class Dispatch:
    """A request to a destination with a profile."""

    __slots__ = ("actual", "logical", "replay", "replay_bytes", "route", "stats")

    def __init__(
        self,
        direction: str,
        metrics: ProxyMetrics,
        logical: Logical,
        method: str,
        path: str,
        now: float,
    ) -> None:
        self.logical = logical
        profile = logical.profile
        route = profile.route(method, path)
        self.route: Route | None = route
        self.stats: EndpointStats | None = None
        self.actual: EndpointStats | None = None
        if profile.name:
            labels: LabelPairs = (("direction", direction), ("dst", profile.name))
            if route is not None:
                labels += route.labels
            self.stats = metrics.route.endpoint("", labels)
            self.stats.request(now)
            self.actual = metrics.route_actual.endpoint("", labels)
        self.replay: list[bytes] | None = None
        self.replay_bytes = 0
        if route is not None and route.retryable:
            self.replay = []
            logical.budget(now).deposit(now)

    @property
    def timeout(self) -> float | None:
        """The route's timeout in seconds, if it has one."""
        return self.route.timeout if self.route is not None else None

    def keep(self, data: bytes | memoryview) -> None:
        """Keep request body bytes for a retry (giving up past ``MAX_RETRY_BYTES``)."""
        replay = self.replay
        if replay is None:
            return
        self.replay_bytes += len(data)
        if self.replay_bytes > MAX_RETRY_BYTES:
            self.replay = None
            return
        replay.append(bytes(data))

    def trailers(self, block: bytes) -> None:
        """Request trailers arrived: they are not kept, so the request cannot be retried."""
        self.replay = None

    def classify(self, status: int, grpc_status: int | None, error: str | None = None) -> str:
        """The route's classification of a response."""
        route = self.route
        if route is None:
            return classify(status, grpc_status, error)
        return route.classify(status, grpc_status, error)

    def retry(self, status: int, grpc_status: int | None, now: float) -> bool:
        """Whether a complete request that got this response should be sent again: its route
        is retryable, its body was kept, the response is a failure and the budget allows."""
        if self.replay is None or self.classify(status, grpc_status) != FAILURE:
            return False
        if self.logical.budget(now).withdraw(now):
            return True
        if self.stats is not None:
            self.stats.retries_skipped += 1
        return False

    def attempt(self, now: float) -> None:
        """An attempt was sent to an endpoint."""
        if self.actual is not None:
            self.actual.request(now)

    def attempt_done(
        self,
        now: float,
        latency_ms: float,
        status: int,
        grpc_status: int | None,
        error: str | None = None,
    ) -> None:
        """An attempt ended with this response (or error)."""
        if self.actual is not None:
            cls = self.classify(status, grpc_status, error)
            self.actual.response(now, latency_ms, status, cls, grpc_status, error)

    def done(
        self,
        now: float,
        latency_ms: float,
        status: int,
        grpc_status: int | None,
        error: str | None = None,
    ) -> None:
        """The client got this response (or error)."""
        if self.stats is not None:
            cls = self.classify(status, grpc_status, error)
            self.stats.response(now, latency_ms, status, cls, grpc_status, error)
