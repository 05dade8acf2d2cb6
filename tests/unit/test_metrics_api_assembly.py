"""The metrics API's answers assembled from canned Prometheus answers and platform objects
(pure): rows for every object, NaN and empty answers, rounding, routes, edges and pod lists."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from weft.controller.destination.addresses import MeshSettings
from weft.controller.metrics_api import inventory as inv
from weft.controller.metrics_api import queries as q
from weft.controller.metrics_api.edges import edges
from weft.controller.metrics_api.listing import pod_entries, service_entries
from weft.controller.metrics_api.samples import AnswerError, Sample, count, latency, parse_vector
from weft.controller.metrics_api.stat_summary import authority_table, object_table, split_rows
from weft.controller.metrics_api.top_routes import RouteTarget, profile_routes, route_table
from weft.viz.resources import Resource

NS = "emojivoto"
NAN = math.nan


def pod(
    name: str,
    owner: str | None = "web",
    *,
    kind: str = "Deployment",
    phase: str = "Running",
    meshed: bool = True,
    labels: dict[str, str] | None = None,
    namespace: str = NS,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels or {"app": "web"},
    }
    if owner is not None:
        meta["ownerReferences"] = [{"kind": kind, "name": owner, "controller": True}]
    spec: dict[str, Any] = {
        "serviceAccountName": owner or "default",
        "containers": [{"name": "app"}],
    }
    if meshed:
        spec["initContainers"] = [{"name": "linkerd-proxy"}]
    return {"kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": phase}}


def obj(kind: str, name: str, namespace: str = NS, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": namespace}, **fields}


def sample(value: float, **labels: str) -> Sample:
    return Sample(labels, value)


def web_results(**overrides: list[Sample]) -> dict[str, list[Sample]]:
    key = {"namespace": NS, "deployment": "web"}
    results = {
        "requests": [
            sample(9.6, classification="success", tls="true", **key),
            sample(0.4, classification="success", tls="no_identity", **key),
            sample(2.5, classification="failure", tls="true", **key),
        ],
        "p50": [sample(1.4, **key)],
        "p95": [sample(240.0, **key)],
        "p99": [sample(NAN, **key)],
        "tcp_open": [sample(3, **key)],
        "tcp_read": [sample(1023.7, **key)],
        "tcp_write": [sample(2048, **key)],
    }
    results.update(overrides)
    return results


def deployment_table(
    results: dict[str, list[Sample]], *, traffic_only: bool = False, tcp: bool = True
) -> list[dict[str, Any]]:
    objects = [obj("Deployment", "vote-bot"), obj("Deployment", "web")]
    pods = [
        pod("web-1"),
        pod("web-2", meshed=False),
        pod("web-3", phase="Failed"),
        pod("web-4", phase="Succeeded"),
        pod("web-5", phase="Pending"),
        pod("bot-1", "vote-bot"),
    ]
    plan = q.stat_plan(Resource("deployment", "", NS))
    table = object_table(
        "deployment", objects, pods, results, plan, "1m", tcp=tcp, traffic_only=traffic_only
    )
    rows: list[dict[str, Any]] = table["podGroup"]["rows"]
    return rows


def test_every_object_has_a_row_and_counts_are_rounded_as_linkerd_rounds() -> None:
    bot, web = deployment_table(web_results())
    assert web == {
        "resource": {"namespace": NS, "type": "deployment", "name": "web"},
        "timeWindow": "1m",
        "status": "",
        "meshedPodCount": 2,
        "runningPodCount": 3,
        "failedPodCount": 1,
        "stats": {
            "successCount": 10,
            "failureCount": 3,
            "latencyMsP50": 1.0,
            "latencyMsP95": 240.0,
            "latencyMsP99": None,
        },
        "tcpStats": {"openConnections": 3, "readBytesTotal": 1024, "writeBytesTotal": 2048},
        "trafficSplitStats": None,
    }
    assert bot["resource"]["name"] == "vote-bot"
    assert (bot["stats"], bot["tcpStats"]) == (None, None)
    assert (bot["meshedPodCount"], bot["runningPodCount"]) == (1, 1)


def test_an_empty_answer_leaves_rows_without_stats() -> None:
    rows = deployment_table({})
    assert [r["stats"] for r in rows] == [None, None]
    assert [r["runningPodCount"] for r in rows] == [1, 3]


def test_all_nan_and_zero_is_no_traffic() -> None:
    key = {"namespace": NS, "deployment": "web"}
    results = {
        "requests": [sample(0.0, classification="success", tls="true", **key)],
        "p50": [sample(NAN, **key)],
        "p95": [sample(NAN, **key)],
        "p99": [sample(NAN, **key)],
    }
    assert deployment_table(results)[1]["stats"] is None


def test_a_partial_answer_fills_what_it_has() -> None:
    key = {"namespace": NS, "deployment": "web"}
    rows = deployment_table({"p50": [sample(7.6, **key)]}, tcp=False)
    assert rows[1]["stats"] == {
        "successCount": 0,
        "failureCount": 0,
        "latencyMsP50": 8.0,
        "latencyMsP95": None,
        "latencyMsP99": None,
    }
    assert rows[1]["tcpStats"] is None


def test_with_to_or_from_only_rows_with_traffic_are_kept() -> None:
    rows = deployment_table(web_results(), traffic_only=True)
    assert [r["resource"]["name"] for r in rows] == ["web"]


def test_pod_rows_show_status_and_hide_finished_pods() -> None:
    pods = [pod("web-1"), pod("web-3", phase="Failed"), pod("web-4", phase="Succeeded")]
    terminating = pod("web-5")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    plan = q.stat_plan(Resource("pod", "", NS))
    table = object_table(
        "pod", [*pods, terminating], [], {}, plan, "1m", tcp=False, traffic_only=False
    )
    rows = table["podGroup"]["rows"]
    assert [(r["resource"]["name"], r["status"]) for r in rows] == [
        ("web-1", "Running"),
        ("web-5", "Terminating"),
    ]
    assert (rows[0]["meshedPodCount"], rows[0]["runningPodCount"]) == (1, 1)


def test_namespace_and_service_rows_count_their_pods() -> None:
    pods = [pod("web-1"), pod("api-1", "api", labels={"app": "api"}), pod("x", namespace="other")]
    namespaces = [obj("Namespace", NS, ""), obj("Namespace", "other", "")]
    del namespaces[0]["metadata"]["namespace"], namespaces[1]["metadata"]["namespace"]
    plan = q.stat_plan(Resource("namespace"))
    results = {"requests": [sample(4, namespace=NS, classification="success", tls="true")]}
    rows = object_table(
        "namespace", namespaces, pods, results, plan, "1m", tcp=False, traffic_only=False
    )["podGroup"]["rows"]
    assert [(r["resource"], r["runningPodCount"]) for r in rows] == [
        ({"namespace": NS, "type": "namespace", "name": NS}, 2),
        ({"namespace": "other", "type": "namespace", "name": "other"}, 1),
    ]
    assert rows[0]["stats"]["successCount"] == 4
    service = obj("Service", "web-svc", spec={"selector": {"app": "web"}, "ports": [{"port": 80}]})
    plan = q.stat_plan(Resource("service", "", NS))
    results = {
        "requests": [
            sample(2, dst_namespace=NS, dst_service="web-svc", classification="failure", tls="true")
        ]
    }
    rows = object_table(
        "service", [service], pods, results, plan, "1m", tcp=False, traffic_only=False
    )["podGroup"]["rows"]
    assert rows[0]["runningPodCount"] == 1
    assert rows[0]["stats"]["failureCount"] == 2


def test_authority_rows_come_from_prometheus_alone() -> None:
    plan = q.stat_plan(Resource("authority", "", NS))
    results = {
        "requests": [
            sample(
                3,
                namespace=NS,
                authority="web-svc.emojivoto:80",
                classification="success",
                tls="true",
            ),
            sample(1, namespace=NS, classification="success", tls="true"),
        ]
    }
    rows = authority_table(results, plan, "1m")["podGroup"]["rows"]
    assert [r["resource"] for r in rows] == [
        {"namespace": NS, "type": "authority", "name": "web-svc.emojivoto:80"}
    ]
    assert rows[0]["meshedPodCount"] == 0


def test_a_traffic_split_has_a_row_per_leaf_with_its_weight() -> None:
    split = obj(
        "TrafficSplit",
        "web-split",
        spec={
            "service": "web-svc",
            "backends": [
                {"service": "web-v1", "weight": "900m"},
                {"service": "web-v2", "weight": 100},
            ],
        },
    )
    plan = q.split_plan(NS, "web-svc")
    results = {"requests": [sample(9, dst_service="web-v1", classification="success", tls="true")]}
    rows = split_rows(split, results, plan, "1m", tcp=False)
    assert [r["trafficSplitStats"] for r in rows] == [
        {"apex": "web-svc", "leaf": "web-v1", "weight": "900m"},
        {"apex": "web-svc", "leaf": "web-v2", "weight": "100"},
    ]
    assert rows[0]["stats"]["successCount"] == 9
    assert rows[1]["stats"] is None
    assert rows[0]["resource"] == {"namespace": NS, "type": "trafficsplit", "name": "web-split"}


@pytest.mark.parametrize(
    ("value", "expected"), [(0.5, 1), (1.5, 2), (2.49, 2), (NAN, 0), (-0.0, 0), (math.inf, 0)]
)
def test_counts_round_half_away_from_zero(value: float, expected: int) -> None:
    assert count(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(0.5, 1.0), (0.2, 0.0), (NAN, None), (math.inf, None), (299.5, 300.0)]
)
def test_latencies_round_and_have_no_value_without_traffic(
    value: float, expected: float | None
) -> None:
    assert latency(value) == expected


def test_prometheus_vectors_parse_with_nan_and_inf() -> None:
    answer = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"a": "b"}, "value": [1.5, "NaN"]},
                {"metric": {}, "value": [1.5, "+Inf"]},
                {"metric": {}, "value": [1.5, "42"]},
            ],
        },
    }
    values = [s.value for s in parse_vector(answer)]
    assert math.isnan(values[0]) and values[1:] == [math.inf, 42.0]
    with pytest.raises(AnswerError, match="not an instant vector"):
        parse_vector({"status": "success", "data": {"resultType": "matrix", "result": []}})
    with pytest.raises(AnswerError, match="malformed sample"):
        parse_vector({"data": {"resultType": "vector", "result": [{"metric": {}}]}})


# -- routes ---------------------------------------------------------------------------------

WEB_SVC = "web-svc.emojivoto.svc.cluster.local:80"
SETTINGS = MeshSettings()


def profile(namespace: str, *routes: str) -> dict[str, Any]:
    return obj(
        "ServiceProfile",
        "web-svc.emojivoto.svc.cluster.local",
        namespace,
        spec={"routes": [{"name": r, "condition": {"method": "GET"}} for r in routes]},
    )


def test_profile_routes_prefer_the_clients_namespace() -> None:
    profiles = [profile(NS, "GET /api/list"), profile("client-ns", "GET /own")]
    assert profile_routes(WEB_SVC, profiles, SETTINGS) == ("GET /api/list",)
    assert profile_routes(WEB_SVC, profiles, SETTINGS, "client-ns") == ("GET /own",)
    assert profile_routes(WEB_SVC, profiles, SETTINGS, "third") == ("GET /api/list",)
    assert profile_routes("10.0.0.1:80", profiles, SETTINGS) == ()


def test_routes_without_traffic_are_listed_and_unmatched_traffic_is_default() -> None:
    target = RouteTarget(
        "deployment/web", (WEB_SVC,), {WEB_SVC: ("GET /api/list", "GET /api/vote")}
    )
    results = {
        "requests": [
            sample(5, dst=WEB_SVC, rt_route="GET /api/list", classification="success"),
            sample(1, dst=WEB_SVC, rt_route="GET /api/list", classification="failure"),
            sample(2, dst=WEB_SVC, classification="success"),
        ],
        "actual_requests": [
            sample(5, dst=WEB_SVC, rt_route="GET /api/list", classification="success"),
            sample(3, dst=WEB_SVC, rt_route="GET /api/list", classification="failure"),
        ],
        "p50": [sample(3.2, dst=WEB_SVC, rt_route="GET /api/list"), sample(NAN, dst=WEB_SVC)],
        "p95": [sample(4.0, dst=WEB_SVC, rt_route="GET /old")],
    }
    found = route_table(target, results, "1m")
    assert found["resource"] == "deployment/web"
    rows = {(r["authority"], r["route"]): r for r in found["rows"]}
    assert list(rows) == [
        (WEB_SVC, "GET /api/list"),
        (WEB_SVC, "GET /api/vote"),
        (WEB_SVC, "[DEFAULT]"),
        (WEB_SVC, "GET /old"),
    ]
    assert rows[(WEB_SVC, "GET /api/list")]["stats"] == {
        "successCount": 5,
        "failureCount": 1,
        "latencyMsP50": 3.0,
        "latencyMsP95": None,
        "latencyMsP99": None,
        "actualSuccessCount": 5,
        "actualFailureCount": 3,
    }
    vote = rows[(WEB_SVC, "GET /api/vote")]
    assert vote["stats"]["successCount"] == 0 and vote["timeWindow"] == "1m"
    assert rows[(WEB_SVC, "[DEFAULT]")]["stats"]["successCount"] == 2


def test_an_authority_named_without_a_port_collects_every_port() -> None:
    name = "web-svc.emojivoto.svc.cluster.local"
    target = RouteTarget(f"authority/{name}", (name,), {})
    results = {"requests": [sample(4, dst=WEB_SVC, classification="success")]}
    rows = route_table(target, results, "1m")["rows"]
    assert [(r["authority"], r["stats"]["successCount"]) for r in rows] == [(name, 4)]


# -- edges ----------------------------------------------------------------------------------

WEB_ID = "web.emojivoto.serviceaccount.identity.weft.cluster.local"
EMOJI_ID = "emoji.emojivoto.serviceaccount.identity.weft.cluster.local"


def test_edges_pair_the_clients_call_with_the_identity_the_server_saw() -> None:
    outbound = [
        sample(
            1,
            namespace=NS,
            deployment="web",
            dst_namespace=NS,
            dst_deployment="emoji",
            server_id=EMOJI_ID,
            tls="true",
        ),
        sample(
            1,
            namespace=NS,
            deployment="vote-bot",
            dst_namespace=NS,
            dst_deployment="web",
            tls="no_identity",
            no_tls_reason="not_provided_by_service_discovery",
        ),
        sample(
            1,
            namespace="other",
            deployment="x",
            dst_namespace="other",
            dst_deployment="y",
            tls="disabled",
        ),
        sample(1, namespace=NS, deployment="web", dst_namespace="", dst_deployment=""),
    ]
    inbound = [
        sample(1, namespace=NS, deployment="emoji", client_id=WEB_ID, tls="true"),
        sample(
            1, namespace=NS, deployment="emoji", client_id="someone.else.serviceaccount", tls="true"
        ),
    ]
    identities = {(NS, "web"): {WEB_ID}, (NS, "vote-bot"): set()}
    found = edges("deployment", NS, outbound, inbound, identities)
    assert found == [
        {
            "src": {"namespace": NS, "type": "deployment", "name": "vote-bot"},
            "dst": {"namespace": NS, "type": "deployment", "name": "web"},
            "clientId": "",
            "serverId": "",
            "noIdentityMsg": "Not Provided By Service Discovery",
        },
        {
            "src": {"namespace": NS, "type": "deployment", "name": "web"},
            "dst": {"namespace": NS, "type": "deployment", "name": "emoji"},
            "clientId": WEB_ID,
            "serverId": EMOJI_ID,
            "noIdentityMsg": "",
        },
    ]
    everywhere = edges("deployment", "", outbound, inbound, identities)
    assert [e["noIdentityMsg"] for e in everywhere][-1] == "Disabled"


# -- pods and services ----------------------------------------------------------------------


def test_list_pods_shows_owner_mesh_state_and_uptime() -> None:
    web = pod("web-1")
    web["metadata"]["annotations"] = {"linkerd.io/proxy-version": "0.1.0"}
    web["status"] = {
        "phase": "Running",
        "podIP": "10.244.0.5",
        "startTime": "2026-01-01T00:00:00Z",
        "initContainerStatuses": [{"name": "linkerd-proxy", "ready": True}],
    }
    job = pod("migrate-x", "migrate", kind="Job", meshed=False, phase="Succeeded")
    control = pod("weft-tap-1", None, namespace="weft", meshed=False)
    control["metadata"]["labels"] = {"weft.io/control-plane-component": "tap"}
    now = datetime(2026, 1, 1, 0, 1, 12, tzinfo=UTC)
    entries = pod_entries([web, job, control], now)
    assert entries[0] == {
        "name": "emojivoto/migrate-x",
        "podIP": "",
        "owner": {"type": "job", "name": "migrate"},
        "status": "Succeeded",
        "added": False,
        "proxyReady": False,
        "proxyVersion": "",
        "controlPlane": False,
        "uptime": "",
    }
    assert entries[1] == {
        "name": "emojivoto/web-1",
        "podIP": "10.244.0.5",
        "owner": {"type": "deployment", "name": "web"},
        "status": "Running",
        "added": True,
        "proxyReady": True,
        "proxyVersion": "0.1.0",
        "controlPlane": False,
        "uptime": "72s",
    }
    assert entries[2]["controlPlane"] is True and entries[2]["owner"] is None


def test_services_are_listed_by_namespace_and_name() -> None:
    services = [obj("Service", "b"), obj("Service", "a", "z"), obj("Service", "a")]
    assert service_entries(services) == [
        {"name": "a", "namespace": NS},
        {"name": "b", "namespace": NS},
        {"name": "a", "namespace": "z"},
    ]


def test_services_front_the_pods_they_select_and_give_their_authorities() -> None:
    web = obj(
        "Service",
        "web-svc",
        spec={"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443}]},
    )
    other = obj("Service", "api", spec={"selector": {"app": "api"}, "ports": [{"port": 8080}]})
    headless = obj("Service", "all", spec={"ports": [{"port": 1}]})
    assert inv.services_for([pod("web-1")], [other, headless, web]) == [web]
    assert inv.authorities(web, "cluster.local") == [
        "web-svc.emojivoto.svc.cluster.local:80",
        "web-svc.emojivoto.svc.cluster.local:443",
    ]
    migrate = pod("m", "migrate", kind="Job", labels={"app": "migrate"})
    index = inv.PodIndex([migrate, pod("web-1"), pod("x", namespace="o")])
    assert [p["metadata"]["name"] for p in index.pods_for("job", obj("Job", "migrate"))] == ["m"]
    assert [p["metadata"]["name"] for p in index.pods_for("service", web)] == ["web-1"]
    namespace = {"kind": "Namespace", "metadata": {"name": NS}}
    assert len(index.pods_for("namespace", namespace)) == 2
    assert index.pods_for("trafficsplit", obj("TrafficSplit", "s")) == []
