"""The metrics API's methods: each checks its request, lists what it needs through the platform
(per request, so answers follow the cluster at once), runs its PromQL concurrently, and hands
both to the pure assembly modules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from weft.controller.destination.addresses import MeshSettings, identity_name, object_key
from weft.controller.metrics_api import inventory as inv
from weft.controller.metrics_api import queries as q
from weft.controller.metrics_api.edges import edges
from weft.controller.metrics_api.listing import pod_entries, service_entries
from weft.controller.metrics_api.prometheus import PrometheusClient, PrometheusError
from weft.controller.metrics_api.requests import (
    StatSummaryRequest,
    edges_request,
    list_pods_request,
    list_services_request,
    stat_summary_request,
    top_routes_request,
)
from weft.controller.metrics_api.samples import Sample
from weft.controller.metrics_api.stat_summary import (
    authority_table,
    object_table,
    split_rows,
    table,
)
from weft.controller.metrics_api.top_routes import RouteTarget, profile_routes, route_table
from weft.platform import Platform, PlatformError
from weft.viz import resources as r

Obj = dict[str, Any]
Results = dict[str, list[Sample]]


class NotFound(LookupError):
    """A named resource that does not exist; ``str()`` is one line."""


def not_found(resource: r.Resource) -> NotFound:
    """``deployment/nope not found in namespace emojivoto``."""
    where = f" in namespace {resource.namespace}" if resource.namespace else ""
    if resource.type == r.NAMESPACE:
        where = ""
    return NotFound(f"{resource.type}/{resource.name} not found{where}")


class Listing:
    """The platform's objects for one request: each (kind, namespace) is listed once, however
    many tables of the request need it (``all`` needs the pods six times)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._lists: dict[tuple[str, str], asyncio.Future[list[Obj]]] = {}

    async def get(self, kind: str, namespace: str = "") -> list[Obj]:
        """The objects of ``kind`` in ``namespace`` ("" for all)."""
        key = (kind, "" if kind == "Namespace" else namespace)
        listed = self._lists.get(key)
        if listed is None:
            listed = self._lists[key] = asyncio.ensure_future(
                self.platform.list(kind, key[1] or None)
            )
            # A request that failed early may leave a listing nobody awaits.
            listed.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(listed)

    async def objects(self, resource: r.Resource, selector: Any = ()) -> list[Obj]:
        """The objects a resource names; raises :class:`NotFound` for a missing named one."""
        listed = await self.get(r.KINDS[resource.type], resource.namespace)
        if resource.name and not inv.select(resource.type, resource, listed):
            raise not_found(resource)
        return inv.select(resource.type, resource, listed, selector)

    async def require(self, resource: r.Resource | None) -> None:
        """Raise :class:`NotFound` if ``resource`` is a named object that does not exist."""
        if resource is not None and resource.name and resource.type in r.KINDS:
            await self.objects(resource)

    async def pods(self, kind: str, namespace: str) -> list[Obj]:
        """The pods the rows of ``kind`` may count (a pod row counts only itself)."""
        return [] if kind == r.POD else await self.get("Pod", namespace)


