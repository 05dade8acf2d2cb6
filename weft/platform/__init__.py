"""The narrow interface the control plane consumes, whichever platform runs the mesh.

The local runtime (:mod:`weft.local.platform`) implements it over its node agent's API; a
Kubernetes backend will implement it over the Kubernetes API (list+watch, TokenReview). The
control plane only ever sees :class:`Platform`, so the mesh behaves the same on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# The kinds the control plane may list and watch.
WATCHABLE_KINDS = (
    "Namespace",
    "Pod",
    "Service",
    "Endpoints",
    "Deployment",
    "Job",
    "ServiceProfile",
    "TrafficSplit",
)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class WatchEvent:
    """One change to an object: its type and the object as Kubernetes JSON."""

    type: EventType
    object: dict[str, Any]


@dataclass(frozen=True)
class TokenReview:
    """Who a token belongs to: a workload (``namespace``, ``service_account``, ``pod``) or a user
    (``user``); ``authenticated`` is False when it proves nothing."""

    authenticated: bool
    namespace: str = ""
    service_account: str = ""
    pod: str = ""
    reason: str = ""
    user: str = ""

    @property
    def username(self) -> str:
        """The user name: ``system:serviceaccount:<ns>:<sa>`` for a workload, else
        ``weft:<user>`` (the local cluster's admin is ``weft:admin``)."""
        if self.user:
            return f"weft:{self.user}"
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


class PlatformError(RuntimeError):
    """The platform could not answer (unreachable, or it refused the request)."""


class Platform(Protocol):
    """List and watch cluster objects, and mint and verify workload tokens."""

    async def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The current objects of ``kind`` (all namespaces when ``namespace`` is None)."""
        ...

    def watch(self, kind: str, namespace: str | None = None) -> AsyncIterator[WatchEvent]:
        """``ADDED`` for every current object, then each change as it happens."""
        ...

    async def mint_token(self, namespace: str, service_account: str, pod: str) -> str:
        """A token proving that ``pod`` runs as ``service_account`` in ``namespace``."""
        ...

    async def verify_token(self, token: str) -> TokenReview:
        """Check a workload token (the TokenReview equivalent)."""
        ...
