"""What an installed control plane left in the cluster: its objects (for ``weft uninstall``) and
its recorded values and trust material (for ``weft upgrade``)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from weft.k8s.client import KubeClient, KubeError
from weft.k8s.install import components as c
from weft.k8s.install.render import (
    CONFIG_MAP,
    CONTROL_PLANE_NS_LABEL,
    ISSUER_SECRET,
    TRUST_ROOTS,
    Secrets,
    webhook_secret,
)
from weft.k8s.install.values import InstallValues, ValuesError
from weft.k8s.install.webhook_tls import WebhookTls, check_serving, generate
from weft.k8s.kinds import api_kind

Obj = dict[str, Any]

# Deleted in this order: the webhooks first (so nothing is refused or mutated meanwhile), then
# the namespace (which takes every namespaced object with it), then cluster-wide objects.
UNINSTALL_KINDS = (
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "Namespace",
    "ClusterRoleBinding",
    "ClusterRole",
    "CustomResourceDefinition",
)
# A webhook certificate closer to expiry than this is replaced by ``weft upgrade``.
WEBHOOK_RENEW_BEFORE = timedelta(days=30)


class NotInstalled(KubeError):
    """No control plane (or not all of it) in the namespace."""


async def installed_objects(client: KubeClient, namespace: str) -> list[Obj]:
    """The control plane's cluster-scoped objects and its namespace, as ``{apiVersion, kind,
    metadata.name}``, in deletion order."""
    selector = [("labelSelector", f"{CONTROL_PLANE_NS_LABEL}={namespace}")]
    found: list[Obj] = []
    for kind in UNINSTALL_KINDS:
        api = api_kind(kind)
        listed = await client.get(api.path(), selector)
        for item in sorted(listed.get("items") or [], key=lambda o: o["metadata"]["name"]):
            name = item["metadata"]["name"]
            found.append({"apiVersion": api.api_version, "kind": kind, "metadata": {"name": name}})
    return found


async def _get(client: KubeClient, kind: str, namespace: str, name: str) -> Obj:
    try:
        return await client.get(api_kind(kind).path(namespace, name))
    except KubeError as exc:
        if exc.status == 404:
            raise NotInstalled(
                404, f"{kind} {namespace}/{name} not found: is weft installed in {namespace}?"
            ) from None
        raise


def _data(obj: Obj, key: str, *, b64: bool) -> bytes:
    value = (obj.get("data") or {}).get(key)
    if not isinstance(value, str):
        kind, name = obj.get("kind", "object"), obj["metadata"]["name"]
        raise NotInstalled(0, f"{kind} {name} has no {key}")
    return base64.b64decode(value) if b64 else value.encode()


async def read_install(
    client: KubeClient, namespace: str, now: datetime
) -> tuple[InstallValues, Secrets]:
    """The recorded values and the trust material in use; webhook certificates are kept while
    valid for another 30 days, and generated anew otherwise."""
    config = await _get(client, "ConfigMap", namespace, CONFIG_MAP)
    try:
        values = InstallValues.from_json(_data(config, c.CONFIG_KEY, b64=False).decode())
    except ValuesError as exc:
        raise NotInstalled(0, f"ConfigMap {namespace}/{CONFIG_MAP}: {exc}") from None
    roots = await _get(client, "ConfigMap", namespace, TRUST_ROOTS)
    issuer = await _get(client, "Secret", namespace, ISSUER_SECRET)
    webhooks: dict[str, WebhookTls] = {}
    for comp in c.COMPONENTS:
        if not comp.webhook:
            continue
        kept: WebhookTls | None = None
        try:
            secret = await _get(client, "Secret", namespace, webhook_secret(comp.name))
            kept = WebhookTls(
                _data(secret, "tls.crt", b64=True),
                _data(secret, "tls.key", b64=True),
                _data(secret, "ca.crt", b64=True),
            )
        except NotInstalled:
            kept = None
        later = now + WEBHOOK_RENEW_BEFORE
        if kept is None or check_serving(
            kept.cert_pem, kept.ca_bundle(), comp.resource_name, namespace, later
        ):
            kept = generate(comp.resource_name, namespace, now)
        webhooks[comp.name] = kept
    secrets = Secrets(
        anchors_pem=_data(roots, c.TRUST_ROOTS_KEY, b64=False),
        issuer_cert_pem=_data(issuer, c.ISSUER_CERT_KEY, b64=True),
        issuer_key_pem=_data(issuer, c.ISSUER_KEY_KEY, b64=True),
        webhooks=webhooks,
    )
    return values, secrets