class MetricsApi:
    """StatSummary, TopRoutes, Edges, ListPods, ListServices and SelfCheck."""

    def __init__(
        self,
        platform: Platform,
        prometheus: PrometheusClient,
        settings: MeshSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.platform = platform
        self.prometheus = prometheus
        self.settings = settings
        self.clock = clock

    # -- StatSummary ------------------------------------------------------------------------

    async def stat_summary(self, body: Any) -> dict[str, Any]:
        """``{"ok": {"statTables": [...]}}``, one table per type."""
        req = stat_summary_request(body)
        lists = Listing(self.platform)
        await asyncio.gather(lists.require(req.to), lists.require(req.source))
        tables = await asyncio.gather(*(self._stat_table(lists, req, kind) for kind in req.types()))
        return {"ok": {"statTables": list(tables)}}

    async def _stats(self, plan: q.StatPlan, req: StatSummaryRequest, tcp: bool) -> Results:
        if req.skip_stats:
            return {}
        return await self.prometheus.query_all(q.stat_queries(plan, req.window, tcp))

    async def _stat_table(
        self, lists: Listing, req: StatSummaryRequest, kind: str
    ) -> dict[str, Any]:
        resource = replace(req.resource, type=kind)
        if kind == r.AUTHORITY:
            plan = q.stat_plan(resource, req.to, req.source)
            return authority_table(await self._stats(plan, req, False), plan, req.window)
        if kind == r.TRAFFIC_SPLIT:
            if req.to is not None or req.source is not None:
                return table([])  # type all with to/from: splits have no such view
            return await self._split_table(lists, req, resource)
        plan = q.stat_plan(resource, req.to, req.source)
        listing = lists.objects(resource, req.selector)
        pods = lists.pods(kind, resource.namespace)
        objects, pods_found, results = await _listed_first(
            listing, pods, self._stats(plan, req, req.tcp_stats)
        )
        return object_table(
            kind,
            objects,
            pods_found,
            results,
            plan,
            req.window,
            tcp=req.tcp_stats,
            traffic_only=req.to is not None or req.source is not None,
        )

    async def _split_table(
        self, lists: Listing, req: StatSummaryRequest, resource: r.Resource
    ) -> dict[str, Any]:
        splits = await lists.objects(resource, req.selector)
        plans = [
            q.split_plan(inv.namespace_of(s), str((s.get("spec") or {}).get("service", "")))
            for s in splits
        ]
        answers = await asyncio.gather(*(self._stats(p, req, req.tcp_stats) for p in plans))
        rows = [
            row
            for split, plan, results in zip(splits, plans, answers, strict=True)
            for row in split_rows(split, results, plan, req.window, tcp=req.tcp_stats)
        ]
        return table(rows)

    # -- TopRoutes --------------------------------------------------------------------------

    async def top_routes(self, body: Any) -> dict[str, Any]:
        """``{"ok": {"routes": [...]}}``, one table per selected object."""
        req = top_routes_request(body)
        lists = Listing(self.platform)
        profiles_task = lists.get("ServiceProfile")
        if req.resource.type == r.AUTHORITY:
            profiles = await profiles_task
            name = req.resource.name
            routes = {name: profile_routes(name, profiles, self.settings)}
            targets: list[tuple[RouteTarget, r.Resource | None]] = [
                (RouteTarget(str(req.resource), (name,), routes), None)
            ]
        else:
            objects, services, pods, profiles = await asyncio.gather(
                lists.objects(req.resource),
                lists.get("Service"),
                lists.get("Pod"),
                profiles_task,
            )
            targets = []
            index = inv.PodIndex(pods)
            to_authorities = (
                None if req.to is None else await self._authorities(lists, req.to, services, pods)
            )
            for obj in objects:
                namespace, name = inv.namespace_of(obj), inv.name_of(obj)
                if to_authorities is None:
                    source = None
                    owned = index.pods_for(req.resource.type, obj)
                    chosen = (
                        [obj]
                        if req.resource.type == r.SERVICE
                        else inv.services_for(owned, services)
                    )
                    authorities = [
                        a
                        for svc in chosen
                        for a in inv.authorities(svc, self.settings.cluster_domain)
                    ]
                else:
                    source = r.Resource(req.resource.type, name, namespace)
                    authorities = to_authorities
                client = None if source is None else namespace
                routes = {
                    a: profile_routes(a, profiles, self.settings, client) for a in authorities
                }
                label = f"{req.resource.type}/{name}"
                targets.append((RouteTarget(label, tuple(authorities), routes), source))
        targets = [(t, s) for t, s in targets if t.authorities]
        answers = await asyncio.gather(
            *(
                self.prometheus.query_all(
                    q.route_queries(q.route_matchers(source, t.authorities), req.window)
                )
                for t, source in targets
            )
        )
        tables = [
            route_table(t, res, req.window) for (t, _), res in zip(targets, answers, strict=True)
        ]
        return {"ok": {"routes": tables}}

    async def _authorities(
        self, lists: Listing, to: r.Resource, services: list[Obj], pods: list[Obj]
    ) -> list[str]:
        """The authorities of the Services in front of a ``toResource``."""
        if to.type == r.AUTHORITY:
            return [to.name]
        if to.type == r.SERVICE:
            chosen = inv.select(r.SERVICE, to, services)
            if to.name and not chosen:
                raise not_found(to)
        else:
            objects = await lists.objects(to)
            index = inv.PodIndex(pods)
            owned = [pod for obj in objects for pod in index.pods_for(to.type, obj)]
            chosen = inv.services_for(owned, services)
        return [a for svc in chosen for a in inv.authorities(svc, self.settings.cluster_domain)]

    # -- Edges ------------------------------------------------------------------------------

    async def edges(self, body: Any) -> dict[str, Any]:
        """``{"ok": {"edges": [...]}}``."""
        req = edges_request(body)
        kind = req.resource.type
        lists = Listing(self.platform)
        listing = lists.get(r.KINDS[kind])
        pods = lists.get("Pod")
        objects, pods_found, results = await _listed_first(
            listing, pods, self.prometheus.query_all(q.edge_queries(kind))
        )
        index = inv.PodIndex(pods_found)
        identities = {
            object_key(obj): {
                identity_name(pod, self.settings)
                for pod in index.pods_for(kind, obj)
                if inv.is_meshed(pod)
            }
            for obj in objects
        }
        found = edges(
            kind,
            req.resource.namespace,
            results[q.EDGES_OUTBOUND],
            results[q.EDGES_INBOUND],
            identities,
        )
        if req.resource.name:
            found = [e for e in found if req.resource.name in (e["src"]["name"], e["dst"]["name"])]
        return {"ok": {"edges": found}}

    # -- listing methods --------------------------------------------------------------------

    async def list_pods(self, body: Any) -> dict[str, Any]:
        """``{"pods": [...]}``."""
        req = list_pods_request(body)
        namespace = req.namespace
        if req.resource is not None and req.resource.type == r.NAMESPACE:
            namespace = req.resource.name or namespace
        lists = Listing(self.platform)
        pods = await lists.get("Pod", namespace)
        if req.resource is not None and req.resource.type != r.NAMESPACE:
            resource = replace(req.resource, namespace=req.resource.namespace or namespace)
            objects = await lists.objects(resource)
            index = inv.PodIndex(pods)
            pods = [pod for obj in objects for pod in index.pods_for(resource.type, obj)]
        return {"pods": pod_entries(pods, self.clock())}

    async def list_services(self, body: Any) -> dict[str, Any]:
        """``{"services": [...]}``."""
        namespace = list_services_request(body)
        services = await self.platform.list("Service", namespace or None)
        return {"services": service_entries(services)}

    async def self_check(self) -> dict[str, Any]:
        """``{"results": [...]}``: can the API reach the platform and Prometheus."""
        checks: list[tuple[str, str, Callable[[], Awaitable[object]]]] = [
            (
                "kubernetes",
                "control plane can talk to Kubernetes",
                lambda: self.platform.list("Namespace"),
            ),
            (
                "prometheus",
                "control plane can talk to Prometheus",
                lambda: self.prometheus.query("vector(1)"),
            ),
        ]
        results = []
        for subsystem, description, check in checks:
            entry = {"subsystem": subsystem, "checkDescription": description, "status": "OK"}
            try:
                await check()
            except (PlatformError, PrometheusError) as exc:
                entry["status"] = "FAIL"
                entry["friendlyMessageToUser"] = str(exc)
            results.append(entry)
        return {"results": results}


async def _listed_first(
    objects: Coroutine[Any, Any, list[Obj]],
    pods: Coroutine[Any, Any, list[Obj]],
    results: Coroutine[Any, Any, Results],
) -> tuple[list[Obj], list[Obj], Results]:
    """Run the three together; a listing failure (not found, platform down) wins over
    Prometheus's, and cancels the queries."""
    queries = asyncio.create_task(results)
    try:
        found, pods_found = await asyncio.gather(objects, pods)
        return found, pods_found, await queries
    finally:
        queries.cancel()
