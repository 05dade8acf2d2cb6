"""EndpointSlices presented as the core ``Endpoints`` the destination service reads (pure).

Kubernetes splits a Service's endpoints over several slices (label
``kubernetes.io/service-name``); the control plane consumes one ``Endpoints`` object per Service,
as the local runtime serves it. Each slice becomes one subset: its ports, its ready endpoints as
``addresses`` and the others as ``notReadyAddresses``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from weft.k8s.cache import Key, object_key, resource_version
from weft.platform import WatchEvent

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def service_of(endpoint_slice: Obj) -> Key | None:
    """(namespace, service) a slice belongs to, or None for a slice of no Service."""
    labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
    service = labels.get(SERVICE_NAME_LABEL)
    if not service:
        return None
    return object_key(endpoint_slice)[0], str(service)


def _address(endpoint: Obj, ip: str) -> Obj:
    address: Obj = {"ip": ip}
    if endpoint.get("nodeName"):
        address["nodeName"] = endpoint["nodeName"]
    ref = endpoint.get("targetRef")
    if isinstance(ref, dict):
        address["targetRef"] = {k: ref[k] for k in ("kind", "namespace", "name", "uid") if k in ref}
    return address


def _subset(endpoint_slice: Obj) -> Obj | None:
    if endpoint_slice.get("addressType") not in ("IPv4", "IPv6"):
        return None
    ready: list[Obj] = []
    not_ready: list[Obj] = []
    for endpoint in endpoint_slice.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        # An unset ready condition means ready (discovery.k8s.io/v1).
        target = not_ready if conditions.get("ready") is False else ready
        target += [_address(endpoint, str(ip)) for ip in endpoint.get("addresses") or []]
    ports = [
        {k: p[k] for k in ("name", "port", "protocol", "appProtocol") if p.get(k) is not None}
        for p in endpoint_slice.get("ports") or []
        if p.get("port") is not None
    ]
    if not ready and not not_ready:
        return None
    subset: Obj = {"ports": ports}
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    return subset


def endpoints_for(namespace: str, service: str, slices: Iterable[Obj]) -> Obj:
    """The ``Endpoints`` of a Service from its slices (sorted by name, for a stable answer)."""
    ordered = sorted(slices, key=lambda s: object_key(s)[1])
    subsets = [s for s in map(_subset, ordered) if s is not None]
    version = ",".join(resource_version(s) for s in ordered)
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": service, "namespace": namespace, "resourceVersion": version},
        "subsets": subsets,
    }


class EndpointsView:
    """Per-Service ``Endpoints`` kept up to date from EndpointSlice events."""

    def __init__(self) -> None:
        self._slices: dict[Key, dict[str, Obj]] = {}

    def apply(self, event: WatchEvent) -> WatchEvent | None:
        """The ``Endpoints`` event one slice event causes (None for a slice of no Service)."""
        service = service_of(event.object)
        if service is None:
            return None
        name = object_key(event.object)[1]
        slices = self._slices.setdefault(service, {})
        existed = bool(slices)
        if event.type == "DELETED":
            slices.pop(name, None)
        else:
            slices[name] = event.object
        if not slices:
            del self._slices[service]
            if not existed:
                return None
            return WatchEvent("DELETED", endpoints_for(*service, ()))
        return WatchEvent(
            "MODIFIED" if existed else "ADDED", endpoints_for(*service, slices.values())
        )

    def items(self, namespace: str | None = None) -> list[Obj]:
        """Every Service's ``Endpoints`` (of ``namespace`` only, if given)."""
        return [
            endpoints_for(*key, slices.values())
            for key, slices in sorted(self._slices.items())
            if namespace is None or key[0] == namespace
        ]
