"""prometheus.yml for the mesh (pure): scrape settings, the jobs, and the relabelling that turns
the targets server's ``__meta_weft_*`` labels into Linkerd's series labels.

Every proxy series gets ``namespace``, ``pod`` and ``serviceaccount``; the pod label
``linkerd.io/proxy-job`` becomes ``k8s_job`` (Prometheus keeps ``job`` for itself),
``linkerd.io/proxy-<kind>`` becomes ``<kind>`` (``deployment``), any other ``linkerd.io/<x>``
becomes ``<x>`` (``control_plane_ns``, ``workload_ns``) and the remaining pod labels are copied
(``app``, ``pod_template_hash``). Controller series get ``namespace``, ``pod`` and ``component``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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

_LINKERD = POD_LABEL_META + sanitize("linkerd.io/")
_PROXY_OWNER = POD_LABEL_META + sanitize("linkerd.io/proxy-")


class SettingsError(ValueError):
    """A setting Prometheus would refuse; ``str()`` is one line."""


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
    return {
        "job_name": job,
        "sample_limit": settings.sample_limit,
        "http_sd_configs": [
            {
                "url": f"{settings.targets_url}?job={job}",
                "refresh_interval": settings.refresh_interval,
            }
        ],
        "relabel_configs": relabel,
    }


def _copy(source: str, target: str) -> dict[str, Any]:
    return {"source_labels": [source], "action": "replace", "target_label": target}


def _keep(sources: list[str], values: list[str]) -> dict[str, Any]:
    return {
        "source_labels": sources,
        "action": "keep",
        "regex": ";".join(quote_meta(value) for value in values),
    }


def _controller_relabelling(settings: PrometheusSettings) -> list[dict[str, Any]]:
    return [
        _keep([NAMESPACE_META, PORT_NAME_META], [settings.control_namespace, ADMIN_PORT_NAME]),
        _copy(NAMESPACE_META, "namespace"),
        _copy(POD_NAME_META, "pod"),
        _copy(POD_LABEL_META + sanitize(COMPONENT_LABEL), "component"),
    ]


def _proxy_relabelling(settings: PrometheusSettings) -> list[dict[str, Any]]:
    job_label = _PROXY_OWNER + "job"
    return [
        _keep(
            [CONTAINER_NAME_META, POD_LABEL_META + sanitize(CONTROL_PLANE_NS_LABEL)],
            [PROXY_CONTAINER, settings.control_namespace],
        ),
        # Plain pod labels first (names that cannot be Prometheus labels, and job and
        # instance, are left alone), so the mesh's own labels below win over them.
        {
            "action": "labelmap",
            "regex": POD_LABEL_META + "([a-zA-Z][a-zA-Z0-9_]*)",
            "replacement": "__tmp_pod_label_$1",
        },
        {"action": "labeldrop", "regex": "__tmp_pod_label_(job|instance|linkerd_io_.*)"},
        {"action": "labelmap", "regex": "__tmp_pod_label_(.+)"},
        # linkerd.io/proxy-job → k8s_job, linkerd.io/proxy-<kind> → <kind>, linkerd.io/<x> → <x>.
        _copy(job_label, "k8s_job"),
        {"action": "labeldrop", "regex": job_label},
        {"action": "labelmap", "regex": _PROXY_OWNER + "(.+)"},
        {"action": "labeldrop", "regex": _PROXY_OWNER + ".+"},
        {"action": "labelmap", "regex": _LINKERD + "(.+)"},
        _copy(NAMESPACE_META, "namespace"),
        _copy(POD_NAME_META, "pod"),
        _copy(SERVICE_ACCOUNT_META, "serviceaccount"),
    ]
