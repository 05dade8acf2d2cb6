"""TopRoutes' tables from route samples and ServiceProfiles (pure).

Each table lists, per authority, the routes its ServiceProfile names (with zero counts when they
had no traffic) and ``[DEFAULT]`` for requests that matched no route, plus any route Prometheus
has samples for that the profile no longer names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from weft.controller.destination.addresses import MeshSettings, parse_path
from weft.controller.metrics_api.inventory import name_of, namespace_of
from weft.controller.metrics_api.queries import ACTUAL_REQUESTS, REQUESTS
from weft.controller.metrics_api.samples import Sample, count, latency
from weft.controller.metrics_api.stat_summary import LATENCY_FIELDS

Obj = dict[str, Any]
Results = Mapping[str, Sequence[Sample]]

DEFAULT_ROUTE = "[DEFAULT]"


@dataclass(frozen=True)
class RouteTarget:
    """One table: the resource it is for (``deployment/web``), the authorities whose routes it
    shows, and the route names each authority's ServiceProfile gives."""

    resource: str
    authorities: tuple[str, ...]
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)


def profile_name(authority: str, settings: MeshSettings) -> tuple[str, str] | None:
    """The (namespace, name) of the ServiceProfile an authority's routes come from
    (``web-svc.emojivoto.svc.cluster.local:80`` → ``emojivoto``, without the port)."""
    target = parse_path(authority, settings)
    if target.kind != "service":
        return None
    return target.namespace, f"{target.name}.{target.namespace}.svc.{settings.cluster_domain}"


def profile_routes(
    authority: str,
    profiles: Iterable[Obj],
    settings: MeshSettings,
    client_namespace: str | None = None,
) -> tuple[str, ...]:
    """The route names of the ServiceProfile for ``authority``: the client namespace's profile
    when there is one (as proxies there use it), else the service namespace's."""
    found = profile_name(authority, settings)
    if found is None:
        return ()
    service_namespace, name = found
    by_namespace = {namespace_of(p): p for p in profiles if name_of(p) == name}
    for namespace in (client_namespace, service_namespace):
        if namespace is not None and namespace in by_namespace:
            routes = (by_namespace[namespace].get("spec") or {}).get("routes") or []
            return tuple(str(route.get("name", "")) for route in routes if route.get("name"))
    return ()


def route_table(target: RouteTarget, results: Results, window: str) -> dict[str, Any]:
    """``{"resource", "rows"}`` for one target."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(authority: str, route: str) -> dict[str, Any]:
        key = (authority, route)
        found = rows.get(key)
        if found is None:
            found = rows[key] = {
                "route": route,
                "authority": authority,
                "timeWindow": window,
                "stats": {
                    "successCount": 0,
                    "failureCount": 0,
                    **dict.fromkeys(LATENCY_FIELDS.values()),
                    "actualSuccessCount": 0,
                    "actualFailureCount": 0,
                },
            }
        return found

    def sample_entry(sample: Sample) -> dict[str, Any]:
        dst = sample.labels.get("dst", "")
        host = dst.rsplit(":", 1)[0]
        # A target named without a port collects every port's samples under its name.
        authority = host if dst not in target.authorities and host in target.authorities else dst
        return entry(authority, sample.labels.get("rt_route") or DEFAULT_ROUTE)

    for authority in target.authorities:
        for route in target.routes.get(authority, ()):
            entry(authority, route)
        entry(authority, DEFAULT_ROUTE)
    for query, fields in (
        (REQUESTS, {"success": "successCount", "failure": "failureCount"}),
        (ACTUAL_REQUESTS, {"success": "actualSuccessCount", "failure": "actualFailureCount"}),
    ):
        for sample in results.get(query, ()):
            counted = fields.get(sample.labels.get("classification", ""))
            if counted is not None:
                sample_entry(sample)["stats"][counted] += count(sample.value)
    for quantile, latency_field in LATENCY_FIELDS.items():
        for sample in results.get(quantile, ()):
            sample_entry(sample)["stats"][latency_field] = latency(sample.value)
    return {"resource": target.resource, "rows": list(rows.values())}
