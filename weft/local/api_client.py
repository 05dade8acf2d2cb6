"""A client of the node agent's API (HTTP over its unix socket)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from weft.platform import PlatformError, WatchEvent

JSON = dict[str, Any]


class ApiError(PlatformError):
    """The agent answered with an error; ``str()`` is its one-line message."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class AgentUnreachable(PlatformError):
    """Nothing answers on the agent's socket."""


@dataclass(frozen=True)
class ServiceRef:
    """A Service port the agent can proxy to: ``namespace/name:port``."""

    namespace: str
    name: str
    port: int | str

    def proxy_path(self, path: str) -> str:
        """The agent's (and kube-apiserver's) service-proxy path to ``path`` of this Service."""
        return (
            f"/api/v1/namespaces/{self.namespace}/services/{self.name}:{self.port}"
            f"/proxy/{path.lstrip('/')}"
        )


class ApiClient:
    """Talks to one cluster's node agent; use as an async context manager."""

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=None)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.UnixConnector(path=str(self.socket_path))
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=False
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        try:
            response = await self._client().request(method, f"http://agent{path}", **kwargs)
        except (aiohttp.ClientConnectionError, FileNotFoundError) as exc:
            if isinstance(exc.__cause__ or exc, PermissionError) or "Permission denied" in str(exc):
                raise AgentUnreachable(
                    f"permission denied on {self.socket_path}: the cluster is root's, use sudo"
                ) from exc
            raise AgentUnreachable(
                f"the cluster's node agent does not answer on {self.socket_path} "
                "(is the cluster up? run `weft cluster up`)"
            ) from exc
        if response.status >= 400:
            try:
                message = str((await response.json())["error"])
            except (ValueError, KeyError, aiohttp.ContentTypeError):
                message = (await response.text()).strip() or response.reason or "error"
            raise ApiError(message, response.status)
        return response

    async def get_json(self, path: str, **params: str) -> JSON:
        """GET ``path`` and decode the JSON answer."""
        async with await self._request("GET", path, params=params) as response:
            data: JSON = await response.json()
            return data

    async def post_json(self, path: str, body: JSON) -> JSON:
        """POST ``body`` as JSON and decode the JSON answer."""
        async with await self._request("POST", path, json=body) as response:
            data: JSON = await response.json()
            return data

    async def admin_token(self) -> str:
        """A token for the cluster's admin (``weft:admin``), for components that authorize
        their callers (the tap controller)."""
        return str((await self.post_json("/v1/tokens", {"user": "admin"}))["token"])

    async def proxy_json(
        self, service: ServiceRef, path: str, body: JSON, headers: dict[str, str] | None = None
    ) -> JSON:
        """POST ``body`` to ``path`` of a Service through the agent's service proxy; errors
        (the agent's or the component's ``{"error": ...}``) raise :class:`ApiError`."""
        url = service.proxy_path(path)
        async with await self._request("POST", url, json=body, headers=headers) as response:
            data: JSON = await response.json()
            return data

    async def proxy_lines(
        self, service: ServiceRef, path: str, body: JSON, headers: dict[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        """POST ``body`` to a Service's ``path`` and yield the answer line by line as it streams."""
        url = service.proxy_path(path)
        async with await self._request("POST", url, json=body, headers=headers) as response:
            async for line in response.content:
                if line.strip():
                    yield line

    async def stream(self, path: str, **params: str) -> AsyncIterator[bytes]:
        """GET ``path`` and yield the body as it arrives."""
        async with await self._request("GET", path, params=params) as response:
            async for chunk in response.content.iter_any():
                yield chunk

    async def list(
        self, kind: str, namespace: str | None = None, name: str | None = None
    ) -> list[JSON]:
        """Objects of ``kind``."""
        params = {"kind": kind}
        if namespace:
            params["namespace"] = namespace
        if name is not None:
            params["name"] = name
        items: list[JSON] = (await self.get_json("/v1/objects", **params))["items"]
        return items

    async def watch(self, kind: str, namespace: str | None = None) -> AsyncIterator[WatchEvent]:
        """Every current object as ADDED, then changes as they happen."""
        params = {"kind": kind}
        if namespace:
            params["namespace"] = namespace
        async with await self._request("GET", "/v1/watch", params=params) as response:
            async for line in response.content:
                if line.strip():
                    event = json.loads(line)
                    yield WatchEvent(event["type"], event["object"])
