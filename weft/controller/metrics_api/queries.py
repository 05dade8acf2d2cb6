"""The PromQL the metrics API runs (pure), as Linkerd's public API builds it.

Golden metrics are ``response_total`` increases by classification and tls, latency quantiles
over ``irate`` of ``response_latency_ms_bucket``, and the ``tcp_*`` series. Which series count
follows the request: by default the selected resource's inbound series (measured by its own
proxies), grouped by ``namespace, <kind>``; with a ``to`` resource the selected resource's
outbound series towards it (``dst_<kind>``), grouped by the source; with a ``from`` resource that
resource's outbound series towards the selected one, grouped by ``dst_namespace, dst_<kind>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from weft.viz import resources as r
from weft.viz.promql import quote_meta, string_literal

# (label, operator, value); the operator is "=", "!=" or "=~".
Matcher = tuple[str, str, str]

REQUESTS = "requests"
ACTUAL_REQUESTS = "actual_requests"
TCP_OPEN = "tcp_open"
TCP_READ = "tcp_read"
TCP_WRITE = "tcp_write"
QUANTILES = {"p50": "0.5", "p95": "0.95", "p99": "0.99"}
EDGES_OUTBOUND = "outbound"
EDGES_INBOUND = "inbound"


@dataclass(frozen=True)
class StatPlan:
    """Which series a stat table reads (``matchers``), how they are grouped into rows
    (``group_by``), and which side of the TCP connections counts (``peer``)."""

    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    peer: str


def selector(matchers: Iterable[Matcher]) -> str:
    """``{a="x", b=~"y"}``, sorted, values escaped as PromQL strings."""
    unique = sorted(set(matchers))
    return "{" + ", ".join(f"{n}{op}{string_literal(v)}" for n, op, v in unique) + "}"


def resource_matchers(resource: r.Resource) -> list[Matcher]:
    """The labels a resource's own series carry: ``deployment="web", namespace="x"``."""
    if resource.type == r.NAMESPACE:
        name = resource.name or resource.namespace
        return [("namespace", "=", name)] if name else []
    found: list[Matcher] = []
    if resource.name:
        found.append((r.label(resource.type), "=", resource.name))
    if resource.namespace and resource.type != r.AUTHORITY:
        found.append(("namespace", "=", resource.namespace))
    return found


def dst_matchers(resource: r.Resource) -> list[Matcher]:
    """The labels of outbound series towards a resource: ``dst_deployment="web",
    dst_namespace="x"`` (an authority is the ``authority`` label on both sides)."""
    if resource.type == r.AUTHORITY:
        return resource_matchers(resource)
    if resource.type == r.NAMESPACE:
        name = resource.name or resource.namespace
        return [("dst_namespace", "=", name)] if name else []
    found: list[Matcher] = []
    if resource.name:
        found.append((r.dst_label(resource.type), "=", resource.name))
    if resource.namespace:
        found.append(("dst_namespace", "=", resource.namespace))
    return found


def group_by(kind: str) -> tuple[str, ...]:
    """``namespace, <kind>`` (``namespace`` alone for namespaces)."""
    return ("namespace",) if kind == r.NAMESPACE else ("namespace", r.label(kind))


def dst_group_by(kind: str) -> tuple[str, ...]:
    """``dst_namespace, dst_<kind>`` (``dst_namespace`` alone for namespaces)."""
    return ("dst_namespace",) if kind == r.NAMESPACE else ("dst_namespace", r.dst_label(kind))


def stat_plan(
    selected: r.Resource, to: r.Resource | None = None, source: r.Resource | None = None
) -> StatPlan:
    """The series of a stat table for ``selected`` (optionally ``to`` or from ``source``).

    A Service has no inbound series (a proxy does not know which Service a request came
    through), so its rows come from its meshed clients' outbound series, ``dst_service``."""
    outbound = ("direction", "=", "outbound")
    if selected.type == r.SERVICE:
        found = [outbound, *dst_matchers(selected)]
        if to is not None:
            found += dst_matchers(to)
        if source is not None:
            found += resource_matchers(source)
        return StatPlan(tuple(found), dst_group_by(r.SERVICE), "dst")
    if to is not None:
        found = [outbound, *dst_matchers(to), *resource_matchers(selected)]
        return StatPlan(tuple(found), group_by(selected.type), "dst")
    if source is not None:
        found = [outbound, *resource_matchers(source), *dst_matchers(selected)]
        return StatPlan(tuple(found), dst_group_by(selected.type), "dst")
    found = [("direction", "=", "inbound"), *resource_matchers(selected)]
    return StatPlan(tuple(found), group_by(selected.type), "src")


