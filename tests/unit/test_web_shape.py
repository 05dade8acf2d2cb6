"""The dashboard's JSON shaped from metrics-API, Prometheus and tap answers."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from weft.web import queries as q
from weft.web import shape

Obj = dict[str, Any]
NS = "emojivoto"


def res(name: str, kind: str = "deployment", ns: str = NS) -> Obj:
    return {"namespace": ns, "type": kind, "name": name}


def row(name: str, success: int | str = 0, failure: int | str = 0, **extra: Any) -> Obj:
    stats = None
    if success or failure:
        stats = {
            "successCount": success,
            "failureCount": failure,
            "latencyMsP50": 2.0,
            "latencyMsP95": 5.0,
            "latencyMsP99": "NaN",
        }
    return {
        "resource": extra.pop("resource", res(name)),
        "timeWindow": "1m",
        "status": "Running",
        "meshedPodCount": 1,
        "runningPodCount": 2,
        "failedPodCount": 0,
        "stats": stats,
        "tcpStats": None,
        "trafficSplitStats": None,
        **extra,
    }


def stat(*rows: Obj) -> Obj:
    return {"ok": {"statTables": [{"podGroup": {"rows": list(rows)}}]}}


def test_stat_rows_compute_success_rate_and_rps_as_linkerd_does() -> None:
    tcp = {"openConnections": "3", "readBytesTotal": 600, "writeBytesTotal": "1200"}
    rows = shape.stat_rows(stat(row("web", 95, "5", tcpStats=tcp), row("idle")), 60)
    web, idle = rows
    assert web == {
        **res("web"),
        "status": "Running",
        "meshed": 1,
        "running": 2,
        "failed": 0,
        "requests": 100,
        "successRate": 0.95,
        "rps": pytest.approx(100 / 60),
        "p50": 2.0,
        "p95": 5.0,
        "p99": None,
        "tcp": {"connections": 3, "readRate": 10.0, "writeRate": 20.0},
        "split": None,
    }
    assert idle["requests"] == 0
    assert idle["successRate"] is None and idle["rps"] is None and idle["tcp"] is None
    assert shape.stat_rows({"ok": {}}, 60) == []


def test_edges_are_secured_when_both_ends_have_identities() -> None:
    answer = {
        "ok": {
            "edges": [
                {
                    "src": res("web"),
                    "dst": res("emoji"),
                    "clientId": "web.emojivoto.serviceaccount.identity.weft.cluster.local",
                    "serverId": "emoji.emojivoto.serviceaccount.identity.weft.cluster.local",
                    "noIdentityMsg": "",
                },
                {"src": res("web"), "dst": res("db"), "noIdentityMsg": "not_provided_by_remote"},
            ]
        }
    }
    secured, plain = shape.edges(answer)
    assert secured["secured"] is True
    assert plain["secured"] is False and plain["noIdentityMsg"] == "not_provided_by_remote"
    assert shape.involving([secured, plain], res("emoji")) == [secured]


def test_the_graph_joins_edges_with_the_traffic_each_source_sends() -> None:
    workloads = shape.stat_rows(
        stat(row("web", 99, 1), row("emoji", 50), row("voting", 10), row("vote-bot")), 60
    )
    found = shape.edges(
        {
            "ok": {
                "edges": [
                    {"src": res("vote-bot"), "dst": res("web"), "clientId": "a", "serverId": "b"},
                    {"src": res("web"), "dst": res("emoji"), "clientId": "c", "serverId": "d"},
                ]
            }
        }
    )
    outbound = {
        "emojivoto/deployment/web": shape.stat_rows(
            stat(row("emoji", 50), row("voting", 5, 5), row("idle")), 60
        ),
        "emojivoto/deployment/vote-bot": shape.stat_rows(
            stat(row("web", 60), row("db", 6, resource=res("db", ns="data"))), 60
        ),
    }
    graph = shape.graph(NS, workloads, found, outbound)
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert sorted(nodes) == [
        "data/deployment/db",
        "emojivoto/deployment/emoji",
        "emojivoto/deployment/vote-bot",
        "emojivoto/deployment/voting",
        "emojivoto/deployment/web",
    ]
    assert nodes["data/deployment/db"]["external"] is True
    assert nodes["data/deployment/db"]["rps"] is None
    assert nodes["emojivoto/deployment/web"]["successRate"] == 0.99
    edges = {(e["source"].split("/")[2], e["target"].split("/")[2]): e for e in graph["edges"]}
    assert sorted(edges) == [
        ("vote-bot", "db"),
        ("vote-bot", "web"),
        ("web", "emoji"),
        ("web", "voting"),
    ]
    assert edges[("vote-bot", "web")]["secured"] is True
    assert edges[("vote-bot", "web")]["rps"] == 1.0
    assert edges[("web", "voting")]["secured"] is False  # traffic, but no Edges entry
    assert edges[("web", "voting")]["successRate"] == 0.5


def test_routes_have_effective_and_actual_rates() -> None:
    answer = {
        "ok": {
            "routes": [
                {
                    "resource": "deployment/web",
                    "rows": [
                        {
                            "route": "GET /api/list",
                            "authority": "web-svc.emojivoto.svc.cluster.local:80",
                            "stats": {
                                "successCount": "90",
                                "failureCount": "10",
                                "actualSuccessCount": "90",
                                "actualFailureCount": "30",
                                "latencyMsP50": 1.5,
                            },
                        },
                        {"route": "", "authority": "x", "stats": None},
                    ],
                }
            ]
        }
    }
    listed, default = shape.routes(answer, 10)
    assert listed["successRate"] == 0.9 and listed["rps"] == 10.0
    assert listed["actualSuccessRate"] == 0.75 and listed["actualRps"] == 12.0
    assert listed["p50"] == 1.5 and listed["p99"] is None
    assert default["route"] == "[DEFAULT]" and default["successRate"] is None


def pod(name: str, ns: str = NS, owner: str = "web", **extra: Any) -> Obj:
    return {
        "name": f"{ns}/{name}",
        "podIP": "10.244.0.9",
        "owner": {"type": "deployment", "name": owner},
        "status": "Running",
        "added": True,
        "proxyReady": True,
        "proxyVersion": "0.1.0",
        "controlPlane": False,
        "uptime": "12s",
        **extra,
    }


def test_pods_and_proxies_per_namespace() -> None:
    found = shape.pods(
        {
            "pods": [
                pod("web-2"),
                pod("web-1"),
                pod("emoji-1", owner="emoji", proxyVersion=""),
                pod("plain-1", owner="plain", added=False, proxyVersion=""),
                pod("weft-tap-1", ns="weft", owner="weft-tap", added=False, controlPlane=True),
            ]
        }
    )
    assert [p["name"] for p in found] == ["emoji-1", "plain-1", "web-1", "web-2", "weft-tap-1"]
    assert found[0]["owner"] == {"type": "deployment", "name": "emoji"}
    assert shape.proxies_by_namespace(found) == [
        {"namespace": NS, "pods": 4, "meshed": 3, "versions": {"0.1.0": 2, "unknown": 1}},
        {"namespace": "weft", "pods": 1, "meshed": 0, "versions": {}},
    ]


def test_components_are_healthy_when_running_and_scraped() -> None:
    control = shape.pods(
        {
            "pods": [
                pod("weft-identity-1", ns="weft", owner="weft-identity"),
                pod("weft-tap-1", ns="weft", owner="weft-tap"),
                pod("weft-web-1", ns="weft", owner="weft-web", status="Pending"),
            ]
        }
    )
    up = [
        {"metric": {"pod": "weft-identity-1", "component": "identity"}, "value": [1, "1"]},
        {"metric": {"pod": "weft-tap-1"}, "value": [1, "0"]},
    ]
    components = {c["name"]: c for c in shape.components(control, up)}
    assert components["weft-identity"]["healthy"] is True
    assert components["weft-identity"]["pods"][0]["scraped"] is True
    assert components["weft-tap"]["healthy"] is False
    assert components["weft-web"]["healthy"] is False
    assert components["weft-web"]["pods"][0]["scraped"] is None


def test_certificates_warn_ahead_of_expiry() -> None:
    now = 1_000_000.0
    result = [
        {"metric": {"cert": "issuer"}, "value": [now, str(now + 30 * 86400)]},
        {
            "metric": {"cert": "anchor:root.weft.cluster.local"},
            "value": [now, str(now + 3650 * 86400)],
        },
        {"metric": {"cert": "issuer"}, "value": [now, "NaN"]},
    ]
    anchor, issuer = shape.certificates(result, now)
    assert anchor["kind"] == "trust anchor" and anchor["subject"] == "root.weft.cluster.local"
    assert anchor["warning"] is False and anchor["secondsLeft"] == 3650 * 86400
    assert issuer["kind"] == "issuer" and issuer["warning"] is True


def test_series_are_aligned_on_the_plan_grid() -> None:
    plan = q.SeriesPlan(start=100, end=120, step=10, queries={})
    results = {
        "requests": [
            {"metric": {"classification": "success"}, "values": [[100, "3"], [110, "1"]]},
            {"metric": {"classification": "failure"}, "values": [[110.0, "1"], [999, "5"]]},
        ],
        "p50": [{"metric": {}, "values": [[110, "2.5"], [120, "NaN"]]}],
    }
    out = shape.series(plan, results)
    assert out["timestamps"] == [100, 110, 120]
    assert out["successRate"] == [1.0, 0.5, None]
    assert out["rps"] == [3.0, 2.0, None]
    assert out["p50"] == [None, 2.5, None]
    assert out["p99"] == [None, None, None]


def test_tap_events_are_flattened_for_the_browser() -> None:
    source = {"ip": {"ipv4": 0x0AF40005}, "port": 41234}
    destination = {"ip": {"ipv4": 0x0AF40006}, "port": 8080}
    req = shape.tap_event(
        {
            "source": source,
            "destination": destination,
            "sourceMeta": {"labels": {"deployment": "vote-bot", "pod": "vote-bot-1"}},
            "destinationMeta": {"labels": {"tls": "true"}},
            "proxyDirection": "INBOUND",
            "http": {
                "requestInit": {
                    "id": {"base": 3, "stream": "7"},
                    "method": {"registered": "GET"},
                    "scheme": {"registered": "HTTP"},
                    "authority": "web-svc.emojivoto:80",
                    "path": "/api/list",
                    "headers": {
                        "headers": [
                            {"name": "user-agent", "value": base64.b64encode(b"curl").decode()}
                        ]
                    },
                }
            },
        }
    )
    assert req == {
        "direction": "inbound",
        "source": {
            "ip": "10.244.0.5",
            "port": 41234,
            "labels": {"deployment": "vote-bot", "pod": "vote-bot-1"},
        },
        "destination": {"ip": "10.244.0.6", "port": 8080, "labels": {"tls": "true"}},
        "route": {},
        "kind": "req",
        "method": "GET",
        "scheme": "http",
        "authority": "web-svc.emojivoto:80",
        "path": "/api/list",
        "headers": [["user-agent", "curl"]],
        "id": "3:7",
    }
    rsp = shape.tap_event(
        {
            "http": {
                "responseInit": {
                    "id": {"base": 3},
                    "sinceRequestInit": "0.001234s",
                    "httpStatus": 500,
                }
            }
        }
    )
    assert (rsp["kind"], rsp["status"], rsp["latencyUs"], rsp["id"]) == ("rsp", 500, 1234, "3:0")
    end = shape.tap_event(
        {
            "http": {
                "responseEnd": {
                    "id": {"base": 3, "stream": "7"},
                    "sinceRequestInit": "0.002s",
                    "sinceResponseInit": "0.000766s",
                    "responseBytes": "123",
                    "eos": {"grpcStatusCode": 0},
                }
            }
        }
    )
    assert end["kind"] == "end" and end["grpcStatus"] == 0 and end["resetError"] is None
    assert (end["totalUs"], end["durationUs"], end["bytes"]) == (2000, 766, 123)
    assert shape.tap_event({"error": "pod web-1: unreachable"}) == {
        "error": "pod web-1: unreachable"
    }
    assert shape.tap_event({"warning": "web-2: no answer"}) == {"warning": "web-2: no answer"}
    assert shape.tap_event({"http": "junk"})["kind"] == "unknown"
