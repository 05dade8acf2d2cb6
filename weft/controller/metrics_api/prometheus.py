"""A Prometheus client for instant queries (``GET /api/v1/query``) with a bounded timeout.

Every failure (unreachable, slow, an error answer, an answer that is not a vector) raises
:class:`PrometheusError`, whose text is one line naming Prometheus's URL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import aiohttp

from weft.controller.metrics_api.samples import AnswerError, Sample, parse_vector

DEFAULT_TIMEOUT = 10.0
# At most this many queries in flight (one StatSummary over "all" runs dozens).
MAX_CONCURRENT = 16


class PrometheusError(RuntimeError):
    """Prometheus could not answer; ``str()`` is ``prometheus at <url>: <reason>``."""


class PrometheusClient:
    """Instant queries against one Prometheus server."""

    def __init__(
        self, url: str, timeout: float = DEFAULT_TIMEOUT, max_concurrent: int = MAX_CONCURRENT
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = asyncio.Semaphore(max_concurrent)
        self._session: aiohttp.ClientSession | None = None

    def _error(self, reason: str) -> PrometheusError:
        one_line = " ".join(reason.split())
        return PrometheusError(f"prometheus at {self.url}: {one_line}")

    async def query(self, promql: str) -> list[Sample]:
        """The instant vector ``promql`` evaluates to now."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        async with self._limit:
            try:
                async with self._session.get(
                    f"{self.url}/api/v1/query", params={"query": promql}
                ) as rsp:
                    answer = await _json(rsp)
                    status = rsp.status
            except TimeoutError:
                raise self._error(f"no answer within {self.timeout.total:g}s") from None
            except aiohttp.ClientError as exc:
                raise self._error(_reason(exc)) from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            error = answer.get("error") if isinstance(answer, dict) else None
            raise self._error(f"HTTP {status}: {error or 'not a Prometheus API answer'}")
        try:
            return parse_vector(answer)
        except AnswerError as exc:
            raise self._error(str(exc)) from None

    async def query_all(self, queries: Mapping[str, str]) -> dict[str, list[Sample]]:
        """Run ``queries`` concurrently; the first failure is raised once all have ended."""
        names = list(queries)
        answers = await asyncio.gather(
            *(self.query(queries[name]) for name in names), return_exceptions=True
        )
        results: dict[str, list[Sample]] = {}
        for name, answer in zip(names, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            results[name] = answer
        return results

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _json(rsp: aiohttp.ClientResponse) -> Any:
    try:
        return await rsp.json(content_type=None)
    except ValueError:
        return None


def _reason(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        error = exc.os_error
        # errno's text ("Connection refused"); resolver errors carry their own.
        text = os.strerror(error.errno) if error.errno and error.errno > 0 else error.strerror
        return f"cannot connect ({text or error})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