def split_plan(namespace: str, apex: str) -> StatPlan:
    """A TrafficSplit's series: outbound requests for its apex service, one row per leaf
    (``dst_service``).

    Linkerd matches ``authority=~"^<apex>.<ns>.svc.+"``; weft's proxies label ``authority``
    with the request's own Host, so the short forms (``<apex>``, ``<apex>.<ns>``, with or
    without a port) match too, pinned to the namespace by ``dst_namespace``."""
    name = quote_meta(apex)
    ns = quote_meta(namespace)
    pattern = rf"{name}(\.{ns}(\.svc(\..+)?)?)?(:[0-9]+)?"
    found = (
        ("direction", "=", "outbound"),
        ("dst_namespace", "=", namespace),
        ("authority", "=~", pattern),
    )
    return StatPlan(found, ("dst_service",), "dst")


def stat_queries(plan: StatPlan, window: str, tcp: bool) -> dict[str, str]:
    """The queries of a stat table, by name (run concurrently)."""
    labels = selector(plan.matchers)
    by = ", ".join(plan.group_by)
    queries = {
        REQUESTS: f"sum(increase(response_total{labels}[{window}])) by ({by}, classification, tls)"
    }
    for name, q in QUANTILES.items():
        queries[name] = (
            f"histogram_quantile({q}, "
            f"sum(irate(response_latency_ms_bucket{labels}[{window}])) by (le, {by}))"
        )
    if tcp:
        # Only one side of each proxied connection, so connections and bytes are not doubled.
        tcp_labels = selector((*plan.matchers, ("peer", "=", plan.peer)))
        queries[TCP_OPEN] = f"sum(tcp_open_connections{tcp_labels}) by ({by})"
        queries[TCP_READ] = f"sum(increase(tcp_read_bytes_total{tcp_labels}[{window}])) by ({by})"
        queries[TCP_WRITE] = f"sum(increase(tcp_write_bytes_total{tcp_labels}[{window}])) by ({by})"
    return queries


def route_matchers(source: r.Resource | None, authorities: Sequence[str]) -> tuple[Matcher, ...]:
    """Outbound route series towards ``authorities`` (exact ``<svc>.<ns>.svc.<domain>:<port>``
    names, or names without a port, which match any port), from ``source`` when given."""
    pattern = "|".join(
        quote_meta(a) if _has_port(a) else quote_meta(a) + "(:[0-9]+)?" for a in authorities
    )
    found: list[Matcher] = [("direction", "=", "outbound"), ("dst", "=~", pattern)]
    if source is not None:
        found += resource_matchers(source)
    return tuple(found)


def route_queries(matchers: Sequence[Matcher], window: str) -> dict[str, str]:
    """TopRoutes' queries: effective and actual responses, and latency quantiles, by route."""
    labels = selector(matchers)
    by = "rt_route, dst"
    queries = {
        REQUESTS: (
            f"sum(increase(route_response_total{labels}[{window}])) by ({by}, classification)"
        ),
        ACTUAL_REQUESTS: (
            f"sum(increase(route_actual_response_total{labels}[{window}])) "
            f"by ({by}, classification)"
        ),
    }
    for name, q in QUANTILES.items():
        queries[name] = (
            f"histogram_quantile({q}, "
            f"sum(irate(route_response_latency_ms_bucket{labels}[{window}])) by (le, {by}))"
        )
    return queries


def edge_queries(kind: str) -> dict[str, str]:
    """Edges' queries: who called whom (outbound, with the server's identity) and who was
    called by which identity (inbound)."""
    own, dst = r.label(kind), r.dst_label(kind)
    present = (own, "!=", "")
    outbound = selector([("direction", "=", "outbound"), present])
    inbound = selector([("direction", "=", "inbound"), present])
    return {
        EDGES_OUTBOUND: (
            f"count(response_total{outbound}) by "
            f"(namespace, {own}, dst_namespace, {dst}, server_id, tls, no_tls_reason)"
        ),
        EDGES_INBOUND: (
            f"count(response_total{inbound}) by (namespace, {own}, client_id, tls, no_tls_reason)"
        ),
    }


def _has_port(authority: str) -> bool:
    _, sep, port = authority.rpartition(":")
    return bool(sep) and port.isdigit()
