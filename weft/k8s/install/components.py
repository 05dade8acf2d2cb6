"""The control-plane components ``weft install`` deploys: one :class:`Component` each, in one
list (pure). Every weft component runs from the one weft image as ``weft controller <name>``;
Prometheus runs from its own image, with the configuration
:mod:`weft.controller.prometheus.config` writes for Kubernetes discovery.

A component says what it serves (its port, admin port and Service port), what it may do in the
Kubernetes API (its ClusterRole rules: least privilege, nothing when it needs nothing), and which
of the shared mounts it reads (trust roots, issuer, a projected identity token, its webhook
certificate, the install config).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from weft.controller.prometheus.config import PrometheusSettings
from weft.controller.prometheus.launch import PrometheusLaunch
from weft.k8s.install.values import InstallValues
from weft.web import manifest as web_manifest

Obj = dict[str, Any]
Mount = Literal[
    "trust-roots",
    "issuer",
    "identity-token",
    "webhook-tls",
    "config",
    "prometheus-config",
    "prometheus-data",
]

# Where the mounts land in a component's container.
TRUST_ROOTS_DIR = "/var/run/weft/identity/trust-roots"
TRUST_ROOTS_KEY = "ca-bundle.crt"
ISSUER_DIR = "/var/run/weft/identity/issuer"
ISSUER_CERT_KEY = "crt.pem"
ISSUER_KEY_KEY = "key.pem"
TOKEN_DIR = "/var/run/secrets/tokens"
TOKEN_FILE = "weft-identity-token"
IDENTITY_AUDIENCE = "identity.l5d.io"
TLS_DIR = "/var/run/weft/tls"
CONFIG_DIR = "/var/run/weft/config"
CONFIG_KEY = "values"
PROMETHEUS_CONFIG_DIR = "/etc/prometheus"
PROMETHEUS_CONFIG_KEY = "prometheus.yml"
PROMETHEUS_DATA_DIR = "/prometheus"
PROMETHEUS_BINARY = "/bin/prometheus"  # in the prom/prometheus image
PROMETHEUS_UID = 65534  # nobody, as the prom/prometheus image runs
CONTROLLER_UID = 2103

IDENTITY_PORT = 8080
DESTINATION_PORT = 8086
WEBHOOK_PORT = 8443
WEBHOOK_SERVICE_PORT = 443
TAP_PORT = 8088
METRICS_API_PORT = 8085
PROMETHEUS_PORT = 9090


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


READ = ["get", "list", "watch"]


@dataclass(frozen=True)
class Component:
    """One control-plane Deployment, its Service, ServiceAccount and RBAC."""

    name: str
    port: int
    port_name: str
    admin_port: int | None  # None: no admin server (``admin-http``, scraped as a controller)
    args: Callable[[InstallValues], list[str]]
    service_port: int = 0  # 0: the same as ``port``
    rules: tuple[Obj, ...] = ()
    mounts: tuple[Mount, ...] = ()
    webhook: Literal["mutating", "validating", None] = None
    image: Callable[[InstallValues], str] | None = None  # None: the weft image
    user: int = CONTROLLER_UID
    env: Callable[[InstallValues], dict[str, str]] | None = None
    # (readiness path, liveness path, port); None: /ready and /live on the admin port.
    probes: tuple[str, str, int] | None = None
    # False: one replica even with --ha (replicas of Prometheus would disagree).
    scalable: bool = True

    @property
    def probe_paths(self) -> tuple[str, str, int]:
        """Where the kubelet checks readiness and liveness."""
        if self.probes is not None:
            return self.probes
        assert self.admin_port is not None, f"{self.name} has neither probes nor an admin port"
        return "/ready", "/live", self.admin_port

    @property
    def resource_name(self) -> str:
        """``weft-<name>``: the Deployment, Service and ServiceAccount."""
        return f"weft-{self.name}"

    @property
    def exposed_port(self) -> int:
        """The Service's port."""
        return self.service_port or self.port


