"""The control plane a local cluster runs as ordinary pods in the ``weft`` namespace.

Identity, destination, the tap controller, the metrics API, Prometheus and the dashboard (web)
run as Deployments behind Services, like a Kubernetes install would run them; only their commands
differ (they reach the platform through the node agent's socket, and files live in the state
directory instead of volumes). The trust anchor and issuer are generated into
``<state>/identity`` once, when the cluster is first started, so the injector can hand the
anchors to every proxy; Prometheus's configuration is written to ``<state>/prometheus`` at every
start of the agent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from weft.controller.prometheus.config import PrometheusSettings, render_config
from weft.controller.prometheus.launch import PrometheusLaunch
from weft.identity import trust
from weft.local.api_client import ServiceRef
from weft.local.cluster_config import ClusterConfig
from weft.local.pod_env import SERVICE_ACCOUNT_DIR
from weft.proxy.config import parse_duration
from weft.web import manifest as web_manifest

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
PROMETHEUS_TARGETS_PORT = 9088  # on the Prometheus pod's loopback only
PROMETHEUS_TARGETS_ADMIN_PORT = 9089

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


def prometheus_dir(cfg: ClusterConfig) -> Path:
    """Where Prometheus's configuration and storage live (removed with the cluster)."""
    return cfg.state / "prometheus"


def prometheus_launch(cfg: ClusterConfig) -> PrometheusLaunch:
    """How the cluster's Prometheus runs: its files, retention and memory bounds."""
    directory = prometheus_dir(cfg)
    return PrometheusLaunch(
        config_file=directory / "prometheus.yml",
        data_dir=directory / "data",
        listen=f"0.0.0.0:{PROMETHEUS_PORT}",
        retention_time=cfg.prometheus_retention,
        retention_size=cfg.prometheus_retention_size,
        memory_limit=cfg.prometheus_memory_limit,
    )


def write_prometheus_config(cfg: ClusterConfig) -> Path:
    """Write ``prometheus.yml`` (scrape targets from the targets container, every interval as
    configured); returns its path."""
    settings = PrometheusSettings(
        scrape_interval=cfg.prometheus_scrape_interval,
        evaluation_interval=cfg.prometheus_scrape_interval,
        targets_url=f"http://127.0.0.1:{PROMETHEUS_TARGETS_PORT}/targets",
        control_namespace=NAMESPACE,
        self_target=f"localhost:{PROMETHEUS_PORT}",
    )
    path = prometheus_launch(cfg).config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(settings))
    return path


def _container(
    name: str,
    command: list[str],
    ports: dict[str, int],
    ready: tuple[str, int],
    env: dict[str, str] | None = None,
) -> Obj:
    container: Obj = {
        "name": name,
        "command": command,
        "ports": [{"name": n, "containerPort": p} for n, p in ports.items()],
        "readinessProbe": {"httpGet": {"path": ready[0], "port": ready[1]}, "periodSeconds": 1},
    }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return container


def _component(name: str, containers: list[Obj], service_ports: dict[str, int]) -> list[Obj]:
    """ServiceAccount, Deployment and Service ``weft-<name>`` running ``containers``."""
    full = f"weft-{name}"
    labels = {"app.kubernetes.io/part-of": "weft", "weft.io/control-plane-component": name}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": full}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": full, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": full, "containers": containers},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": full, "labels": labels},
        "spec": {
            "selector": labels,
            "ports": [{"name": n, "port": p, "targetPort": p} for n, p in service_ports.items()],
        },
    }
    return [account, deployment, service]


def _grpc_component(name: str, command: list[str], port: int, admin_port: int) -> list[Obj]:
    ports = {"grpc": port, "admin-http": admin_port}
    container = _container(name, command, ports, ("/ready", admin_port))
    return _component(name, [container], {"grpc": port})


