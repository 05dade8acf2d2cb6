"""The platform's objects as the metrics API counts them (pure): which pods belong to an object,
how many are meshed, running or failed, and which Services (and so authorities) front them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from weft.controller.destination.addresses import object_key, owner_label, proxy_container
from weft.controller.metrics_api.selectors import Selector, matches
from weft.viz import resources as r

Obj = dict[str, Any]
# A row's key: (namespace, name), or (name,) for a namespace.
Key = tuple[str, ...]


@dataclass(frozen=True)
class PodCounts:
    """Meshed and running pods (pending ones count as running), and failed ones."""

    meshed: int = 0
    running: int = 0
    failed: int = 0


def name_of(obj: Obj) -> str:
    """An object's name."""
    return str(obj["metadata"]["name"])


def namespace_of(obj: Obj) -> str:
    """An object's namespace (``default`` when it has none)."""
    return object_key(obj)[0]


def labels_of(obj: Obj) -> dict[str, str]:
    """An object's labels."""
    return {str(k): str(v) for k, v in (obj["metadata"].get("labels") or {}).items()}


def object_row_key(kind: str, obj: Obj) -> Key:
    """The key an object's stats are found under."""
    return (name_of(obj),) if kind == r.NAMESPACE else object_key(obj)


def select(
    kind: str, resource: r.Resource, objects: Iterable[Obj], selector: Selector = ()
) -> list[Obj]:
    """The objects of ``kind`` the resource names (every one when it has no name), whose labels
    meet ``selector``, sorted by namespace and name."""
    chosen = [
        obj
        for obj in objects
        if (not resource.name or name_of(obj) == resource.name)
        and (
            kind == r.NAMESPACE or not resource.namespace or namespace_of(obj) == resource.namespace
        )
        and matches(selector, labels_of(obj))
    ]
    return sorted(chosen, key=lambda obj: object_row_key(kind, obj))


def phase(pod: Obj) -> str:
    """A pod's phase (``Pending`` until it has one)."""
    return str((pod.get("status") or {}).get("phase") or "Pending")


def status(pod: Obj) -> str:
    """What STATUS shows for a pod: ``Terminating`` while it is deleted, else its phase."""
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return phase(pod)


def is_completed(pod: Obj) -> bool:
    """Whether the pod has finished (Succeeded or Failed): its own row is hidden."""
    return phase(pod) in ("Succeeded", "Failed")


def is_meshed(pod: Obj) -> bool:
    """Whether the pod has a ``linkerd-proxy`` container."""
    return proxy_container(pod) is not None


class PodIndex:
    """Pods by namespace and by owner, so finding an object's pods is a lookup, not a scan."""

    def __init__(self, pods: Iterable[Obj]) -> None:
        self.by_namespace: dict[str, list[Obj]] = {}
        self.by_owner: dict[tuple[str, str, str], list[Obj]] = {}
        for pod in pods:
            namespace = namespace_of(pod)
            self.by_namespace.setdefault(namespace, []).append(pod)
            owner = owner_label(pod)
            if owner is not None:
                self.by_owner.setdefault((namespace, *owner), []).append(pod)

    def pods_for(self, kind: str, obj: Obj) -> list[Obj]:
        """The pods that belong to ``obj`` of type ``kind``."""
        if kind == r.NAMESPACE:
            return self.by_namespace.get(name_of(obj), [])
        if kind == r.POD:
            return [obj]
        namespace, name = object_key(obj)
        if kind == r.SERVICE:
            return [pod for pod in self.by_namespace.get(namespace, []) if selects(obj, pod)]
        if kind in (r.DEPLOYMENT, r.JOB):
            return self.by_owner.get((namespace, r.label(kind), name), [])
        return []


def pod_counts(pods: Iterable[Obj]) -> PodCounts:
    """Meshed, running and failed pods among ``pods``; Succeeded ones are not counted."""
    meshed = running = failed = 0
    for pod in pods:
        current = phase(pod)
        if current == "Failed":
            failed += 1
        elif current != "Succeeded":
            running += 1
            if is_meshed(pod):
                meshed += 1
    return PodCounts(meshed, running, failed)


def selects(service: Obj, pod: Obj) -> bool:
    """Whether ``service``'s selector picks ``pod`` (a Service without one picks nothing)."""
    selector = (service.get("spec") or {}).get("selector") or {}
    if not selector or namespace_of(service) != namespace_of(pod):
        return False
    pod_labels = labels_of(pod)
    return all(pod_labels.get(str(k)) == str(v) for k, v in selector.items())


def services_for(pods: Sequence[Obj], services: Iterable[Obj]) -> list[Obj]:
    """The Services that pick at least one of ``pods``, sorted by namespace and name."""
    chosen = [svc for svc in services if any(selects(svc, pod) for pod in pods)]
    return sorted(chosen, key=object_key)


def authorities(service: Obj, cluster_domain: str) -> list[str]:
    """``<name>.<ns>.svc.<domain>:<port>`` for each port of ``service``."""
    namespace, name = object_key(service)
    ports = (service.get("spec") or {}).get("ports") or []
    return [
        f"{name}.{namespace}.svc.{cluster_domain}:{port['port']}"
        for port in ports
        if isinstance(port, dict) and isinstance(port.get("port"), int)
    ]
