"""Resource names as ``weft cluster get`` accepts them (kubectl's plurals and short names)."""

from __future__ import annotations

_ALIASES: dict[str, tuple[str, ...]] = {
    "Namespace": ("namespaces", "namespace", "ns"),
    "Pod": ("pods", "pod", "po"),
    "Service": ("services", "service", "svc"),
    "Endpoints": ("endpoints", "ep"),
    "Deployment": ("deployments", "deployment", "deploy"),
    "Job": ("jobs", "job"),
    "ServiceAccount": ("serviceaccounts", "serviceaccount", "sa"),
    "ConfigMap": ("configmaps", "configmap", "cm"),
    "Secret": ("secrets", "secret"),
    "ServiceProfile": ("serviceprofiles", "serviceprofile", "sp"),
    "TrafficSplit": ("trafficsplits", "trafficsplit", "ts"),
}
_BY_NAME = {alias: kind for kind, aliases in _ALIASES.items() for alias in (kind.lower(), *aliases)}

KINDS = tuple(_ALIASES)


def kind_of(name: str) -> str:
    """The kind a resource name means (``po`` -> ``Pod``); raises ``KeyError`` if unknown."""
    return _BY_NAME[name.lower()]


def plural(kind: str) -> str:
    """The plural resource name of ``kind``."""
    return _ALIASES[kind][0]
