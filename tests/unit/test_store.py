"""The node agent's object store: bookkeeping, transactions, watchers, persistence and waiting."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from weft.local.store import ObjectStore, Watcher, key_of
from weft.platform import WatchEvent

Obj = dict[str, Any]


def config_map(name: str, namespace: str | None = "default", **data: str) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def drain(watcher: Watcher) -> list[tuple[str, str]]:
    """The (type, name) of every event queued for ``watcher``, without waiting."""
    events: list[WatchEvent] = []
    while not watcher.queue.empty():
        events.append(watcher.queue.get_nowait())
    return [(e.type, e.object["metadata"]["name"]) for e in events]


def test_key_of_defaults_the_namespace_and_ignores_it_for_cluster_scoped_kinds() -> None:
    assert key_of(config_map("a", namespace=None)) == ("ConfigMap", "default", "a")
    assert key_of(config_map("a", namespace="shop")) == ("ConfigMap", "shop", "a")
    ns = namespace("shop")
    ns["metadata"]["namespace"] = "ignored"
    assert key_of(ns) == ("Namespace", "", "shop")


@pytest.mark.anyio
async def test_put_fills_in_uid_creation_time_resource_version_and_namespace() -> None:
    store = ObjectStore()
    stored = store.put(config_map("a", namespace=None, k="v"))
    meta = stored["metadata"]
    assert meta["uid"]
    assert len(meta["creationTimestamp"]) == len("2024-01-02T03:04:05Z")
    assert meta["creationTimestamp"].endswith("Z")
    assert meta["resourceVersion"] == "1"
    assert meta["namespace"] == "default"
    assert store.revision == 1
    assert store.get("ConfigMap", "default", "a") == stored


@pytest.mark.anyio
async def test_replacing_an_object_keeps_uid_and_creation_time_and_bumps_resource_version() -> None:
    store = ObjectStore()
    first = store.put(config_map("a", k="1"))
    store.put(config_map("other"))
    replacement = config_map("a", k="2")
    replacement["metadata"]["uid"] = "forged"
    replacement["metadata"]["creationTimestamp"] = "1999-01-01T00:00:00Z"
    second = store.put(replacement)
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]
    assert second["metadata"]["resourceVersion"] == "3"
    assert second["data"] == {"k": "2"}


@pytest.mark.anyio
async def test_a_new_object_keeps_the_uid_and_creation_time_it_brings() -> None:
    store = ObjectStore()
    obj = config_map("a")
    obj["metadata"]["uid"] = "1234"
    obj["metadata"]["creationTimestamp"] = "2020-05-06T07:08:09Z"
    stored = store.put(obj)
    assert stored["metadata"]["uid"] == "1234"
    assert stored["metadata"]["creationTimestamp"] == "2020-05-06T07:08:09Z"


@pytest.mark.anyio
async def test_get_and_put_hand_out_copies() -> None:
    store = ObjectStore()
    source = config_map("a", k="v")
    returned = store.put(source)
    source["data"]["k"] = "changed by caller"
    returned["data"]["k"] = "changed by caller"
    fetched = store.get("ConfigMap", "default", "a")
    assert fetched is not None
    fetched["data"]["k"] = "changed by caller"
    again = store.get("ConfigMap", "default", "a")
    assert again is not None and again["data"] == {"k": "v"}


@pytest.mark.anyio
async def test_get_of_a_missing_object_is_none() -> None:
    store = ObjectStore()
    store.put(config_map("a"))
    assert store.get("ConfigMap", "default", "b") is None
    assert store.get("ConfigMap", "other", "a") is None
    assert store.get("Secret", "default", "a") is None


@pytest.mark.anyio
async def test_cluster_scoped_objects_are_found_whatever_namespace_is_asked_for() -> None:
    store = ObjectStore()
    stored = store.put(namespace("shop"))
    assert "namespace" not in stored["metadata"]
    assert store.get("Namespace", "", "shop") == stored
    assert store.get("Namespace", "default", "shop") == stored


@pytest.mark.anyio
async def test_list_filters_by_kind_and_namespace_sorted_by_namespace_then_name() -> None:
    store = ObjectStore()
    for ns, name in [("b", "z"), ("a", "y"), ("b", "a"), ("a", "x")]:
        store.put(config_map(name, namespace=ns))
    store.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "a"}})
    everything = [
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in store.list("ConfigMap")
    ]
    assert everything == [("a", "x"), ("a", "y"), ("b", "a"), ("b", "z")]
    assert [o["metadata"]["name"] for o in store.list("ConfigMap", "b")] == ["a", "z"]
    assert store.list("ConfigMap", "c") == []
    assert [o["kind"] for o in store.list("Secret")] == ["Secret"]


@pytest.mark.anyio
async def test_delete_returns_the_object_and_bumps_the_revision() -> None:
    store = ObjectStore()
    stored = store.put(config_map("a"))
    removed = store.delete("ConfigMap", "default", "a")
    assert removed == stored
    assert store.get("ConfigMap", "default", "a") is None
    assert store.revision == 2


@pytest.mark.anyio
async def test_delete_of_a_missing_object_is_none_and_changes_nothing() -> None:
    store = ObjectStore()
    store.put(config_map("a"))
    watcher = store.subscribe(None)
    drain(watcher)
    assert store.delete("ConfigMap", "default", "b") is None
    assert store.revision == 1
    assert drain(watcher) == []


@pytest.mark.anyio
async def test_a_watcher_first_gets_added_for_existing_objects_then_the_changes() -> None:
    store = ObjectStore()
    store.put(config_map("b"))
    store.put(config_map("a"))
    watcher = store.subscribe("ConfigMap")
    assert drain(watcher) == [("ADDED", "a"), ("ADDED", "b")]
    store.put(config_map("a", k="v"))
    store.put(config_map("c"))
    store.delete("ConfigMap", "default", "b")
    assert drain(watcher) == [("MODIFIED", "a"), ("ADDED", "c"), ("DELETED", "b")]


@pytest.mark.anyio
async def test_watch_events_carry_the_stored_object() -> None:
    store = ObjectStore()
    watcher = store.subscribe("ConfigMap")
    stored = store.put(config_map("a", k="v"))
    event = watcher.queue.get_nowait()
    assert event == WatchEvent("ADDED", stored)


@pytest.mark.anyio
async def test_a_watcher_only_sees_its_kind_and_namespace() -> None:
    store = ObjectStore()
    store.put(config_map("old", namespace="shop"))
    store.put(config_map("old", namespace="other"))
    watcher = store.subscribe("ConfigMap", "shop")
    every_kind = store.subscribe(None)
    assert drain(watcher) == [("ADDED", "old")]
    assert len(drain(every_kind)) == 2
    store.put(config_map("new", namespace="other"))
    store.put(namespace("shop"))
    store.put(config_map("new", namespace="shop"))
    assert drain(watcher) == [("ADDED", "new")]
    assert drain(every_kind) == [("ADDED", "new"), ("ADDED", "shop"), ("ADDED", "new")]


@pytest.mark.anyio
async def test_an_unsubscribed_watcher_gets_nothing_more() -> None:
    store = ObjectStore()
    watcher = store.subscribe(None)
    store.unsubscribe(watcher)
    store.unsubscribe(watcher)  # a second time is harmless
    store.put(config_map("a"))
    assert drain(watcher) == []


@pytest.mark.anyio
async def test_a_transaction_announces_its_changes_together_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "objects.json"
    store = ObjectStore(path)
    watcher = store.subscribe(None)
    with store.transaction():
        store.put(config_map("a"))
        store.put(config_map("b"))
        store.delete("ConfigMap", "default", "a")
        assert drain(watcher) == []
        assert not path.exists()
    assert drain(watcher) == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    saved = json.loads(path.read_text())
    assert saved["revision"] == 3
    assert [o["metadata"]["name"] for o in saved["objects"]] == ["b"]


@pytest.mark.anyio
async def test_a_transaction_is_persisted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ObjectStore(tmp_path / "objects.json")
    writes: list[int] = []
    persist = store._persist

    def counting_persist() -> None:
        writes.append(store.revision)
        persist()

    monkeypatch.setattr(store, "_persist", counting_persist)
    with store.transaction():
        for name in ("a", "b", "c"):
            store.put(config_map(name))
    assert writes == [3]
    store.put(config_map("d"))
    assert writes == [3, 4]


@pytest.mark.anyio
async def test_nested_transactions_commit_with_the_outermost() -> None:
    store = ObjectStore()
    watcher = store.subscribe(None)
    with store.transaction():
        with store.transaction():
            store.put(config_map("a"))
        assert drain(watcher) == []
        store.put(config_map("b"))
    assert drain(watcher) == [("ADDED", "a"), ("ADDED", "b")]


@pytest.mark.anyio
async def test_an_empty_transaction_announces_nothing(tmp_path: Path) -> None:
    path = tmp_path / "objects.json"
    store = ObjectStore(path)
    watcher = store.subscribe(None)
    with store.transaction():
        pass
    assert drain(watcher) == []
    assert not path.exists()
    assert store.revision == 0


@pytest.mark.anyio
async def test_objects_survive_a_reload_from_the_json_file(tmp_path: Path) -> None:
    path = tmp_path / "objects.json"
    store = ObjectStore(path)
    kept = store.put(config_map("a", k="v"))
    ns = store.put(namespace("shop"))
    store.put(config_map("gone"))
    store.delete("ConfigMap", "default", "gone")

    reloaded = ObjectStore(path)
    assert reloaded.revision == store.revision == 4
    assert reloaded.get("ConfigMap", "default", "a") == kept
    assert reloaded.get("Namespace", "", "shop") == ns
    assert reloaded.get("ConfigMap", "default", "gone") is None
    assert not path.with_suffix(".tmp").exists()
    updated = reloaded.put(config_map("a", k="w"))
    assert updated["metadata"]["resourceVersion"] == "5"
    assert updated["metadata"]["uid"] == kept["metadata"]["uid"]


@pytest.mark.anyio
async def test_a_reloaded_store_announces_its_objects_to_new_watchers(tmp_path: Path) -> None:
    path = tmp_path / "objects.json"
    store = ObjectStore(path)
    store.put(config_map("a"))
    store.put(config_map("b"))
    watcher = ObjectStore(path).subscribe("ConfigMap")
    assert drain(watcher) == [("ADDED", "a"), ("ADDED", "b")]


@pytest.mark.anyio
async def test_a_store_without_a_file_starts_empty(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "missing.json")
    assert store.revision == 0
    assert store.list("ConfigMap") == []


@pytest.mark.anyio
async def test_wait_changed_wakes_up_when_the_revision_moves() -> None:
    store = ObjectStore()
    store.put(config_map("a"))
    start = store.revision

    async def change() -> None:
        store.put(config_map("b"))

    waiter = asyncio.create_task(store.wait_changed(start, timeout=30))
    changer = asyncio.create_task(change())
    async with asyncio.timeout(5):
        revision = await waiter
    await changer
    assert revision == start + 1


@pytest.mark.anyio
async def test_wait_changed_returns_at_once_when_the_revision_already_moved() -> None:
    store = ObjectStore()
    store.put(config_map("a"))
    store.put(config_map("b"))
    async with asyncio.timeout(5):
        revision = await store.wait_changed(1, timeout=30)
    assert revision == 2


@pytest.mark.anyio
async def test_wait_changed_gives_up_after_the_timeout_with_the_same_revision() -> None:
    store = ObjectStore()
    store.put(config_map("a"))
    async with asyncio.timeout(5):
        revision = await store.wait_changed(store.revision, timeout=0.01)
    assert revision == 1
