"""The local runtime's implementation of :class:`weft.platform.Platform`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from weft.local.api_client import ApiClient
from weft.platform import WATCHABLE_KINDS, PlatformError, TokenReview, WatchEvent


class LocalPlatform:
    """Lists, watches and verifies through a local cluster's node agent."""

    def __init__(self, api_socket: Path) -> None:
        self.client = ApiClient(api_socket)

    async def close(self) -> None:
        """Release the connection to the agent."""
        await self.client.close()

    @staticmethod
    def _check(kind: str) -> None:
        if kind not in WATCHABLE_KINDS:
            raise PlatformError(f"the platform does not serve {kind}")

    async def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The current objects of ``kind``."""
        self._check(kind)
        return await self.client.list(kind, namespace)

    async def watch(self, kind: str, namespace: str | None = None) -> AsyncIterator[WatchEvent]:
        """Current objects, then changes."""
        self._check(kind)
        async for event in self.client.watch(kind, namespace):
            yield event

    async def mint_token(self, namespace: str, service_account: str, pod: str) -> str:
        """A token for ``pod``."""
        body = {"namespace": namespace, "serviceAccount": service_account, "pod": pod}
        return str((await self.client.post_json("/v1/tokens", body))["token"])

    async def verify_token(self, token: str) -> TokenReview:
        """Who ``token`` belongs to."""
        data = await self.client.post_json("/v1/tokenreviews", {"token": token})
        if not data.get("authenticated"):
            return TokenReview(False, reason=str(data.get("reason", "")))
        if data.get("user"):
            return TokenReview(True, user=str(data["user"]))
        return TokenReview(
            True,
            namespace=str(data["namespace"]),
            service_account=str(data["serviceAccount"]),
            pod=str(data["pod"]),
        )
