"""The JSON behind each dashboard page: the backend calls it needs, made concurrently.

A page's main call decides its answer (its failure is the page's error status); every other
section that fails is left empty and named in ``errors``, so the browser shows what it has and
says what is missing instead of showing nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from weft.viz import resources as rs
from weft.web import queries as q
from weft.web import shape
from weft.web.backends import BackendError, Backends

Obj = dict[str, Any]
T = TypeVar("T")

# Workload kinds of the namespace page's tables and graph.
NAMESPACE_TABLES = (rs.DEPLOYMENT, rs.JOB, rs.POD, rs.TRAFFIC_SPLIT)
GRAPH_TYPES = (rs.DEPLOYMENT, rs.JOB)


class Sections:
    """Collects the errors of a page's optional sections."""

    def __init__(self) -> None:
        self.errors: list[Obj] = []

    async def get(self, name: str, call: Awaitable[T], default: T) -> T:
        """``await call``; on a backend error, note it under ``name`` and return ``default``."""
        try:
            return await call
        except BackendError as exc:
            self.errors.append({"section": name, "error": str(exc)})
            return default


async def overview(backends: Backends, window: q.Window) -> Obj:
    """Every namespace with its pods, success rate, RPS and latencies."""
    selector = rs.Resource(rs.NAMESPACE)
    answer = await backends.metrics("StatSummary", q.stat_body(selector, window))
    rows = shape.stat_rows(answer, window.seconds)
    return {"window": window.text, "namespaces": sorted(rows, key=lambda r: r["name"])}


async def _stat(backends: Backends, body: Obj, seconds: int) -> list[Obj]:
    return shape.stat_rows(await backends.metrics("StatSummary", body), seconds)


async def _edges(backends: Backends, namespace: str, type_: str) -> list[Obj]:
    return shape.edges(await backends.metrics("Edges", q.edges_body(namespace, type_)))


async def namespace(backends: Backends, name: str, window: q.Window) -> Obj:
    """A namespace: a table per workload kind and the topology of who calls whom."""
    sections = Sections()
    secs = window.seconds
    tables_call = asyncio.gather(
        *(
            _stat(backends, q.stat_body(rs.Resource(kind, "", name), window), secs)
            for kind in NAMESPACE_TABLES
        )
    )

    async def outbound(src: Obj, dst_types: list[str]) -> list[Obj]:
        """The traffic ``src`` sends, by destination (one StatSummary per destination kind)."""
        source = rs.Resource(src["type"], src["name"], src["namespace"])
        groups = await asyncio.gather(
            *(
                _stat(
                    backends, q.stat_body(rs.Resource(kind), window, source=source, tcp=False), secs
                )
                for kind in dst_types
            )
        )
        return [row for group in groups for row in group]

    async def topology() -> tuple[list[Obj], dict[str, list[Obj]]]:
        """The namespace's edges, then, for each workload that has any, what it sends."""
        groups = await sections.get(
            "edges", asyncio.gather(*(_edges(backends, name, kind) for kind in GRAPH_TYPES)), []
        )
        found = [e for group in groups for e in group]
        sources: dict[str, tuple[Obj, set[str]]] = {}
        for e in found:
            if e["src"]["namespace"] == name:
                sources.setdefault(shape.node_id(e["src"]), (e["src"], set()))[1].add(
                    e["dst"]["type"]
                )
        keys = sorted(sources)
        results = await asyncio.gather(
            *(
                sections.get(
                    f"traffic from {key}", outbound(sources[key][0], sorted(sources[key][1])), []
                )
                for key in keys
            )
        )
        return found, dict(zip(keys, results, strict=True))

    tables_result, (found, sent) = await asyncio.gather(tables_call, topology())
    tables = dict(zip(NAMESPACE_TABLES, tables_result, strict=True))
    workloads = [row for kind in GRAPH_TYPES for row in tables[kind]]
    return {
        "namespace": name,
        "window": window.text,
        "tables": tables,
        "graph": shape.graph(name, workloads, found, sent),
        "errors": sections.errors,
    }


