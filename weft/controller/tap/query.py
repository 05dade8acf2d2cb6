"""A tap request as the controller's HTTP API takes it, and the proxy ``Match`` it becomes (pure).

The body names filters as ``linkerd tap`` does (``--to``, ``--method``, ``--path`` as a prefix,
``--authority`` exact, ``--scheme``, ``--max-rps``); they become an ``all`` sequence of proxy
matches (reference §8.2), written here in protobuf's JSON mapping of
``io.linkerd.proxy.tap.ObserveRequest.Match`` so this module needs no generated code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from weft.viz import resources as rs

DEFAULT_MAX_RPS = 100.0
# http_types.HttpMethod.Registered and Scheme.Registered enum names.
REGISTERED_METHODS = frozenset(
    {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "HEAD", "TRACE"}
)
REGISTERED_SCHEMES = {"http": "HTTP", "https": "HTTPS"}
_FILTERS = ("method", "path", "authority", "scheme")


class QueryError(ValueError):
    """The tap request is malformed; ``str()`` is one line (HTTP 400)."""


@dataclass(frozen=True)
class TapQuery:
    """What to tap and which requests to report."""

    target: rs.Resource
    to: rs.Resource | None = None
    method: str = ""
    path: str = ""
    authority: str = ""
    scheme: str = ""
    max_rps: float = DEFAULT_MAX_RPS
    extract: bool = False


def parse_query(namespace: str, plural: str, name: str, body: Any) -> TapQuery:
    """The query of ``POST .../namespaces/<namespace>[/<plural>/<name>]/tap`` with ``body``."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise QueryError("the tap request body must be a JSON object")
    try:
        if plural:
            target = rs.Resource(rs.canonical_type(plural), name, namespace)
        else:
            target = rs.Resource(rs.NAMESPACE, namespace, namespace)
        to = None
        if body.get("toResource") is not None:
            to = rs.Resource.from_json(body["toResource"], "toResource")
            if not to.namespace:
                to = rs.Resource(to.type, to.name, namespace)
            if to.type == rs.NAMESPACE and to.name:
                to = rs.Resource(rs.NAMESPACE, to.name, to.name)
    except rs.ResourceError as exc:
        raise QueryError(str(exc)) from exc
    filters: dict[str, str] = {}
    for key in _FILTERS:
        value = body.get(key, "")
        if not isinstance(value, str):
            raise QueryError(f"{key} must be a string")
        filters[key] = value
    if filters["scheme"] and filters["scheme"].lower() not in REGISTERED_SCHEMES:
        raise QueryError(f'unknown scheme "{filters["scheme"]}": http or https')
    max_rps = body.get("maxRps", DEFAULT_MAX_RPS)
    if (
        isinstance(max_rps, bool)
        or not isinstance(max_rps, int | float)
        or not math.isfinite(max_rps)
        or max_rps <= 0
    ):
        raise QueryError("maxRps must be a positive number")
    extract = body.get("extract", False)
    if not isinstance(extract, bool):
        raise QueryError("extract must be true or false")
    return TapQuery(target, to, max_rps=float(max_rps), extract=extract, **filters)


def _http(field: str, value: Any) -> dict[str, Any]:
    return {"http": {field: value}}


def match_json(query: TapQuery) -> dict[str, Any]:
    """The proxy ``Match`` for ``query``: ``{"all": {"matches": [...]}}`` (possibly empty)."""
    matches: list[dict[str, Any]] = []
    to = query.to
    if to is not None:
        if to.name and to.type != rs.NAMESPACE:
            matches.append({"destinationLabel": {"key": rs.label(to.type), "value": to.name}})
        matches.append({"destinationLabel": {"key": "namespace", "value": to.namespace}})
    if query.scheme:
        matches.append(_http("scheme", {"registered": REGISTERED_SCHEMES[query.scheme.lower()]}))
    if query.method:
        method = query.method.upper()
        kind = "registered" if method in REGISTERED_METHODS else "unregistered"
        matches.append(_http("method", {kind: method if kind == "registered" else query.method}))
    if query.authority:
        matches.append(_http("authority", {"exact": query.authority}))
    if query.path:
        matches.append(_http("path", {"prefix": query.path}))
    return {"all": {"matches": matches}}


def per_pod_limit(max_rps: float, pods: int) -> int:
    """Requests each proxy may report per second: ``max_rps`` split evenly, at least 1."""
    return max(1, math.floor(max_rps / max(pods, 1)))
