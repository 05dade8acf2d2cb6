"""The tap controller's pure parts: which proxies a tap reaches, the query, enrichment, authz."""

from __future__ import annotations

from typing import Any

import pytest

from weft.controller.destination.addresses import MeshSettings
from weft.controller.tap.authz import Unauthorized, bearer_token, check_user, parse_users
from weft.controller.tap.enrich import address_ip, enrich, pod_index
from weft.controller.tap.query import QueryError, match_json, parse_query, per_pod_limit
from weft.controller.tap.targets import TapTarget, TargetError, tap_targets
from weft.viz.resources import Resource

Obj = dict[str, Any]
SETTINGS = MeshSettings("weft", "cluster.local", "cluster.local")


def pod(
    name: str,
    ip: str | None = "10.0.0.2",
    *,
    ns: str = "shop",
    owner: tuple[str, str] | None = ("Deployment", "web"),
    meshed: bool = True,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    phase: str = "Running",
    terminating: bool = False,
) -> Obj:
    meta: Obj = {"name": name, "namespace": ns, "labels": labels or {"app": "web"}}
    if owner is not None:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    if annotations:
        meta["annotations"] = annotations
    if terminating:
        meta["deletionTimestamp"] = "2026-12-04T00:00:00Z"
    spec: Obj = {"serviceAccountName": "web", "containers": [{"name": "app"}]}
    if meshed:
        proxy_env = [{"name": k, "value": v} for k, v in (env or {}).items()]
        spec["initContainers"] = [{"name": "linkerd-proxy", "env": proxy_env}]
    status: Obj = {"phase": phase}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "spec": spec, "status": status}


WEB_ID = "web.shop.serviceaccount.identity.weft.cluster.local"


def test_a_deployment_taps_its_running_meshed_pods_on_their_control_port() -> None:
    pods = [
        pod("web-1", "10.0.0.2"),
        pod("web-2", "10.0.0.3", env={"LINKERD2_PROXY_CONTROL_LISTEN_ADDR": "0.0.0.0:5190"}),
        pod("web-3", None, phase="Pending"),
        pod("web-4", "10.0.0.5", terminating=True),
        pod("api-1", "10.0.0.6", owner=("Deployment", "api")),
        pod("web-x", "10.0.0.7", ns="other"),
    ]
    got = tap_targets(Resource("deployment", "web", "shop"), pods, [], SETTINGS)
    assert got == [
        TapTarget("shop", "web-1", "10.0.0.2", 4190, WEB_ID),
        TapTarget("shop", "web-2", "10.0.0.3", 5190, WEB_ID),
    ]
    assert got[1].addr == "10.0.0.3:5190"


def test_namespaces_pods_jobs_and_services_select_their_pods() -> None:
    pods = [
        pod("web-1", "10.0.0.2"),
        pod("migrate-1", "10.0.0.3", owner=("Job", "migrate"), labels={"app": "migrate"}),
    ]
    service = {
        "metadata": {"name": "web-svc", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}},
    }

    def names(resource: Resource) -> list[str]:
        return [t.pod for t in tap_targets(resource, pods, [service], SETTINGS)]

    assert names(Resource("namespace", "shop", "shop")) == ["web-1", "migrate-1"]
    assert names(Resource("pod", "migrate-1", "shop")) == ["migrate-1"]
    assert names(Resource("job", "migrate", "shop")) == ["migrate-1"]
    assert names(Resource("service", "web-svc", "shop")) == ["web-1"]


@pytest.mark.parametrize(
    ("pods", "resource", "status", "text"),
    [
        ([], Resource("deployment", "web", "shop"), 404, "no pods found for deployment/web"),
        (
            [pod("web-1", meshed=False)],
            Resource("deployment", "web", "shop"),
            503,
            "no meshed pods",
        ),
        (
            [pod("web-1", env={"LINKERD2_PROXY_IDENTITY_DISABLED": "disabled"})],
            Resource("deployment", "web", "shop"),
            503,
            "no meshed pods with identity",
        ),
        (
            [pod("web-1", annotations={"config.linkerd.io/disable-tap": "true"})],
            Resource("deployment", "web", "shop"),
            503,
            "all pods found for deployment/web have tapping disabled",
        ),
        (
            [pod("web-1", env={"LINKERD2_PROXY_TAP_DISABLED": "true"})],
            Resource("deployment", "web", "shop"),
            503,
            "have tapping disabled",
        ),
        ([pod("web-1")], Resource("authority", "x", "shop"), 400, "cannot tap authorities"),
        ([pod("web-1")], Resource("deployment", "", "shop"), 400, "tap needs a name"),
    ],
)
def test_why_nothing_can_be_tapped(
    pods: list[Obj], resource: Resource, status: int, text: str
) -> None:
    with pytest.raises(TargetError) as info:
        tap_targets(resource, pods, [], SETTINGS)
    assert info.value.status == status
    assert text in str(info.value)


