"""The control plane as Kubernetes objects, from install values and trust material (pure).

Objects are built as dicts (never text) and printed by :func:`to_yaml` / :func:`to_json`.
Everything carries ``weft.io/control-plane-ns``, which ``weft uninstall`` and ``weft check`` find
it by.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from weft.controller.prometheus.config import render_config
from weft.identity import trust
from weft.identity.certs import certs_to_pem, key_to_pem, not_after
from weft.k8s.install import components as c
from weft.k8s.install.crds import service_profile_crd, traffic_split_crd
from weft.k8s.install.values import InstallValues
from weft.k8s.install.webhook_tls import WebhookTls, generate

Obj = dict[str, Any]

CONTROL_PLANE_NS_LABEL = "weft.io/control-plane-ns"
COMPONENT_LABEL = "weft.io/control-plane-component"
PART_OF = {"app.kubernetes.io/part-of": "weft"}
ADMISSION_LABEL = "config.linkerd.io/admission-webhooks"
CONFIG_MAP = "weft-config"
TRUST_ROOTS = "weft-identity-trust-roots"
ISSUER_SECRET = "weft-identity-issuer"
ISSUER_EXPIRY = "weft.io/identity-issuer-expiry"
PROMETHEUS_CONFIG = "weft-prometheus-config"
INJECTOR_WEBHOOK = "weft-proxy-injector-webhook-config"
VALIDATOR_WEBHOOK = "weft-sp-validator-webhook-config"


@dataclass(frozen=True)
class Secrets:
    """The identity trust material and the webhooks' serving certificates, as PEM."""

    anchors_pem: bytes
    issuer_cert_pem: bytes
    issuer_key_pem: bytes
    webhooks: Mapping[str, WebhookTls]


def webhook_secret(component: str) -> str:
    """The Secret holding a webhook component's serving certificate."""
    return f"weft-{component}-k8s-tls"


def generate_webhooks(values: InstallValues, now: datetime) -> dict[str, WebhookTls]:
    """A fresh serving certificate for every webhook component."""
    return {
        comp.name: generate(comp.resource_name, values.namespace, now)
        for comp in c.COMPONENTS
        if comp.webhook
    }


def generate_secrets(values: InstallValues, now: datetime) -> Secrets:
    """A new trust anchor (10 years) and issuer (1 year), and webhook certificates."""
    material = trust.generate_trust(values.namespace, values.trust_domain, now=now)
    return Secrets(
        anchors_pem=material.anchors_pem(),
        issuer_cert_pem=certs_to_pem(material.issuer.chain),
        issuer_key_pem=key_to_pem(material.issuer.key),
        webhooks=generate_webhooks(values, now),
    )


