"""The ``linkerd.io/inject`` and ``config.linkerd.io/*`` annotations the injector honours.

Each is read from the pod template, falling back to its namespace, and validated; a bad value is
an :class:`InjectError` naming the annotation. ``config.linkerd.io/*`` annotations that do not
map onto weft's proxy or proxy-init (resources, image pull policy, ...) are ignored.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from weft.inject.config import InjectConfig
from weft.ports import normalise_ports
from weft.proxy.config import ConfigError, parse_duration
from weft.proxy.log import LogFilterError, parse_filter
from weft.resources.profiles import parse_quantity

INJECT_ANNOTATION = "linkerd.io/inject"
CONFIG_PREFIX = "config.linkerd.io/"
INJECT_MODES = ("enabled", "disabled", "ingress")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# A namespace label (not a proxy setting) that exempts the namespace from the webhooks.
ADMISSION_WEBHOOKS = "config.linkerd.io/admission-webhooks"


class InjectError(ValueError):
    """A pod template or annotation the injector cannot use."""


@dataclass(frozen=True)
class ProxySettings:
    """One pod's proxy settings: the :class:`InjectConfig` defaults with its annotations applied.

    Port lists are in ``lo-hi`` form; ``None`` means "not annotated" (the proxy's default).
    """

    inbound_port: int
    outbound_port: int
    admin_port: int
    control_port: int
    proxy_uid: int
    proxy_gid: int
    proxy_image: str
    proxy_version: str
    log_level: str
    log_format: str
    identity_disabled: bool
    tap_disabled: bool = False
    ingress: bool = False
    await_proxy: bool = True
    admin_shutdown: bool = False
    skip_inbound_ports: tuple[str, ...] = ()
    skip_outbound_ports: tuple[str, ...] = ()
    opaque_ports: tuple[str, ...] | None = None
    inbound_connect_timeout: str | None = None
    outbound_connect_timeout: str | None = None
    shutdown_grace_period: str | None = None
    image_pull_policy: str | None = None
    init_image: str | None = None
    init_image_version: str | None = None
    external_profiles: bool = False
    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    ephemeral_storage_request: str | None = None
    ephemeral_storage_limit: str | None = None

    def resources(self) -> dict[str, dict[str, str]]:
        """The proxy container's ``resources`` (empty when nothing was set)."""
        out: dict[str, dict[str, str]] = {}
        for bound in ("request", "limit"):
            section = {
                name.replace("_", "-"): value
                for name in ("cpu", "memory", "ephemeral_storage")
                if (value := getattr(self, f"{name}_{bound}"))
            }
            if section:
                out[f"{bound}s"] = section
        return out


def _port(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"invalid value {text!r} (expected a port number 1-65535)")
    return int(value)


def _ident(text: str) -> int:
    value = text.strip()
    if not value.isdigit() or not 1 <= int(value) < 2**31:
        raise ValueError(f"invalid value {text!r} (expected a whole number >= 1)")
    return int(value)


def _ports(text: str) -> tuple[str, ...]:
    return tuple(port.replace(":", "-") for port in normalise_ports([text]))


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("empty value")
    return text.strip()


def _log_level(text: str) -> str:
    try:
        parse_filter(_text(text))
    except LogFilterError as exc:
        raise ValueError(f"{exc} (expected e.g. warn,weft=debug)") from None
    return text.strip()


def _log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in ("plain", "json"):
        raise ValueError(f"invalid value {text!r} (expected plain or json)")
    return value


def _duration(text: str) -> str:
    try:
        parse_duration("", text)
    except ConfigError:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 100ms, 10s, 2m)") from None
    return text.strip()


def _quantity(text: str) -> str:
    try:
        parse_quantity(text.strip())
    except ValueError:
        raise ValueError(f"invalid quantity {text!r} (expected e.g. 100m, 64Mi)") from None
    return text.strip()


def _pull_policy(text: str) -> str:
    value = text.strip()
    if value not in PULL_POLICIES:
        raise ValueError(f"invalid value {text!r} (expected {', '.join(PULL_POLICIES)})")
    return value


def _choice(true: str, false: str) -> Callable[[str], bool]:
    def parse(text: str) -> bool:
        value = text.strip().lower()
        if value not in (true, false):
            raise ValueError(f"invalid value {text!r} (expected {true} or {false})")
        return value == true

    return parse


# Annotation name (after ``config.linkerd.io/``) -> (ProxySettings field, parser).
_CONFIG: dict[str, tuple[str, Callable[[str], Any]]] = {
    "inbound-port": ("inbound_port", _port),
    "outbound-port": ("outbound_port", _port),
    "admin-port": ("admin_port", _port),
    "control-port": ("control_port", _port),
    "proxy-uid": ("proxy_uid", _ident),
    "proxy-gid": ("proxy_gid", _ident),
    "proxy-image": ("proxy_image", _text),
    "proxy-version": ("proxy_version", _text),
    "proxy-log-level": ("log_level", _log_level),
    "proxy-log-format": ("log_format", _log_format),
    "disable-identity": ("identity_disabled", _choice("true", "false")),
    "disable-tap": ("tap_disabled", _choice("true", "false")),
    "proxy-await": ("await_proxy", _choice("enabled", "disabled")),
    "proxy-admin-shutdown": ("admin_shutdown", _choice("enabled", "disabled")),
    "skip-inbound-ports": ("skip_inbound_ports", _ports),
    "skip-outbound-ports": ("skip_outbound_ports", _ports),
    "opaque-ports": ("opaque_ports", _ports),
    "proxy-inbound-connect-timeout": ("inbound_connect_timeout", _duration),
    "proxy-outbound-connect-timeout": ("outbound_connect_timeout", _duration),
    "shutdown-grace-period": ("shutdown_grace_period", _duration),
    "image-pull-policy": ("image_pull_policy", _pull_policy),
    "init-image": ("init_image", _text),
    "init-image-version": ("init_image_version", _text),
    "enable-external-profiles": ("external_profiles", _choice("true", "false")),
    "proxy-cpu-request": ("cpu_request", _quantity),
    "proxy-cpu-limit": ("cpu_limit", _quantity),
    "proxy-memory-request": ("memory_request", _quantity),
    "proxy-memory-limit": ("memory_limit", _quantity),
    "proxy-ephemeral-storage-request": ("ephemeral_storage_request", _quantity),
    "proxy-ephemeral-storage-limit": ("ephemeral_storage_limit", _quantity),
}