async def workload(backends: Backends, res: rs.Resource, window: q.Window) -> Obj:
    """One workload: its stats, callers and callees (the octopus), routes, pods, edges."""
    sections = Sections()
    secs = window.seconds
    everywhere = [rs.Resource(kind) for kind in GRAPH_TYPES]
    own_call = _stat(backends, q.stat_body(res, window), secs)

    async def neighbours(direction: str) -> list[Obj]:
        if direction == "out" and res.type == rs.SERVICE:
            return []  # a Service makes no calls of its own
        bodies = [
            q.stat_body(kind, window, to=res, tcp=False)
            if direction == "in"
            else q.stat_body(kind, window, source=res, tcp=False)
            for kind in everywhere
        ]
        groups = await asyncio.gather(*(_stat(backends, body, secs) for body in bodies))
        return [row for group in groups for row in group if row["requests"]]

    async def routes() -> list[Obj]:
        return shape.routes(await backends.metrics("TopRoutes", q.routes_body(res, window)), secs)

    async def pods() -> list[Obj]:
        return shape.pods(await backends.metrics("ListPods", q.pods_body(of=res)))

    async def pod_stats() -> list[Obj]:
        return await _stat(
            backends, q.stat_body(rs.Resource(rs.POD, "", res.namespace), window), secs
        )

    async def edges() -> list[Obj]:
        kind = res.type if res.type in GRAPH_TYPES or res.type == rs.POD else rs.DEPLOYMENT
        return shape.involving(await _edges(backends, res.namespace, kind), res.to_json())

    if res.type == rs.SERVICE:  # not every metrics API has rows for a Service as a selector
        own_call = sections.get("stats", own_call, [])
    own, upstreams, downstreams, route_rows, pod_list, pod_rows, edge_rows = await asyncio.gather(
        own_call,
        sections.get("inbound", neighbours("in"), []),
        sections.get("outbound", neighbours("out"), []),
        sections.get("routes", routes(), []),
        sections.get("pods", pods(), []),
        sections.get("pod stats", pod_stats(), []),
        sections.get("edges", edges(), []),
    )
    stats = next((r for r in own if r["name"] == res.name), None)
    if stats is None and res.type != rs.SERVICE:
        raise BackendError(404, f"{res.type}/{res.name} not found in namespace {res.namespace}")
    by_name = {r["name"]: r for r in pod_rows}
    return {
        "resource": res.to_json(),
        "window": window.text,
        "stats": stats,
        "upstreams": upstreams,
        "downstreams": downstreams,
        "routes": route_rows,
        "pods": [{**p, "stats": by_name.get(p["name"])} for p in pod_list],
        "edges": edge_rows,
        "errors": sections.errors,
    }


async def series(backends: Backends, res: rs.Resource, window: q.Window, now: float) -> Obj:
    """Success rate, RPS and latency quantiles of ``res`` over ``window``, for the charts."""
    plan = q.series_plan(res, window, now)
    keys = list(plan.queries)
    results = await asyncio.gather(
        *(backends.query_range(plan.queries[k], plan.start, plan.end, plan.step) for k in keys)
    )
    return {
        "resource": res.to_json(),
        "window": window.text,
        **shape.series(plan, dict(zip(keys, results, strict=True))),
    }


async def control_plane(backends: Backends, control_namespace: str, now: float) -> Obj:
    """The control plane's components, its certificates' expiry, proxies per namespace and the
    metrics API's own checks; each part that fails is named in ``errors``, the rest shown."""
    sections = Sections()

    async def listed() -> list[Obj]:
        return shape.pods(await backends.metrics("ListPods", q.pods_body()))

    async def checks() -> list[Obj]:
        results = (await backends.metrics("SelfCheck")).get("results") or []
        return [r for r in results if isinstance(r, dict)]

    every_pod, up, expiry, self_check = await asyncio.gather(
        sections.get("pods", listed(), []),
        sections.get("scrapes", backends.query(q.components_up_query()), []),
        sections.get("certificates", backends.query(q.cert_expiry_query()), []),
        sections.get("checks", checks(), []),
    )
    control = [p for p in every_pod if p["namespace"] == control_namespace]
    return {
        "namespace": control_namespace,
        "components": shape.components(control, up),
        "certificates": shape.certificates(expiry, now),
        "proxies": shape.proxies_by_namespace(every_pod),
        "checks": self_check,
        "errors": sections.errors,
    }
