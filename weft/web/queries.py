"""What the dashboard's API asks of its backends (pure): metrics-API bodies, PromQL, tap requests.

Every function here checks what the browser sent and raises :class:`QueryError` (HTTP 400, one
line) for anything it cannot use, so nothing unchecked reaches a PromQL string or a URL path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from weft.viz import resources as rs

Obj = dict[str, Any]

_WINDOW = re.compile(r"([1-9][0-9]{0,5})(s|m|h)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
# A Kubernetes object name (DNS-1123 subdomain) or namespace.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")

# Stat windows (Linkerd's web offers 10s, 1m, 10m, 1h) and chart windows (5 minutes to 6 hours,
# the default Prometheus retention).
STAT_WINDOW = (10, 3600)
SERIES_WINDOW = (300, 6 * 3600)
DEFAULT_STAT_WINDOW = "1m"
DEFAULT_SERIES_WINDOW = "15m"
# About this many points per chart, and never a step under 5 s (a scrape is every 1-10 s).
SERIES_POINTS = 120
MIN_STEP = 5
MIN_RATE_RANGE = 30
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}

# Resource types with a page of their own, and those the tap controller can tap.
WORKLOAD_TYPES = (rs.DEPLOYMENT, rs.JOB, rs.POD, rs.SERVICE)
TAP_TYPES = (rs.NAMESPACE, rs.DEPLOYMENT, rs.JOB, rs.POD)
TAP_PREFIX = "/apis/tap.linkerd.io/v1alpha1/watch/namespaces"
DEFAULT_MAX_RPS = 100.0
MAX_MAX_RPS = 10000.0
TAP_FILTERS = ("method", "path", "authority", "scheme")

CONTROLLER_JOB = "weft-controller"


class QueryError(ValueError):
    """The browser asked for something the API cannot answer; ``str()`` is one line (400)."""


@dataclass(frozen=True)
class Window:
    """A Prometheus duration as the user chose it (``1m``) and its length in seconds."""

    text: str
    seconds: int


def parse_window(text: str | None, default: str, bounds: tuple[int, int]) -> Window:
    """``?window=`` (``10s``, ``1m``, ``6h``) within ``bounds`` seconds; ``default`` if absent."""
    value = default if text is None or text == "" else text
    match = _WINDOW.fullmatch(value)
    if not match:
        raise QueryError(f'invalid window "{value}": want a duration such as 30s, 1m or 1h')
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    low, high = bounds
    if not low <= seconds <= high:
        raise QueryError(f'window "{value}" is out of range: from {_human(low)} to {_human(high)}')
    return Window(value, seconds)


def _human(seconds: int) -> str:
    for unit in ("h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def check_name(what: str, value: str) -> str:
    """``value`` if it is a valid object name or namespace, else :class:`QueryError`."""
    if not _NAME.fullmatch(value):
        raise QueryError(f'invalid {what} "{value}": want a Kubernetes name such as emojivoto')
    return value


def workload(namespace: str, type_: str, name: str) -> rs.Resource:
    """The resource of a workload page (``/namespaces/<ns>/<type>/<name>``)."""
    try:
        kind = rs.canonical_type(type_)
    except rs.ResourceError as exc:
        raise QueryError(str(exc)) from None
    if kind not in WORKLOAD_TYPES:
        raise QueryError(f'no page for "{type_}": one of deployments, jobs, pods or services')
    return rs.Resource(kind, check_name("name", name), check_name("namespace", namespace))


# -- metrics API request bodies -----------------------------------------------------------------


def stat_body(
    selector: rs.Resource,
    window: Window,
    *,
    to: rs.Resource | None = None,
    source: rs.Resource | None = None,
    tcp: bool = True,
) -> Obj:
    """A ``StatSummary`` request: ``selector``'s rows, optionally only traffic ``to`` a resource
    or ``from`` one (``source``)."""
    body: Obj = {
        "selector": {"resource": selector.to_json()},
        "timeWindow": window.text,
        "tcpStats": tcp,
    }
    if to is not None:
        body["toResource"] = to.to_json()
    if source is not None:
        body["fromResource"] = source.to_json()
    return body


def routes_body(resource: rs.Resource, window: Window) -> Obj:
    """A ``TopRoutes`` request for the routes of ``resource``'s services."""
    return {"selector": {"resource": resource.to_json()}, "timeWindow": window.text}


def edges_body(namespace: str, type_: str) -> Obj:
    """An ``Edges`` request for the edges of every ``type_`` in ``namespace``."""
    return {"selector": {"resource": {"namespace": namespace, "type": type_, "name": ""}}}


def pods_body(namespace: str = "", of: rs.Resource | None = None) -> Obj:
    """A ``ListPods`` request: the pods of a namespace (``""``: every namespace), or those of
    one resource (a workload's, a Service's selected pods)."""
    return {"selector": {"resource": of.to_json() if of else {"namespace": namespace}}}


