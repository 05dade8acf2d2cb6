"""The ``linkerd-init`` and ``linkerd-proxy`` containers (and identity volume) the injector adds.

``linkerd-proxy`` is a native sidecar (an init container with ``restartPolicy: Always``): the
kubelet starts the containers after it only once its startup probe passes, and stops it after
the app containers have exited, so Jobs complete.
"""

from __future__ import annotations

from typing import Any

from weft.inject.annotations import ProxySettings
from weft.inject.config import InjectConfig

INIT_CONTAINER = "linkerd-init"
PROXY_CONTAINER = "linkerd-proxy"
IDENTITY_VOLUME = "linkerd-identity-end-entity"
IDENTITY_DIR = "/var/run/linkerd/identity/end-entity"
TOKEN_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/token"
TOKEN_VOLUME = "linkerd-identity-token"
PROJECTED_TOKEN_DIR = "/var/run/secrets/tokens"
PROJECTED_TOKEN_SECONDS = 86400
ENV_PREFIX = "LINKERD2_PROXY_"

# How long the kubelet waits for the proxy to become ready before restarting it.
_STARTUP_PERIOD_SECONDS = 1
_STARTUP_FAILURE_THRESHOLD = 120


def _image(settings: ProxySettings) -> str:
    return f"{settings.proxy_image}:{settings.proxy_version}"


def _init_image(settings: ProxySettings) -> str:
    image = settings.init_image or settings.proxy_image
    return f"{image}:{settings.init_image_version or settings.proxy_version}"


def _with_pull_policy(container: dict[str, Any], settings: ProxySettings) -> dict[str, Any]:
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    return container


def token_file(config: InjectConfig) -> str:
    """Where the proxy reads the token it proves its identity with."""
    if config.identity_token_audience:
        return f"{PROJECTED_TOKEN_DIR}/{TOKEN_VOLUME}"
    return TOKEN_FILE


def _value(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _field_ref(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _identity_name(service_account: str, namespace: str) -> str:
    """An identity name, expanded by Kubernetes from the ``$(VAR)`` references."""
    return f"{service_account}.{namespace}.serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)"


def _probe(path: str, port: int, **extra: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, **extra}


def init_container(config: InjectConfig, settings: ProxySettings) -> dict[str, Any]:
    """``linkerd-init``: installs the iptables redirect as root with NET_ADMIN and NET_RAW."""
    ignore_inbound = dict.fromkeys(
        (str(settings.control_port), str(settings.admin_port), *settings.skip_inbound_ports)
    )
    command = [
        *config.proxy_init_command,
        *("--incoming-proxy-port", str(settings.inbound_port)),
        *("--outgoing-proxy-port", str(settings.outbound_port)),
        *("--proxy-uid", str(settings.proxy_uid)),
        *("--proxy-gid", str(settings.proxy_gid)),
        *("--inbound-ports-to-ignore", ",".join(ignore_inbound)),
    ]
    if settings.skip_outbound_ports:
        command += ["--outbound-ports-to-ignore", ",".join(settings.skip_outbound_ports)]
    container = {
        "name": INIT_CONTAINER,
        "image": _init_image(settings),
        "command": command,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]},
            "privileged": False,
            "runAsNonRoot": False,
            "runAsUser": 0,
        },
    }
    return _with_pull_policy(container, settings)


