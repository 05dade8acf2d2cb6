"""The proxy injector's decision for one Pod (pure): the same injector the CLI and the local
runtime use, its result turned into a JSONPatch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonpatch

from weft.inject import InjectConfig, InjectError, decide, inject_pod_template
from weft.inject.annotations import unsupported_annotations
from weft.k8s.webhooks.admission import Review, Verdict

Obj = dict[str, Any]
CONTROL_PLANE_LABEL = "weft.io/control-plane-component"
HASH_LABEL = "pod-template-hash"


def owner_of(pod: Obj) -> tuple[str, str]:
    """(kind, name) of the workload that owns a pod: a ReplicaSet made by a Deployment counts
    as the Deployment (its name minus the pod-template-hash); a bare pod is its own owner."""
    meta = pod.get("metadata") or {}
    refs = [r for r in meta.get("ownerReferences") or [] if isinstance(r, dict)]
    ref = next((r for r in refs if r.get("controller")), refs[0] if refs else None)
    if ref is None:
        name = str(meta.get("name") or meta.get("generateName") or "").rstrip("-")
        return "Pod", name
    kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
    pod_hash = (meta.get("labels") or {}).get(HASH_LABEL)
    if kind == "ReplicaSet" and pod_hash and name.endswith(f"-{pod_hash}"):
        return "Deployment", name[: -len(pod_hash) - 1]
    return kind, name


def mutate(
    review: Review, namespace_annotations: Mapping[str, str], config: InjectConfig
) -> Verdict:
    """Inject the proxy into a Pod being created, when it or its namespace asks for it.

    Pods are always admitted: one that cannot be injected goes in as it is, with a warning
    that ``kubectl`` prints.
    """
    if review.kind != "Pod" or review.operation != "CREATE":
        return Verdict(True)
    pod = review.object
    meta = pod.get("metadata") or {}
    namespace = review.namespace or str(meta.get("namespace") or "")
    if (meta.get("labels") or {}).get(CONTROL_PLANE_LABEL):
        return Verdict(True)
    annotations = meta.get("annotations") or {}
    try:
        inject, _ = decide(
            annotations, namespace_annotations, namespace=namespace, spec=pod.get("spec")
        )
        if not inject:
            return Verdict(True)
        kind, name = owner_of(pod)
        injected = inject_pod_template(
            pod,
            namespace_annotations=namespace_annotations,
            owner_kind=kind,
            owner_name=name,
            config=config,
            namespace=namespace,
        )
    except InjectError as exc:
        return Verdict(True, warnings=(f"weft: the proxy was not injected: {exc}",))
    patch = jsonpatch.make_patch(pod, injected).patch
    ignored = unsupported_annotations(namespace_annotations, annotations)
    warnings = tuple(f"weft: {key} is not supported and was ignored" for key in ignored)
    return Verdict(True, patch=list(patch), warnings=warnings)
