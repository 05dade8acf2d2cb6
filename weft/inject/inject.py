"""Whether to mesh a pod, and adding (or removing) the sidecar in its template; pure functions.

Templates are Kubernetes ``PodTemplateSpec``/``Pod`` dicts (``{"metadata": ..., "spec": ...}``);
the input is never modified, a new dict is returned.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

from weft.inject.annotations import INJECT_ANNOTATION, InjectError, inject_mode, resolve_settings
from weft.inject.config import InjectConfig
from weft.inject.containers import (
    IDENTITY_VOLUME,
    INIT_CONTAINER,
    PROXY_CONTAINER,
    TOKEN_VOLUME,
    identity_volumes,
    init_container,
    proxy_container,
)

CREATED_BY = "linkerd.io/created-by"
PROXY_VERSION = "linkerd.io/proxy-version"
IDENTITY_MODE = "linkerd.io/identity-mode"
CONTROL_PLANE_NS = "linkerd.io/control-plane-ns"
WORKLOAD_NS = "linkerd.io/workload-ns"
OWNER_LABEL_PREFIX = "linkerd.io/proxy-"

_ADDED_ANNOTATIONS = (CREATED_BY, PROXY_VERSION, IDENTITY_MODE, INJECT_ANNOTATION)
_SIDECARS = (INIT_CONTAINER, PROXY_CONTAINER)
_OWNER_KIND = re.compile(r"^[A-Za-z]+$")


def _sidecar_names(spec: Mapping[str, Any]) -> list[str]:
    containers = [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]
    return [c["name"] for c in containers if _is_sidecar(c)]


def decide(
    pod_annotations: Mapping[str, str],
    namespace_annotations: Mapping[str, str],
    *,
    namespace: str | None = None,
    spec: Mapping[str, Any] | None = None,
) -> tuple[bool, str]:
    """Whether to inject a pod, and why; ``spec`` (if given) is checked for a sidecar first."""
    existing = _sidecar_names(spec) if spec is not None else []
    if existing:
        return False, f"pod already has a {existing[0]} container"
    if spec is not None and spec.get("hostNetwork"):
        return False, "pod uses the host network"
    where_ns = f"namespace {namespace}" if namespace else "namespace"
    mode = inject_mode(pod_annotations, namespace_annotations)
    if mode is None:
        return False, f"{INJECT_ANNOTATION} is set on neither the pod nor its {where_ns}"
    value, where = mode
    subject = "pod" if where == "pod" else where_ns
    return value != "disabled", f"{subject} annotated {INJECT_ANNOTATION}={value}"


def _section(template: dict[str, Any], key: str) -> dict[str, Any]:
    value = template.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InjectError(f"pod template {key} is not a mapping")
    return value


def inject_pod_template(
    template: Mapping[str, Any],
    *,
    namespace_annotations: Mapping[str, str],
    owner_kind: str,
    owner_name: str,
    config: InjectConfig,
    namespace: str | None = None,
) -> dict[str, Any]:
    """A copy of ``template`` with the proxy injected, or unchanged if :func:`decide` says no.

    ``namespace`` (default: the template's ``metadata.namespace``) labels the workload.
    """
    result = copy.deepcopy(dict(template))
    metadata = _section(result, "metadata")
    spec = _section(result, "spec")
    annotations = dict(metadata.get("annotations") or {})
    namespace = namespace or metadata.get("namespace")
    inject, _ = decide(annotations, namespace_annotations, namespace=namespace, spec=spec)
    if not inject:
        return result
    if not spec.get("containers"):
        raise InjectError("pod template has no spec.containers")
    if not _OWNER_KIND.match(owner_kind):
        raise InjectError(f"invalid owner kind {owner_kind!r}")
    settings = resolve_settings(config, annotations, namespace_annotations)
    result["metadata"], result["spec"] = metadata, spec
    sidecars = [init_container(config, settings), proxy_container(config, settings)]
    spec["initContainers"] = [*sidecars, *(spec.get("initContainers") or ())]
    if not settings.identity_disabled:
        spec["volumes"] = [*(spec.get("volumes") or ()), *identity_volumes(config)]
    annotations.setdefault(INJECT_ANNOTATION, "ingress" if settings.ingress else "enabled")
    annotations[CREATED_BY] = f"weft/{config.weft_version}"
    annotations[PROXY_VERSION] = settings.proxy_version
    annotations[IDENTITY_MODE] = "disabled" if settings.identity_disabled else "default"
    metadata["annotations"] = annotations
    labels = dict(metadata.get("labels") or {})
    labels[CONTROL_PLANE_NS] = config.control_plane_namespace
    labels[OWNER_LABEL_PREFIX + owner_kind.lower()] = owner_name
    if namespace:
        labels[WORKLOAD_NS] = namespace
    metadata["labels"] = labels
    return result


def _drop_items(section: dict[str, Any], key: str, unwanted: Callable[[Any], bool]) -> None:
    """Remove matching entries of the list or dict ``section[key]``; drop it if left empty."""
    value = section.get(key)
    if isinstance(value, list):
        kept: list[Any] | dict[str, Any] = [item for item in value if not unwanted(item)]
    elif isinstance(value, dict):
        kept = {k: v for k, v in value.items() if not unwanted(k)}
    else:
        return
    if len(kept) == len(value):
        return
    if kept:
        section[key] = kept
    else:
        del section[key]


def _is_sidecar(container: Any) -> bool:
    return isinstance(container, dict) and container.get("name") in (
        INIT_CONTAINER,
        PROXY_CONTAINER,
    )


def _is_identity_volume(volume: Any) -> bool:
    return isinstance(volume, dict) and volume.get("name") in (IDENTITY_VOLUME, TOKEN_VOLUME)


def _is_added_label(key: Any) -> bool:
    return key in (CONTROL_PLANE_NS, WORKLOAD_NS) or str(key).startswith(OWNER_LABEL_PREFIX)


def uninject_pod_template(template: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` without what :func:`inject_pod_template` adds.

    ``linkerd.io/inject`` is removed too, so an admission webhook does not mesh the pod again.
    """
    result = copy.deepcopy(dict(template))
    spec = result.get("spec")
    if isinstance(spec, dict):
        _drop_items(spec, "initContainers", _is_sidecar)
        _drop_items(spec, "containers", _is_sidecar)
        _drop_items(spec, "volumes", _is_identity_volume)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        _drop_items(metadata, "annotations", lambda key: key in _ADDED_ANNOTATIONS)
        _drop_items(metadata, "labels", _is_added_label)
    return result
