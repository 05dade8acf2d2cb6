"""The metrics API's request bodies, checked and typed (pure).

Bodies are JSON objects shaped like Linkerd's public-API messages in protobuf's JSON mapping
(camelCase). Anything wrong raises :class:`BadRequest`, whose text is the 400 answer's one line.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from weft.controller.metrics_api.selectors import Selector, SelectorError, parse_selector
from weft.viz import resources as r
from weft.viz.durations import DurationError, parse_duration

DEFAULT_WINDOW = "1m"


class BadRequest(ValueError):
    """A request the API cannot answer as asked; ``str()`` is one line."""


@dataclass(frozen=True)
class StatSummaryRequest:
    """``POST /api/v1/StatSummary``."""

    resource: r.Resource
    selector: Selector
    window: str
    to: r.Resource | None = None
    source: r.Resource | None = None
    skip_stats: bool = False
    tcp_stats: bool = False

    def types(self) -> tuple[str, ...]:
        """The types to make tables for (``all`` expands to every object type)."""
        return r.ALL_TYPES if self.resource.type == r.ALL else (self.resource.type,)


@dataclass(frozen=True)
class TopRoutesRequest:
    """``POST /api/v1/TopRoutes``."""

    resource: r.Resource
    window: str
    to: r.Resource | None = None


@dataclass(frozen=True)
class EdgesRequest:
    """``POST /api/v1/Edges``."""

    resource: r.Resource


@dataclass(frozen=True)
class ListPodsRequest:
    """``POST /api/v1/ListPods``: pods in a namespace ("" for all), optionally of one object."""

    namespace: str
    resource: r.Resource | None = None


def stat_summary_request(body: Any) -> StatSummaryRequest:
    """Check a StatSummary body."""
    fields = _fields(
        body,
        {"selector", "timeWindow", "toResource", "fromResource", "skipStats", "tcpStats"},
    )
    resource, selector = _selection(fields)
    to = _optional_resource(fields, "toResource")
    source = _optional_resource(fields, "fromResource")
    if to is not None and source is not None:
        raise BadRequest("give toResource or fromResource, not both")
    for other, what in ((to, "toResource"), (source, "fromResource")):
        if other is not None and other.type == r.ALL:
            raise BadRequest(f"{what} cannot be of type all")
        if other is not None and r.TRAFFIC_SPLIT in (other.type, resource.type):
            raise BadRequest(f"trafficsplits cannot be combined with {what}")
    if source is not None and source.type == r.SERVICE:
        raise BadRequest("a service cannot be a fromResource: requests do not name their service")
    if source is not None and r.AUTHORITY in (source.type, resource.type):
        raise BadRequest("authorities cannot be combined with fromResource")
    return StatSummaryRequest(
        resource,
        selector,
        _window(fields),
        to,
        source,
        _flag(fields, "skipStats"),
        _flag(fields, "tcpStats"),
    )


def top_routes_request(body: Any) -> TopRoutesRequest:
    """Check a TopRoutes body."""
    fields = _fields(body, {"selector", "timeWindow", "toResource"})
    resource, _ = _selection(fields, allow_labels=False)
    to = _optional_resource(fields, "toResource")
    if resource.type in (r.ALL, r.TRAFFIC_SPLIT):
        raise BadRequest(f"routes cannot be shown for resources of type {resource.type}")
    if resource.type == r.AUTHORITY and not resource.name:
        raise BadRequest(
            "routes of an authority need its name, e.g. authority/web-svc.ns.svc.cluster.local"
        )
    if to is not None:
        if resource.type in (r.SERVICE, r.AUTHORITY):
            raise BadRequest(f"{r.plural(resource.type)} cannot be combined with toResource")
        if to.type in (r.ALL, r.TRAFFIC_SPLIT):
            raise BadRequest(f"toResource cannot be of type {to.type}")
        if to.type == r.AUTHORITY and not to.name:
            raise BadRequest("an authority toResource needs a name")
    return TopRoutesRequest(resource, _window(fields), to)


def edges_request(body: Any) -> EdgesRequest:
    """Check an Edges body."""
    fields = _fields(body, {"selector"})
    resource, _ = _selection(fields, allow_labels=False)
    if resource.type not in (r.DEPLOYMENT, r.JOB, r.POD):
        raise BadRequest(f"edges are shown between deployments, jobs or pods, not {resource.type}")
    return EdgesRequest(resource)


def list_pods_request(body: Any) -> ListPodsRequest:
    """Check a ListPods body (``selector.resource`` may hold only a namespace)."""
    fields = _fields(body, {"selector"})
    selection = _object(fields.get("selector", {}), "selector")
    data = _object(selection.get("resource", {}), "selector.resource")
    namespace = data.get("namespace", "")
    if not isinstance(namespace, str):
        raise BadRequest("selector.resource.namespace must be a string")
    if not data.get("type"):
        return ListPodsRequest(namespace)
    try:
        resource = r.Resource.from_json(data, "selector.resource")
    except r.ResourceError as exc:
        raise BadRequest(str(exc)) from None
    if resource.type not in (r.NAMESPACE, r.DEPLOYMENT, r.JOB, r.POD, r.SERVICE):
        raise BadRequest(f"pods cannot be listed for {resource.type}")
    return ListPodsRequest(namespace, resource)


def list_services_request(body: Any) -> str:
    """Check a ListServices body; returns the namespace ("" for all)."""
    namespace = _fields(body, {"namespace"}).get("namespace", "")
    if not isinstance(namespace, str):
        raise BadRequest("namespace must be a string")
    return namespace


# -- fields -------------------------------------------------------------------------------


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _fields(body: Any, known: Collection[str]) -> dict[str, Any]:
    fields = _object(body, "the request body")
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}: expected {', '.join(sorted(known))}")
    return fields


def _selection(fields: dict[str, Any], allow_labels: bool = True) -> tuple[r.Resource, Selector]:
    selection = _object(fields.get("selector"), "selector")
    try:
        resource = r.Resource.from_json(selection.get("resource"), "selector.resource")
    except r.ResourceError as exc:
        raise BadRequest(str(exc)) from None
    if resource.type == r.ALL and resource.name:
        raise BadRequest("a resource of type all cannot have a name")
    if resource.type == r.NAMESPACE and resource.name:
        resource = r.Resource(r.NAMESPACE, resource.name, resource.name)
    text = selection.get("labelSelector", "")
    if not isinstance(text, str):
        raise BadRequest("selector.labelSelector must be a string")
    if text and not allow_labels:
        raise BadRequest("selector.labelSelector is not supported here")
    try:
        return resource, parse_selector(text)
    except SelectorError as exc:
        raise BadRequest(str(exc)) from None


def _optional_resource(fields: dict[str, Any], what: str) -> r.Resource | None:
    data = fields.get(what)
    if data is None:
        return None
    try:
        resource = r.Resource.from_json(data, what)
    except r.ResourceError as exc:
        raise BadRequest(str(exc)) from None
    if resource.type == r.NAMESPACE and resource.name:
        return r.Resource(r.NAMESPACE, resource.name, resource.name)
    return resource


def _window(fields: dict[str, Any]) -> str:
    window = fields.get("timeWindow") or DEFAULT_WINDOW
    if not isinstance(window, str):
        raise BadRequest("timeWindow must be a string such as 1m")
    try:
        parse_duration(window, "timeWindow")
    except DurationError as exc:
        raise BadRequest(str(exc)) from None
    return window


def _flag(fields: dict[str, Any], name: str) -> bool:
    value = fields.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false")
    return value
