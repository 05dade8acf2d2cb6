"""Helpers shared by the controllers that own pods: naming, readiness, owner references."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from typing import Any

from weft.local.store import ObjectStore, now_rfc3339

Obj = dict[str, Any]
# Turns a new pod (before it is stored) into the pod to store: the admission step (injection).
Admit = Callable[[Obj], Obj]

_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj) -> str:
    """A short stable hash of a pod template (the ``pod-template-hash`` label)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def random_suffix(length: int = 5) -> str:
    """A random name suffix like Kubernetes' generated names."""
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


def owned_by(pod: Obj, owner: Obj) -> bool:
    """Whether ``pod`` is controlled by ``owner`` (same kind, name and uid)."""
    meta = owner["metadata"]
    for ref in pod["metadata"].get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == owner["kind"]
            and ref.get("name") == meta["name"]
            and ref.get("uid") == meta["uid"]
        ):
            return True
    return False


def owner_of(pod: Obj) -> tuple[str, str] | None:
    """The (kind, name) of the pod's controller, if any."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["kind"]), str(ref["name"])
    return None


def orphans(store: ObjectStore, owners: list[Obj], kind: str) -> list[Obj]:
    """Pods controlled by a ``kind`` object that no longer exists (by uid)."""
    uids = {o["metadata"]["uid"] for o in owners}
    out = []
    for pod in store.list("Pod"):
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == kind and ref.get("uid") not in uids:
                out.append(pod)
    return out


def is_terminating(pod: Obj) -> bool:
    """Whether the pod is being deleted."""
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_ready(pod: Obj) -> bool:
    """Whether the pod's Ready condition is True (and it is not terminating)."""
    if is_terminating(pod):
        return False
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def phase(pod: Obj) -> str:
    """The pod's phase (Pending until the kubelet says otherwise)."""
    return str(pod.get("status", {}).get("phase") or "Pending")


def new_pod(owner: Obj, template: Obj, name: str, extra_labels: dict[str, str]) -> Obj:
    """A pod built from ``template``, controlled by ``owner``."""
    meta = template.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": {**(meta.get("labels") or {}), **extra_labels},
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": json.loads(json.dumps(template["spec"])),
        "status": {"phase": "Pending"},
    }


def request_delete(store: ObjectStore, pod: Obj) -> None:
    """Mark ``pod`` for deletion; the kubelet stops it and then removes the object."""
    if is_terminating(pod):
        return
    pod["metadata"]["deletionTimestamp"] = now_rfc3339()
    store.put(pod)
