"""Destination profiles as the proxy applies them: routes, response classes, retry budget and
traffic splits, converted once from a decoded ``DestinationProfile`` (pure functions).

The first route whose condition matches a request's method and path (without the query) wins.
Path regexes are anchored (``^…$``) as Linkerd anchors them. A response is a failure if the
route's first matching response class says so; with no class matching, the default classifier
decides (gRPC status, else HTTP 5xx).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from weft.proxy.classify import FAILURE, SUCCESS, classify

if TYPE_CHECKING:
    from weft.proxy_api import destination as api

log = logging.getLogger("weft.proxy.profiles")

RequestPredicate = Callable[[str, str], bool]
StatusPredicate = Callable[[int], bool]

DEFAULT_RETRY_RATIO = 0.2
DEFAULT_MIN_RETRIES_PER_SECOND = 10
DEFAULT_RETRY_TTL = 10.0
MAX_RETRY_BYTES = 64 * 1024  # request bodies up to this size are kept for a retry
MAX_MIN_RETRIES = 2**31 - 1  # Linkerd rejects budgets above i32::MAX retries per second
# (method, path) pairs whose route a profile remembers: a few hundred distinct paths cover
# most services, and a proxy may hold hundreds of profiles within its memory budget.
MAX_MATCHED = 256


@dataclass(frozen=True, slots=True)
class Route:
    """One route of a profile: what it matches, how it classifies, retries and times out."""

    labels: tuple[tuple[str, str], ...]  # ``rt_<key>`` metric labels
    matches: RequestPredicate
    classes: tuple[tuple[StatusPredicate, bool], ...] = ()
    retryable: bool = False
    timeout: float | None = None

    def classify(self, status: int, grpc_status: int | None, error: str | None = None) -> str:
        """``success`` or ``failure`` for a response (an error is always a failure)."""
        if error is None and self.classes:
            for matches, is_failure in self.classes:
                if matches(status):
                    return FAILURE if is_failure else SUCCESS
        return classify(status, grpc_status, error)


@dataclass(frozen=True, slots=True)
class Profile:
    """What the destination service says about a logical destination."""

    name: str = ""  # the fully qualified ``host:port``: route metrics' ``dst`` label
    routes: tuple[Route, ...] = ()
    retry_ratio: float = DEFAULT_RETRY_RATIO
    min_retries_per_second: float = DEFAULT_MIN_RETRIES_PER_SECOND
    retry_ttl: float = DEFAULT_RETRY_TTL
    overrides: tuple[tuple[str, int], ...] = field(default=())  # (authority, weight)
    # The route of each (method, path) seen lately: most traffic repeats a few paths, and
    # matching runs every route's predicates (regexes) in turn.
    _matched: dict[tuple[str, str], Route | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def route(self, method: str, path: str) -> Route | None:
        """The first route matching ``method`` and ``path`` (query ignored), if any."""
        if not self.routes:
            return None
        cut = path.find("?")
        if cut >= 0:
            path = path[:cut]
        key = (method, path)
        matched = self._matched
        if key in matched:
            return matched[key]
        found = None
        for route in self.routes:
            if route.matches(method, path):
                found = route
                break
        if len(matched) >= MAX_MATCHED:
            matched.clear()
        matched[key] = found
        return found


NO_PROFILE = Profile()


def anchored(regex: str) -> str:
    """``regex`` with ``^`` and ``$`` added where missing, as Linkerd anchors path regexes."""
    if not regex.startswith("^"):
        regex = "^" + regex
    if not regex.endswith("$"):
        regex += "$"
    return regex


def request_predicate(match: api.RequestMatch) -> RequestPredicate:
    """A function of ``(method, path)`` for a ``RequestMatch``; ValueError if it is invalid."""
    kind = match.kind
    if kind == "path":
        pattern = re.compile(anchored(match.regex))
        return lambda _method, path: pattern.match(path) is not None
    if kind == "method":
        name = match.method
        return lambda method, _path: method == name
    if kind == "not":
        inner = request_predicate(match.matches[0])
        return lambda method, path: not inner(method, path)
    if kind in ("all", "any"):
        parts = [request_predicate(m) for m in match.matches]
        if kind == "all":
            return lambda method, path: all(p(method, path) for p in parts)
        return lambda method, path: any(p(method, path) for p in parts)
    raise ValueError("a request match must have a field set")


def status_predicate(match: api.ResponseMatch) -> StatusPredicate:
    """A function of the HTTP status for a ``ResponseMatch``; ValueError if it is invalid."""
    kind = match.kind
    if kind == "status":
        low = match.low or match.high
        high = match.high or match.low
        return lambda status: low <= status <= high
    if kind == "not":
        inner = status_predicate(match.matches[0])
        return lambda status: not inner(status)
    if kind in ("all", "any"):
        parts = [status_predicate(m) for m in match.matches]
        if kind == "all":
            return lambda status: all(p(status) for p in parts)
        return lambda status: any(p(status) for p in parts)
    raise ValueError("a response match must have a field set")


def _route(message: api.Route) -> Route:
    """One route; ValueError when its condition cannot be used."""
    timeout = message.timeout if message.timeout is not None and message.timeout > 0 else None
    return Route(
        labels=tuple((f"rt_{k}", v) for k, v in sorted(message.labels.items())),
        matches=request_predicate(message.condition),
        classes=tuple((status_predicate(match), failure) for match, failure in message.classes),
        retryable=message.retryable,
        timeout=timeout,
    )


def profile_from_message(message: api.DestinationProfile, port: int) -> Profile:
    """The proxy's view of a ``DestinationProfile`` for a destination on ``port``.

    Routes that cannot be used (an invalid regex, an empty match) are left out with a warning,
    and a retry budget out of Linkerd's bounds (ratio 0 to 1000, ttl 1 to 60 s, at most 2^31 - 1
    retries per second) gives the default.
    """
    routes = []
    for route in message.routes:
        try:
            routes.append(_route(route))
        except (ValueError, re.error) as exc:
            log.warning("ignoring a route of %s: %s", message.fully_qualified_name, exc)
    ratio, per_second, ttl = DEFAULT_RETRY_RATIO, DEFAULT_MIN_RETRIES_PER_SECOND, DEFAULT_RETRY_TTL
    budget = message.retry_budget
    if budget is not None:
        per_second_ok = budget.min_retries_per_second <= MAX_MIN_RETRIES
        if 0 <= budget.retry_ratio <= 1000 and 1 <= budget.ttl <= 60 and per_second_ok:
            ratio, per_second, ttl = budget.retry_ratio, budget.min_retries_per_second, budget.ttl
        else:
            log.warning(
                "ignoring the out-of-range retry budget of %s", message.fully_qualified_name
            )
    fqn = message.fully_qualified_name.rstrip(".")
    return Profile(
        name=f"{fqn}:{port}" if fqn else "",
        routes=tuple(routes),
        retry_ratio=ratio,
        min_retries_per_second=per_second,
        retry_ttl=ttl,
        overrides=tuple(
            (authority, weight) for authority, weight in message.dst_overrides if weight
        ),
    )
