"""The Endpoints controller: each Service's Endpoints follow the ready pods it selects."""

from __future__ import annotations

from typing import Any

from weft.local.controllers.pods import Obj, is_ready, is_terminating
from weft.local.store import ObjectStore


def selects(selector: dict[str, str], pod: Obj) -> bool:
    """Whether a label ``selector`` matches ``pod`` (an empty selector matches nothing)."""
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def resolve_target_port(pod: Obj, target: int | str) -> int | None:
    """The container port a Service ``targetPort`` means in ``pod`` (named ports looked up)."""
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    spec = pod["spec"]
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return None


def endpoints_for(service: Obj, pods: list[Obj]) -> Obj:
    """The Endpoints object for ``service`` given the pods of its namespace."""
    selector = service["spec"].get("selector") or {}
    # One subset per distinct resolution of the ports (pods may name ports differently).
    subsets: dict[tuple[tuple[str, int, str], ...], dict[str, list[Obj]]] = {}
    for pod in pods:
        ip = pod.get("status", {}).get("podIP")
        if not ip or is_terminating(pod) or not selects(selector, pod):
            continue
        ports: list[tuple[str, int, str]] = []
        for sp in service["spec"].get("ports") or []:
            target = resolve_target_port(pod, sp.get("targetPort", sp["port"]))
            if target is not None:
                ports.append((sp.get("name", ""), target, sp.get("protocol", "TCP")))
        if not ports:
            continue
        group = subsets.setdefault(tuple(ports), {"addresses": [], "notReadyAddresses": []})
        address = {
            "ip": ip,
            "targetRef": {
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "namespace": pod["metadata"]["namespace"],
                "uid": pod["metadata"]["uid"],
            },
        }
        group["addresses" if is_ready(pod) else "notReadyAddresses"].append(address)
    out: list[dict[str, Any]] = []
    for ports_key, group in sorted(subsets.items()):
        subset: dict[str, Any] = {
            "ports": [
                {**({"name": n} if n else {}), "port": p, "protocol": proto}
                for n, p, proto in ports_key
            ]
        }
        for field in ("addresses", "notReadyAddresses"):
            if group[field]:
                subset[field] = sorted(group[field], key=lambda a: a["ip"])
        out.append(subset)
    meta = service["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": dict(meta.get("labels") or {}),
        },
        "subsets": out,
    }


def reconcile(store: ObjectStore) -> None:
    """Write each Service's Endpoints when they change; drop those of deleted Services."""
    services = {
        (s["metadata"]["namespace"], s["metadata"]["name"]): s for s in store.list("Service")
    }
    for ep in store.list("Endpoints"):
        key = (ep["metadata"]["namespace"], ep["metadata"]["name"])
        if key not in services:
            store.delete("Endpoints", *key)
    pods_by_ns: dict[str, list[Obj]] = {}
    for pod in store.list("Pod"):
        pods_by_ns.setdefault(pod["metadata"]["namespace"], []).append(pod)
    for (namespace, name), service in services.items():
        want = endpoints_for(service, pods_by_ns.get(namespace, []))
        have = store.get("Endpoints", namespace, name)
        if have is None or have.get("subsets") != want["subsets"]:
            store.put(want)