# -- Prometheus -----------------------------------------------------------------------------------


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def series_matchers(resource: rs.Resource) -> str:
    """PromQL label matchers for the requests a resource serves (inbound at its proxies; a
    Service: outbound at its meshed callers, who name it ``dst_service``)."""
    if resource.type == rs.SERVICE:
        pairs = [
            ("direction", "outbound"),
            ("dst_namespace", resource.namespace),
            ("dst_service", resource.name),
        ]
    else:
        pairs = [("direction", "inbound"), ("namespace", resource.namespace)]
        if resource.type != rs.NAMESPACE:
            pairs.append((rs.label(resource.type), resource.name))
    return ", ".join(f"{key}={_quote(value)}" for key, value in pairs)


@dataclass(frozen=True)
class SeriesPlan:
    """The ``query_range`` calls for a resource's charts: one grid of timestamps, four queries."""

    start: int
    end: int
    step: int
    queries: dict[str, str]

    def timestamps(self) -> list[int]:
        """Every point of the grid, ``start`` to ``end``."""
        return list(range(self.start, self.end + 1, self.step))


def series_plan(resource: rs.Resource, window: Window, now: float) -> SeriesPlan:
    """The queries for success rate, RPS and p50/p95/p99 of ``resource`` over ``window`` up to
    ``now``, on a step-aligned grid (so repeated loads hit the same points)."""
    step = max(MIN_STEP, math.ceil(window.seconds / SERIES_POINTS))
    end = int(now // step) * step
    start = end - (window.seconds // step) * step
    rate_range = f"{max(MIN_RATE_RANGE, 4 * step)}s"
    matchers = series_matchers(resource)
    queries = {
        "requests": (f"sum(rate(response_total{{{matchers}}}[{rate_range}])) by (classification)"),
    }
    for key, quantile in QUANTILES.items():
        queries[key] = (
            f"histogram_quantile({quantile}, sum(rate(response_latency_ms_bucket{{{matchers}}}"
            f"[{rate_range}])) by (le))"
        )
    return SeriesPlan(start, end, step, queries)


def cert_expiry_query() -> str:
    """The identity component's ``identity_cert_expiration_timestamp_seconds`` (anchors, issuer)."""
    return f'identity_cert_expiration_timestamp_seconds{{job="{CONTROLLER_JOB}"}}'


def components_up_query() -> str:
    """Whether Prometheus could scrape each control-plane pod's admin server."""
    return f'up{{job="{CONTROLLER_JOB}"}}'


# -- tap ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TapRequest:
    """A tap the browser asked for: the tap controller's path and body, and what is tapped."""

    path: str
    body: Obj
    target: rs.Resource


def _text(message: Obj, key: str) -> str:
    value = message.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise QueryError(f"{key} must be a string")
    return value.strip()


def tap_request(message: Any) -> TapRequest:
    """The tap for the WebSocket's first message: ``{"resource": "deploy/web", "namespace":
    "emojivoto", "toResource": "deploy/emoji", "toNamespace", "method", "path", "authority",
    "scheme", "maxRps", "extract"}`` (only ``resource`` is required)."""
    if not isinstance(message, dict):
        raise QueryError("the tap query must be a JSON object")
    namespace = check_name("namespace", _text(message, "namespace") or "default")
    text = _text(message, "resource")
    if not text:
        raise QueryError("no resource to tap: e.g. deploy/web or ns/emojivoto")
    try:
        target = rs.parse_target(text, namespace)
        to_text = _text(message, "toResource")
        to_namespace = _text(message, "toNamespace") or namespace
        to = rs.parse_target(to_text, check_name("namespace", to_namespace)) if to_text else None
    except rs.ResourceError as exc:
        raise QueryError(str(exc)) from None
    if target.type == rs.NAMESPACE and not target.name:
        target = rs.Resource(rs.NAMESPACE, namespace, namespace)
    if target.type not in TAP_TYPES:
        raise QueryError(f"cannot tap {target.type}s: tap a namespace, deployment, job or pod")
    if target.type != rs.NAMESPACE and not target.name:
        raise QueryError(f'"{text}": name the {target.type} to tap, e.g. {target.type}/web')
    body: Obj = {}
    for key in TAP_FILTERS:
        if value := _text(message, key):
            body[key] = value
    if "path" in body and not body["path"].startswith("/"):
        raise QueryError(f'path "{body["path"]}" must start with /')
    max_rps = message.get("maxRps", DEFAULT_MAX_RPS)
    if max_rps in (None, ""):
        max_rps = DEFAULT_MAX_RPS
    if (
        isinstance(max_rps, bool)
        or not isinstance(max_rps, int | float)
        or not math.isfinite(max_rps)
        or not 0 < max_rps <= MAX_MAX_RPS
    ):
        raise QueryError(f"maxRps must be a number above 0 and at most {MAX_MAX_RPS:.0f}")
    body["maxRps"] = float(max_rps)
    extract = message.get("extract", False)
    if not isinstance(extract, bool):
        raise QueryError("extract must be true or false")
    body["extract"] = extract
    if to is not None:
        body["toResource"] = to.to_json()
    if target.type == rs.NAMESPACE:
        check_name("namespace", target.name)
        path = f"{TAP_PREFIX}/{target.name}/tap"
    else:
        check_name("name", target.name)
        path = f"{TAP_PREFIX}/{target.namespace}/{rs.plural(target.type)}/{target.name}/tap"
    return TapRequest(path, body, target)