SUPPORTED_CONFIG_ANNOTATIONS = tuple(CONFIG_PREFIX + name for name in _CONFIG)


def unsupported_annotations(*annotation_sets: Mapping[str, Any]) -> list[str]:
    """The ``config.linkerd.io/*`` annotations weft does not act on (reported, then ignored)."""
    found = {
        key
        for annotations in annotation_sets
        for key in annotations
        if key.startswith(CONFIG_PREFIX)
        and key.removeprefix(CONFIG_PREFIX) not in _CONFIG
        and key != ADMISSION_WEBHOOKS
    }
    return sorted(found)


def _check_resources(settings: ProxySettings) -> None:
    for name in ("cpu", "memory", "ephemeral_storage"):
        request = getattr(settings, f"{name}_request")
        limit = getattr(settings, f"{name}_limit")
        if request and limit and parse_quantity(limit) < parse_quantity(request):
            kind = name.replace("_", "-")
            raise InjectError(
                f"proxy {kind} limit {limit} must not be less than its request {request}"
            )


def _string(where: str, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InjectError(f"{where} annotation {key}: value {value!r} is not a string (quote it)")
    return value


def inject_mode(
    pod_annotations: Mapping[str, str], namespace_annotations: Mapping[str, str]
) -> tuple[str, str] | None:
    """``(mode, "pod"|"namespace")`` from ``linkerd.io/inject`` (pod first), or ``None``."""
    for where, found in (("pod", pod_annotations), ("namespace", namespace_annotations)):
        if INJECT_ANNOTATION in found:
            value = _string(where, INJECT_ANNOTATION, found[INJECT_ANNOTATION])
            mode = value.strip().lower()
            if mode not in INJECT_MODES:
                raise InjectError(
                    f"{where} annotation {INJECT_ANNOTATION}: invalid value {value!r}"
                    f" (expected {', '.join(INJECT_MODES)})"
                )
            return mode, where
    return None


def resolve_settings(
    config: InjectConfig,
    pod_annotations: Mapping[str, str],
    namespace_annotations: Mapping[str, str],
) -> ProxySettings:
    """Apply the namespace's, then the pod's ``config.linkerd.io/*`` annotations to ``config``."""
    overrides: dict[str, Any] = {}
    for where, found in (("namespace", namespace_annotations), ("pod", pod_annotations)):
        for key, value in found.items():
            name = key.removeprefix(CONFIG_PREFIX)
            if not key.startswith(CONFIG_PREFIX) or name not in _CONFIG:
                continue
            field, parse = _CONFIG[name]
            text = _string(where, key, value)
            try:
                overrides[field] = parse(text)
            except ValueError as exc:
                raise InjectError(f"{where} annotation {key}: {exc}") from None
    mode = inject_mode(pod_annotations, namespace_annotations)
    settings = ProxySettings(
        inbound_port=config.inbound_port,
        outbound_port=config.outbound_port,
        admin_port=config.admin_port,
        control_port=config.control_port,
        proxy_uid=config.proxy_uid,
        proxy_gid=config.proxy_gid,
        proxy_image=config.proxy_image,
        proxy_version=config.proxy_version,
        log_level=config.log_level,
        log_format=config.log_format,
        identity_disabled=config.identity_disabled,
        ingress=mode is not None and mode[0] == "ingress",
        image_pull_policy=config.image_pull_policy or None,
        cpu_request=config.cpu_request or None,
        cpu_limit=config.cpu_limit or None,
        memory_request=config.memory_request or None,
        memory_limit=config.memory_limit or None,
    )
    settings = dataclasses.replace(settings, **overrides)
    _check_resources(settings)
    ports = (settings.inbound_port, settings.outbound_port, settings.admin_port)
    if len({*ports, settings.control_port}) < 4:
        raise InjectError(
            "inbound, outbound, admin and control ports must differ, got "
            f"{settings.inbound_port}, {settings.outbound_port}, {settings.admin_port}, "
            f"{settings.control_port}"
        )
    return settings


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


def annotate_inject(obj: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """A copy of a workload (or Pod) whose pod template says ``linkerd.io/inject: <mode>``.

    What ``linkerd inject`` does without ``--manual``: the admission step then injects (or
    skips) the pods. Other kinds are returned unchanged.
    """
    if mode not in INJECT_MODES:
        raise InjectError(f"invalid {INJECT_ANNOTATION} mode {mode!r}")
    out = copy.deepcopy(dict(obj))
    kind = out.get("kind")
    if kind == "Pod":
        meta = out.setdefault("metadata", {})
    elif kind in WORKLOAD_KINDS:
        template = out.setdefault("spec", {}).setdefault("template", {})
        meta = template.setdefault("metadata", {})
    else:
        return out
    annotations = meta.get("annotations") or {}
    meta["annotations"] = {**annotations, INJECT_ANNOTATION: mode}
    return out
