"""The pods Prometheus scrapes, as HTTP service-discovery target groups (pure).

``weft-proxy`` lists every running pod with a ``linkerd-proxy`` container at its proxy's admin
port; ``weft-controller`` lists the control plane's pods at each container port named
``admin-http``. Each group carries ``__meta_weft_*`` labels shaped like Kubernetes service
discovery's ``__meta_kubernetes_*``; prometheus.yml relabels them into Linkerd's labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from weft.controller.destination.addresses import (
    PROXY_CONTAINER,
    object_key,
    proxy_container,
    service_account,
)

Obj = dict[str, Any]
TargetGroup = dict[str, Any]

PROXY_JOB = "weft-proxy"
CONTROLLER_JOB = "weft-controller"
JOBS = (PROXY_JOB, CONTROLLER_JOB)

NAMESPACE_META = "__meta_weft_namespace"
POD_NAME_META = "__meta_weft_pod_name"
SERVICE_ACCOUNT_META = "__meta_weft_pod_service_account"
CONTAINER_NAME_META = "__meta_weft_pod_container_name"
PORT_NAME_META = "__meta_weft_pod_container_port_name"
POD_LABEL_META = "__meta_weft_pod_label_"

ADMIN_PORT_NAME = "admin-http"
PROXY_ADMIN_ENV = "LINKERD2_PROXY_ADMIN_LISTEN_ADDR"
DEFAULT_PROXY_ADMIN_PORT = 4191

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


class UnknownJob(ValueError):
    """A job the targets server does not list; ``str()`` is one line."""


def sanitize(name: str) -> str:
    """A Kubernetes label name as part of a Prometheus one: ``linkerd.io/x`` → ``linkerd_io_x``."""
    return _UNSAFE.sub("_", name)


def target_groups(job: str, pods: Iterable[Obj], control_namespace: str) -> list[TargetGroup]:
    """The target groups of ``job`` among ``pods``, in namespace and name order."""
    if job == PROXY_JOB:
        groups = (_proxy_group(pod) for pod in _running(pods))
    elif job == CONTROLLER_JOB:
        groups = (
            group
            for pod in _running(pods)
            if object_key(pod)[0] == control_namespace
            for group in _controller_groups(pod)
        )
    else:
        raise UnknownJob(f'unknown job "{job}": expected one of {", ".join(JOBS)}')
    return [group for group in groups if group is not None]


def proxy_admin_port(container: Obj) -> int:
    """The admin port in a proxy container's ``LINKERD2_PROXY_ADMIN_LISTEN_ADDR`` (else 4191)."""
    for entry in container.get("env") or []:
        if isinstance(entry, dict) and entry.get("name") == PROXY_ADMIN_ENV:
            _, _, port = str(entry.get("value") or "").rpartition(":")
            if port.isascii() and port.isdigit() and 0 < int(port) < 65536:
                return int(port)
    return DEFAULT_PROXY_ADMIN_PORT


def _running(pods: Iterable[Obj]) -> Iterator[Obj]:
    """Running pods with an IP, sorted by (namespace, name)."""
    live = [
        pod
        for pod in pods
        if (pod.get("status") or {}).get("phase") == "Running"
        and (pod.get("status") or {}).get("podIP")
    ]
    return iter(sorted(live, key=object_key))


def _address(pod: Obj, port: int) -> str:
    ip = str(pod["status"]["podIP"])
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _pod_meta(pod: Obj, container: str, port_name: str) -> dict[str, str]:
    namespace, name = object_key(pod)
    labels = {
        NAMESPACE_META: namespace,
        POD_NAME_META: name,
        SERVICE_ACCOUNT_META: service_account(pod),
        CONTAINER_NAME_META: container,
        PORT_NAME_META: port_name,
    }
    for key, value in sorted((pod["metadata"].get("labels") or {}).items()):
        labels[POD_LABEL_META + sanitize(str(key))] = str(value)
    return labels


def _port_name(container: Obj, port: int) -> str:
    for entry in container.get("ports") or []:
        if isinstance(entry, dict) and entry.get("containerPort") == port:
            return str(entry.get("name") or "")
    return ""


def _proxy_group(pod: Obj) -> TargetGroup | None:
    proxy = proxy_container(pod)
    if proxy is None:
        return None
    port = proxy_admin_port(proxy)
    return {
        "targets": [_address(pod, port)],
        "labels": _pod_meta(pod, PROXY_CONTAINER, _port_name(proxy, port)),
    }


def _controller_groups(pod: Obj) -> Iterator[TargetGroup]:
    spec = pod.get("spec") or {}
    for container in spec.get("containers") or []:
        for entry in container.get("ports") or []:
            if not isinstance(entry, dict) or entry.get("name") != ADMIN_PORT_NAME:
                continue
            port = entry.get("containerPort")
            if isinstance(port, int):
                yield {
                    "targets": [_address(pod, port)],
                    "labels": _pod_meta(pod, str(container.get("name", "")), ADMIN_PORT_NAME),
                }
