"""``apply`` and ``delete`` against the store: validated as a whole, then committed as a whole.

Every document is parsed and checked (together with what the cluster already holds) before
anything changes, so a bad document leaves the cluster exactly as it was.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from weft.inject import InjectConfig, InjectError
from weft.inject.annotations import inject_mode, resolve_settings
from weft.local.controllers.pods import request_delete, template_hash
from weft.local.store import CLUSTER_SCOPED, ObjectStore, key_of
from weft.resources import KINDS, ManifestError, check_apply, describe, parse_manifest_text

Obj = dict[str, Any]
# Kinds whose existing objects matter to the cross-document checks.
_CHECKED_KINDS = ("Namespace", "Deployment", "Job", "Pod", "Service")
# The hash of a Pod's spec as applied (before injection): pods are immutable.
APPLIED_SPEC = "weft.io/applied-spec"
# Fields the kubelet and the controllers own; never taken from an applied document.
_SERVER_FIELDS = ("status",)


@dataclass(frozen=True)
class Source:
    """One manifest: where it came from (for messages) and its text."""

    name: str
    text: str


def _existing(store: ObjectStore) -> list[Any]:
    out: list[Any] = []
    for kind in _CHECKED_KINDS:
        model = KINDS[kind]
        out.extend(model.model_validate(obj) for obj in store.list(kind))
    return out


def _dump(resource: Any) -> Obj:
    obj: Obj = resource.model_dump(by_alias=True, exclude_none=True, mode="json")
    for field in _SERVER_FIELDS:
        obj.pop(field, None)
    return obj


def parse(sources: Sequence[Source], default_namespace: str | None) -> list[Any]:
    """Every document of every source, validated; raises :class:`ManifestError`."""
    resources: list[Any] = []
    for source in sources:
        resources.extend(parse_manifest_text(source.text, source.name, default_namespace))
    return resources


class ServiceIPs:
    """Cluster IP allocation from the service CIDR (the first address is left out)."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.IPv4Network(cidr)

    def allocate(self, used: set[str]) -> str:
        """The lowest free address."""
        first = int(self.network.network_address) + 2
        last = int(self.network.broadcast_address) - 1
        for value in range(first, last + 1):
            address = str(ipaddress.IPv4Address(value))
            if address not in used:
                return address
        raise ManifestError(f"service CIDR {self.network} is exhausted")

    def check(self, resource: Any, ip: str, used: set[str]) -> None:
        """Reject a requested cluster IP outside the CIDR or already taken."""
        if ipaddress.IPv4Address(ip) not in self.network:
            raise ManifestError(
                f"{describe(resource)}: spec.clusterIP: {ip} is not in the service CIDR "
                f"{self.network}"
            )
        if ip in used:
            raise ManifestError(f"{describe(resource)}: spec.clusterIP: {ip} is already allocated")


def _check_annotations(store: ObjectStore, resources: Sequence[Any]) -> None:
    """Reject workloads whose injection annotations the injector could not use."""
    applied_ns = {
        r.metadata.name: r.metadata.annotations for r in resources if r.kind == "Namespace"
    }
    for resource in resources:
        if resource.kind not in ("Deployment", "Job", "Pod"):
            continue
        namespace = resource.metadata.namespace or "default"
        ns_annotations = applied_ns.get(namespace)
        if ns_annotations is None:
            stored = store.get("Namespace", "", namespace) or {"metadata": {}}
            ns_annotations = stored["metadata"].get("annotations") or {}
        meta = resource.metadata if resource.kind == "Pod" else resource.spec.template.metadata
        annotations = meta.annotations
        try:
            resolve_settings(InjectConfig(), annotations, ns_annotations)
            inject_mode(annotations, ns_annotations)
        except InjectError as exc:
            raise ManifestError(f"{describe(resource)}: {exc}") from exc