def secrets_from_files(
    values: InstallValues, anchors: Path, issuer_cert: Path, issuer_key: Path, now: datetime
) -> Secrets:
    """The given trust files (checked to chain, as the identity service will), and webhook
    certificates."""
    material = trust.read_trust(trust.TrustFiles(anchors, issuer_cert, issuer_key, None))
    return Secrets(
        anchors_pem=material.anchors_pem(),
        issuer_cert_pem=certs_to_pem(material.issuer.chain),
        issuer_key_pem=key_to_pem(material.issuer.key),
        webhooks=generate_webhooks(values, now),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def labels(values: InstallValues, component: str | None = None) -> dict[str, str]:
    """The labels of every installed object (and of a component's, with its name)."""
    out = {**PART_OF, CONTROL_PLANE_NS_LABEL: values.namespace}
    if component:
        out[COMPONENT_LABEL] = component
    return out


def _meta(name: str, values: InstallValues, component: str | None = None, **extra: Any) -> Obj:
    meta: Obj = {"name": name, "namespace": values.namespace, "labels": labels(values, component)}
    meta.update(extra)
    return meta


def _volumes(comp: c.Component) -> tuple[list[Obj], list[Obj]]:
    """(volumes, volumeMounts) for a component's mounts."""
    specs: dict[str, tuple[Obj, str]] = {
        "trust-roots": ({"configMap": {"name": TRUST_ROOTS}}, c.TRUST_ROOTS_DIR),
        "issuer": ({"secret": {"secretName": ISSUER_SECRET}}, c.ISSUER_DIR),
        "identity-token": (
            {
                "projected": {
                    "sources": [
                        {
                            "serviceAccountToken": {
                                "path": c.TOKEN_FILE,
                                "audience": c.IDENTITY_AUDIENCE,
                                "expirationSeconds": 86400,
                            }
                        }
                    ]
                }
            },
            c.TOKEN_DIR,
        ),
        "webhook-tls": ({"secret": {"secretName": webhook_secret(comp.name)}}, c.TLS_DIR),
        "config": ({"configMap": {"name": CONFIG_MAP}}, c.CONFIG_DIR),
        "prometheus-config": (
            {"configMap": {"name": PROMETHEUS_CONFIG}},
            c.PROMETHEUS_CONFIG_DIR,
        ),
        "prometheus-data": ({"emptyDir": {}}, c.PROMETHEUS_DATA_DIR),
    }
    volumes, mounts = [], []
    for mount in comp.mounts:
        source, path = specs[mount]
        volumes.append({"name": mount, **source})
        mount_spec: Obj = {"name": mount, "mountPath": path}
        if "emptyDir" not in source:
            mount_spec["readOnly"] = True
        mounts.append(mount_spec)
    return volumes, mounts


def _deployment(comp: c.Component, values: InstallValues) -> Obj:
    selector = {COMPONENT_LABEL: comp.name, CONTROL_PLANE_NS_LABEL: values.namespace}
    volumes, mounts = _volumes(comp)
    ready, live, probe_port = comp.probe_paths
    ports = [{"name": comp.port_name, "containerPort": comp.port}]
    if comp.admin_port is not None:
        ports.append({"name": "admin-http", "containerPort": comp.admin_port})
    container: Obj = {
        "name": comp.name,
        "image": values.image_ref if comp.image is None else comp.image(values),
        "imagePullPolicy": values.image_pull_policy,
        "command": comp.args(values),
        "ports": ports,
        "readinessProbe": {"httpGet": {"path": ready, "port": probe_port}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": live, "port": probe_port},
            "initialDelaySeconds": 10,
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": comp.user,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if comp.env is not None:
        container["env"] = [{"name": k, "value": v} for k, v in comp.env(values).items()]
    if mounts:
        container["volumeMounts"] = mounts
    if values.ha:
        container["resources"] = {"requests": {"cpu": "100m", "memory": "50Mi"}}
    pod_spec: Obj = {
        "serviceAccountName": comp.resource_name,
        "automountServiceAccountToken": bool(comp.rules),
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    if values.ha and comp.scalable:
        pod_spec["affinity"] = {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchLabels": selector},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        }
    template_labels = {**labels(values, comp.name), **selector}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(comp.resource_name, values, comp.name),
        "spec": {
            "replicas": values.replicas if comp.scalable else 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": template_labels,
                    "annotations": {"linkerd.io/inject": "disabled"},
                },
                "spec": pod_spec,
            },
        },
    }


def _service(comp: c.Component, values: InstallValues) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(comp.resource_name, values, comp.name),
        "spec": {
            "type": "ClusterIP",
            "selector": {COMPONENT_LABEL: comp.name, CONTROL_PLANE_NS_LABEL: values.namespace},
            "ports": [
                {
                    "name": comp.port_name,
                    "port": comp.exposed_port,
                    "targetPort": comp.port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def rbac_name(values: InstallValues, comp: c.Component) -> str:
    """The ClusterRole and ClusterRoleBinding of a component."""
    return f"weft-{values.namespace}-{comp.name}"


def expected_names(values: InstallValues) -> dict[str, set[str]]:
    """The names of the objects :func:`render` makes, by kind (what ``weft check`` expects)."""
    bound = {rbac_name(values, comp) for comp in c.COMPONENTS if comp.rules}
    hooks = {comp.webhook: comp for comp in c.COMPONENTS if comp.webhook}
    return {
        "Namespace": {values.namespace},
        "ClusterRole": bound,
        "ClusterRoleBinding": bound,
        "ServiceAccount": {comp.resource_name for comp in c.COMPONENTS},
        "CustomResourceDefinition": {
            "serviceprofiles.linkerd.io",
            "trafficsplits.split.smi-spec.io",
        },
        "MutatingWebhookConfiguration": {INJECTOR_WEBHOOK} if "mutating" in hooks else set(),
        "ValidatingWebhookConfiguration": {VALIDATOR_WEBHOOK} if "validating" in hooks else set(),
        "Deployment": {comp.resource_name for comp in c.COMPONENTS},
    }


def _rbac(comp: c.Component, values: InstallValues) -> list[Obj]:
    if not comp.rules:
        return []
    name = rbac_name(values, comp)
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": labels(values, comp.name)},
        "rules": [dict(rule) for rule in comp.rules],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": labels(values, comp.name)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [
            {"kind": "ServiceAccount", "name": comp.resource_name, "namespace": values.namespace}
        ],
    }
    return [role, binding]


def _webhook_config(comp: c.Component, values: InstallValues, tls: WebhookTls) -> Obj:
    client = {
        "service": {
            "name": comp.resource_name,
            "namespace": values.namespace,
            "path": "/",
            "port": comp.exposed_port,
        },
        "caBundle": tls.ca_bundle(),
    }
    selector = {
        "matchExpressions": [{"key": ADMISSION_LABEL, "operator": "NotIn", "values": ["disabled"]}]
    }
    webhook: Obj = {
        "name": f"{comp.resource_name}.weft.io",
        "clientConfig": client,
        "namespaceSelector": selector,
        "failurePolicy": values.webhook_failure_policy,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 10,
    }
    if comp.webhook == "mutating":
        webhook["rules"] = [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]
        webhook["reinvocationPolicy"] = "Never"
        kind, name = "MutatingWebhookConfiguration", INJECTOR_WEBHOOK
    else:
        webhook["rules"] = [
            {
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": ["linkerd.io"],
                "apiVersions": ["v1alpha1", "v1alpha2"],
                "resources": ["serviceprofiles"],
                "scope": "Namespaced",
            }
        ]
        kind, name = "ValidatingWebhookConfiguration", VALIDATOR_WEBHOOK
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": labels(values, comp.name)},
        "webhooks": [webhook],
    }


def _issuer_expiry(secrets: Secrets) -> str:
    from weft.identity.certs import load_certs_pem

    cert = load_certs_pem(secrets.issuer_cert_pem, "issuer certificate")[0]
    return (not_after(cert) - timedelta(0)).strftime("%Y-%m-%dT%H:%M:%SZ")


def render(values: InstallValues, secrets: Secrets) -> list[Obj]:
    """Every object of the control plane, in the order ``kubectl apply`` should create them."""
    ns = values.namespace
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": ns,
            "labels": {**labels(values), ADMISSION_LABEL: "disabled"},
            "annotations": {"linkerd.io/inject": "disabled"},
        },
    }
    crd_labels = labels(values)
    objects: list[Obj] = [
        namespace,
        service_profile_crd(crd_labels),
        traffic_split_crd(crd_labels),
    ]
    for comp in c.COMPONENTS:
        objects += _rbac(comp, values)
    for comp in c.COMPONENTS:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(comp.resource_name, values, comp.name),
                "automountServiceAccountToken": bool(comp.rules),
            }
        )
    objects += [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(CONFIG_MAP, values),
            "data": {c.CONFIG_KEY: values.to_json()},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(PROMETHEUS_CONFIG, values, "prometheus"),
            "data": {c.PROMETHEUS_CONFIG_KEY: render_config(c.prometheus_settings(values))},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(TRUST_ROOTS, values),
            "data": {c.TRUST_ROOTS_KEY: secrets.anchors_pem.decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": _meta(
                ISSUER_SECRET, values, annotations={ISSUER_EXPIRY: _issuer_expiry(secrets)}
            ),
            "data": {
                c.ISSUER_CERT_KEY: _b64(secrets.issuer_cert_pem),
                c.ISSUER_KEY_KEY: _b64(secrets.issuer_key_pem),
            },
        },
    ]
    for comp in c.COMPONENTS:
        if comp.webhook:
            tls = secrets.webhooks[comp.name]
            objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "kubernetes.io/tls",
                    "metadata": _meta(webhook_secret(comp.name), values, comp.name),
                    "data": {
                        "tls.crt": _b64(tls.cert_pem),
                        "tls.key": _b64(tls.key_pem),
                        "ca.crt": _b64(tls.ca_pem),
                    },
                }
            )
    for comp in c.COMPONENTS:
        objects.append(_service(comp, values))
    for comp in c.COMPONENTS:
        objects.append(_deployment(comp, values))
    for comp in c.COMPONENTS:
        if comp.webhook:
            objects.append(_webhook_config(comp, values, secrets.webhooks[comp.name]))
    return objects


class _Dumper(yaml.CSafeDumper):
    """PyYAML's C dumper, writing multi-line strings (PEM, JSON) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        """Never write anchors and aliases: shared sub-objects are spelled out each time."""
        return True


def _str(dumper: _Dumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(objects: list[Obj]) -> str:
    """A multi-document YAML stream (``---`` before each document)."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, explicit_start=True, width=100)


def to_json(objects: list[Obj]) -> str:
    """One JSON ``List`` of the objects."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
