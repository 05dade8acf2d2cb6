"""The dashboard API's requests to its backends: windows, names, metrics-API bodies, PromQL, tap."""

from __future__ import annotations

import pytest

from weft.viz.resources import Resource
from weft.web import queries as q


def test_windows_are_checked_and_measured() -> None:
    assert q.parse_window(None, "1m", q.STAT_WINDOW) == q.Window("1m", 60)
    assert q.parse_window("", "1m", q.STAT_WINDOW) == q.Window("1m", 60)
    assert q.parse_window("10s", "1m", q.STAT_WINDOW) == q.Window("10s", 10)
    assert q.parse_window("6h", "15m", q.SERIES_WINDOW) == q.Window("6h", 21600)
    with pytest.raises(q.QueryError, match='invalid window "1 m"'):
        q.parse_window("1 m", "1m", q.STAT_WINDOW)
    with pytest.raises(q.QueryError, match='invalid window "0s"'):
        q.parse_window("0s", "1m", q.STAT_WINDOW)
    with pytest.raises(q.QueryError, match="out of range: from 5m to 6h"):
        q.parse_window("1m", "15m", q.SERIES_WINDOW)
    with pytest.raises(q.QueryError, match="out of range: from 10s to 1h"):
        q.parse_window("2h", "1m", q.STAT_WINDOW)


def test_workload_pages_name_a_known_type_and_valid_names() -> None:
    assert q.workload("emojivoto", "deployments", "web") == Resource(
        "deployment", "web", "emojivoto"
    )
    assert q.workload("emojivoto", "po", "web-1") == Resource("pod", "web-1", "emojivoto")
    with pytest.raises(q.QueryError, match='no page for "namespaces"'):
        q.workload("emojivoto", "namespaces", "x")
    with pytest.raises(q.QueryError, match='unknown resource type "widgets"'):
        q.workload("emojivoto", "widgets", "x")
    with pytest.raises(q.QueryError, match='invalid name "We b"'):
        q.workload("emojivoto", "deploy", "We b")
    with pytest.raises(q.QueryError, match='invalid namespace "x"y"'):
        q.workload('x"y', "deploy", "web")


def test_metrics_api_bodies_follow_the_contract() -> None:
    web = Resource("deployment", "web", "emojivoto")
    window = q.Window("1m", 60)
    assert q.stat_body(Resource("namespace"), window) == {
        "selector": {"resource": {"namespace": "", "type": "namespace", "name": ""}},
        "timeWindow": "1m",
        "tcpStats": True,
    }
    body = q.stat_body(Resource("deployment"), window, source=web, tcp=False)
    assert body["fromResource"] == {"namespace": "emojivoto", "type": "deployment", "name": "web"}
    assert "toResource" not in body and body["tcpStats"] is False
    assert q.stat_body(Resource("deployment"), window, to=web)["toResource"]["name"] == "web"
    assert q.routes_body(web, window) == {
        "selector": {"resource": {"namespace": "emojivoto", "type": "deployment", "name": "web"}},
        "timeWindow": "1m",
    }
    assert q.edges_body("emojivoto", "deployment") == {
        "selector": {"resource": {"namespace": "emojivoto", "type": "deployment", "name": ""}}
    }
    assert q.pods_body() == {"selector": {"resource": {"namespace": ""}}}
    assert q.pods_body("emojivoto") == {"selector": {"resource": {"namespace": "emojivoto"}}}
    assert q.pods_body(of=web) == {"selector": {"resource": web.to_json()}}


def test_series_queries_select_the_resource_and_align_to_the_step() -> None:
    plan = q.series_plan(Resource("deployment", "web", "emojivoto"), q.Window("15m", 900), 1000.0)
    assert plan.step == 8  # ceil(900 / 120)
    assert plan.end == 1000 and plan.end % plan.step == 0
    assert plan.start == plan.end - 112 * 8
    assert len(plan.timestamps()) == 113
    matchers = 'direction="inbound", namespace="emojivoto", deployment="web"'
    assert plan.queries["requests"] == (
        f"sum(rate(response_total{{{matchers}}}[32s])) by (classification)"
    )
    assert plan.queries["p99"] == (
        "histogram_quantile(0.99, sum(rate("
        f"response_latency_ms_bucket{{{matchers}}}[32s])) by (le))"
    )
    short = q.series_plan(Resource("job", "j", "ns"), q.Window("5m", 300), 12.0)
    assert short.step == 5 and "[30s]" in short.queries["requests"]
    assert 'k8s_job="j"' in short.queries["requests"]


def test_a_service_is_measured_at_its_callers() -> None:
    assert q.series_matchers(Resource("service", "web-svc", "emojivoto")) == (
        'direction="outbound", dst_namespace="emojivoto", dst_service="web-svc"'
    )
    assert q.series_matchers(Resource("namespace", "emojivoto", "emojivoto")) == (
        'direction="inbound", namespace="emojivoto"'
    )


def test_tap_requests_become_the_tap_controllers_path_and_body() -> None:
    tap = q.tap_request(
        {
            "resource": "deploy/web",
            "namespace": "emojivoto",
            "toResource": "deploy/emoji",
            "method": "POST",
            "path": "/emojivoto.v1",
            "maxRps": 20,
        }
    )
    assert (
        tap.path == "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/deployments/web/tap"
    )
    assert tap.body == {
        "method": "POST",
        "path": "/emojivoto.v1",
        "maxRps": 20.0,
        "extract": False,
        "toResource": {"namespace": "emojivoto", "type": "deployment", "name": "emoji"},
    }
    assert tap.target == Resource("deployment", "web", "emojivoto")
    ns = q.tap_request({"resource": "ns/emojivoto", "toResource": "po/x", "toNamespace": "other"})
    assert ns.path == "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/tap"
    assert ns.body["toResource"] == {"namespace": "other", "type": "pod", "name": "x"}
    assert ns.body["maxRps"] == q.DEFAULT_MAX_RPS
    bare = q.tap_request({"resource": "ns", "namespace": "emojivoto", "maxRps": ""})
    assert bare.target == Resource("namespace", "emojivoto", "emojivoto")


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ([], "must be a JSON object"),
        ({}, "no resource to tap"),
        ({"resource": "svc/web"}, "cannot tap services"),
        ({"resource": "deploy"}, "name the deployment to tap"),
        ({"resource": "widget/x"}, 'unknown resource type "widget"'),
        ({"resource": "deploy/web", "namespace": "Bad NS"}, 'invalid namespace "Bad NS"'),
        ({"resource": "deploy/web", "path": "api"}, 'path "api" must start with /'),
        ({"resource": "deploy/web", "maxRps": 0}, "maxRps must be a number above 0"),
        ({"resource": "deploy/web", "maxRps": True}, "maxRps must be a number"),
        ({"resource": "deploy/web", "maxRps": 1e9}, "at most 10000"),
        ({"resource": "deploy/web", "method": 3}, "method must be a string"),
        ({"resource": "deploy/web", "extract": "yes"}, "extract must be true or false"),
        ({"resource": "deploy/../x"}, "expected TYPE/NAME"),
    ],
)
def test_bad_tap_queries_get_one_line(message: object, error: str) -> None:
    with pytest.raises(q.QueryError, match=error):
        q.tap_request(message)