def service_host(values: InstallValues, component: str, port: int) -> str:
    """``weft-<component>.<ns>.svc.<cluster domain>:<port>``."""
    return f"weft-{component}.{values.namespace}.svc.{values.cluster_domain}:{port}"


def _common(values: InstallValues, name: str, port: int, admin_port: int) -> list[str]:
    return [
        "weft", "controller", name,
        "--platform", "kubernetes",
        "--control-namespace", values.namespace,
        "--trust-domain", values.trust_domain,
        "--addr", f"0.0.0.0:{port}",
        "--admin-addr", f"0.0.0.0:{admin_port}",
        "--log-level", values.controller_log_level,
    ]  # fmt: skip


def _identity(values: InstallValues) -> list[str]:
    return [
        *_common(values, "identity", IDENTITY_PORT, 9990),
        "--identity-trust-anchors-file", f"{TRUST_ROOTS_DIR}/{TRUST_ROOTS_KEY}",
        "--identity-issuer-certificate-file", f"{ISSUER_DIR}/{ISSUER_CERT_KEY}",
        "--identity-issuer-key-file", f"{ISSUER_DIR}/{ISSUER_KEY_KEY}",
        "--issuance-lifetime", values.identity_issuance_lifetime,
        "--clock-skew-allowance", values.identity_clock_skew_allowance,
    ]  # fmt: skip


def _destination(values: InstallValues) -> list[str]:
    return [
        *_common(values, "destination", DESTINATION_PORT, 9996),
        "--cluster-domain", values.cluster_domain,
        *_own_identity(values),
    ]  # fmt: skip


def _webhook_args(name: str, admin_port: int) -> Callable[[InstallValues], list[str]]:
    def args(values: InstallValues) -> list[str]:
        out = [
            *_common(values, name, WEBHOOK_PORT, admin_port),
            "--tls-cert-file", f"{TLS_DIR}/tls.crt",
            "--tls-key-file", f"{TLS_DIR}/tls.key",
        ]  # fmt: skip
        if name == "proxy-injector":
            out += ["--config-file", f"{CONFIG_DIR}/{CONFIG_KEY}"]
            out += ["--trust-anchors-file", f"{TRUST_ROOTS_DIR}/{TRUST_ROOTS_KEY}"]
        return out

    return args


def _own_identity(values: InstallValues) -> list[str]:
    """Options of a component that gets its own certificate from the identity service."""
    return [
        "--trust-anchors-file", f"{TRUST_ROOTS_DIR}/{TRUST_ROOTS_KEY}",
        "--identity-addr", service_host(values, "identity", IDENTITY_PORT),
        "--token-file", f"{TOKEN_DIR}/{TOKEN_FILE}",
    ]  # fmt: skip


def _tap(values: InstallValues) -> list[str]:
    users = f"system:serviceaccount:{values.namespace}:weft-web"
    return [
        *_common(values, "tap", TAP_PORT, 9998),
        "--cluster-domain", values.cluster_domain,
        *_own_identity(values),
        "--authorized-users", values.tap_authorized_users or users,
    ]  # fmt: skip


def _metrics_api(values: InstallValues) -> list[str]:
    return [
        *_common(values, "metrics-api", METRICS_API_PORT, 9995),
        "--cluster-domain", values.cluster_domain,
        "--prometheus-url", "http://" + service_host(values, "prometheus", PROMETHEUS_PORT),
    ]  # fmt: skip


def _web(values: InstallValues) -> list[str]:
    """The dashboard, authenticating to the tap controller with its projected token."""
    command = web_manifest.command(values.namespace, values.cluster_domain)
    at = command.index("--token-file")
    command[at + 1] = f"{TOKEN_DIR}/{TOKEN_FILE}"
    return [*command, "--log-level", values.controller_log_level]


