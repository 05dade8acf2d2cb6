"""Identity names in Linkerd's DNS-like form, and their derivation from service accounts."""

from __future__ import annotations

import re

USERNAME_PREFIX = "system:serviceaccount:"
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SERVICE_ACCOUNT = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def identity_name(
    service_account: str, namespace: str, control_namespace: str, trust_domain: str
) -> str:
    """The identity of pods running as ``service_account`` in ``namespace``."""
    return (
        f"{service_account}.{namespace}.serviceaccount.identity.{control_namespace}.{trust_domain}"
    )


def identity_for_username(username: str, control_namespace: str, trust_domain: str) -> str | None:
    """Map a token review username ``system:serviceaccount:<ns>:<sa>`` to its identity."""
    if not username.startswith(USERNAME_PREFIX):
        return None
    parts = username[len(USERNAME_PREFIX) :].split(":")
    if len(parts) != 2:
        return None
    namespace, service_account = parts
    if not (_NAMESPACE.fullmatch(namespace) and _SERVICE_ACCOUNT.fullmatch(service_account)):
        return None
    return identity_name(service_account, namespace, control_namespace, trust_domain)


def issuer_name(control_namespace: str, trust_domain: str) -> str:
    """The issuer certificate's common name, ``identity.<control-ns>.<trust-domain>``."""
    return f"identity.{control_namespace}.{trust_domain}"


def anchor_name(control_namespace: str, trust_domain: str) -> str:
    """A generated trust anchor's common name, ``root.<control-ns>.<trust-domain>``."""
    return f"root.{control_namespace}.{trust_domain}"
