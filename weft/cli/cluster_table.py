"""``weft cluster get`` output: kubectl's columns for each kind, computed from objects."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Sequence
from typing import Any

Obj = dict[str, Any]


def age(obj: Obj, now: float | None = None) -> str:
    """kubectl's short age (``45s``, ``3m``, ``2h``, ``5d``)."""
    stamp = obj["metadata"].get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))
    seconds = max(0, int((now if now is not None else time.time()) - created))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _pod_status(pod: Obj) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or []:
        waiting = cs.get("state", {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "", "ContainerCreating"):
            return str(waiting["reason"])
    phase = str(status.get("phase") or "Pending")
    if phase == "Pending" and status.get("initContainerStatuses"):
        done = sum(
            1
            for c in status["initContainerStatuses"]
            if c.get("ready") or "terminated" in c.get("state", {})
        )
        return f"Init:{done}/{len(pod['spec'].get('initContainers') or [])}"
    if phase == "Succeeded":
        return "Completed"
    if phase == "Failed":
        return "Error"
    return phase


def _pod_row(pod: Obj) -> list[str]:
    status = pod.get("status") or {}
    sidecar_names = {
        c["name"]
        for c in pod["spec"].get("initContainers") or []
        if c.get("restartPolicy") == "Always"
    }
    statuses = list(status.get("containerStatuses") or [])
    statuses += [c for c in status.get("initContainerStatuses") or [] if c["name"] in sidecar_names]
    total = len(pod["spec"].get("containers") or []) + len(sidecar_names)
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount", 0)) for c in statuses)
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        _pod_status(pod),
        str(restarts),
        age(pod),
        status.get("podIP") or "<none>",
    ]


def _service_row(svc: Obj) -> list[str]:
    ports = ",".join(
        f"{p['port']}/{p.get('protocol', 'TCP')}" for p in svc["spec"].get("ports") or []
    )
    return [
        svc["metadata"]["name"],
        "ClusterIP",
        svc["spec"].get("clusterIP", "<pending>"),
        ports or "<none>",
        age(svc),
    ]


def _deployment_row(d: Obj) -> list[str]:
    status = d.get("status") or {}
    replicas = int(d["spec"].get("replicas", 1))
    return [
        d["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{replicas}",
        str(status.get("updatedReplicas", 0)),
        str(status.get("availableReplicas", 0)),
        age(d),
    ]


def _endpoints_row(ep: Obj) -> list[str]:
    pairs = [
        f"{a['ip']}:{p['port']}"
        for s in ep.get("subsets") or []
        for a in s.get("addresses") or []
        for p in s.get("ports") or []
    ]
    shown = ",".join(pairs[:3]) + (f" + {len(pairs) - 3} more..." if len(pairs) > 3 else "")
    return [ep["metadata"]["name"], shown or "<none>", age(ep)]


def _job_row(job: Obj) -> list[str]:
    status = job.get("status") or {}
    return [job["metadata"]["name"], f"{status.get('succeeded', 0)}/1", age(job)]


def _plain_row(obj: Obj) -> list[str]:
    return [obj["metadata"]["name"], age(obj)]


def _namespace_row(obj: Obj) -> list[str]:
    return [obj["metadata"]["name"], "Active", age(obj)]


_TABLES: dict[str, tuple[list[str], Callable[[Obj], list[str]]]] = {
    "Pod": (["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"], _pod_row),
    "Service": (["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"], _service_row),
    "Deployment": (["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], _deployment_row),
    "Endpoints": (["NAME", "ENDPOINTS", "AGE"], _endpoints_row),
    "Job": (["NAME", "COMPLETIONS", "AGE"], _job_row),
    "Namespace": (["NAME", "STATUS", "AGE"], _namespace_row),
}


def table(kind: str, objects: Sequence[Obj], *, all_namespaces: bool = False) -> str:
    """Objects of ``kind`` as kubectl prints them (with a NAMESPACE column for ``-A``)."""
    header, row = _TABLES.get(kind, (["NAME", "AGE"], _plain_row))
    rows = [row(o) for o in objects]
    if all_namespaces and kind != "Namespace":
        header = ["NAMESPACE", *header]
        rows = [
            [o["metadata"].get("namespace", ""), *r] for o, r in zip(objects, rows, strict=True)
        ]
    widths = [max(len(c) for c in col) for col in zip(header, *rows, strict=True)]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)
