"""One caller's tap: ``Observe`` streams to every selected proxy, merged into one queue.

Each proxy is dialled on its control port with mTLS: the controller presents its own certificate
(the proxies answer only the tap controller's identity) and verifies the proxy as its pod's
identity. As in Linkerd, ``max_rps`` is split evenly over the proxies and each stream asks for at
most that many requests (``limit``); when a stream has reported them it ends, and the next one
opens once its one-second window is over, so no proxy reports more than its share per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf import json_format

from weft.api import tap_pb2
from weft.controller.tap.enrich import enrich
from weft.controller.tap.query import TapQuery, match_json, per_pod_limit
from weft.controller.tap.targets import TapTarget

log = logging.getLogger("weft.controller.tap")

OBSERVE = "/io.linkerd.proxy.tap.Tap/Observe"
WINDOW = 1.0  # seconds: each stream's share of requests is per window
OPEN_TIMEOUT = 5.0  # seconds a proxy gets to accept the first stream
QUEUE_SIZE = 1024  # events held for a slow caller; more are dropped (and counted)
RETRY_MIN, RETRY_MAX = 0.5, 5.0
ACCEPT_SETTLE = 0.2  # seconds after the response headers within which a refusal's status comes

Obj = dict[str, Any]


@dataclass(frozen=True)
class TlsMaterial:
    """What the controller dials proxies with: its chain and key, and the trust anchors (PEM)."""

    chain_pem: bytes
    key_pem: bytes
    anchors_pem: bytes


class TapFailed(Exception):
    """No proxy accepted the tap; ``str()`` lists why, per pod."""


def observe_request(query: TapQuery, limit: int) -> tap_pb2.ObserveRequest:
    """The ``ObserveRequest`` a proxy gets for ``query``."""
    request = tap_pb2.ObserveRequest(limit=limit)
    json_format.ParseDict(match_json(query), request.match)
    if query.extract:
        request.extract.http.headers.SetInParent()
    return request


def _reason(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__


async def _accepted(call: grpc.aio.UnaryStreamCall[Any, Any]) -> None:
    """Return once the proxy has accepted ``call``; raise its error if it refused.

    A refusal (PERMISSION_DENIED for a foreign identity) comes as a trailers-only response, whose
    status follows its headers at once; an accepted stream stays open with no status.
    """
    await call.initial_metadata()
    try:
        code = await asyncio.wait_for(asyncio.shield(call.code()), ACCEPT_SETTLE)
    except TimeoutError:
        return
    if code != grpc.StatusCode.OK:
        raise grpc.aio.AioRpcError(
            code,
            await call.initial_metadata(),
            await call.trailing_metadata(),
            await call.details(),
        )


class TapSession:
    """Taps ``targets`` for ``query`` until :meth:`close`; events come out of :meth:`events`."""

    def __init__(
        self,
        targets: Sequence[TapTarget],
        query: TapQuery,
        tls: TlsMaterial,
        index: dict[str, dict[str, str]],
        *,
        open_timeout: float = OPEN_TIMEOUT,
    ) -> None:
        self.targets = list(targets)
        self.query = query
        self.tls = tls
        self.index = index
        self.open_timeout = open_timeout
        self.limit = per_pod_limit(query.max_rps, len(self.targets))
        self.queue: asyncio.Queue[Obj] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0
        self._opened: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> list[str]:
        """Open every proxy's stream; returns why some did not open, raises :class:`TapFailed`
        if none did."""
        loop = asyncio.get_running_loop()
        for target in self.targets:
            self._opened[target.pod] = loop.create_future()
            self._tasks.append(loop.create_task(self._tap(target)))
        waits = list(self._opened.values())
        await asyncio.wait(waits, timeout=self.open_timeout)
        problems = []
        for target in self.targets:
            opened = self._opened[target.pod]
            if not opened.done():
                problems.append(
                    f"pod {target.namespace}/{target.pod}: no answer from {target.addr}"
                )
            elif opened.exception() is not None:
                problems.append(
                    f"pod {target.namespace}/{target.pod}: {_reason(opened.exception())}"  # type: ignore[arg-type]
                )
        if len(problems) == len(self.targets):
            await self.close()
            raise TapFailed("no proxy accepted the tap: " + "; ".join(problems))
        return problems

    async def events(self) -> AsyncIterator[Obj]:
        """The merged events (and ``{"warning": ...}`` notes about proxies), as they come."""
        while True:
            yield await self.queue.get()

    async def close(self) -> None:
        """Stop every stream."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _put(self, item: Obj) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _tap(self, target: TapTarget) -> None:
        """Tap one proxy window after window, reconnecting after failures while the session
        lives."""
        opened = self._opened[target.pod]
        loop = asyncio.get_running_loop()
        retry = RETRY_MIN
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.tls.anchors_pem,
            private_key=self.tls.key_pem,
            certificate_chain=self.tls.chain_pem,
        )
        options = [("grpc.ssl_target_name_override", target.identity)]
        request = observe_request(self.query, self.limit)
        while True:
            try:
                async with grpc.aio.secure_channel(target.addr, creds, options=options) as channel:
                    observe = channel.unary_stream(
                        OBSERVE,
                        request_serializer=tap_pb2.ObserveRequest.SerializeToString,
                        response_deserializer=tap_pb2.TapEvent.FromString,
                    )
                    while True:
                        started = loop.time()
                        call = observe(request)
                        if not opened.done():
                            await _accepted(call)
                            opened.set_result(None)
                        retry = RETRY_MIN
                        async for event in call:
                            self._put(enrich(json_format.MessageToDict(event), self.index))
                        await asyncio.sleep(max(0.0, started + WINDOW - loop.time()))
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, OSError) as exc:
                if not opened.done():
                    opened.set_exception(exc)
                    return
                what = f"pod {target.namespace}/{target.pod}"
                log.info("tap of %s failed (retrying in %.1fs): %s", what, retry, _reason(exc))
                self._put({"warning": f"{what}: {_reason(exc)}"})
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)
