"""prometheus.yml for the mesh (pure): scrape settings, the jobs, and the relabelling that turns
the targets server's ``__meta_weft_*`` labels into Linkerd's series labels.

Targets come from the targets server (``http_sd_configs``, the local runtime) or from Kubernetes
service discovery (``kubernetes_sd_configs``, role ``pod``); the relabelling is the same over
either's meta labels. Every proxy series gets ``namespace``, ``pod`` and (with the targets
server, whose meta labels carry it) ``serviceaccount``; the pod label
``linkerd.io/proxy-job`` becomes ``k8s_job`` (Prometheus keeps ``job`` for itself),
``linkerd.io/proxy-<kind>`` becomes ``<kind>`` (``deployment``), any other ``linkerd.io/<x>``
becomes ``<x>`` (``control_plane_ns``, ``workload_ns``) and the remaining pod labels are copied
(``app``, ``pod_template_hash``). Controller series get ``namespace``, ``pod`` and ``component``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml

from weft.controller.destination.addresses import PROXY_CONTAINER
from weft.controller.prometheus.targets import (
    ADMIN_PORT_NAME,
    CONTAINER_NAME_META,
    CONTROLLER_JOB,
    NAMESPACE_META,
    POD_LABEL_META,
    POD_NAME_META,
    PORT_NAME_META,
    PROXY_JOB,
    SERVICE_ACCOUNT_META,
    sanitize,
)
from weft.viz.durations import parse_duration
from weft.viz.promql import quote_meta

PROMETHEUS_JOB = "prometheus"
COMPONENT_LABEL = "weft.io/control-plane-component"
CONTROL_PLANE_NS_LABEL = "linkerd.io/control-plane-ns"


PROXY_ADMIN_PORT_NAME = "linkerd-admin"


class SettingsError(ValueError):
    """A setting Prometheus would refuse; ``str()`` is one line."""


@dataclass(frozen=True)
class MetaLabels:
    """The meta label names of a service discovery (``__meta_weft_*`` or
    ``__meta_kubernetes_*``); ``service_account`` is None where the discovery has none."""

    namespace: str
    pod_name: str
    container_name: str
    port_name: str
    pod_label: str
    service_account: str | None


HTTP_SD = MetaLabels(
    NAMESPACE_META,
    POD_NAME_META,
    CONTAINER_NAME_META,
    PORT_NAME_META,
    POD_LABEL_META,
    SERVICE_ACCOUNT_META,
)
KUBERNETES_SD = MetaLabels(
    "__meta_kubernetes_namespace",
    "__meta_kubernetes_pod_name",
    "__meta_kubernetes_pod_container_name",
    "__meta_kubernetes_pod_container_port_name",
    "__meta_kubernetes_pod_label_",
    None,
)


@dataclass(frozen=True)
class PrometheusSettings:
    """What prometheus.yml is made from."""

    scrape_interval: str = "10s"
    evaluation_interval: str = "10s"
    # The targets server's /targets endpoint; each job adds ?job=<job>.
    targets_url: str = "http://127.0.0.1:9088/targets"
    refresh_interval: str = "5s"
    control_namespace: str = "weft"
    # Where Prometheus scrapes itself.
    self_target: str = "localhost:9090"
    # Samples per scrape beyond which the scrape fails (bounds a target's cardinality).
    sample_limit: int = 50_000
    # "http": the targets server (local runtime); "kubernetes": Kubernetes pod discovery.
    discovery: Literal["http", "kubernetes"] = "http"

    @property
    def meta(self) -> MetaLabels:
        """The meta labels of the discovery in use."""
        return KUBERNETES_SD if self.discovery == "kubernetes" else HTTP_SD

    def check(self) -> None:
        """Raise :class:`SettingsError` for a value Prometheus would refuse."""
        for what, value in (
            ("scrape interval", self.scrape_interval),
            ("evaluation interval", self.evaluation_interval),
            ("refresh interval", self.refresh_interval),
        ):
            try:
                parse_duration(value, what)
            except ValueError as exc:
                raise SettingsError(str(exc)) from None
        if self.sample_limit <= 0:
            raise SettingsError(f"sample limit must be positive, got {self.sample_limit}")
        if self.discovery not in ("http", "kubernetes"):
            raise SettingsError(f"discovery {self.discovery!r}: expected http or kubernetes")
        if not self.targets_url.startswith(("http://", "https://")) or "?" in self.targets_url:
            raise SettingsError(f"targets URL {self.targets_url!r}: expected http://host:port/path")


def prometheus_config(settings: PrometheusSettings) -> dict[str, Any]:
    """prometheus.yml as a dict."""
    settings.check()
    return {
        "global": {
            "scrape_interval": settings.scrape_interval,
            "evaluation_interval": settings.evaluation_interval,
        },
        "scrape_configs": [
            {
                "job_name": PROMETHEUS_JOB,
                "static_configs": [{"targets": [settings.self_target]}],
            },
            _discovered(settings, CONTROLLER_JOB, _controller_relabelling(settings)),
            _discovered(settings, PROXY_JOB, _proxy_relabelling(settings)),
        ],
    }


def render_config(settings: PrometheusSettings) -> str:
    """prometheus.yml as YAML text."""
    return yaml.dump(
        prometheus_config(settings), Dumper=yaml.CSafeDumper, sort_keys=False, width=100
    )


def _discovered(
    settings: PrometheusSettings, job: str, relabel: list[dict[str, Any]]
) -> dict[str, Any]:
    config: dict[str, Any] = {"job_name": job, "sample_limit": settings.sample_limit}
    if settings.discovery == "kubernetes":
        pods: dict[str, Any] = {"role": "pod"}
        if job == CONTROLLER_JOB:
            pods["namespaces"] = {"names": [settings.control_namespace]}
        config["kubernetes_sd_configs"] = [pods]
    else:
        config["http_sd_configs"] = [
            {
                "url": f"{settings.targets_url}?job={job}",
                "refresh_interval": settings.refresh_interval,
            }
        ]
    config["relabel_configs"] = relabel
    return config


def _copy(source: str, target: str) -> dict[str, Any]:
    return {"source_labels": [source], "action": "replace", "target_label": target}


def _keep(sources: list[str], values: list[str]) -> dict[str, Any]:
    return {
        "source_labels": sources,
        "action": "keep",
        "regex": ";".join(quote_meta(value) for value in values),
    }


def _controller_relabelling(settings: PrometheusSettings) -> list[dict[str, Any]]:
    meta = settings.meta
    return [
        _keep([meta.namespace, meta.port_name], [settings.control_namespace, ADMIN_PORT_NAME]),
        _copy(meta.namespace, "namespace"),
        _copy(meta.pod_name, "pod"),
        _copy(meta.pod_label + sanitize(COMPONENT_LABEL), "component"),
    ]


def _proxy_relabelling(settings: PrometheusSettings) -> list[dict[str, Any]]:
    meta = settings.meta
    linkerd = meta.pod_label + sanitize("linkerd.io/")
    owner = meta.pod_label + sanitize("linkerd.io/proxy-")
    job_label = owner + "job"
    keep = [
        _keep(
            [meta.container_name, meta.pod_label + sanitize(CONTROL_PLANE_NS_LABEL)],
            [PROXY_CONTAINER, settings.control_namespace],
        )
    ]
    if settings.discovery == "kubernetes":
        # Kubernetes discovery makes a target of every port the proxy declares: keep its admin.
        keep.append(_keep([meta.port_name], [PROXY_ADMIN_PORT_NAME]))
    rules = [
        *keep,
        # Plain pod labels first (names that cannot be Prometheus labels, and job and
        # instance, are left alone), so the mesh's own labels below win over them.
        {
            "action": "labelmap",
            "regex": meta.pod_label + "([a-zA-Z][a-zA-Z0-9_]*)",
            "replacement": "__tmp_pod_label_$1",
        },
        {"action": "labeldrop", "regex": "__tmp_pod_label_(job|instance|linkerd_io_.*)"},
        {"action": "labelmap", "regex": "__tmp_pod_label_(.+)"},
        # linkerd.io/proxy-job → k8s_job, linkerd.io/proxy-<kind> → <kind>, linkerd.io/<x> → <x>.
        _copy(job_label, "k8s_job"),
        {"action": "labeldrop", "regex": job_label},
        {"action": "labelmap", "regex": owner + "(.+)"},
        {"action": "labeldrop", "regex": owner + ".+"},
        {"action": "labelmap", "regex": linkerd + "(.+)"},
        _copy(meta.namespace, "namespace"),
        _copy(meta.pod_name, "pod"),
    ]
    if meta.service_account is not None:
        rules.append(_copy(meta.service_account, "serviceaccount"))
    return rules
