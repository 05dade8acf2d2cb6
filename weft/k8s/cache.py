"""An informer's local copy of one kind (pure): watch events applied, relists turned into the
events that bring a consumer from the old state to the new one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from weft.platform import EventType, WatchEvent

Obj = dict[str, Any]
Key = tuple[str, str]


def object_key(obj: Obj) -> Key:
    """(namespace, name); cluster-scoped objects have namespace ``""``."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def resource_version(obj: Obj) -> str:
    """``metadata.resourceVersion`` ("" when absent)."""
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class ObjectCache:
    """The objects of one kind by (namespace, name)."""

    def __init__(self) -> None:
        self.objects: dict[Key, Obj] = {}

    def apply(self, event_type: EventType, obj: Obj) -> WatchEvent | None:
        """Apply a watch event; the event to pass on, or None if it changes nothing (a replay of
        what is already held, or a delete of an unknown object)."""
        key = object_key(obj)
        old = self.objects.get(key)
        if event_type == "DELETED":
            if old is None:
                return None
            del self.objects[key]
            return WatchEvent("DELETED", obj)
        if old is not None and resource_version(old) == resource_version(obj):
            return None
        self.objects[key] = obj
        return WatchEvent("ADDED" if old is None else "MODIFIED", obj)

    def relist(self, items: Iterable[Obj]) -> list[WatchEvent]:
        """Replace the contents with a fresh list; the events a watcher missed (deletions first)."""
        fresh = {object_key(obj): obj for obj in items}
        events = [
            WatchEvent("DELETED", old) for key, old in self.objects.items() if key not in fresh
        ]
        for key, obj in fresh.items():
            old = self.objects.get(key)
            if old is None:
                events.append(WatchEvent("ADDED", obj))
            elif resource_version(old) != resource_version(obj):
                events.append(WatchEvent("MODIFIED", obj))
        self.objects = fresh
        return events

    def items(self, namespace: str | None = None) -> list[Obj]:
        """The objects (of ``namespace`` only, if given), ordered by key."""
        return [
            obj
            for key, obj in sorted(self.objects.items())
            if namespace is None or key[0] == namespace
        ]
