"""An informer: list, then watch from the list's resourceVersion, for one kind in all namespaces.

- Watches ask for bookmarks (``allowWatchBookmarks``), so the resourceVersion to resume from
  stays recent even when nothing changes.
- A broken connection or an ended watch resumes from the last resourceVersion seen, after a
  jittered exponential back-off when it failed.
- ``410 Gone`` (the resourceVersion was compacted away) relists; the difference between the old
  cache and the new list is published as events, so no subscriber misses an update.

Subscribers get every event through their own queue; :meth:`Informer.subscribe` hands out the
current objects and the queue atomically.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any, cast

from weft.k8s.cache import ObjectCache, resource_version
from weft.k8s.client import KubeClient, KubeError
from weft.k8s.kinds import ApiKind
from weft.platform import EventType, WatchEvent

log = logging.getLogger("weft.k8s.informer")

Obj = dict[str, Any]

PAGE_SIZE = 500
INITIAL_BACKOFF = 0.2
MAX_BACKOFF = 10.0
# The server ends each watch after a random 5-10 minutes, as client-go's reflector asks.
WATCH_SECONDS = (300, 600)
READ_SLACK = 30.0


class Expired(Exception):
    """The resourceVersion to resume from is gone (410): relist."""


@dataclass
class WatchLine:
    """One decoded line of a watch stream."""

    type: str
    object: Obj


def decode_line(line: bytes) -> WatchLine | None:
    """A watch stream line as (type, object); None for a blank line. ``ValueError`` if garbled."""
    text = line.strip()
    if not text:
        return None
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise ValueError(f"not a watch event: {text[:80]!r}")
    return WatchLine(str(data.get("type", "")), data["object"])


def backoff_delay(attempt: int) -> float:
    """The wait before retry ``attempt`` (1, 2, ...): exponential, capped, with jitter."""
    ceiling = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


@dataclass(eq=False)
class Subscription:
    """A subscriber's queue of events; ``None`` in the queue means the informer stopped."""

    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)


class Informer:
    """Keeps :attr:`cache` equal to the API server's objects of one kind and publishes changes."""

    def __init__(self, client: KubeClient, kind: ApiKind) -> None:
        self.client = client
        self.kind = kind
        self.cache = ObjectCache()
        self.synced = asyncio.Event()
        # Set once the first list has been tried, whatever came of it; ``error`` says why
        # the latest attempt failed.
        self._tried = asyncio.Event()
        self.error = ""
        self.resource_version = ""
        self.relists = 0
        self.reconnects = 0
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listing and watching in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.kind.kind}")

    async def stop(self) -> None:
        """Stop watching and end every subscription."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for sub in self._subscribers:
            sub.queue.put_nowait(None)

    async def wait_synced(self) -> None:
        """Return once the cache holds a list; :class:`KubeError` if listing has failed so far."""
        await self._tried.wait()
        if not self.synced.is_set():
            raise KubeError(0, f"cannot list {self.kind.kind}: {self.error}")

    def subscribe(self) -> tuple[list[Obj], Subscription]:
        """The current objects and a subscription to every change after them."""
        sub = Subscription()
        self._subscribers.add(sub)
        return self.cache.items(), sub

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering events to ``sub``."""
        self._subscribers.discard(sub)

    def _publish(self, events: list[WatchEvent]) -> None:
        for event in events:
            for sub in self._subscribers:
                sub.queue.put_nowait(event)

    async def _list(self) -> None:
        items: list[Obj] = []
        token = ""
        while True:
            query = [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
            page = await self.client.get(self.kind.path(), query)
            for item in page.get("items") or []:
                # List items carry neither kind nor apiVersion; consumers expect both.
                items.append({"kind": self.kind.kind, "apiVersion": self.kind.api_version, **item})
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                self.resource_version = str(meta.get("resourceVersion") or "")
                break
        self._publish(self.cache.relist(items))
        self.synced.set()
        self._tried.set()

    async def _watch(self) -> None:
        seconds = random.randint(*WATCH_SECONDS)
        query = [
            ("watch", "1"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", self.resource_version),
            ("timeoutSeconds", str(seconds)),
        ]
        try:
            async with self.client.stream(self.kind.path(), query, seconds + READ_SLACK) as resp:
                # Split lines ourselves: one event (a big EndpointSlice) may exceed the line
                # limit of aiohttp's readline.
                pending = bytearray()
                async for chunk in resp.content.iter_any():
                    pending += chunk
                    while (end := pending.find(b"\n")) >= 0:
                        line = bytes(pending[:end])
                        del pending[: end + 1]
                        self._handle(line)
                if pending.strip():
                    self._handle(bytes(pending))
        except KubeError as exc:
            if exc.status == 410:
                raise Expired(str(exc)) from None
            raise

    def _handle(self, line: bytes) -> None:
        decoded = decode_line(line)
        if decoded is None:
            return
        if decoded.type == "ERROR":
            if decoded.object.get("code") == 410:
                raise Expired(str(decoded.object.get("message", "resource version expired")))
            raise KubeError(
                int(decoded.object.get("code") or 0), str(decoded.object.get("message"))
            )
        version = resource_version(decoded.object)
        if decoded.type == "BOOKMARK":
            self.resource_version = version or self.resource_version
            return
        if decoded.type not in ("ADDED", "MODIFIED", "DELETED"):
            raise ValueError(f"unknown watch event type {decoded.type!r}")
        obj = {"kind": self.kind.kind, "apiVersion": self.kind.api_version, **decoded.object}
        event = self.cache.apply(cast(EventType, decoded.type), obj)
        self.resource_version = version or self.resource_version
        if event is not None:
            self._publish([event])

    async def _run(self) -> None:
        attempt = 0
        relist = True
        while True:
            listed = relist
            try:
                if relist:
                    await self._list()
                    relist = False
                await self._watch()
                attempt = 0  # the server ended the watch: resume at once
                continue
            except Expired as exc:
                self.relists += 1
                log.info("%s: %s; relisting", self.kind.kind, exc)
                relist = True
                if not listed:
                    continue
                # Expired right after a fresh list: do not spin.
                attempt += 1
                delay = backoff_delay(attempt)
            except Exception as exc:  # anything but cancellation: keep the informer alive
                self.error = str(exc)
                self._tried.set()
                attempt += 1
                self.reconnects += 1
                delay = backoff_delay(attempt)
                log.warning("%s: watch failed (%s); retrying in %.1fs", self.kind.kind, exc, delay)
            await asyncio.sleep(delay)
