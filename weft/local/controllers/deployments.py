"""The Deployment controller: keeps ``replicas`` pods of the current template, rolling on change.

A template change is rolled out the Kubernetes way with the default strategy (max surge 25 %
rounded up, max unavailable 25 % rounded down): new pods are created first and old pods go
only while enough pods stay ready. Pods whose Deployment is gone are deleted.
"""

from __future__ import annotations

import math

from weft.local.controllers.pods import (
    Admit,
    Obj,
    is_ready,
    is_terminating,
    new_pod,
    orphans,
    owned_by,
    random_suffix,
    request_delete,
    template_hash,
)
from weft.local.store import ObjectStore

HASH_LABEL = "pod-template-hash"


def reconcile(store: ObjectStore, admit: Admit) -> None:
    """Bring every Deployment's pods in line with its spec, and update its status."""
    deployments = store.list("Deployment")
    for pod in orphans(store, deployments, "Deployment"):
        request_delete(store, pod)
    for deployment in deployments:
        _reconcile_one(store, deployment, admit)


def _reconcile_one(store: ObjectStore, deployment: Obj, admit: Admit) -> None:
    meta = deployment["metadata"]
    spec = deployment["spec"]
    replicas = int(spec.get("replicas", 1))
    current = template_hash(spec["template"])
    pods = [
        p
        for p in store.list("Pod", meta["namespace"])
        if owned_by(p, deployment) and not is_terminating(p)
    ]
    new = [p for p in pods if p["metadata"]["labels"].get(HASH_LABEL) == current]
    old = [p for p in pods if p["metadata"]["labels"].get(HASH_LABEL) != current]
    surge = math.ceil(replicas * 0.25) if replicas else 0
    max_unavailable = math.floor(replicas * 0.25)
    if surge == 0 and max_unavailable == 0:
        surge = 1

    # Scale the new generation towards ``replicas``, within the surge allowance.
    while len(new) < replicas and len(new) + len(old) < replicas + surge:
        name = f"{meta['name']}-{current}-{random_suffix()}"
        pod = admit(new_pod(deployment, spec["template"], name, {HASH_LABEL: current}))
        new.append(store.put(pod))
    # Too many of the new generation: drop the not-ready ones first.
    new.sort(key=is_ready)
    while len(new) > replicas:
        request_delete(store, new.pop(0))

    # Retire old pods while enough pods stay available.
    old.sort(key=is_ready)
    available = sum(1 for p in new + old if is_ready(p))
    for pod in list(old):
        ready = is_ready(pod)
        if available - (1 if ready else 0) < replicas - max_unavailable and ready:
            break
        request_delete(store, pod)
        old.remove(pod)
        available -= 1 if ready else 0

    status = {
        "observedGeneration": int(meta.get("generation", 1)),
        "replicas": len(new) + len(old),
        "updatedReplicas": len(new),
        "readyReplicas": sum(1 for p in new + old if is_ready(p)),
        "availableReplicas": sum(1 for p in new + old if is_ready(p)),
    }
    if deployment.get("status") != status:
        deployment["status"] = status
        store.put(deployment)
