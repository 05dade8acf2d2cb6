"""A small JSON client over kubernetes_asyncio: its kubeconfig/in-cluster auth and HTTP stack,
with objects as plain dicts (the control plane and the manifests speak Kubernetes JSON)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException

from weft.platform import PlatformError

Obj = dict[str, Any]
Query = Sequence[tuple[str, str]]

DEFAULT_TIMEOUT = 30.0
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class KubeError(PlatformError):
    """The API server refused a request (``status`` is its HTTP status, 0 when unreachable)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def default_kubeconfig() -> str | None:
    """The kubeconfig kubectl would use: ``$KUBECONFIG`` (first entry), else ``~/.kube/config``
    if it exists, else None."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    if first:
        return first
    home = Path.home() / ".kube" / "config"
    return str(home) if home.exists() else None


def _error(status: int, body: bytes, what: str) -> KubeError:
    try:
        status_obj = json.loads(body)
    except ValueError:
        status_obj = None
    if isinstance(status_obj, dict) and status_obj.get("kind") == "Status":
        message = str(status_obj.get("message") or status_obj.get("reason") or status)
        return KubeError(status, f"{what}: {message}", str(status_obj.get("reason") or ""))
    text = body.decode("utf-8", "replace").strip().splitlines()
    return KubeError(status, f"{what}: HTTP {status} {text[0] if text else ''}".rstrip())


class KubeClient:
    """JSON requests to one API server; create with :meth:`connect`, end with :meth:`close`."""

    def __init__(self, api: k8s_client.ApiClient, server: str) -> None:
        self.api = api
        self.server = server

    @classmethod
    async def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
        """A client from a kubeconfig file, or the in-cluster service account when None."""
        configuration = k8s_client.Configuration()
        try:
            if kubeconfig is None:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                await k8s_config.load_kube_config(
                    config_file=kubeconfig,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            where = kubeconfig or "the in-cluster service account"
            raise KubeError(0, f"cannot load Kubernetes credentials from {where}: {exc}") from None
        return cls(k8s_client.ApiClient(configuration), str(configuration.host))

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self.api.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        path: str,
        query: Query | None,
        body: Any,
        content_type: str,
        timeout: aiohttp.ClientTimeout | float | None,
    ) -> aiohttp.ClientResponse:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            response: aiohttp.ClientResponse = await self.api.call_api(
                path,
                method,
                query_params=list(query or ()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(0, f"{method} {path}: cannot reach {self.server}: {exc}") from None
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Obj:
        """Send one request; the JSON answer, or :class:`KubeError` for a non-2xx status."""
        response = await self._send(method, path, query, body, content_type, timeout)
        try:
            data = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(0, f"{method} {path}: {exc}") from None
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise _error(response.status, data, f"{method} {path}")
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            raise KubeError(response.status, f"{method} {path}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise KubeError(response.status, f"{method} {path}: the answer is not an object")
        return answer

    async def get(self, path: str, query: Query | None = None) -> Obj:
        """GET ``path``."""
        return await self.request("GET", path, query=query)

    async def version(self) -> tuple[Obj, datetime | None]:
        """``GET /version``, and the server's clock from its ``Date`` header (None if absent)."""
        response = await self._send("GET", "/version", None, None, "application/json", 10.0)
        try:
            data = await response.read()
            stamp = response.headers.get("Date")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(0, f"GET /version: {exc}") from None
        finally:
            response.release()
        if response.status != 200:
            raise _error(response.status, data, "GET /version")
        try:
            when = parsedate_to_datetime(stamp) if stamp else None
        except (TypeError, ValueError):
            when = None
        return dict(json.loads(data)), when

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, query: Query, read_timeout: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A GET whose body is read as it comes (watches); non-2xx raises :class:`KubeError`."""
        timeout = aiohttp.ClientTimeout(sock_connect=DEFAULT_TIMEOUT, sock_read=read_timeout)
        response = await self._send("GET", path, query, None, "application/json", timeout)
        try:
            if not 200 <= response.status < 300:
                raise _error(response.status, await response.read(), f"GET {path}")
            yield response
        finally:
            response.close()
