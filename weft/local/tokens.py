"""Tokens of the local runtime: HMAC-signed claims naming a pod and its service account, or a user.

The node agent mints one per pod (the stand-in for a projected ServiceAccount token) and
verifies them for the identity service, like Kubernetes' TokenReview. A workload token is only as
good as the pod it names: once the pod is gone, verification fails. User tokens (``weft:admin``,
for whoever can reach the agent's root-only socket) play the part of a kubeconfig's credentials
towards components that authorize callers, such as the tap controller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

KEY_BYTES = 32


@dataclass(frozen=True)
class Claims:
    """What a token asserts."""

    namespace: str
    service_account: str
    pod: str
    pod_uid: str


@dataclass(frozen=True)
class UserClaims:
    """What a user token asserts: the user's name (``admin`` for the cluster's administrator)."""

    user: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(path: Path) -> bytes:
    """The signing key in ``path`` (mode 0600), created on first use."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(KEY_BYTES)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_bytes(key)
        return key


def mint(key: bytes, claims: Claims | UserClaims) -> str:
    """A token carrying ``claims``, signed with ``key``."""
    fields = (
        {"user": claims.user}
        if isinstance(claims, UserClaims)
        else {
            "ns": claims.namespace,
            "sa": claims.service_account,
            "pod": claims.pod,
            "uid": claims.pod_uid,
        }
    )
    body = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
    sig = hmac.new(key, body, hashlib.sha256).digest()
    return f"weft.{_b64(body)}.{_b64(sig)}"


def verify(key: bytes, token: str) -> Claims | UserClaims | None:
    """The claims of a well-formed token signed with ``key``, else None."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != "weft":
        return None
    try:
        body, sig = _unb64(parts[1]), _unb64(parts[2])
    except ValueError:
        return None
    if not hmac.compare_digest(sig, hmac.new(key, body, hashlib.sha256).digest()):
        return None
    try:
        data = json.loads(body)
        if "user" in data:
            return UserClaims(str(data["user"]))
        return Claims(str(data["ns"]), str(data["sa"]), str(data["pod"]), str(data["uid"]))
    except (ValueError, KeyError, TypeError):
        return None
