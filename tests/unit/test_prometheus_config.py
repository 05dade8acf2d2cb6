"""prometheus.yml, the Prometheus command line and the http_sd target groups (pure), checked
against the real promtool and prometheus binaries where they have an opinion."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from weft.controller.prometheus.config import (
    PrometheusSettings,
    SettingsError,
    prometheus_config,
    render_config,
)
from weft.controller.prometheus.launch import LaunchError, PrometheusLaunch
from weft.controller.prometheus.targets import (
    CONTROLLER_JOB,
    PROXY_JOB,
    UnknownJob,
    proxy_admin_port,
    sanitize,
    target_groups,
)

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")
needs_prometheus = pytest.mark.skipif(
    not Path("/usr/bin/prometheus").exists(), reason="no /usr/bin/prometheus"
)


def meshed_pod(
    name: str, ip: str, *, admin: str | None = "0.0.0.0:4191", **extra: Any
) -> dict[str, Any]:
    env = [] if admin is None else [{"name": "LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "value": admin}]
    pod: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "emojivoto",
            "labels": {
                "app": "web",
                "pod-template-hash": "abc",
                "linkerd.io/control-plane-ns": "weft",
                "linkerd.io/proxy-deployment": "web",
            },
        },
        "spec": {
            "serviceAccountName": "web",
            "initContainers": [
                {
                    "name": "linkerd-proxy",
                    "env": env,
                    "ports": [{"name": "linkerd-admin", "containerPort": 4191}],
                }
            ],
            "containers": [{"name": "web-svc"}],
        },
        "status": {"phase": "Running", "podIP": ip},
    }
    pod.update(extra)
    return pod


# -- prometheus.yml -----------------------------------------------------------------------


@needs_promtool
@pytest.mark.parametrize(
    "settings",
    [
        PrometheusSettings(),
        PrometheusSettings(scrape_interval="1s", evaluation_interval="1s", sample_limit=100),
        PrometheusSettings(control_namespace="other-ns", self_target="127.0.0.1:19090"),
        # No discovery="kubernetes": Debian's Prometheus is built without Kubernetes discovery
        # ("field kubernetes_sd_configs not found"), so its promtool cannot read that config.
    ],
)
def test_the_config_passes_promtool(settings: PrometheusSettings, tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(render_config(settings))
    done = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_config_has_the_three_jobs_discovered_from_the_targets_server() -> None:
    config = prometheus_config(PrometheusSettings(scrape_interval="1s"))
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "10s"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == ["prometheus", CONTROLLER_JOB, PROXY_JOB]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["localhost:9090"]}]
    for name in (CONTROLLER_JOB, PROXY_JOB):
        assert jobs[name]["http_sd_configs"] == [
            {"url": f"http://127.0.0.1:9088/targets?job={name}", "refresh_interval": "5s"}
        ]
        assert jobs[name]["sample_limit"] == 50_000
    keep = jobs[PROXY_JOB]["relabel_configs"][0]
    assert keep["action"] == "keep" and keep["regex"] == "linkerd-proxy;weft"


def test_on_kubernetes_pods_are_discovered_with_the_same_relabelling() -> None:
    config = prometheus_config(PrometheusSettings(discovery="kubernetes", control_namespace="mesh"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs[CONTROLLER_JOB]["kubernetes_sd_configs"] == [
        {"role": "pod", "namespaces": {"names": ["mesh"]}}
    ]
    assert jobs[PROXY_JOB]["kubernetes_sd_configs"] == [{"role": "pod"}]
    proxy = jobs[PROXY_JOB]["relabel_configs"]
    assert proxy[0]["source_labels"] == [
        "__meta_kubernetes_pod_container_name",
        "__meta_kubernetes_pod_label_linkerd_io_control_plane_ns",
    ]
    assert proxy[1] == {
        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
        "action": "keep",
        "regex": "linkerd-admin",
    }
    targets = {rule.get("target_label") for rule in proxy}
    assert {"namespace", "pod", "k8s_job"} <= targets
    assert "serviceaccount" not in targets  # Kubernetes discovery has no such meta label
    assert all("__meta_weft" not in json.dumps(rule) for rule in proxy)


def test_the_yaml_is_the_dict() -> None:
    settings = PrometheusSettings()
    assert yaml.safe_load(render_config(settings)) == prometheus_config(settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (PrometheusSettings(scrape_interval="1.5s"), "scrape interval"),
        (PrometheusSettings(refresh_interval="0s"), "refresh interval"),
        (PrometheusSettings(sample_limit=0), "sample limit"),
        (PrometheusSettings(targets_url="127.0.0.1:9088"), "targets URL"),
    ],
)
def test_settings_prometheus_would_refuse_are_refused(
    settings: PrometheusSettings, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        prometheus_config(settings)


# -- the command line ---------------------------------------------------------------------


def test_the_command_line_bounds_retention_and_query_size() -> None:
    launch = PrometheusLaunch(Path("/s/prometheus.yml"), Path("/s/data"))
    assert launch.command() == [
        "/usr/bin/prometheus",
        "--config.file=/s/prometheus.yml",
        "--storage.tsdb.path=/s/data",
        "--storage.tsdb.retention.time=6h",
        "--storage.tsdb.retention.size=512MB",
        "--web.listen-address=0.0.0.0:9090",
        "--query.max-samples=5000000",
    ]
    assert launch.env() == {"GOMEMLIMIT": "256MiB"}


@needs_prometheus
def test_every_flag_is_one_the_installed_prometheus_knows() -> None:
    done = subprocess.run(
        ["/usr/bin/prometheus", "--help"], capture_output=True, text=True, timeout=30
    )
    known = set(re.findall(r"--([a-z0-9.-]+)", done.stdout + done.stderr))
    command = PrometheusLaunch(Path("/p.yml"), Path("/d")).command()
    used = {arg[2:].split("=", 1)[0] for arg in command[1:]}
    assert used <= known, used - known


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retention_time": "6 hours"}, "retention time"),
        ({"retention_size": "512"}, "retention size"),
        ({"memory_limit": "256M"}, "memory limit"),
        ({"max_samples": 0}, "max samples"),
        ({"listen": "9090"}, "listen address"),
    ],
)
def test_values_prometheus_would_refuse_at_start_are_refused(
    changes: dict[str, Any], message: str
) -> None:
    launch = PrometheusLaunch(Path("/p.yml"), Path("/d"), **changes)
    with pytest.raises(LaunchError, match=message):
        launch.command()


# -- target groups ------------------------------------------------------------------------


def test_a_meshed_pod_is_a_proxy_target_with_its_meta_labels() -> None:
    groups = target_groups(PROXY_JOB, [meshed_pod("web-1", "10.244.0.5")], "weft")
    assert groups == [
        {
            "targets": ["10.244.0.5:4191"],
            "labels": {
                "__meta_weft_namespace": "emojivoto",
                "__meta_weft_pod_name": "web-1",
                "__meta_weft_pod_service_account": "web",
                "__meta_weft_pod_container_name": "linkerd-proxy",
                "__meta_weft_pod_container_port_name": "linkerd-admin",
                "__meta_weft_pod_label_app": "web",
                "__meta_weft_pod_label_linkerd_io_control_plane_ns": "weft",
                "__meta_weft_pod_label_linkerd_io_proxy_deployment": "web",
                "__meta_weft_pod_label_pod_template_hash": "abc",
            },
        }
    ]


def test_the_admin_port_comes_from_the_proxys_env() -> None:
    pod = meshed_pod("web-1", "127.0.0.1", admin="127.0.0.1:14191")
    assert target_groups(PROXY_JOB, [pod], "weft")[0]["targets"] == ["127.0.0.1:14191"]
    container = {"env": [{"name": "LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "value": "[::]:5191"}]}
    assert proxy_admin_port(container) == 5191
    assert proxy_admin_port({"env": []}) == 4191
    bad = {"env": [{"name": "LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "value": "nonsense"}]}
    assert proxy_admin_port(bad) == 4191


def test_pods_without_a_proxy_an_ip_or_not_running_are_not_proxy_targets() -> None:
    plain = meshed_pod("plain", "10.0.0.1")
    plain["spec"] = {"containers": [{"name": "app"}]}
    pending = meshed_pod("pending", "", status={"phase": "Pending"})
    finished = meshed_pod("done", "10.0.0.3", status={"phase": "Succeeded", "podIP": "10.0.0.3"})
    ipv6 = meshed_pod("v6", "fd00::5")
    groups = target_groups(PROXY_JOB, [plain, pending, finished, ipv6], "weft")
    assert [g["targets"] for g in groups] == [["[fd00::5]:4191"]]


def test_control_plane_pods_are_scraped_at_each_admin_http_port() -> None:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "weft-metrics-api-1",
            "namespace": "weft",
            "labels": {"weft.io/control-plane-component": "metrics-api"},
        },
        "spec": {
            "serviceAccountName": "weft-metrics-api",
            "containers": [
                {
                    "name": "metrics-api",
                    "ports": [
                        {"name": "http", "containerPort": 8085},
                        {"name": "admin-http", "containerPort": 9995},
                    ],
                }
            ],
        },
        "status": {"phase": "Running", "podIP": "10.244.0.9"},
    }
    elsewhere = {**pod, "metadata": {**pod["metadata"], "namespace": "emojivoto"}}
    groups = target_groups(CONTROLLER_JOB, [pod, elsewhere], "weft")
    assert [g["targets"] for g in groups] == [["10.244.0.9:9995"]]
    labels = groups[0]["labels"]
    assert labels["__meta_weft_pod_container_name"] == "metrics-api"
    assert labels["__meta_weft_pod_container_port_name"] == "admin-http"
    assert labels["__meta_weft_pod_label_weft_io_control_plane_component"] == "metrics-api"


def test_an_unknown_job_is_named() -> None:
    with pytest.raises(UnknownJob, match='unknown job "nope": expected one of weft-proxy'):
        target_groups("nope", [], "weft")


def test_label_names_are_sanitized_as_kubernetes_sd_does() -> None:
    assert sanitize("linkerd.io/proxy-deployment") == "linkerd_io_proxy_deployment"
    assert sanitize("app.kubernetes.io/name") == "app_kubernetes_io_name"
