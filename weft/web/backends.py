"""The dashboard server's clients of the metrics API, Prometheus and the tap controller.

Each failure becomes a :class:`BackendError` with the HTTP status the dashboard should answer
and a one-line message naming the backend: a request the backend refused keeps its status
(400, 401, 403, 404), anything else (unreachable, 5xx, junk) is 503.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

Obj = dict[str, Any]
TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)
# A tap streams for as long as the browser watches; only connecting is bounded.
TAP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None)
PASS_ON = frozenset({400, 401, 403, 404})


class BackendError(Exception):
    """A backend failed; ``status`` is what the dashboard answers, ``str()`` one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BackendUrls:
    """Where the backends are, and the service-account token the tap controller checks."""

    metrics_api: str
    prometheus: str
    tap: str
    token_file: Path


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        if isinstance(error, socket.gaierror) or not error.errno:
            return f"cannot connect ({error.strerror or error})"
        return f"cannot connect ({os.strerror(error.errno)})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def _error_message(response: aiohttp.ClientResponse) -> str:
    """The ``{"error": ...}`` of an error answer, else its first line of text."""
    text = (await response.text()).strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return text.splitlines()[0] if text else f"HTTP {response.status}"


class Backends:
    """One connection pool to all three backends; use as an async context manager."""

    def __init__(self, urls: BackendUrls) -> None:
        self.urls = urls
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Backends:
        self._session = aiohttp.ClientSession(timeout=TIMEOUT, trust_env=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared client session."""
        assert self._session is not None, "use Backends as an async context manager"
        return self._session

    async def metrics(self, method: str, body: Obj | None = None) -> Obj:
        """Call the metrics API: ``POST /api/v1/<method>`` with ``body`` (``GET`` when None)."""
        where = f"metrics API at {self.urls.metrics_api}"
        url = f"{self.urls.metrics_api.rstrip('/')}/api/v1/{method}"
        try:
            async with self.session.request(
                "GET" if body is None else "POST", url, json=body
            ) as response:
                if response.status != 200:
                    message = await _error_message(response)
                    if response.status in PASS_ON:
                        raise BackendError(response.status, message)
                    raise BackendError(503, f"{where}: {message}")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BackendError(503, f"{where}: {_reason(exc)}") from exc
        if not isinstance(data, dict):
            raise BackendError(503, f"{where}: answered {type(data).__name__}, not an object")
        return data

    async def _prometheus(self, path: str, params: dict[str, str]) -> Any:
        where = f"prometheus at {self.urls.prometheus}"
        url = f"{self.urls.prometheus.rstrip('/')}{path}"
        try:
            async with self.session.post(url, data=params) as response:
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise BackendError(503, f"{where}: {_reason(exc)}") from exc
        if not isinstance(data, dict) or data.get("status") != "success":
            error = data.get("error") if isinstance(data, dict) else None
            raise BackendError(503, f"{where}: {error or 'unexpected answer'}")
        return (data.get("data") or {}).get("result")

    async def query(self, promql: str) -> Any:
        """A Prometheus instant query; the ``result`` (a vector) as JSON."""
        return await self._prometheus("/api/v1/query", {"query": promql})

    async def query_range(self, promql: str, start: int, end: int, step: int) -> Any:
        """A Prometheus range query; the ``result`` (a matrix) as JSON."""
        params = {"query": promql, "start": str(start), "end": str(end), "step": f"{step}s"}
        return await self._prometheus("/api/v1/query_range", params)

    def _token(self) -> str:
        try:
            return self.urls.token_file.read_text().strip()
        except OSError as exc:
            raise BackendError(
                503,
                f"cannot read the service-account token {self.urls.token_file}: "
                f"{exc.strerror or exc}",
            ) from exc

    @asynccontextmanager
    async def tap(self, path: str, body: Obj) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open a tap at the tap controller; yields its NDJSON lines as they arrive."""
        where = f"tap controller at {self.urls.tap}"
        headers = {"Authorization": f"Bearer {self._token()}"}
        url = f"{self.urls.tap.rstrip('/')}{path}"
        try:
            response = await self.session.post(url, json=body, headers=headers, timeout=TAP_TIMEOUT)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendError(503, f"{where}: {_reason(exc)}") from exc
        try:
            if response.status != 200:
                message = await _error_message(response)
                raise BackendError(
                    response.status if response.status in PASS_ON else 503,
                    message if response.status in PASS_ON else f"{where}: {message}",
                )

            async def lines() -> AsyncIterator[bytes]:
                try:
                    async for line in response.content:
                        if line.strip():
                            yield line
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise BackendError(503, f"{where}: {_reason(exc)}") from exc

            yield lines()
        finally:
            response.release()
            response.close()
