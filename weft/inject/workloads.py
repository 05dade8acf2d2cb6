"""``weft inject`` / ``uninject`` over whole manifests (pure): find each object's pod template,
inject (annotation only, or the full sidecar with ``manual``) or uninject it, and say what was
done to each object and why.

Injecting first uninjects, so ``inject | inject`` equals ``inject``; ``uninject`` of a manual
injection gives back the input (for workloads that did not carry ``linkerd.io/inject``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from weft.inject.annotations import (
    INJECT_ANNOTATION,
    InjectError,
    resolve_settings,
    unsupported_annotations,
)
from weft.inject.config import InjectConfig
from weft.inject.inject import inject_pod_template, uninject_pod_template

Obj = dict[str, Any]

# kind -> the path of its pod template ([] for a Pod, which is its own template).
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass(frozen=True)
class Outcome:
    """What happened to one object: ``injected``, ``uninjected`` or ``skipped`` (and why)."""

    kind: str
    name: str
    action: str
    reason: str = ""
    warnings: tuple[str, ...] = ()

    def line(self) -> str:
        """``deployment "web" injected`` / ``service "web" skipped (not a workload)``."""
        text = f'{self.kind.lower()} "{self.name}" {self.action}'
        return f"{text} ({self.reason})" if self.reason else text


def _template(obj: Obj) -> Obj | None:
    path = TEMPLATE_PATHS.get(str(obj.get("kind")))
    if path is None:
        return None
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _with_template(obj: Obj, template: Obj) -> Obj:
    path = TEMPLATE_PATHS[str(obj["kind"])]
    if not path:
        return template
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = template
    return out


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _annotated(template: Obj, annotations: Mapping[str, str]) -> Obj:
    out = copy.deepcopy(template)
    meta = out.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return out


def inject_object(
    obj: Obj, config: InjectConfig, annotations: Mapping[str, str], *, manual: bool
) -> tuple[Obj, Outcome]:
    """Inject one object: its pod template gets ``linkerd.io/inject: enabled`` and
    ``annotations``, and with ``manual`` the sidecar itself."""
    kind, name = str(obj.get("kind", "")), _name(obj)
    template = _template(obj)
    if template is None:
        return obj, Outcome(kind, name, "skipped", "not a workload")
    spec = template.get("spec") or {}
    if spec.get("hostNetwork"):
        return obj, Outcome(kind, name, "skipped", "pod uses the host network")
    clean = uninject_pod_template(template)
    wanted = _annotated(clean, {**annotations, INJECT_ANNOTATION: "enabled"})
    pod_annotations = wanted["metadata"]["annotations"]
    try:
        resolve_settings(config, pod_annotations, {})
        if manual:
            owner = ("Pod", name) if kind == "Pod" else (kind, name)
            wanted = inject_pod_template(
                wanted,
                namespace_annotations={},
                owner_kind=owner[0],
                owner_name=owner[1],
                config=config,
                namespace=(obj.get("metadata") or {}).get("namespace"),
            )
    except InjectError as exc:
        return obj, Outcome(kind, name, "skipped", str(exc))
    ignored = tuple(
        f"{key} is not supported by weft and was ignored"
        for key in unsupported_annotations(pod_annotations)
    )
    return _with_template(obj, wanted), Outcome(kind, name, "injected", warnings=ignored)


def uninject_object(obj: Obj) -> tuple[Obj, Outcome]:
    """Remove what injection added to one object's pod template."""
    kind, name = str(obj.get("kind", "")), _name(obj)
    template = _template(obj)
    if template is None:
        return obj, Outcome(kind, name, "skipped", "not a workload")
    clean = uninject_pod_template(template)
    if clean == template:
        return obj, Outcome(kind, name, "skipped", "not injected")
    return _with_template(obj, clean), Outcome(kind, name, "uninjected")


def each_object(
    doc: Any, change: Callable[[Obj], tuple[Obj, Outcome]], outcomes: list[Outcome]
) -> Any:
    """``change`` applied to a document, or to every item of a ``List``; outcomes collected."""
    if not isinstance(doc, dict):
        return doc
    if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
        return {**doc, "items": [each_object(item, change, outcomes) for item in doc["items"]]}
    changed, outcome = change(doc)
    outcomes.append(outcome)
    return changed
