"""The control plane a local cluster runs as ordinary pods in the ``weft`` namespace.

The identity and destination services run as Deployments behind Services, like a Kubernetes
install would run them; only their commands differ (they reach the platform through the node
agent's socket). The trust anchor and issuer are generated into ``<state>/identity`` once, when
the cluster is first started, so the injector can hand the anchors to every proxy.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from weft.identity import trust
from weft.local.api_client import ServiceRef
from weft.local.cluster_config import ClusterConfig
from weft.local.pod_env import SERVICE_ACCOUNT_DIR
from weft.proxy.config import parse_duration

NAMESPACE = "weft"
TRUST_DOMAIN = "cluster.local"
IDENTITY_PORT = 8080
DESTINATION_PORT = 8086
IDENTITY_ADMIN_PORT = 9990
DESTINATION_ADMIN_PORT = 9996
METRICS_API_PORT = 8085
METRICS_API_ADMIN_PORT = 9995
TAP_PORT = 8088
TAP_ADMIN_PORT = 9998
PROMETHEUS_PORT = 9090

# Components the CLI talks to, through the node agent's service proxy.
METRICS_API = ServiceRef(NAMESPACE, "weft-metrics-api", METRICS_API_PORT)
TAP = ServiceRef(NAMESPACE, "weft-tap", TAP_PORT)
PROMETHEUS = ServiceRef(NAMESPACE, "weft-prometheus", PROMETHEUS_PORT)

Obj = dict[str, Any]


def identity_dir(cfg: ClusterConfig) -> Path:
    """Where the cluster's trust anchor and issuer live."""
    return cfg.state / "identity"


def ensure_trust(cfg: ClusterConfig) -> bytes:
    """Generate the trust material if the cluster has none; returns the anchors as PEM."""
    directory = identity_dir(cfg)
    files = trust.TrustFiles.in_dir(directory)
    if not files.anchors.exists():
        lifetime = parse_duration("issuer lifetime", cfg.identity_issuer_lifetime)
        material = trust.generate_trust(
            NAMESPACE,
            TRUST_DOMAIN,
            issuer_lifetime=timedelta(seconds=lifetime),
            now=datetime.now(UTC),
        )
        directory.mkdir(parents=True, exist_ok=True)
        trust.write_trust(material, directory)
    return files.anchors.read_bytes()


def service_addr(cfg: ClusterConfig, name: str, port: int) -> str:
    """``<name>.weft.svc.<domain>:<port>``."""
    return f"{name}.{NAMESPACE}.svc.{cfg.cluster_domain}:{port}"


def _component(name: str, command: list[str], port: int, admin_port: int) -> tuple[Obj, Obj, Obj]:
    labels = {"app.kubernetes.io/part-of": "weft", "weft.io/control-plane-component": name}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": f"weft-{name}"}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"weft-{name}", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": f"weft-{name}",
                    "containers": [
                        {
                            "name": name,
                            "command": command,
                            "ports": [
                                {"name": "grpc", "containerPort": port},
                                {"name": "admin-http", "containerPort": admin_port},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": admin_port},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"weft-{name}", "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": "grpc", "port": port, "targetPort": port}],
        },
    }
    return account, deployment, service


def manifests(cfg: ClusterConfig) -> list[Obj]:
    """The control plane's objects (namespace ``weft``), as Kubernetes JSON."""
    platform = f"local:{cfg.api_socket}"
    common = ["--platform", platform, "--control-namespace", NAMESPACE]
    common += ["--trust-domain", TRUST_DOMAIN]
    identity = [
        "weft", "controller", "identity", *common,
        "--identity-dir", str(identity_dir(cfg)),
        "--issuance-lifetime", cfg.identity_issuance_lifetime,
        "--issuer-lifetime", cfg.identity_issuer_lifetime,
        "--addr", f"0.0.0.0:{IDENTITY_PORT}",
        "--admin-addr", f"0.0.0.0:{IDENTITY_ADMIN_PORT}",
    ]  # fmt: skip
    destination = [
        "weft", "controller", "destination", *common,
        "--cluster-domain", cfg.cluster_domain,
        "--trust-anchors-file", str(trust.TrustFiles.in_dir(identity_dir(cfg)).anchors),
        "--identity-addr", service_addr(cfg, "weft-identity", IDENTITY_PORT),
        "--token-file", f"{SERVICE_ACCOUNT_DIR}/token",
        "--addr", f"0.0.0.0:{DESTINATION_PORT}",
        "--admin-addr", f"0.0.0.0:{DESTINATION_ADMIN_PORT}",
    ]  # fmt: skip
    objects: list[Obj] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    ]
    objects += _component("identity", identity, IDENTITY_PORT, IDENTITY_ADMIN_PORT)
    objects += _component("destination", destination, DESTINATION_PORT, DESTINATION_ADMIN_PORT)
    for obj in objects[1:]:
        obj["metadata"]["namespace"] = NAMESPACE
    return objects
