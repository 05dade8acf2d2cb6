"""Checks across the objects of one apply: duplicates, namespaces and named target ports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from weft.resources.apps import Deployment, Job
from weft.resources.core import Namespace, Pod, PodSpec, Service
from weft.resources.errors import ManifestError
from weft.resources.load import Resource
from weft.resources.meta import describe, format_selector, selector_matches

ALWAYS_PRESENT_NAMESPACES = frozenset({"default", "weft"})

_Key = tuple[str, str, str]


def _key(resource: Resource) -> _Key:
    """``(kind, namespace, name)``, which identifies an object."""
    return resource.kind, resource.metadata.namespace or "", resource.metadata.name


def _pod_template(resource: Resource) -> tuple[Mapping[str, str], PodSpec] | None:
    """The pod labels and spec of a workload, or None for other kinds."""
    if isinstance(resource, Pod):
        return resource.metadata.labels, resource.spec
    if isinstance(resource, Deployment | Job):
        return resource.spec.template.metadata.labels, resource.spec.template.spec
    return None


def _check_duplicates(resources: Sequence[Resource]) -> None:
    """Raise if two resources have the same kind, namespace and name."""
    seen: dict[_Key, Resource] = {}
    for resource in resources:
        first = seen.setdefault(_key(resource), resource)
        if first is not resource:
            raise ManifestError(f"{describe(resource)}: defined twice (also {describe(first)})")


def _check_namespaces(resources: Sequence[Resource], existing: Sequence[Resource]) -> None:
    """Raise if a namespaced resource is in a namespace that neither exists nor is applied."""
    known = ALWAYS_PRESENT_NAMESPACES | {
        r.metadata.name for r in (*existing, *resources) if isinstance(r, Namespace)
    }
    for resource in resources:
        namespace = resource.metadata.namespace
        if resource.NAMESPACED and namespace is not None and namespace not in known:
            raise ManifestError(f'{describe(resource)}: namespace "{namespace}" not found')


def _has_port(spec: PodSpec, name: str, protocol: str) -> bool:
    """Whether a container of ``spec`` has a port called ``name`` with ``protocol``."""
    return any(
        port.name == name and port.protocol == protocol
        for container in spec.containers
        for port in container.ports
    )


def _check_target_ports(resources: Sequence[Resource], existing: Sequence[Resource]) -> None:
    """Raise if a Service's named targetPort is on no container of the pods it selects."""
    workloads = {_key(r): r for r in existing} | {_key(r): r for r in resources}
    for service in resources:
        if not isinstance(service, Service):
            continue
        selector = service.spec.selector
        pods = [
            template[1]
            for workload in workloads.values()
            if workload.metadata.namespace == service.metadata.namespace
            and (template := _pod_template(workload)) is not None
            and selector_matches(selector, template[0])
        ]
        if not pods:
            continue
        for i, port in enumerate(service.spec.ports):
            target = port.target_port
            if isinstance(target, str) and not any(
                _has_port(p, target, port.protocol) for p in pods
            ):
                protocol = "" if port.protocol == "TCP" else f" ({port.protocol})"
                raise ManifestError(
                    f'{describe(service)}: spec.ports[{i}].targetPort: no container port named "'
                    f'{target}"{protocol} in pods selected by {format_selector(selector)}'
                )


def check_apply(resources: Sequence[Resource], existing: Sequence[Resource] = ()) -> None:
    """Raise ``ManifestError`` unless ``resources`` can be applied on top of ``existing``."""
    _check_duplicates(resources)
    _check_namespaces(resources, existing)
    _check_target_ports(resources, existing)