def test_a_query_becomes_an_all_match_of_linkerds_filters() -> None:
    body = {
        "toResource": {"type": "deploy", "name": "emoji"},
        "method": "post",
        "path": "/emojivoto.v1",
        "authority": "emoji-svc:8080",
        "scheme": "http",
        "maxRps": 10,
        "extract": True,
    }
    query = parse_query("emojivoto", "deployments", "web", body)
    assert query.target == Resource("deployment", "web", "emojivoto")
    assert query.to == Resource("deployment", "emoji", "emojivoto")
    assert query.extract and query.max_rps == 10.0
    assert match_json(query) == {
        "all": {
            "matches": [
                {"destinationLabel": {"key": "deployment", "value": "emoji"}},
                {"destinationLabel": {"key": "namespace", "value": "emojivoto"}},
                {"http": {"scheme": {"registered": "HTTP"}}},
                {"http": {"method": {"registered": "POST"}}},
                {"http": {"authority": {"exact": "emoji-svc:8080"}}},
                {"http": {"path": {"prefix": "/emojivoto.v1"}}},
            ]
        }
    }


def test_a_namespace_tap_and_odd_methods_and_jobs() -> None:
    query = parse_query(
        "shop", "", "", {"method": "PURGE", "toResource": {"type": "job", "name": "m"}}
    )
    assert query.target == Resource("namespace", "shop", "shop")
    assert match_json(query)["all"]["matches"] == [
        {"destinationLabel": {"key": "k8s_job", "value": "m"}},
        {"destinationLabel": {"key": "namespace", "value": "shop"}},
        {"http": {"method": {"unregistered": "PURGE"}}},
    ]
    assert match_json(parse_query("shop", "", "", None)) == {"all": {"matches": []}}


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"maxRps": 0},
        {"maxRps": "fast"},
        {"maxRps": True},
        {"maxRps": float("inf")},
        {"scheme": "gopher"},
        {"path": 3},
        {"extract": "yes"},
        {"toResource": {"type": "nope"}},
    ],
)
def test_malformed_queries_are_refused(body: Any) -> None:
    with pytest.raises(QueryError):
        parse_query("shop", "deployments", "web", body)


def test_max_rps_is_split_evenly_with_at_least_one_each() -> None:
    assert per_pod_limit(100, 4) == 25
    assert per_pod_limit(1, 3) == 1
    assert per_pod_limit(10, 0) == 10


def test_events_get_the_pods_behind_their_addresses() -> None:
    pods = [pod("web-1", "10.0.0.2"), pod("m-1", "10.0.0.3", owner=("Job", "m"))]
    index = pod_index(pods)
    event: Obj = {
        "source": {"ip": {"ipv4": 0x0A000002}, "port": 40000},
        "destination": {"ip": {"ipv4": 0x0A000003}, "port": 8080},
        "destinationMeta": {"labels": {"tls": "true", "pod": "kept"}},
    }
    enrich(event, index)
    assert event["sourceMeta"]["labels"] == {
        "pod": "web-1",
        "namespace": "shop",
        "serviceaccount": "web",
        "deployment": "web",
    }
    assert event["destinationMeta"]["labels"]["k8s_job"] == "m"
    assert event["destinationMeta"]["labels"]["pod"] == "kept"  # the proxy's word stands
    assert address_ip({"ip": {"ipv6": {"first": "0", "last": "1"}}}) == "::1"
    assert address_ip({"port": 1}) is None


def test_only_bearer_tokens_of_allowed_users_may_tap() -> None:
    assert bearer_token("Bearer abc ") == "abc"
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(Unauthorized) as info:
            bearer_token(header)
        assert info.value.status == 401
    users = parse_users("weft:admin, ,system:serviceaccount:weft:weft-web")
    assert users == ("weft:admin", "system:serviceaccount:weft:weft-web")
    check_user("weft:admin", users)
    with pytest.raises(Unauthorized) as denied:
        check_user("system:serviceaccount:shop:web", users)
    assert denied.value.status == 403
