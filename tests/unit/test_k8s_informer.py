"""The informer's pure parts: its cache (relists as missed events), watch lines, back-off;
EndpointSlices as Endpoints; TokenReview statuses."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from weft.k8s.cache import ObjectCache
from weft.k8s.client import KubeClient, KubeError
from weft.k8s.endpointslices import EndpointsView, endpoints_for
from weft.k8s.informer import MAX_BACKOFF, Expired, Informer, backoff_delay, decode_line
from weft.k8s.kinds import api_kind
from weft.k8s.platform import review_from_status
from weft.platform import WatchEvent

Obj = dict[str, Any]


def obj(name: str, version: str, ns: str = "default") -> Obj:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": ns, "resourceVersion": version}}


def test_cache_passes_changes_on_and_drops_replays() -> None:
    cache = ObjectCache()
    assert cache.apply("ADDED", obj("a", "1")) == WatchEvent("ADDED", obj("a", "1"))
    assert cache.apply("MODIFIED", obj("a", "1")) is None  # the same version again
    event = cache.apply("MODIFIED", obj("a", "2"))
    assert event is not None and event.type == "MODIFIED"
    assert cache.apply("DELETED", obj("b", "3")) is None  # never seen
    assert cache.apply("DELETED", obj("a", "4")) == WatchEvent("DELETED", obj("a", "4"))
    assert cache.items() == []


def test_a_relist_yields_exactly_what_was_missed() -> None:
    cache = ObjectCache()
    for o in (obj("kept", "1"), obj("changed", "1"), obj("gone", "1")):
        cache.apply("ADDED", o)
    events = cache.relist([obj("kept", "1"), obj("changed", "5"), obj("new", "6")])
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("DELETED", "gone"),
        ("MODIFIED", "changed"),
        ("ADDED", "new"),
    ]
    assert [o["metadata"]["name"] for o in cache.items()] == ["changed", "kept", "new"]
    assert cache.items("elsewhere") == []


def test_watch_lines() -> None:
    line = decode_line(b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}\n')
    assert line is not None and line.type == "BOOKMARK"
    assert decode_line(b"  \n") is None
    with pytest.raises(ValueError):
        decode_line(b'{"type":"ADDED"}')
    with pytest.raises(ValueError):
        decode_line(b"{not json")


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    first = [backoff_delay(1) for _ in range(50)]
    assert all(0.1 <= d <= 0.2 for d in first)
    assert len(set(first)) > 1
    assert all(MAX_BACKOFF / 2 <= backoff_delay(30) <= MAX_BACKOFF for _ in range(50))


def endpoint_slice(name: str, service: str | None, endpoints: list[Obj], version: str = "1") -> Obj:
    labels = {"kubernetes.io/service-name": service} if service else {}
    return {
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "ns", "labels": labels, "resourceVersion": version},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def endpoint(ip: str, ready: bool | None, pod: str) -> Obj:
    out: Obj = {"addresses": [ip], "targetRef": {"kind": "Pod", "name": pod, "namespace": "ns"}}
    if ready is not None:
        out["conditions"] = {"ready": ready}
    return out


def test_slices_become_one_endpoints_per_service() -> None:
    a = endpoint_slice(
        "web-a", "web", [endpoint("10.0.0.1", True, "p1"), endpoint("10.0.0.2", False, "p2")]
    )
    b = endpoint_slice("web-b", "web", [endpoint("10.0.0.3", None, "p3")])
    result = endpoints_for("ns", "web", [b, a])
    assert result["metadata"] == {"name": "web", "namespace": "ns", "resourceVersion": "1,1"}
    first, second = result["subsets"]
    assert first["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert [x["ip"] for x in first["addresses"]] == ["10.0.0.1"]
    assert [x["ip"] for x in first["notReadyAddresses"]] == ["10.0.0.2"]
    assert first["addresses"][0]["targetRef"] == {"kind": "Pod", "name": "p1", "namespace": "ns"}
    assert [x["ip"] for x in second["addresses"]] == ["10.0.0.3"]  # unset ready means ready


def test_the_view_follows_slice_events() -> None:
    view = EndpointsView()
    a = endpoint_slice("web-a", "web", [endpoint("10.0.0.1", True, "p1")])
    added = view.apply(WatchEvent("ADDED", a))
    assert added is not None and added.type == "ADDED"
    b = endpoint_slice("web-b", "web", [endpoint("10.0.0.2", True, "p2")])
    modified = view.apply(WatchEvent("ADDED", b))
    assert modified is not None and modified.type == "MODIFIED"
    assert len(modified.object["subsets"]) == 2
    assert view.apply(WatchEvent("ADDED", endpoint_slice("x", None, []))) is None
    view.apply(WatchEvent("DELETED", a))
    deleted = view.apply(WatchEvent("DELETED", b))
    assert deleted is not None and deleted.type == "DELETED"
    assert view.items() == []


def test_token_review_statuses() -> None:
    workload = review_from_status(
        {
            "authenticated": True,
            "user": {
                "username": "system:serviceaccount:emojivoto:web",
                "extra": {"authentication.kubernetes.io/pod-name": ["web-1"]},
            },
        }
    )
    assert (workload.namespace, workload.service_account, workload.pod) == (
        "emojivoto",
        "web",
        "web-1",
    )
    assert workload.username == "system:serviceaccount:emojivoto:web"
    user = review_from_status({"authenticated": True, "user": {"username": "alice"}})
    assert user.user == "alice"
    refused = review_from_status({"authenticated": False, "error": "invalid bearer token"})
    assert not refused.authenticated and refused.reason == "invalid bearer token"


def test_the_informer_follows_events_bookmarks_and_expiry() -> None:
    informer = Informer(cast(KubeClient, None), api_kind("Pod"))
    _, sub = informer.subscribe()
    informer._handle(json.dumps({"type": "ADDED", "object": obj("a", "5")}).encode())
    assert informer.resource_version == "5"
    event = sub.queue.get_nowait()
    assert (
        event is not None and event.object["kind"] == "Pod" and event.object["apiVersion"] == "v1"
    )
    bookmark = {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "9"}}}
    informer._handle(json.dumps(bookmark).encode())
    assert informer.resource_version == "9"
    assert sub.queue.empty()  # a bookmark is no change
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    with pytest.raises(Expired):
        informer._handle(json.dumps(gone).encode())
    other = {"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "boom"}}
    with pytest.raises(KubeError):
        informer._handle(json.dumps(other).encode())
    with pytest.raises(ValueError):
        informer._handle(json.dumps({"type": "WEIRD", "object": {}}).encode())
