"""The injector's mesh-wide defaults (what ``linkerd install``/``inject`` flags set in Linkerd)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass, field


def installed_version() -> str:
    """The version of the installed ``weft`` distribution."""
    return importlib.metadata.version("weft")


@dataclass(frozen=True)
class InjectConfig:
    """Defaults for every injected pod; ``config.linkerd.io/*`` annotations override some of them.

    The local runtime runs ``proxy_command``/``proxy_init_command`` directly and ignores the
    image; in Kubernetes both containers use ``proxy_image:proxy_version``. ``extra_env`` is
    appended to the proxy's environment (replacing a variable of the same name). Empty
    resource and pull-policy fields leave those unset.
    """

    proxy_command: tuple[str, ...] = ("weft", "proxy")
    proxy_init_command: tuple[str, ...] = ("weft", "proxy-init")
    proxy_image: str = "weft"
    proxy_version: str = field(default_factory=installed_version)
    weft_version: str = field(default_factory=installed_version)
    proxy_uid: int = 2102
    proxy_gid: int = 2102
    control_plane_namespace: str = "weft"
    cluster_domain: str = "cluster.local"
    trust_domain: str = "cluster.local"
    destination_addr: str = "weft-destination.weft.svc.cluster.local:8086"
    destination_service_account: str = "weft-destination"
    identity_addr: str = "weft-identity.weft.svc.cluster.local:8080"
    identity_service_account: str = "weft-identity"
    tap_service_account: str = "weft-tap"
    identity_disabled: bool = True
    trust_anchors_pem: str = ""
    inbound_port: int = 4143
    outbound_port: int = 4140
    admin_port: int = 4191
    control_port: int = 4190
    log_level: str = "warn,weft=info"
    log_format: str = "plain"
    extra_env: Mapping[str, str] = field(default_factory=dict)
    image_pull_policy: str = ""
    cpu_request: str = ""
    cpu_limit: str = ""
    memory_request: str = ""
    memory_limit: str = ""
    # When set, the proxy proves its identity with a projected service-account token for this
    # audience (Kubernetes), instead of the pod's default token (the local runtime's).
    identity_token_audience: str = ""
