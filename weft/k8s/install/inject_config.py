"""The injector's settings on Kubernetes, from the install values and trust anchors (pure)."""

from __future__ import annotations

from weft.inject.config import InjectConfig
from weft.k8s.install.components import (
    DESTINATION_PORT,
    IDENTITY_AUDIENCE,
    IDENTITY_PORT,
    service_host,
)
from weft.k8s.install.values import InstallValues


def inject_config(values: InstallValues, anchors_pem: str) -> InjectConfig:
    """What every pod injected into this control plane's mesh gets."""
    return InjectConfig(
        proxy_image=values.image,
        proxy_version=values.version,
        proxy_uid=values.proxy_uid,
        proxy_gid=values.proxy_gid,
        control_plane_namespace=values.namespace,
        cluster_domain=values.cluster_domain,
        trust_domain=values.trust_domain,
        destination_addr=service_host(values, "destination", DESTINATION_PORT),
        identity_addr=service_host(values, "identity", IDENTITY_PORT),
        identity_disabled=False,
        trust_anchors_pem=anchors_pem,
        inbound_port=values.inbound_port,
        outbound_port=values.outbound_port,
        admin_port=values.admin_port,
        control_port=values.control_port,
        log_level=values.proxy_log_level,
        image_pull_policy=values.image_pull_policy,
        cpu_request=values.proxy_cpu_request,
        cpu_limit=values.proxy_cpu_limit,
        memory_request=values.proxy_memory_request,
        memory_limit=values.proxy_memory_limit,
        identity_token_audience=IDENTITY_AUDIENCE,
    )
