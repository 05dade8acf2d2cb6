"""StatSummary's tables from Prometheus's samples and the platform's objects (pure).

Rows exist for every selected object, with or without traffic (``stats`` null without); with a
``to`` or ``from`` resource only rows that have traffic are kept, as Linkerd does. Counts are
Linkerd's rounded integers, latencies rounded milliseconds or null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from weft.controller.metrics_api import inventory as inv
from weft.controller.metrics_api.queries import (
    QUANTILES,
    REQUESTS,
    TCP_OPEN,
    TCP_READ,
    TCP_WRITE,
    StatPlan,
)
from weft.controller.metrics_api.samples import Sample, count, latency
from weft.viz import resources as r

Obj = dict[str, Any]
Results = Mapping[str, Sequence[Sample]]
Key = inv.Key

# p50 → latencyMsP50, ...
LATENCY_FIELDS = {name: f"latencyMs{name.upper()}" for name in QUANTILES}


def sample_key(sample: Sample, group_by: Sequence[str]) -> Key:
    """The row a sample belongs to: its values of the group-by labels."""
    return tuple(sample.labels.get(name, "") for name in group_by)


def basic_stats(results: Results, group_by: Sequence[str]) -> dict[Key, dict[str, Any] | None]:
    """Success and failure counts and latency quantiles by row (None: no traffic)."""
    found: dict[Key, dict[str, Any]] = {}

    def stats(key: Key) -> dict[str, Any]:
        entry = found.get(key)
        if entry is None:
            entry = found[key] = {
                "successCount": 0,
                "failureCount": 0,
                **dict.fromkeys(LATENCY_FIELDS.values()),
            }
        return entry

    for sample in results.get(REQUESTS, ()):
        classification = sample.labels.get("classification")
        if classification in ("success", "failure"):
            stats(sample_key(sample, group_by))[f"{classification}Count"] += count(sample.value)
    for name, field in LATENCY_FIELDS.items():
        for sample in results.get(name, ()):
            stats(sample_key(sample, group_by))[field] = latency(sample.value)
    return {key: (None if _empty(entry) else entry) for key, entry in found.items()}


def tcp_stats(results: Results, group_by: Sequence[str]) -> dict[Key, dict[str, int]]:
    """Open connections and bytes read and written by row."""
    found: dict[Key, dict[str, int]] = {}
    for query, field in (
        (TCP_OPEN, "openConnections"),
        (TCP_READ, "readBytesTotal"),
        (TCP_WRITE, "writeBytesTotal"),
    ):
        for sample in results.get(query, ()):
            entry = found.setdefault(
                sample_key(sample, group_by),
                {"openConnections": 0, "readBytesTotal": 0, "writeBytesTotal": 0},
            )
            entry[field] = count(sample.value)
    return found


def object_table(
    kind: str,
    objects: Sequence[Obj],
    pods: Sequence[Obj],
    results: Results,
    plan: StatPlan,
    window: str,
    *,
    tcp: bool,
    traffic_only: bool,
) -> dict[str, Any]:
    """The table of an object type: one row per object (finished pods hidden)."""
    stats = basic_stats(results, plan.group_by)
    connections = tcp_stats(results, plan.group_by) if tcp else {}
    index = inv.PodIndex(pods)
    rows = []
    for obj in objects:
        if kind == r.POD and inv.is_completed(obj):
            continue
        key = inv.object_row_key(kind, obj)
        if traffic_only and key not in stats:
            continue
        namespace = inv.name_of(obj) if kind == r.NAMESPACE else inv.namespace_of(obj)
        resource = r.Resource(kind, inv.name_of(obj), namespace)
        counts = inv.pod_counts(index.pods_for(kind, obj))
        status = inv.status(obj) if kind == r.POD else ""
        rows.append(
            row(resource, window, counts, stats.get(key), connections.get(key), status=status)
        )
    return table(rows)


def authority_table(results: Results, plan: StatPlan, window: str) -> dict[str, Any]:
    """The table of authorities: one row per authority Prometheus has requests for."""
    stats = basic_stats(results, plan.group_by)
    rows = [
        row(r.Resource(r.AUTHORITY, key[-1], key[0]), window, inv.PodCounts(), stats[key], None)
        for key in sorted(stats)
        if key[-1]
    ]
    return table(rows)


def split_rows(
    split: Obj, results: Results, plan: StatPlan, window: str, *, tcp: bool
) -> list[dict[str, Any]]:
    """A TrafficSplit's rows: one per backend (leaf), with the apex and the leaf's weight."""
    stats = basic_stats(results, plan.group_by)
    connections = tcp_stats(results, plan.group_by) if tcp else {}
    spec = split.get("spec") or {}
    resource = r.Resource(r.TRAFFIC_SPLIT, inv.name_of(split), inv.namespace_of(split))
    rows = []
    for backend in spec.get("backends") or []:
        leaf = str(backend.get("service", ""))
        split_stats = {
            "apex": str(spec.get("service", "")),
            "leaf": leaf,
            "weight": str(backend.get("weight", "")),
        }
        rows.append(
            row(
                resource,
                window,
                inv.PodCounts(),
                stats.get((leaf,)),
                connections.get((leaf,)),
                split=split_stats,
            )
        )
    return rows


def row(
    resource: r.Resource,
    window: str,
    counts: inv.PodCounts,
    stats: dict[str, Any] | None,
    tcp: dict[str, int] | None,
    *,
    status: str = "",
    split: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One row, every field present."""
    return {
        "resource": resource.to_json(),
        "timeWindow": window,
        "status": status,
        "meshedPodCount": counts.meshed,
        "runningPodCount": counts.running,
        "failedPodCount": counts.failed,
        "stats": stats,
        "tcpStats": tcp,
        "trafficSplitStats": split,
    }


def table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A stat table holding ``rows``."""
    return {"podGroup": {"rows": rows}}


def _empty(stats: dict[str, Any]) -> bool:
    return (
        stats["successCount"] == 0
        and stats["failureCount"] == 0
        and all(stats[field] is None for field in LATENCY_FIELDS.values())
    )
