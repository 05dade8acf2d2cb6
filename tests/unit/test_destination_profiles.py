"""ServiceProfiles and TrafficSplits as ``DestinationProfile`` messages (no I/O)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from weft.api import destination_pb2 as pb
from weft.api import http_types_pb2
from weft.controller.destination.addresses import ClusterState, MeshSettings
from weft.controller.destination.profiles import (
    default_retry_budget,
    profile_for,
    profile_message,
    weight,
)

Obj = dict[str, Any]

NS = "emojivoto"
FQN = "web.emojivoto.svc.cluster.local"
WEB = f"{FQN}:80"
WEB_IP = "10.96.0.30"
DOMAIN = "cluster.local"
SETTINGS = MeshSettings()


# -- builders -----------------------------------------------------------------------------


def service_profile(spec: Obj, *, namespace: str = NS, name: str = FQN) -> Obj:
    return {
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def traffic_split(backends: Any, *, service: str = "web", name: str = "web-split") -> Obj:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha1",
        "kind": "TrafficSplit",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"service": service, "backends": backends},
    }


def web_service() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"clusterIP": WEB_IP, "ports": [{"port": 80}]},
    }


def one_route(**fields: Any) -> Obj:
    """A profile spec with a single route ``r`` on ``GET``, plus ``fields``."""
    return {"routes": [{"name": "r", "condition": {"method": "GET"}, **fields}]}


def secs(seconds: int, nanos: int = 0) -> Duration:
    return Duration(seconds=seconds, nanos=nanos)


def path(regex: str) -> pb.RequestMatch:
    return pb.RequestMatch(path=pb.PathMatch(regex=regex))


def method(name: str) -> pb.RequestMatch:
    registered = http_types_pb2.HttpMethod.Registered.keys()
    if name in registered:
        return pb.RequestMatch(method=http_types_pb2.HttpMethod(registered=name))
    return pb.RequestMatch(method=http_types_pb2.HttpMethod(unregistered=name))


def all_of(*matches: pb.RequestMatch) -> pb.RequestMatch:
    return pb.RequestMatch(all=pb.RequestMatch.Seq(matches=matches))


def any_of(*matches: pb.RequestMatch) -> pb.RequestMatch:
    return pb.RequestMatch(any=pb.RequestMatch.Seq(matches=matches))


def not_(match: pb.RequestMatch) -> pb.RequestMatch:
    negated = pb.RequestMatch()
    getattr(negated, "not").CopyFrom(match)
    return negated


def status(low: int, high: int) -> pb.ResponseMatch:
    return pb.ResponseMatch(status=pb.HttpStatusRange(min=low, max=high))


def response_not(match: pb.ResponseMatch) -> pb.ResponseMatch:
    negated = pb.ResponseMatch()
    getattr(negated, "not").CopyFrom(match)
    return negated


def convert(spec: Obj, split: Obj | None = None) -> pb.DestinationProfile:
    return profile_message(service_profile(spec), split, FQN, 80, DOMAIN)


def routes_of(spec: Obj) -> list[pb.Route]:
    return list(convert(spec).routes)


# -- routes -------------------------------------------------------------------------------


def test_full_service_profile_becomes_routes_budget_and_overrides() -> None:
    spec = {
        "routes": [
            {
                "name": "POST /api/vote",
                "condition": {
                    "all": [
                        {"method": "POST"},
                        {"any": [{"pathRegex": "/api/vote"}, {"pathRegex": "/api/vote/.*"}]},
                    ],
                    "not": {"method": "PURGE"},
                },
                "responseClasses": [
                    {"condition": {"status": {"min": 500, "max": 599}}, "isFailure": True},
                    {"condition": {"not": {"status": {"min": 404}}}},
                    {
                        "condition": {"any": [{"status": {"max": 429}}, {"status": {"min": 503}}]},
                        "isFailure": True,
                    },
                ],
                "isRetryable": True,
                "timeout": "250ms",
            },
            {"name": "GET /", "condition": {"pathRegex": "/", "method": "GET"}},
        ],
        "retryBudget": {"retryRatio": 0.5, "minRetriesPerSecond": 3, "ttl": "1m30s"},
        "dstOverrides": [{"authority": "web-v2.emojivoto.svc.cluster.local:80", "weight": 1}],
    }
    vote = pb.Route(
        condition=all_of(
            all_of(method("POST"), any_of(path("/api/vote"), path("/api/vote/.*"))),
            not_(method("PURGE")),
        ),
        response_classes=[
            pb.ResponseClass(condition=status(500, 599), is_failure=True),
            pb.ResponseClass(
                condition=response_not(status(404, 404)),
            ),
            pb.ResponseClass(
                condition=pb.ResponseMatch(
                    any=pb.ResponseMatch.Seq(matches=[status(429, 429), status(503, 503)])
                ),
                is_failure=True,
            ),
        ],
        metrics_labels={"route": "POST /api/vote"},
        is_retryable=True,
        timeout=secs(0, 250_000_000),
    )
    index = pb.Route(
        condition=all_of(path("/"), method("GET")),
        metrics_labels={"route": "GET /"},
        timeout=secs(10),
    )
    assert convert(spec) == pb.DestinationProfile(
        routes=[vote, index],
        retry_budget=pb.RetryBudget(retry_ratio=0.5, min_retries_per_second=3, ttl=secs(90)),
        dst_overrides=[
            pb.WeightedDst(authority="web-v2.emojivoto.svc.cluster.local:80", weight=10_000)
        ],
        fully_qualified_name=FQN,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        *((m, http_types_pb2.HttpMethod(registered=m)) for m in ("GET", "DELETE", "TRACE")),
        ("PURGE", http_types_pb2.HttpMethod(unregistered="PURGE")),
        # Methods are case-sensitive: "get" is not GET.
        ("get", http_types_pb2.HttpMethod(unregistered="get")),
    ],
)
def test_methods_are_registered_or_unregistered(
    name: str, expected: http_types_pb2.HttpMethod
) -> None:
    (route,) = routes_of({"routes": [{"name": "r", "condition": {"method": name}}]})
    assert route.condition == pb.RequestMatch(method=expected)


def test_path_regex_is_passed_through_unanchored() -> None:
    (route,) = routes_of({"routes": [{"name": "r", "condition": {"pathRegex": "/books/\\d+"}}]})
    assert route.condition == path("/books/\\d+")


def test_route_timeout_defaults_to_ten_seconds() -> None:
    assert [r.timeout for r in routes_of(one_route())] == [secs(10)]
    assert [r.timeout for r in routes_of(one_route(timeout="2m"))] == [secs(120)]


def test_status_range_with_one_bound_is_a_single_status() -> None:
    classes = [
        {"condition": {"status": {"min": 503}}},
        {"condition": {"status": {"max": 502}}},
        {"condition": {"status": {"min": 500, "max": 0}}},
    ]
    (route,) = routes_of(one_route(responseClasses=classes))
    assert [c.condition for c in route.response_classes] == [
        status(503, 503),
        status(502, 502),
        status(500, 500),
    ]


def test_no_service_profile_is_the_default_profile() -> None:
    profile = profile_message(None, None, FQN, 80, DOMAIN)
    assert profile == pb.DestinationProfile(
        retry_budget=pb.RetryBudget(retry_ratio=0.2, min_retries_per_second=10, ttl=secs(10)),
        fully_qualified_name=FQN,
    )
    assert profile.retry_budget.retry_ratio == pytest.approx(0.2)
    assert convert(one_route()).retry_budget == default_retry_budget()


# -- weights and traffic splits -----------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [(1, 10_000), ("1", 10_000), ("500m", 5_000), ("0.1", 1_000), (0.1, 1_000), ("900m", 9_000)],
)
def test_weights_are_milli_values_times_ten(quantity: str | float, expected: int) -> None:
    assert weight(quantity) == expected
    spec = {**one_route(), "dstOverrides": [{"authority": "a.b:80", "weight": quantity}]}
    assert list(convert(spec).dst_overrides) == [
        pb.WeightedDst(authority="a.b:80", weight=expected)
    ]


def test_traffic_split_replaces_the_overrides_with_its_backends() -> None:
    spec = {**one_route(), "dstOverrides": [{"authority": "other:80", "weight": 1}]}
    split = traffic_split(
        [{"service": "web-v1", "weight": 1}, {"service": "web-v2", "weight": "900m"}]
    )
    profile = profile_message(service_profile(spec), split, FQN, 8080, DOMAIN)
    assert list(profile.dst_overrides) == [
        pb.WeightedDst(authority="web-v1.emojivoto.svc.cluster.local.:8080", weight=10_000),
        pb.WeightedDst(authority="web-v2.emojivoto.svc.cluster.local.:8080", weight=9_000),
    ]
    assert len(profile.routes) == 1


def test_traffic_split_without_a_service_profile() -> None:
    split = traffic_split([{"service": "web-v2", "weight": "500m"}])
    profile = profile_message(None, split, FQN, 80, "cluster.local.")
    assert profile == pb.DestinationProfile(
        retry_budget=default_retry_budget(),
        dst_overrides=[
            pb.WeightedDst(authority="web-v2.emojivoto.svc.cluster.local.:80", weight=5_000)
        ],
        fully_qualified_name=FQN,
    )


# -- malformed objects --------------------------------------------------------------------


def test_malformed_routes_and_classes_are_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = {
        "routes": [
            {"name": "no condition"},
            {"name": "empty condition", "condition": {}},
            {"name": "bad nested", "condition": {"all": [{"method": "GET"}, {"not": {}}]}},
            {"condition": {"method": "GET"}},
            "not a route",
            {"name": "bad retryable", "condition": {"method": "GET"}, "isRetryable": "yes"},
            {
                "name": "kept",
                "condition": {"method": "GET"},
                "timeout": "soon",
                "responseClasses": [
                    {"condition": {"status": {}}},
                    {"condition": {"status": {"min": 500, "max": 400}}},
                    {"condition": {"status": {"min": "500"}}},
                    {"isFailure": True},
                    {"condition": {"status": {"min": 500}}, "isFailure": True},
                ],
            },
        ],
        "retryBudget": {"retryRatio": 0.5},
        "dstOverrides": [
            {"authority": "a:80", "weight": "lots"},
            {"authority": "b:80", "weight": -1},
            {"weight": 1},
            {"authority": "c:80", "weight": True},
            {"authority": "d:80", "weight": "1"},
        ],
    }
    with caplog.at_level(logging.WARNING, logger="weft.controller.destination"):
        profile = convert(spec)
    assert profile == pb.DestinationProfile(
        routes=[
            pb.Route(
                condition=method("GET"),
                response_classes=[pb.ResponseClass(condition=status(500, 500), is_failure=True)],
                metrics_labels={"route": "kept"},
                timeout=secs(10),
            )
        ],
        retry_budget=default_retry_budget(),
        dst_overrides=[pb.WeightedDst(authority="d:80", weight=10_000)],
        fully_qualified_name=FQN,
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6 + 1 + 4 + 1 + 4
    assert all(f"ServiceProfile {NS}/{FQN}" in r.getMessage() for r in warnings)


@pytest.mark.parametrize(
    "spec",
    [
        None,
        "routes",
        {"routes": "r"},
        {"routes": None, "retryBudget": "b", "dstOverrides": {}},
        {"routes": [{"name": "r", "condition": {"method": 7}}]},
        {"retryBudget": {"ttl": "1h", "minRetriesPerSecond": -1}},
        {"retryBudget": {"ttl": "1h", "retryRatio": -0.5}},
        {"retryBudget": {"ttl": "-1s"}},
        {"retryBudget": {"ttl": "9" * 400 + "h"}},
    ],
)
def test_malformed_specs_leave_a_default_profile(spec: Any) -> None:
    assert convert(spec) == profile_message(None, None, FQN, 80, DOMAIN)


@pytest.mark.parametrize(
    "split",
    [
        {"metadata": {"name": "s", "namespace": NS}},
        {"metadata": {"name": "s", "namespace": NS}, "spec": {"backends": "web-v2"}},
        {"spec": {"service": "web", "backends": []}},
    ],
)
def test_unreadable_traffic_split_is_ignored(split: Obj) -> None:
    spec = {**one_route(), "dstOverrides": [{"authority": "other:80", "weight": 1}]}
    profile = profile_message(service_profile(spec), split, FQN, 80, DOMAIN)
    assert list(profile.dst_overrides) == [pb.WeightedDst(authority="other:80", weight=10_000)]


def test_malformed_traffic_split_backends_are_skipped() -> None:
    backends = [
        {"service": "web-v1", "weight": "x"},
        {"weight": 1},
        None,
        {"service": "web-v2", "weight": "2"},
    ]
    profile = profile_message(None, traffic_split(backends), FQN, 80, DOMAIN)
    assert list(profile.dst_overrides) == [
        pb.WeightedDst(authority="web-v2.emojivoto.svc.cluster.local.:80", weight=20_000)
    ]


# -- which profile a path gets ------------------------------------------------------------


def state_of(*objects: Obj) -> ClusterState:
    state = ClusterState()
    for obj in objects:
        state.apply(obj["kind"], "ADDED", obj)
    return state


def route_names(profile: pb.DestinationProfile) -> list[str]:
    return [r.metrics_labels["route"] for r in profile.routes]


def named_route(name: str) -> Obj:
    return {"routes": [{"name": name, "condition": {"pathRegex": "/"}}]}


def test_service_by_name_or_cluster_ip_gets_its_profile() -> None:
    state = state_of(web_service(), service_profile(named_route("web")))
    for target in (WEB, f"{FQN}.:80", f"{WEB_IP}:80"):
        profile = profile_for(state, target, "", SETTINGS)
        assert profile.fully_qualified_name == FQN
        assert route_names(profile) == ["web"]


def test_anything_but_a_known_service_gets_an_anonymous_default_profile() -> None:
    pod = {
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": NS},
        "status": {"phase": "Running", "podIP": "10.1.0.5"},
    }
    state = state_of(web_service(), pod, service_profile(named_route("web")))
    default = profile_message(None, None, "", 0, DOMAIN)
    for target in (
        "nope.emojivoto.svc.cluster.local:80",
        "10.1.0.5:8080",
        "10.96.0.99:80",
        "example.com:80",
        "",
    ):
        assert profile_for(state, target, "ns:emojivoto", SETTINGS) == default


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("ns:vote-bot", ["client"]),
        ('{"ns":"vote-bot","nodeName":"node-1","pod":"vote-bot-1"}', ["client"]),
        ("ns:elsewhere", ["web"]),
        ("", ["web"]),
        ("{not json", ["web"]),
        ('{"ns": 7}', ["web"]),
    ],
)
def test_client_namespace_profile_takes_precedence(token: str, expected: list[str]) -> None:
    state = state_of(
        web_service(),
        service_profile(named_route("web")),
        service_profile(named_route("client"), namespace="vote-bot"),
    )
    assert route_names(profile_for(state, WEB, token, SETTINGS)) == expected


def test_traffic_split_is_found_by_its_apex_service() -> None:
    split = traffic_split([{"service": "web-v2", "weight": 1}], name="b-split")
    other = traffic_split([{"service": "x", "weight": 1}], service="voting", name="a-split")
    later = traffic_split([{"service": "web-v3", "weight": 1}], name="c-split")
    state = state_of(web_service(), split, other, later)
    assert state.traffic_split(NS, "web") is split
    assert state.traffic_split("elsewhere", "web") is None
    authorities = [d.authority for d in profile_for(state, WEB, "", SETTINGS).dst_overrides]
    assert authorities == ["web-v2.emojivoto.svc.cluster.local.:80"]
    state.apply("TrafficSplit", "DELETED", split)
    state.apply("TrafficSplit", "DELETED", later)
    assert state.traffic_split(NS, "web") is None
    assert list(profile_for(state, WEB, "", SETTINGS).dst_overrides) == []


def test_state_replaces_profiles_after_a_fresh_list() -> None:
    state = state_of(web_service(), service_profile(named_route("old")))
    state.replace("ServiceProfile", [service_profile(named_route("new"))])
    assert route_names(profile_for(state, WEB, "", SETTINGS)) == ["new"]
    state.replace("ServiceProfile", [])
    assert state.profiles == {}
