"""``weft routes`` and ``weft edges``: argument checks, requests, tables and JSON from canned
answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import viz_answers as answers
from tests.conftest import GoldenChecker
from weft.cli import edges_output, routes_output
from weft.cli.edges import edges_request
from weft.cli.routes import routes_query
from weft.cli.viz_format import InputError
from weft.viz.resources import ResourceError

# -- routes -------------------------------------------------------------------------------------


def test_routes_asks_for_one_resource_and_its_target() -> None:
    query = routes_query(["deploy/web"], "emojivoto", "30s", to="svc/emoji-svc")
    assert query.window == 30.0
    assert query.body == {
        "selector": {"resource": {"namespace": "emojivoto", "type": "deployment", "name": "web"}},
        "timeWindow": "30s",
        "toResource": {"namespace": "emojivoto", "type": "service", "name": "emoji-svc"},
    }


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (["deploy/web", "deploy/emoji"], {}, "routes takes one resource"),
        (["au/web-svc"], {}, "not authority"),
        (["all"], {}, "not all"),
        (["deploy/web"], {"to_namespace": "x"}, "--to-namespace needs --to"),
        (["deploy/web"], {"window": "1 m"}, 'invalid time window "1 m"'),
    ],
)
def test_routes_refuses_bad_command_lines(
    args: list[str], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises((InputError, ResourceError), match=message):
        routes_query(args, "emojivoto", **kwargs)


def test_routes_table_lists_routes_by_name_default_last(golden: GoldenChecker) -> None:
    tables = routes_output.parse_tables(answers.ROUTES["ok"])
    assert [r.route for r in tables[0].rows] == [
        "GET /api/list",
        "GET /api/vote",
        "POST /api/annotations",
        "[DEFAULT]",
    ]
    golden.check("viz/routes.txt", routes_output.render_table(tables, 60.0, False) + "\n")


def test_routes_wide_shows_effective_and_actual_figures(golden: GoldenChecker) -> None:
    tables = routes_output.parse_tables(answers.ROUTES["ok"])
    golden.check("viz/routes_wide.txt", routes_output.render_table(tables, 60.0, True) + "\n")


def test_several_route_tables_are_headed_by_their_resource(golden: GoldenChecker) -> None:
    tables = routes_output.parse_tables(answers.TWO_ROUTE_TABLES["ok"])
    golden.check("viz/routes_two.txt", routes_output.render_table(tables, 60.0, False) + "\n")


def test_routes_json_is_keyed_by_resource(golden: GoldenChecker) -> None:
    tables = routes_output.parse_tables(answers.ROUTES["ok"])
    text = routes_output.render_json(tables, 60.0)
    vote = next(r for r in json.loads(text)["deployment/web"] if r["route"] == "GET /api/vote")
    assert vote["success"] == 0.9 and vote["actual_success"] == pytest.approx(54 / 63)
    assert vote["rps"] == 1.0 and vote["actual_rps"] == 63 / 60
    golden.check("viz/routes.json", text + "\n")


@pytest.mark.parametrize(
    ("authority", "service"),
    [
        ("web-svc.emojivoto.svc.cluster.local:80", "web-svc"),
        ("web-svc", "web-svc"),
        ("10.96.0.12:80", "10.96.0.12:80"),
        ("[fd00::1]:80", "[fd00::1]:80"),
    ],
)
def test_the_service_column_is_the_authoritys_first_label(authority: str, service: str) -> None:
    assert routes_output.service_name(authority) == service


# -- edges ----------------------------------------------------------------------------------------


def test_edges_asks_for_a_type_in_a_namespace_or_all() -> None:
    assert edges_request(["deploy"], "emojivoto", False) == {
        "selector": {"resource": {"namespace": "emojivoto", "type": "deployment"}}
    }
    assert edges_request(["po"], "emojivoto", True) == {
        "selector": {"resource": {"namespace": "", "type": "pod"}}
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "edges takes one resource type"),
        (["deploy", "po"], "edges takes one resource type"),
        (["deploy/web"], "edges takes a resource type (e.g. deploy), not deploy/web"),
        (["svc"], "edges connect deployments, jobs, pods, not svc"),
        (["widgets"], 'unknown resource type "widgets"'),
    ],
)
def test_edges_refuses_anything_but_one_workload_type(args: list[str], message: str) -> None:
    with pytest.raises((InputError, ResourceError)) as info:
        edges_request(args, "emojivoto", False)
    assert message in str(info.value)


def test_edges_table_shortens_identities_and_says_why_an_edge_is_not_secured(
    golden: GoldenChecker,
) -> None:
    edges = edges_output.parse_edges(answers.EDGES["ok"])
    text = edges_output.render_table(edges, wide=False)
    assert "web.emojivoto " in text and "serviceaccount" not in text
    golden.check("viz/edges.txt", text + "\n")


def test_edges_wide_shows_whole_identities(golden: GoldenChecker) -> None:
    edges = edges_output.parse_edges(answers.EDGES["ok"])
    golden.check("viz/edges_wide.txt", edges_output.render_table(edges, wide=True) + "\n")


def test_edges_json(golden: GoldenChecker) -> None:
    text = edges_output.render_json(edges_output.parse_edges(answers.EDGES["ok"]))
    first = json.loads(text)[0]
    assert first == {
        "src": "vote-bot",
        "src_namespace": "emojivoto",
        "dst": "web",
        "dst_namespace": "emojivoto",
        "client_id": "default.emojivoto.serviceaccount.identity.weft.cluster.local",
        "server_id": "web.emojivoto.serviceaccount.identity.weft.cluster.local",
        "no_identity_msg": "",
    }
    golden.check("viz/edges.json", text + "\n")
