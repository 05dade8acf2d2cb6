"""Where each kind weft reads or writes lives in the Kubernetes API (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class ApiKind:
    """A kind's group/version, plural resource name and whether it is namespaced."""

    kind: str
    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection (in ``namespace``, or all) or of one object."""
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        return base


_ALL = (
    ApiKind("Namespace", "v1", "namespaces", namespaced=False),
    ApiKind("Node", "v1", "nodes", namespaced=False),
    ApiKind("Pod", "v1", "pods"),
    ApiKind("Service", "v1", "services"),
    ApiKind("Endpoints", "v1", "endpoints"),
    ApiKind("ConfigMap", "v1", "configmaps"),
    ApiKind("Secret", "v1", "secrets"),
    ApiKind("ServiceAccount", "v1", "serviceaccounts"),
    ApiKind("EndpointSlice", "discovery.k8s.io/v1", "endpointslices"),
    ApiKind("Deployment", "apps/v1", "deployments"),
    ApiKind("ReplicaSet", "apps/v1", "replicasets"),
    ApiKind("StatefulSet", "apps/v1", "statefulsets"),
    ApiKind("DaemonSet", "apps/v1", "daemonsets"),
    ApiKind("Job", "batch/v1", "jobs"),
    ApiKind("CronJob", "batch/v1", "cronjobs"),
    ApiKind("ClusterRole", "rbac.authorization.k8s.io/v1", "clusterroles", namespaced=False),
    ApiKind(
        "ClusterRoleBinding",
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        namespaced=False,
    ),
    ApiKind("Role", "rbac.authorization.k8s.io/v1", "roles"),
    ApiKind("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings"),
    ApiKind(
        "CustomResourceDefinition",
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        namespaced=False,
    ),
    ApiKind(
        "MutatingWebhookConfiguration",
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        namespaced=False,
    ),
    ApiKind(
        "ValidatingWebhookConfiguration",
        "admissionregistration.k8s.io/v1",
        "validatingwebhookconfigurations",
        namespaced=False,
    ),
    ApiKind("ServiceProfile", "linkerd.io/v1alpha2", "serviceprofiles"),
    ApiKind("TrafficSplit", "split.smi-spec.io/v1alpha1", "trafficsplits"),
)

KINDS: dict[str, ApiKind] = {k.kind: k for k in _ALL}


def api_kind(kind: str) -> ApiKind:
    """The :class:`ApiKind` of ``kind``; ``KeyError`` names the kinds known."""
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r} (known: {', '.join(sorted(KINDS))})") from None
