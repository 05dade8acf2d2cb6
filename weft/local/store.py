"""The node agent's object store: Kubernetes-style objects as JSON, versioned and watchable.

Objects are plain dicts exactly as the API returns them. Every change bumps one global
revision, is persisted to ``objects.json`` (atomically) so ``get`` works across invocations,
and is delivered to watchers as a :class:`~weft.platform.WatchEvent`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from weft.platform import EventType, WatchEvent

Key = tuple[str, str, str]  # kind, namespace ("" when cluster-scoped), name
Changes = list[tuple[EventType, Key, dict[str, Any]]]
CLUSTER_SCOPED = frozenset({"Namespace"})


def key_of(obj: dict[str, Any]) -> Key:
    """The store key of ``obj``."""
    meta = obj["metadata"]
    namespace = "" if obj["kind"] in CLUSTER_SCOPED else meta.get("namespace", "default")
    return obj["kind"], namespace, meta["name"]


def now_rfc3339() -> str:
    """The current time as Kubernetes writes timestamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Watcher:
    """A subscription to changes of one kind (and optionally one namespace)."""

    def __init__(self, kind: str | None, namespace: str | None) -> None:
        self.kind = kind
        self.namespace = namespace
        self.queue: asyncio.Queue[WatchEvent] = asyncio.Queue()

    def wants(self, key: Key) -> bool:
        """Whether this watcher wants events about ``key``."""
        kind, namespace, _ = key
        return (self.kind is None or self.kind == kind) and (
            self.namespace is None or self.namespace == namespace
        )


class ObjectStore:
    """All objects of a cluster, with a revision counter and watchers."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.revision = 0
        self._objects: dict[Key, dict[str, Any]] = {}
        self._watchers: list[Watcher] = []
        self._pending: Changes | None = None
        self._changed = asyncio.Condition()
        if path is not None and path.exists():
            self._load(path)

    # -- reading --------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of one object, or None."""
        obj = self._objects.get((kind, "" if kind in CLUSTER_SCOPED else namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Copies of the objects of ``kind``, sorted by namespace and name."""
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self._objects.items())
            if k == kind and (namespace is None or ns == namespace)
        ]

    # -- writing --------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group changes: persisted once and announced together at the end."""
        if self._pending is not None:
            yield
            return
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            if pending:
                self._commit(pending)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace ``obj``; fills in uid, creation time and resourceVersion."""
        obj = copy.deepcopy(obj)
        key = key_of(obj)
        meta = obj["metadata"]
        old = self._objects.get(key)
        if old is None:
            meta["uid"] = meta.get("uid") or str(uuid.uuid4())
            meta["creationTimestamp"] = meta.get("creationTimestamp") or now_rfc3339()
        else:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        if key[1]:
            meta["namespace"] = key[1]
        self.revision += 1
        meta["resourceVersion"] = str(self.revision)
        self._objects[key] = obj
        self._record("ADDED" if old is None else "MODIFIED", key, obj)
        return copy.deepcopy(obj)

    def delete(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Remove one object; returns it, or None if it did not exist."""
        key = (kind, "" if kind in CLUSTER_SCOPED else namespace, name)
        obj = self._objects.pop(key, None)
        if obj is not None:
            self.revision += 1
            self._record("DELETED", key, obj)
        return obj

    def _record(self, event: EventType, key: Key, obj: dict[str, Any]) -> None:
        if self._pending is not None:
            self._pending.append((event, key, obj))
        else:
            self._commit([(event, key, obj)])

    def _commit(self, changes: Changes) -> None:
        self._persist()
        for event, key, obj in changes:
            for watcher in self._watchers:
                if watcher.wants(key):
                    watcher.queue.put_nowait(WatchEvent(event, copy.deepcopy(obj)))
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- watching -------------------------------------------------------------------------

    def subscribe(self, kind: str | None, namespace: str | None = None) -> Watcher:
        """A watcher that first receives ``ADDED`` for every current object."""
        watcher = Watcher(kind, namespace)
        for key, obj in sorted(self._objects.items()):
            if watcher.wants(key):
                watcher.queue.put_nowait(WatchEvent("ADDED", copy.deepcopy(obj)))
        self._watchers.append(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        """Stop delivering events to ``watcher``."""
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    async def wait_changed(self, revision: int, timeout: float) -> int:
        """Wait until the revision passes ``revision`` or ``timeout`` expires; returns it."""
        async with self._changed:
            if self.revision == revision:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)
        return self.revision

    # -- persistence ----------------------------------------------------------------------

    def _persist(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        data = {"revision": self.revision, "objects": list(self._objects.values())}
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, self.path)

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        self.revision = int(data["revision"])
        for obj in data["objects"]:
            self._objects[key_of(obj)] = obj