def manifests(cfg: ClusterConfig) -> list[Obj]:
    """The control plane's objects (namespace ``weft``), as Kubernetes JSON."""
    platform = f"local:{cfg.api_socket}"
    common = ["--platform", platform, "--control-namespace", NAMESPACE]
    common += ["--trust-domain", TRUST_DOMAIN]
    anchors = str(trust.TrustFiles.in_dir(identity_dir(cfg)).anchors)
    own_identity = [
        "--trust-anchors-file", anchors,
        "--identity-addr", service_addr(cfg, "weft-identity", IDENTITY_PORT),
        "--token-file", f"{SERVICE_ACCOUNT_DIR}/token",
    ]  # fmt: skip
    identity = [
        "weft", "controller", "identity", *common,
        "--identity-dir", str(identity_dir(cfg)),
        "--issuance-lifetime", cfg.identity_issuance_lifetime,
        "--issuer-lifetime", cfg.identity_issuer_lifetime,
        "--addr", f"0.0.0.0:{IDENTITY_PORT}",
        "--admin-addr", f"0.0.0.0:{IDENTITY_ADMIN_PORT}",
    ]  # fmt: skip
    destination = [
        "weft", "controller", "destination", *common, *own_identity,
        "--cluster-domain", cfg.cluster_domain,
        "--addr", f"0.0.0.0:{DESTINATION_PORT}",
        "--admin-addr", f"0.0.0.0:{DESTINATION_ADMIN_PORT}",
    ]  # fmt: skip
    tap = [
        "weft", "controller", "tap", *common, *own_identity,
        "--cluster-domain", cfg.cluster_domain,
        "--addr", f"0.0.0.0:{TAP_PORT}",
        "--admin-addr", f"0.0.0.0:{TAP_ADMIN_PORT}",
    ]  # fmt: skip
    prometheus_url = "http://" + service_addr(cfg, "weft-prometheus", PROMETHEUS_PORT)
    metrics_api = [
        "weft", "controller", "metrics-api", *common,
        "--cluster-domain", cfg.cluster_domain,
        "--prometheus-url", prometheus_url,
        "--addr", f"0.0.0.0:{METRICS_API_PORT}",
        "--admin-addr", f"0.0.0.0:{METRICS_API_ADMIN_PORT}",
    ]  # fmt: skip
    targets = [
        "weft", "controller", "prometheus-targets", *common,
        "--addr", f"127.0.0.1:{PROMETHEUS_TARGETS_PORT}",
        "--admin-addr", f"0.0.0.0:{PROMETHEUS_TARGETS_ADMIN_PORT}",
    ]  # fmt: skip
    launch = prometheus_launch(cfg)
    prometheus = [
        _container(
            "prometheus",
            launch.command(),
            {"http": PROMETHEUS_PORT},
            ("/-/ready", PROMETHEUS_PORT),
            launch.env(),
        ),
        _container(
            "targets",
            targets,
            {"admin-http": PROMETHEUS_TARGETS_ADMIN_PORT},
            ("/ready", PROMETHEUS_TARGETS_ADMIN_PORT),
        ),
    ]
    http = {"http": METRICS_API_PORT, "admin-http": METRICS_API_ADMIN_PORT}
    tap_ports = {"http": TAP_PORT, "admin-http": TAP_ADMIN_PORT}
    objects: list[Obj] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    ]
    objects += _grpc_component("identity", identity, IDENTITY_PORT, IDENTITY_ADMIN_PORT)
    objects += _grpc_component("destination", destination, DESTINATION_PORT, DESTINATION_ADMIN_PORT)
    objects += _component(
        "tap",
        [_container("tap", tap, tap_ports, ("/ready", TAP_ADMIN_PORT))],
        {"http": TAP_PORT},
    )
    objects += _component("prometheus", prometheus, {"http": PROMETHEUS_PORT})
    objects += _component(
        "metrics-api",
        [_container("metrics-api", metrics_api, http, ("/ready", METRICS_API_ADMIN_PORT))],
        {"http": METRICS_API_PORT},
    )
    objects += web_manifest.manifests(NAMESPACE, cfg.cluster_domain)
    for obj in objects[1:]:
        obj["metadata"]["namespace"] = NAMESPACE
    return objects