def apply(store: ObjectStore, resources: Sequence[Any], service_ips: ServiceIPs) -> list[str]:
    """Create or update ``resources`` all together; returns kubectl-style result lines."""
    check_apply(resources, _existing(store))
    _check_annotations(store, resources)
    used = {s["spec"]["clusterIP"] for s in store.list("Service") if s["spec"].get("clusterIP")}
    planned: list[tuple[Obj, str]] = []
    for resource in resources:
        obj = _dump(resource)
        kind, namespace, name = key_of(obj)
        old = store.get(kind, namespace, name)
        if kind == "Service":
            _assign_cluster_ip(resource, obj, old, service_ips, used)
        if kind == "Secret":
            _fold_string_data(obj)
        if kind == "Pod":
            spec_hash = template_hash(obj["spec"])
            obj["metadata"].setdefault("annotations", {})[APPLIED_SPEC] = spec_hash
            if old is not None and old["metadata"]["annotations"].get(APPLIED_SPEC) != spec_hash:
                raise ManifestError(
                    f"{describe(resource)}: spec: a pod's spec cannot change; delete the pod "
                    "and apply it again (or use a Deployment)"
                )
        if old is not None:
            # The document replaces the object; what the cluster owns is kept.
            merged = dict(obj)
            merged["metadata"] = {**obj["metadata"], **_kept_meta(old)}
            if kind == "Pod":
                merged["spec"] = old["spec"]  # as admitted (injected)
                merged["metadata"]["annotations"] = {
                    **old["metadata"].get("annotations", {}),
                    **obj["metadata"].get("annotations", {}),
                }
            for field in _SERVER_FIELDS:
                if field in old:
                    merged[field] = old[field]
            if _same(old, merged):
                planned.append((merged, "unchanged"))
                continue
            generation = int(old["metadata"].get("generation", 1))
            if old.get("spec") != merged.get("spec"):
                generation += 1
            merged["metadata"]["generation"] = generation
            planned.append((merged, "configured"))
        else:
            obj["metadata"]["generation"] = 1
            planned.append((obj, "created"))
    results = []
    with store.transaction():
        for obj, outcome in planned:
            if outcome != "unchanged":
                store.put(obj)
            results.append(f"{obj['kind'].lower()}/{obj['metadata']['name']} {outcome}")
    return results


def _fold_string_data(secret: Obj) -> None:
    """Kubernetes stores ``stringData`` merged into ``data`` (base64) and never returns it."""
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        data = secret.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _kept_meta(old: Obj) -> Obj:
    keep = (
        "uid",
        "creationTimestamp",
        "resourceVersion",
        "generation",
        "deletionTimestamp",
        "ownerReferences",
    )
    return {k: old["metadata"][k] for k in keep if k in old["metadata"]}


def _same(old: Obj, new: Obj) -> bool:
    strip = ("resourceVersion",)
    a = {**old, "metadata": {k: v for k, v in old["metadata"].items() if k not in strip}}
    b = {**new, "metadata": {k: v for k, v in new["metadata"].items() if k not in strip}}
    return a == b


def _assign_cluster_ip(
    resource: Any, obj: Obj, old: Obj | None, ips: ServiceIPs, used: set[str]
) -> None:
    requested = obj["spec"].get("clusterIP")
    if old is not None:
        current = old["spec"]["clusterIP"]
        if requested and requested != current:
            raise ManifestError(
                f"{describe(resource)}: spec.clusterIP: field is immutable (is {current})"
            )
        obj["spec"]["clusterIP"] = current
        return
    if requested:
        ips.check(resource, requested, used)
    else:
        requested = ips.allocate(used)
    obj["spec"]["clusterIP"] = requested
    used.add(requested)


def delete(store: ObjectStore, refs: Sequence[tuple[str, str, str]]) -> list[str]:
    """Delete objects by (kind, namespace, name); a Namespace takes everything in it along."""
    for kind, namespace, name in refs:
        if store.get(kind, namespace, name) is None:
            raise ManifestError(f'{kind.lower()} "{name}" not found')
    results = []
    with store.transaction():
        for kind, namespace, name in refs:
            obj = store.get(kind, namespace, name)
            if obj is None:
                continue  # listed twice, or inside a namespace deleted before it
            if kind == "Namespace":
                _delete_namespace_contents(store, name)
            if kind == "Pod":
                request_delete(store, obj)
            else:
                store.delete(kind, "" if kind in CLUSTER_SCOPED else namespace, name)
            results.append(f'{kind.lower()} "{name}" deleted')
    return results


def _delete_namespace_contents(store: ObjectStore, namespace: str) -> None:
    for kind in KINDS:
        if kind in CLUSTER_SCOPED:
            continue
        for obj in store.list(kind, namespace):
            if kind == "Pod":
                request_delete(store, obj)
            else:
                store.delete(kind, namespace, obj["metadata"]["name"])
