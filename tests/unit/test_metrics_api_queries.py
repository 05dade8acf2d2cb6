"""The metrics API's PromQL (Linkerd's public-API queries), request checks and escaping (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from weft.controller.metrics_api import queries as q
from weft.controller.metrics_api.requests import (
    BadRequest,
    edges_request,
    list_pods_request,
    stat_summary_request,
    top_routes_request,
)
from weft.controller.metrics_api.selectors import SelectorError, matches, parse_selector
from weft.viz.durations import DurationError, parse_duration
from weft.viz.promql import quote_meta, string_literal
from weft.viz.resources import Resource

WEB = Resource("deployment", "web", "emojivoto")


def test_default_stat_queries_read_the_resources_inbound_series() -> None:
    plan = q.stat_plan(WEB)
    assert plan.group_by == ("namespace", "deployment")
    queries = q.stat_queries(plan, "1m", tcp=True)
    labels = '{deployment="web", direction="inbound", namespace="emojivoto"}'
    tcp = '{deployment="web", direction="inbound", namespace="emojivoto", peer="src"}'
    assert queries == {
        "requests": f"sum(increase(response_total{labels}[1m])) "
        "by (namespace, deployment, classification, tls)",
        "p50": "histogram_quantile(0.5, sum(irate(response_latency_ms_bucket"
        f"{labels}[1m])) by (le, namespace, deployment))",
        "p95": "histogram_quantile(0.95, sum(irate(response_latency_ms_bucket"
        f"{labels}[1m])) by (le, namespace, deployment))",
        "p99": "histogram_quantile(0.99, sum(irate(response_latency_ms_bucket"
        f"{labels}[1m])) by (le, namespace, deployment))",
        "tcp_open": f"sum(tcp_open_connections{tcp}) by (namespace, deployment)",
        "tcp_read": f"sum(increase(tcp_read_bytes_total{tcp}[1m])) by (namespace, deployment)",
        "tcp_write": f"sum(increase(tcp_write_bytes_total{tcp}[1m])) by (namespace, deployment)",
    }


def test_without_tcp_stats_only_requests_and_latencies_are_queried() -> None:
    assert set(q.stat_queries(q.stat_plan(WEB), "10s", tcp=False)) == {
        "requests",
        "p50",
        "p95",
        "p99",
    }


@pytest.mark.parametrize(
    ("selected", "labels", "group_by"),
    [
        (
            Resource("namespace", "emojivoto", "emojivoto"),
            '{direction="inbound", namespace="emojivoto"}',
            ("namespace",),
        ),
        (Resource("namespace"), '{direction="inbound"}', ("namespace",)),
        (
            Resource("deployment", "", "emojivoto"),
            '{direction="inbound", namespace="emojivoto"}',
            ("namespace", "deployment"),
        ),
        (
            Resource("job", "migrate", "db"),
            '{direction="inbound", k8s_job="migrate", namespace="db"}',
            ("namespace", "k8s_job"),
        ),
        (
            Resource("pod", "web-1", "emojivoto"),
            '{direction="inbound", namespace="emojivoto", pod="web-1"}',
            ("namespace", "pod"),
        ),
        (
            Resource("authority", "web-svc:80", "emojivoto"),
            '{authority="web-svc:80", direction="inbound"}',
            ("namespace", "authority"),
        ),
        (
            Resource("service", "web-svc", "emojivoto"),
            '{direction="outbound", dst_namespace="emojivoto", dst_service="web-svc"}',
            ("dst_namespace", "dst_service"),
        ),
    ],
)
def test_each_type_is_selected_and_grouped_by_its_label(
    selected: Resource, labels: str, group_by: tuple[str, ...]
) -> None:
    plan = q.stat_plan(selected)
    assert q.selector(plan.matchers) == labels
    assert plan.group_by == group_by


def test_to_reads_the_sources_outbound_series_towards_the_target() -> None:
    plan = q.stat_plan(WEB, to=Resource("deployment", "emoji", "emojivoto"))
    assert q.selector(plan.matchers) == (
        '{deployment="web", direction="outbound", dst_deployment="emoji", '
        'dst_namespace="emojivoto", namespace="emojivoto"}'
    )
    assert plan.group_by == ("namespace", "deployment")
    assert plan.peer == "dst"


def test_from_reads_the_sources_outbound_series_grouped_by_destination() -> None:
    plan = q.stat_plan(WEB, source=Resource("deployment", "vote-bot", "emojivoto"))
    assert q.selector(plan.matchers) == (
        '{deployment="vote-bot", direction="outbound", dst_deployment="web", '
        'dst_namespace="emojivoto", namespace="emojivoto"}'
    )
    assert plan.group_by == ("dst_namespace", "dst_deployment")


def test_to_an_authority_uses_the_authority_label() -> None:
    plan = q.stat_plan(WEB, to=Resource("authority", "web-svc.emojivoto:80"))
    assert ("authority", "=", "web-svc.emojivoto:80") in plan.matchers


def test_a_traffic_split_reads_its_apexs_outbound_requests_by_leaf() -> None:
    plan = q.split_plan("emojivoto", "web-svc")
    assert plan.group_by == ("dst_service",)
    assert q.selector(plan.matchers) == (
        '{authority=~"web-svc(\\\\.emojivoto(\\\\.svc(\\\\..+)?)?)?(:[0-9]+)?", '
        'direction="outbound", dst_namespace="emojivoto"}'
    )


def test_label_values_are_escaped_inside_promql_strings() -> None:
    hostile = Resource("authority", 'a"} or vector(1) #\\\n')
    labels = q.selector(q.stat_plan(hostile).matchers)
    assert labels == '{authority="a\\"} or vector(1) #\\\\\\n", direction="inbound"}'
    assert string_literal("tab\tbell\x07") == '"tab\\tbell\\x07"'
    assert quote_meta("web-svc.ns.svc:80") == "web-svc\\.ns\\.svc:80"
    assert quote_meta("a+b*(c)|[d]{e}^$?\\") == "a\\+b\\*\\(c\\)\\|\\[d\\]\\{e\\}\\^\\$\\?\\\\"


def test_route_queries_match_the_authorities_exactly_or_any_port() -> None:
    matchers = q.route_matchers(WEB, ["web-svc.emojivoto.svc.cluster.local:80", "x.y"])
    labels = q.selector(matchers)
    assert labels == (
        '{deployment="web", direction="outbound", '
        'dst=~"web-svc\\\\.emojivoto\\\\.svc\\\\.cluster\\\\.local:80|x\\\\.y(:[0-9]+)?", '
        'namespace="emojivoto"}'
    )
    queries = q.route_queries(matchers, "1m")
    assert queries["requests"] == (
        f"sum(increase(route_response_total{labels}[1m])) by (rt_route, dst, classification)"
    )
    assert queries["actual_requests"] == (
        f"sum(increase(route_actual_response_total{labels}[1m])) by (rt_route, dst, classification)"
    )
    assert queries["p99"] == (
        "histogram_quantile(0.99, sum(irate(route_response_latency_ms_bucket"
        f"{labels}[1m])) by (le, rt_route, dst))"
    )


def test_route_queries_without_a_source_read_every_callers_series() -> None:
    labels = q.selector(q.route_matchers(None, ["a.b.svc.cluster.local:80"]))
    assert labels == '{direction="outbound", dst=~"a\\\\.b\\\\.svc\\\\.cluster\\\\.local:80"}'


def test_edge_queries_pair_outbound_and_inbound_identities() -> None:
    assert q.edge_queries("deployment") == {
        "outbound": 'count(response_total{deployment!="", direction="outbound"}) by '
        "(namespace, deployment, dst_namespace, dst_deployment, server_id, tls, no_tls_reason)",
        "inbound": 'count(response_total{deployment!="", direction="inbound"}) by '
        "(namespace, deployment, client_id, tls, no_tls_reason)",
    }
    assert "dst_k8s_job" in q.edge_queries("job")["outbound"]


# -- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1m", 60), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400), ("2w", 1209600)],
)
def test_prometheus_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "1.5m", "m", "10S", "1m1h", " 1m", "0s", "-1m"])
def test_other_durations_are_refused(text: str) -> None:
    with pytest.raises(DurationError, match="timeWindow"):
        parse_duration(text, "timeWindow")


# -- requests -------------------------------------------------------------------------------


def stat_body(**extra: Any) -> dict[str, Any]:
    return {"selector": {"resource": {"namespace": "emojivoto", "type": "deploy"}}, **extra}


def test_a_stat_request_takes_linkerds_type_names_and_defaults_to_one_minute() -> None:
    req = stat_summary_request(stat_body(tcpStats=True))
    assert req.resource == Resource("deployment", "", "emojivoto")
    assert req.window == "1m"
    assert req.tcp_stats and not req.skip_stats
    assert stat_summary_request(stat_body(timeWindow="10s")).window == "10s"
    all_types = stat_summary_request({"selector": {"resource": {"type": "all"}}}).types()
    assert "authority" not in all_types and "deployment" in all_types


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the request body must be a JSON object"),
        ({}, "selector must be a JSON object"),
        (stat_body(timeWindow="1 minute"), 'timeWindow "1 minute" is not a Prometheus duration'),
        (stat_body(timeWindow=60), "timeWindow must be a string"),
        (
            {"selector": {"resource": {"type": "deploymentz"}}},
            'unknown resource type "deploymentz"',
        ),
        ({"selector": {"resource": {"name": "web"}}}, "selector.resource has no type"),
        (stat_body(toResource={"type": "deploy"}, fromResource={"type": "pod"}), "not both"),
        (stat_body(toResource={"type": "all"}), "toResource cannot be of type all"),
        (
            stat_body(fromResource={"type": "svc", "name": "x"}),
            "a service cannot be a fromResource",
        ),
        (stat_body(fromResource={"type": "au", "name": "x"}), "authorities cannot be combined"),
        (stat_body(toResource={"type": "ts"}), "trafficsplits cannot be combined"),
        (stat_body(skipStats="yes"), "skipStats must be true or false"),
        (stat_body(toResorce={"type": "deploy"}), "unknown field 'toResorce'"),
        ({"selector": {"resource": {"type": "all", "name": "x"}}}, "type all cannot have a name"),
        (
            {"selector": {"resource": {"type": "po"}, "labelSelector": "a in (b"}},
            "invalid label selector",
        ),
    ],
)
def test_bad_stat_requests_are_refused_in_one_line(body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message) as info:
        stat_summary_request(body)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"selector": {"resource": {"type": "ts"}}}, "routes cannot be shown"),
        ({"selector": {"resource": {"type": "au"}}}, "need its name"),
        (
            {"selector": {"resource": {"type": "svc"}}, "toResource": {"type": "deploy"}},
            "services cannot be combined with toResource",
        ),
        ({"selector": {"resource": {"type": "deploy"}, "labelSelector": "a=b"}}, "not supported"),
    ],
)
def test_bad_route_requests_are_refused(body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        top_routes_request(body)


def test_edges_need_a_type_with_a_label_pair() -> None:
    assert edges_request({"selector": {"resource": {"type": "po"}}}).resource.type == "pod"
    with pytest.raises(BadRequest, match="not namespace"):
        edges_request({"selector": {"resource": {"type": "ns"}}})


def test_list_pods_takes_just_a_namespace() -> None:
    req = list_pods_request({"selector": {"resource": {"namespace": "x"}}})
    assert req.namespace == "x" and req.resource is None
    assert list_pods_request({}).namespace == ""


# -- label selectors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "api"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("env in (prod, staging),tier", {"env": "staging", "tier": "x"}, True),
        ("env notin (prod)", {"env": "prod"}, False),
        ("!canary", {"canary": "1"}, False),
        ("app.kubernetes.io/name=web", {"app.kubernetes.io/name": "web"}, True),
    ],
)
def test_label_selectors_match_as_kubernetes_does(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert matches(parse_selector(text), labels) is expected


@pytest.mark.parametrize("text", ["a=b=c", "a in b", "=x", "a,,b", "a in (b", "a=(b)"])
def test_bad_label_selectors_are_refused(text: str) -> None:
    with pytest.raises(SelectorError, match="invalid label selector"):
        parse_selector(text)
