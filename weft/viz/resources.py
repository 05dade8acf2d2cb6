"""Resources as ``weft stat/routes/edges/tap/top`` and the metrics API name them (pure).

A resource is a type (canonical, lower-case singular: ``deployment``), an optional name and an
optional namespace. The CLI takes Linkerd's forms: ``deploy/web``, ``deployments``,
``deploy web``, ``po``, ``ns``, ``au``, ``ts``. The Prometheus labels a type is measured by
follow Linkerd's relabelling (``deployment``, ``k8s_job``, ``pod``, ``namespace``, ``authority``)
with ``dst_`` in front on the far side of an outbound request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAMESPACE = "namespace"
DEPLOYMENT = "deployment"
JOB = "job"
POD = "pod"
SERVICE = "service"
AUTHORITY = "authority"
TRAFFIC_SPLIT = "trafficsplit"
ALL = "all"

# Canonical type -> (plural, names the CLI accepts).
_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    NAMESPACE: ("namespaces", ("ns", "namespace", "namespaces")),
    DEPLOYMENT: ("deployments", ("deploy", "deployment", "deployments")),
    JOB: ("jobs", ("job", "jobs")),
    POD: ("pods", ("po", "pod", "pods")),
    SERVICE: ("services", ("svc", "service", "services")),
    AUTHORITY: ("authorities", ("au", "authority", "authorities")),
    TRAFFIC_SPLIT: ("trafficsplits", ("ts", "trafficsplit", "trafficsplits")),
}
_BY_ALIAS = {alias: kind for kind, (_, aliases) in _TYPES.items() for alias in aliases}

# The types ``all`` expands to (authorities are not objects, as in Linkerd).
ALL_TYPES = (NAMESPACE, DEPLOYMENT, JOB, POD, SERVICE, TRAFFIC_SPLIT)
# The Kubernetes kind of each type that is an object.
KINDS = {
    NAMESPACE: "Namespace",
    DEPLOYMENT: "Deployment",
    JOB: "Job",
    POD: "Pod",
    SERVICE: "Service",
    TRAFFIC_SPLIT: "TrafficSplit",
}
# The Prometheus label a type is measured by (Linkerd's relabelling: a Job is ``k8s_job``).
_LABELS = {JOB: "k8s_job"}
_TYPES_BY_LABEL = {name: kind for kind, name in _LABELS.items()}


class ResourceError(ValueError):
    """A resource the user named cannot be understood; ``str()`` is one line."""


def known_types() -> str:
    """The accepted type names, for error messages."""
    return ", ".join(plural for plural, _ in _TYPES.values())


def canonical_type(name: str) -> str:
    """``deploy`` → ``deployment``; ``all`` stays ``all``; raises :class:`ResourceError`."""
    lowered = name.strip().lower()
    if lowered == ALL:
        return ALL
    try:
        return _BY_ALIAS[lowered]
    except KeyError:
        raise ResourceError(
            f'unknown resource type "{name}": one of {known_types()} or all'
        ) from None


def plural(kind: str) -> str:
    """``deployment`` → ``deployments``."""
    return _TYPES[kind][0]


def short_name(kind: str) -> str:
    """``deployment`` → ``deploy``: the prefix Linkerd's CLI writes before names."""
    return _TYPES[kind][1][0]


def label(kind: str) -> str:
    """The Prometheus label of a type: ``deployment``, ``k8s_job``, ``pod``, ``namespace``..."""
    return _LABELS.get(kind, kind)


def dst_label(kind: str) -> str:
    """The label naming a type on the far side of an outbound request: ``dst_deployment``..."""
    return "dst_" + label(kind)


def type_of_label(name: str) -> str:
    """The type a Prometheus label names: ``k8s_job`` → ``job``, ``deployment`` → itself."""
    return _TYPES_BY_LABEL.get(name, name)


@dataclass(frozen=True)
class Resource:
    """A type, and optionally a name and a namespace (``""``: every name / namespace)."""

    type: str
    name: str = ""
    namespace: str = ""

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type

    def to_json(self) -> dict[str, str]:
        """``{"namespace", "type", "name"}``, as the metrics API takes it."""
        return {"namespace": self.namespace, "type": self.type, "name": self.name}

    @classmethod
    def from_json(cls, data: Any, what: str = "resource") -> Resource:
        """The resource in a request body; raises :class:`ResourceError` naming ``what``."""
        if not isinstance(data, dict):
            raise ResourceError(f"{what} must be an object with type, name and namespace")
        fields = {k: data.get(k, "") for k in ("type", "name", "namespace")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise ResourceError(f"{what}: type, name and namespace must be strings")
        if not fields["type"]:
            raise ResourceError(f"{what} has no type")
        return cls(canonical_type(fields["type"]), fields["name"], fields["namespace"])


def parse_target(text: str, namespace: str = "") -> Resource:
    """One resource argument: ``deploy/web``, ``deploy``, ``ns/emojivoto``."""
    kind, sep, name = text.partition("/")
    if sep and not name:
        raise ResourceError(f'"{text}": expected TYPE/NAME, e.g. deploy/web')
    if "/" in name:
        raise ResourceError(f'"{text}": expected TYPE/NAME, e.g. deploy/web')
    resource = Resource(canonical_type(kind), name, namespace)
    if resource.type == NAMESPACE and resource.name:
        return Resource(NAMESPACE, resource.name, resource.name)
    return resource


def parse_targets(args: Sequence[str], namespace: str = "") -> list[Resource]:
    """The resources of a command line, in Linkerd's forms: ``deploy``, ``deploy/web``,
    ``deploy web`` (a type then names), ``deploy/web po/x``."""
    if not args:
        raise ResourceError("no resource given: e.g. deploy, deploy/web or ns/emojivoto")
    if len(args) > 1 and "/" not in args[0]:
        kind = canonical_type(args[0])
        if any("/" in a for a in args[1:]):
            raise ResourceError("give either TYPE NAME... or TYPE/NAME..., not both")
        return [parse_target(f"{kind}/{name}", namespace) for name in args[1:]]
    return [parse_target(a, namespace) for a in args]
