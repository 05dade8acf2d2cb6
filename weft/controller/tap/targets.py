"""Which proxies a tap of a resource talks to (pure).

A resource (namespace, deployment, job, pod, service) selects running pods; of those, the meshed
ones with identity and tap enabled are tapped on their proxy's control port, verified as the pod's
identity. Errors say why nothing can be tapped, as Linkerd's tap server does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from weft.controller.destination.addresses import (
    IDENTITY_DISABLED_ENV,
    MeshSettings,
    identity_name,
    object_key,
    owner_label,
    pod_ips,
    proxy_container,
)
from weft.viz import resources as rs

Obj = dict[str, Any]

CONTROL_ADDR_ENV = "LINKERD2_PROXY_CONTROL_LISTEN_ADDR"
TAP_DISABLED_ENV = "LINKERD2_PROXY_TAP_DISABLED"
DISABLE_TAP_ANNOTATION = "config.linkerd.io/disable-tap"
DEFAULT_CONTROL_PORT = 4190
TAPPABLE_TYPES = (rs.NAMESPACE, rs.DEPLOYMENT, rs.JOB, rs.POD, rs.SERVICE)


class TargetError(Exception):
    """Nothing can be tapped for the resource; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TapTarget:
    """One proxy to tap: its pod, the address of its control port, and its TLS identity."""

    namespace: str
    pod: str
    ip: str
    port: int
    identity: str

    @property
    def addr(self) -> str:
        """``ip:port`` of the proxy's control listener."""
        return f"{self.ip}:{self.port}"


def _env(container: Obj, name: str) -> str | None:
    entry = next((e for e in container.get("env") or [] if e.get("name") == name), None)
    return None if entry is None else str(entry.get("value") or "")


def control_port(proxy: Obj) -> int:
    """The proxy's control (tap) port, from its listen address (4190 when it names none)."""
    _, _, port = (_env(proxy, CONTROL_ADDR_ENV) or "").rpartition(":")
    return int(port) if port.isdigit() else DEFAULT_CONTROL_PORT


def tap_disabled(pod: Obj, proxy: Obj) -> bool:
    """Whether the pod opted out of tap (annotation or the proxy's variable)."""
    annotations = pod["metadata"].get("annotations") or {}
    if str(annotations.get(DISABLE_TAP_ANNOTATION, "")).lower() == "true":
        return True
    return _env(proxy, TAP_DISABLED_ENV) is not None


def _selects(selector: Obj, pod: Obj) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selected_pods(resource: rs.Resource, pods: Sequence[Obj], services: Sequence[Obj]) -> list[Obj]:
    """The running pods ``resource`` (which names its namespace) stands for."""
    kind, name, namespace = resource.type, resource.name, resource.namespace
    live = [
        p
        for p in pods
        if object_key(p)[0] == namespace
        and pod_ips(p)
        and not p["metadata"].get("deletionTimestamp")
    ]
    if kind == rs.NAMESPACE:
        return live
    if kind == rs.POD:
        return [p for p in live if object_key(p)[1] == name]
    if kind == rs.SERVICE:
        service = next((s for s in services if object_key(s) == (namespace, name)), None)
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        return [p for p in live if _selects(selector, p)]
    wanted = (rs.label(kind), name)
    return [p for p in live if owner_label(p) == wanted]


def tap_targets(
    resource: rs.Resource,
    pods: Sequence[Obj],
    services: Sequence[Obj],
    settings: MeshSettings,
) -> list[TapTarget]:
    """The proxies to tap for ``resource``; raises :class:`TargetError` when there are none."""
    if resource.type not in TAPPABLE_TYPES:
        choices = ", ".join(rs.plural(t) for t in TAPPABLE_TYPES)
        raise TargetError(400, f"cannot tap {rs.plural(resource.type)}: tap one of {choices}")
    if resource.type != rs.NAMESPACE and not resource.name:
        raise TargetError(400, f"tap needs a name: {resource.type}/NAME")
    found = selected_pods(resource, pods, services)
    if not found:
        raise TargetError(404, f"no pods found for {resource} in namespace {resource.namespace}")
    targets: list[TapTarget] = []
    meshed = 0
    for pod in found:
        proxy = proxy_container(pod)
        if proxy is None or _env(proxy, IDENTITY_DISABLED_ENV) is not None:
            continue
        meshed += 1
        if tap_disabled(pod, proxy):
            continue
        namespace, name = object_key(pod)
        ip = pod_ips(pod)[0]
        identity = identity_name(pod, settings)
        targets.append(TapTarget(namespace, name, ip, control_port(proxy), identity))
    if not meshed:
        raise TargetError(
            503,
            f"no meshed pods with identity found for {resource}: mesh them "
            "(linkerd.io/inject: enabled) to tap them",
        )
    if not targets:
        raise TargetError(503, f"all pods found for {resource} have tapping disabled")
    return targets
