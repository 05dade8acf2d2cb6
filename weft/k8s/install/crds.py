"""The CustomResourceDefinitions ``weft install`` creates (pure): ServiceProfile
(``linkerd.io``, v1alpha1 and v1alpha2, with an OpenAPI schema) and SMI TrafficSplit."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

# How many levels of nested all/any/not the schema spells out; deeper levels are kept as
# objects and checked by the sp-validator (structural schemas cannot be recursive).
MATCH_DEPTH = 2
_LOOSE: Obj = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _request_match(depth: int) -> Obj:
    inner = _request_match(depth - 1) if depth > 1 else _LOOSE
    return {
        "type": "object",
        "description": "Matches requests; the fields set are ANDed.",
        "properties": {
            "all": {"type": "array", "items": inner},
            "any": {"type": "array", "items": inner},
            "not": inner,
            "method": {"type": "string"},
            "pathRegex": {"type": "string"},
        },
    }


def _response_match(depth: int) -> Obj:
    inner = _response_match(depth - 1) if depth > 1 else _LOOSE
    return {
        "type": "object",
        "description": "Matches responses; the fields set are ANDed.",
        "properties": {
            "all": {"type": "array", "items": inner},
            "any": {"type": "array", "items": inner},
            "not": inner,
            "status": {
                "type": "object",
                "properties": {
                    "min": {"type": "integer", "minimum": 100, "maximum": 599},
                    "max": {"type": "integer", "minimum": 100, "maximum": 599},
                },
            },
        },
    }


def service_profile_schema() -> Obj:
    """The ``openAPIV3Schema`` of a ServiceProfile."""
    route = {
        "type": "object",
        "required": ["name", "condition"],
        "properties": {
            "name": {"type": "string"},
            "condition": _request_match(MATCH_DEPTH),
            "responseClasses": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["condition"],
                    "properties": {
                        "condition": _response_match(MATCH_DEPTH),
                        "isFailure": {"type": "boolean"},
                    },
                },
            },
            "isRetryable": {"type": "boolean"},
            "timeout": {"type": "string", "description": "A Go duration, e.g. 250ms."},
        },
    }
    spec = {
        "type": "object",
        "properties": {
            "routes": {"type": "array", "items": route},
            "retryBudget": {
                "type": "object",
                "required": ["minRetriesPerSecond", "retryRatio", "ttl"],
                "properties": {
                    "minRetriesPerSecond": {"type": "integer", "format": "int32", "minimum": 0},
                    "retryRatio": {"type": "number", "format": "float", "minimum": 0},
                    "ttl": {"type": "string"},
                },
            },
            "dstOverrides": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["authority", "weight"],
                    "properties": {
                        "authority": {"type": "string"},
                        "weight": {"x-kubernetes-int-or-string": True},
                    },
                },
            },
            "opaquePorts": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    }


def service_profile_crd(labels: dict[str, str]) -> Obj:
    """``serviceprofiles.linkerd.io``: v1alpha1 served, v1alpha2 served and stored."""
    schema = {"openAPIV3Schema": service_profile_schema()}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "serviceprofiles.linkerd.io", "labels": dict(labels)},
        "spec": {
            "group": "linkerd.io",
            "scope": "Namespaced",
            "names": {
                "plural": "serviceprofiles",
                "singular": "serviceprofile",
                "kind": "ServiceProfile",
                "shortNames": ["sp"],
            },
            "versions": [
                {"name": "v1alpha1", "served": True, "storage": False, "schema": schema},
                {"name": "v1alpha2", "served": True, "storage": True, "schema": schema},
            ],
        },
    }


def traffic_split_crd(labels: dict[str, str]) -> Obj:
    """``trafficsplits.split.smi-spec.io`` v1alpha1 (SMI)."""
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["service", "backends"],
                "properties": {
                    "service": {"type": "string", "description": "The apex service."},
                    "backends": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["service", "weight"],
                            "properties": {
                                "service": {"type": "string"},
                                "weight": {"x-kubernetes-int-or-string": True},
                            },
                        },
                    },
                },
            },
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "trafficsplits.split.smi-spec.io", "labels": dict(labels)},
        "spec": {
            "group": "split.smi-spec.io",
            "scope": "Namespaced",
            "names": {
                "plural": "trafficsplits",
                "singular": "trafficsplit",
                "kind": "TrafficSplit",
                "shortNames": ["ts"],
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "additionalPrinterColumns": [
                        {"name": "Service", "type": "string", "jsonPath": ".spec.service"}
                    ],
                }
            ],
        },
    }
