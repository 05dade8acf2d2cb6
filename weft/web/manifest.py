"""The dashboard's objects in the control namespace: ServiceAccount, Deployment and Service
``weft-web`` (port 8084, admin 9994), as Kubernetes JSON.

The tap controller authorizes the ``weft-web`` service account
(``system:serviceaccount:weft:weft-web``), so the pod's own token is all it needs to tap.
"""

from __future__ import annotations

from typing import Any

NAME = "weft-web"
COMPONENT = "web"
PORT = 8084
ADMIN_PORT = 9994
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"

Obj = dict[str, Any]


def _url(name: str, namespace: str, cluster_domain: str, port: int) -> str:
    return f"http://{name}.{namespace}.svc.{cluster_domain}:{port}"


def command(namespace: str, cluster_domain: str) -> list[str]:
    """``weft controller web`` with the URLs of its backends in ``namespace``."""
    return [
        "weft", "controller", "web",
        "--addr", f"0.0.0.0:{PORT}",
        "--admin-addr", f"0.0.0.0:{ADMIN_PORT}",
        "--metrics-api-url", _url("weft-metrics-api", namespace, cluster_domain, 8085),
        "--prometheus-url", _url("weft-prometheus", namespace, cluster_domain, 9090),
        "--tap-url", _url("weft-tap", namespace, cluster_domain, 8088),
        "--token-file", SERVICE_ACCOUNT_TOKEN,
        "--control-namespace", namespace,
    ]  # fmt: skip


def manifests(namespace: str = "weft", cluster_domain: str = "cluster.local") -> list[Obj]:
    """The ServiceAccount, Deployment and Service of the dashboard in ``namespace``."""
    labels = {"app.kubernetes.io/part-of": "weft", "weft.io/control-plane-component": COMPONENT}
    metadata = {"name": NAME, "namespace": namespace, "labels": labels}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(metadata)}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": dict(metadata),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "containers": [
                        {
                            "name": COMPONENT,
                            "command": command(namespace, cluster_domain),
                            "ports": [
                                {"name": "http", "containerPort": PORT},
                                {"name": "admin-http", "containerPort": ADMIN_PORT},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": ADMIN_PORT},
                                "periodSeconds": 1,
                            },
                            "livenessProbe": {
                                "httpGet": {"path": "/live", "port": ADMIN_PORT},
                                "periodSeconds": 10,
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
        "metadata": dict(metadata),
        "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
        },
    }
    return [account, deployment, service]