def prometheus_launch(values: InstallValues) -> PrometheusLaunch:
    """The Prometheus server's command line in its pod."""
    return PrometheusLaunch(
        config_file=Path(PROMETHEUS_CONFIG_DIR) / PROMETHEUS_CONFIG_KEY,
        data_dir=Path(PROMETHEUS_DATA_DIR),
        listen=f"0.0.0.0:{PROMETHEUS_PORT}",
        retention_time=values.prometheus_retention,
        binary=PROMETHEUS_BINARY,
    )


def prometheus_settings(values: InstallValues) -> PrometheusSettings:
    """prometheus.yml's settings: Kubernetes pod discovery and Linkerd's relabelling."""
    return PrometheusSettings(
        scrape_interval=values.prometheus_scrape_interval,
        evaluation_interval=values.prometheus_scrape_interval,
        control_namespace=values.namespace,
        self_target=f"localhost:{PROMETHEUS_PORT}",
        discovery="kubernetes",
    )


WORKLOAD_READ = (
    _rule([""], ["pods", "services"], READ),
    _rule(["discovery.k8s.io"], ["endpointslices"], READ),
    _rule(["linkerd.io"], ["serviceprofiles"], READ),
    _rule(["split.smi-spec.io"], ["trafficsplits"], READ),
)
TOKEN_REVIEW = _rule(["authentication.k8s.io"], ["tokenreviews"], ["create"])
INVENTORY_READ = (
    _rule([""], ["namespaces", "pods", "services"], READ),
    _rule(["apps"], ["deployments"], READ),
    _rule(["batch"], ["jobs"], READ),
    _rule(["linkerd.io"], ["serviceprofiles"], READ),
    _rule(["split.smi-spec.io"], ["trafficsplits"], READ),
)

COMPONENTS: tuple[Component, ...] = (
    Component(
        "identity",
        IDENTITY_PORT,
        "grpc",
        9990,
        _identity,
        rules=(TOKEN_REVIEW,),
        mounts=("trust-roots", "issuer"),
    ),
    Component(
        "destination",
        DESTINATION_PORT,
        "grpc",
        9996,
        _destination,
        rules=WORKLOAD_READ,
        mounts=("trust-roots", "identity-token"),
    ),
    Component(
        "proxy-injector",
        WEBHOOK_PORT,
        "webhook",
        9995,
        _webhook_args("proxy-injector", 9995),
        service_port=WEBHOOK_SERVICE_PORT,
        rules=(_rule([""], ["namespaces"], ["get"]),),
        mounts=("webhook-tls", "config", "trust-roots"),
        webhook="mutating",
    ),
    Component(
        "sp-validator",
        WEBHOOK_PORT,
        "webhook",
        9997,
        _webhook_args("sp-validator", 9997),
        service_port=WEBHOOK_SERVICE_PORT,
        mounts=("webhook-tls",),
        webhook="validating",
    ),
    Component(
        "tap",
        TAP_PORT,
        "http",
        9998,
        _tap,
        rules=(_rule([""], ["pods", "services"], READ), TOKEN_REVIEW),
        mounts=("trust-roots", "identity-token"),
    ),
    Component(
        "metrics-api",
        METRICS_API_PORT,
        "http",
        9995,
        _metrics_api,
        rules=INVENTORY_READ,
    ),
    Component(
        "web",
        web_manifest.PORT,
        "http",
        web_manifest.ADMIN_PORT,
        _web,
        mounts=("identity-token",),
    ),
    Component(
        "prometheus",
        PROMETHEUS_PORT,
        "http",
        None,
        lambda values: prometheus_launch(values).command(),
        rules=(_rule([""], ["pods"], READ),),
        mounts=("prometheus-config", "prometheus-data"),
        image=lambda values: values.prometheus_image,
        user=PROMETHEUS_UID,
        env=lambda values: prometheus_launch(values).env(),
        probes=("/-/ready", "/-/healthy", PROMETHEUS_PORT),
        scalable=False,
    ),
)


def component(name: str) -> Component:
    """The component called ``name``."""
    return next(c for c in COMPONENTS if c.name == name)
