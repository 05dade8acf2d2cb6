"""ListPods and ListServices answers from the platform's objects (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from weft.controller.destination.addresses import PROXY_CONTAINER, object_key, owner_label
from weft.controller.metrics_api import inventory as inv
from weft.controller.prometheus.config import COMPONENT_LABEL
from weft.inject.inject import PROXY_VERSION
from weft.viz import resources as r

Obj = dict[str, Any]


def pod_entry(pod: Obj, now: datetime) -> dict[str, Any]:
    """One pod as ListPods shows it."""
    namespace, name = object_key(pod)
    status = pod.get("status") or {}
    owner = owner_label(pod)
    annotations = pod["metadata"].get("annotations") or {}
    return {
        "name": f"{namespace}/{name}",
        "podIP": str(status.get("podIP") or ""),
        "owner": None if owner is None else {"type": r.type_of_label(owner[0]), "name": owner[1]},
        "status": inv.status(pod),
        "added": inv.is_meshed(pod),
        "proxyReady": _proxy_ready(status),
        "proxyVersion": str(annotations.get(PROXY_VERSION, "")),
        "controlPlane": COMPONENT_LABEL in inv.labels_of(pod),
        "uptime": _uptime(status.get("startTime"), now),
    }


def pod_entries(pods: Iterable[Obj], now: datetime) -> list[dict[str, Any]]:
    """Pods sorted by namespace and name."""
    return [pod_entry(pod, now) for pod in sorted(pods, key=object_key)]


def service_entries(services: Iterable[Obj]) -> list[dict[str, str]]:
    """Services sorted by namespace and name."""
    return [
        {"name": name, "namespace": namespace}
        for namespace, name in sorted(object_key(svc) for svc in services)
    ]


def _proxy_ready(status: Obj) -> bool:
    for entry in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        if isinstance(entry, dict) and entry.get("name") == PROXY_CONTAINER:
            return bool(entry.get("ready"))
    return False


def _uptime(started: Any, now: datetime) -> str:
    """Seconds since ``started`` as a protobuf JSON Duration (``"12s"``); "" when unknown."""
    if not isinstance(started, str):
        return ""
    try:
        since = datetime.fromisoformat(started)
    except ValueError:
        return ""
    if since.tzinfo is None or now.tzinfo is None:
        return ""
    return f"{max(0, int((now - since).total_seconds()))}s"
