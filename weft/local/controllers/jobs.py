"""The Job controller: runs a pod to completion, retrying failed pods up to ``backoffLimit``."""

from __future__ import annotations

from weft.local.controllers.pods import (
    Admit,
    Obj,
    is_terminating,
    new_pod,
    orphans,
    owned_by,
    phase,
    random_suffix,
    request_delete,
)
from weft.local.store import ObjectStore, now_rfc3339


def reconcile(store: ObjectStore, admit: Admit) -> None:
    """Start, retry or finish every Job; delete pods of Jobs that are gone."""
    jobs = store.list("Job")
    for pod in orphans(store, jobs, "Job"):
        request_delete(store, pod)
    for job in jobs:
        _reconcile_one(store, job, admit)


def _reconcile_one(store: ObjectStore, job: Obj, admit: Admit) -> None:
    meta = job["metadata"]
    pods = [p for p in store.list("Pod", meta["namespace"]) if owned_by(p, job)]
    succeeded = sum(1 for p in pods if phase(p) == "Succeeded")
    failed = sum(1 for p in pods if phase(p) == "Failed")
    active = sum(1 for p in pods if phase(p) in ("Pending", "Running") and not is_terminating(p))
    limit = int(job["spec"].get("backoffLimit", 6))
    status = dict(job.get("status") or {})
    if succeeded == 0 and active == 0 and failed <= limit and not status.get("completionTime"):
        template = job["spec"]["template"]
        name = f"{meta['name']}-{random_suffix()}"
        store.put(admit(new_pod(job, template, name, {"job-name": meta["name"]})))
        active += 1
    new_status: Obj = {"active": active, "succeeded": succeeded, "failed": failed}
    if succeeded:
        new_status["completionTime"] = status.get("completionTime") or now_rfc3339()
        new_status["conditions"] = [{"type": "Complete", "status": "True"}]
    elif failed > limit:
        new_status["conditions"] = [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
        ]
    if status != new_status:
        job["status"] = new_status
        store.put(job)