def proxy_env(config: InjectConfig, settings: ProxySettings) -> list[dict[str, Any]]:
    """The proxy's ``LINKERD2_PROXY_*`` environment (plus Linkerd's helper variables)."""
    p = ENV_PREFIX
    suffixes = f"svc.{config.cluster_domain}."
    env = [
        _value(p + "LOG", settings.log_level),
        _value(p + "LOG_FORMAT", settings.log_format),
        _value(p + "DESTINATION_SVC_ADDR", config.destination_addr),
        _value(p + "DESTINATION_GET_SUFFIXES", suffixes),
        # External profiles: the proxy asks for the profile of any name, not only cluster ones.
        _value(p + "DESTINATION_PROFILE_SUFFIXES", "." if settings.external_profiles else suffixes),
        _value(p + "CONTROL_LISTEN_ADDR", f"0.0.0.0:{settings.control_port}"),
        _value(p + "ADMIN_LISTEN_ADDR", f"0.0.0.0:{settings.admin_port}"),
        _value(p + "OUTBOUND_LISTEN_ADDR", f"127.0.0.1:{settings.outbound_port}"),
        _value(p + "INBOUND_LISTEN_ADDR", f"0.0.0.0:{settings.inbound_port}"),
    ]
    opaque = settings.opaque_ports
    optional = {
        "INBOUND_CONNECT_TIMEOUT": settings.inbound_connect_timeout,
        "OUTBOUND_CONNECT_TIMEOUT": settings.outbound_connect_timeout,
        "INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION": None if opaque is None else ",".join(opaque),
        "SHUTDOWN_GRACE_PERIOD": settings.shutdown_grace_period,
        "SHUTDOWN_ENDPOINT_ENABLED": "true" if settings.admin_shutdown else None,
        "INGRESS_MODE": "true" if settings.ingress else None,
        "TAP_DISABLED": "true" if settings.tap_disabled else None,
    }
    env += [_value(p + name, value) for name, value in optional.items() if value is not None]
    identity_svc = _identity_name(config.identity_service_account, "$(_l5d_ns)")
    destination_svc = _identity_name(config.destination_service_account, "$(_l5d_ns)")
    tap_svc = _identity_name(config.tap_service_account, "$(_l5d_ns)")
    env += [
        _field_ref("_pod_ns", "metadata.namespace"),
        _field_ref("_pod_name", "metadata.name"),
        _field_ref("_pod_sa", "spec.serviceAccountName"),
        _value(p + "DESTINATION_CONTEXT", "ns:$(_pod_ns)"),
        _value("_l5d_ns", config.control_plane_namespace),
        _value("_l5d_trustdomain", config.trust_domain),
        _value(p + "IDENTITY_DIR", IDENTITY_DIR),
        _value(p + "IDENTITY_TRUST_ANCHORS", config.trust_anchors_pem),
        _value(p + "IDENTITY_TOKEN_FILE", token_file(config)),
        _value(p + "IDENTITY_SVC_ADDR", config.identity_addr),
        _value(p + "IDENTITY_LOCAL_NAME", _identity_name("$(_pod_sa)", "$(_pod_ns)")),
        _value(p + "IDENTITY_SVC_NAME", identity_svc),
        _value(p + "DESTINATION_SVC_NAME", destination_svc),
        _value(p + "TAP_SVC_NAME", tap_svc),
    ]
    if settings.identity_disabled:
        env.append(_value(p + "IDENTITY_DISABLED", "disabled"))
    position = {entry["name"]: index for index, entry in enumerate(env)}
    for name, value in config.extra_env.items():
        if name in position:
            env[position[name]] = _value(name, value)
        else:
            env.append(_value(name, value))
    return env


def proxy_container(config: InjectConfig, settings: ProxySettings) -> dict[str, Any]:
    """``linkerd-proxy`` as a native sidecar, with startup, readiness and liveness probes."""
    container: dict[str, Any] = {
        "name": PROXY_CONTAINER,
        "image": _image(settings),
        "command": list(config.proxy_command),
        "restartPolicy": "Always",
        "ports": [
            {"name": "linkerd-proxy", "containerPort": settings.inbound_port},
            {"name": "linkerd-admin", "containerPort": settings.admin_port},
        ],
        "env": proxy_env(config, settings),
    }
    if settings.await_proxy:
        container["startupProbe"] = _probe(
            "/ready",
            settings.admin_port,
            periodSeconds=_STARTUP_PERIOD_SECONDS,
            failureThreshold=_STARTUP_FAILURE_THRESHOLD,
        )
    container["readinessProbe"] = _probe("/ready", settings.admin_port)
    container["livenessProbe"] = _probe("/live", settings.admin_port)
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": settings.proxy_uid,
        "runAsGroup": settings.proxy_gid,
    }
    resources = settings.resources()
    if resources:
        container["resources"] = resources
    if not settings.identity_disabled:
        mounts: list[dict[str, Any]] = [{"name": IDENTITY_VOLUME, "mountPath": IDENTITY_DIR}]
        if config.identity_token_audience:
            mounts.append(
                {"name": TOKEN_VOLUME, "mountPath": PROJECTED_TOKEN_DIR, "readOnly": True}
            )
        container["volumeMounts"] = mounts
    return _with_pull_policy(container, settings)


def identity_volumes(config: InjectConfig) -> list[dict[str, Any]]:
    """The in-memory volume holding the proxy's private key and CSR, and (with a token
    audience) the projected token the proxy proves its identity with."""
    volumes: list[dict[str, Any]] = [{"name": IDENTITY_VOLUME, "emptyDir": {"medium": "Memory"}}]
    if config.identity_token_audience:
        token = {
            "path": TOKEN_VOLUME,
            "audience": config.identity_token_audience,
            "expirationSeconds": PROJECTED_TOKEN_SECONDS,
        }
        volumes.append(
            {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": token}]}}
        )
    return volumes
