"""``weft stat``: argument checks, requests, and Linkerd's tables and JSON from canned answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import viz_answers as answers
from tests.conftest import GoldenChecker
from weft.cli.stat import stat_query
from weft.cli.stat_output import parse_rows, render_json, render_table, shown
from weft.cli.viz_format import AnswerError, InputError
from weft.viz.resources import ResourceError


def rows(*answer: dict[str, Any]) -> list[Any]:
    return shown(r for a in answer for r in parse_rows(a["ok"]))


# -- requests -----------------------------------------------------------------------------------


def test_a_plain_stat_asks_for_inbound_stats_of_each_resource_in_the_namespace() -> None:
    query = stat_query(["deploy/web", "po"], "emojivoto", window="10s", selector="app=web")
    assert query.window == 10.0
    assert query.requests == [
        {
            "selector": {
                "resource": {"namespace": "emojivoto", "type": "deployment", "name": "web"},
                "labelSelector": "app=web",
            },
            "timeWindow": "10s",
            "skipStats": False,
            "tcpStats": True,
        },
        {
            "selector": {
                "resource": {"namespace": "emojivoto", "type": "pod", "name": ""},
                "labelSelector": "app=web",
            },
            "timeWindow": "10s",
            "skipStats": False,
            "tcpStats": True,
        },
    ]


def test_to_and_from_name_their_resource_in_their_own_or_the_target_namespace() -> None:
    to = stat_query(["deploy"], "emojivoto", to="svc/web-svc").requests[0]
    assert to["toResource"] == {"namespace": "emojivoto", "type": "service", "name": "web-svc"}
    assert "fromResource" not in to
    src = stat_query(["svc/web-svc"], "emojivoto", from_="deploy/vote-bot", from_namespace="bots")
    assert src.requests[0]["fromResource"] == {
        "namespace": "bots",
        "type": "deployment",
        "name": "vote-bot",
    }


def test_all_namespaces_and_the_namespace_type_select_every_namespace() -> None:
    assert stat_query(["deploy"], "emojivoto", all_namespaces=True).requests[0]["selector"][
        "resource"
    ] == {"namespace": "", "type": "deployment", "name": ""}
    assert stat_query(["ns"], "emojivoto").requests[0]["selector"]["resource"] == {
        "namespace": "",
        "type": "namespace",
        "name": "",
    }


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            ["deploy"],
            {"to": "deploy/a", "from_": "deploy/b"},
            "--to and --from are mutually exclusive",
        ),
        (["deploy"], {"to_namespace": "x"}, "--to-namespace needs --to"),
        (["deploy"], {"from_namespace": "x"}, "--from-namespace needs --from"),
        (["au"], {"from_": "deploy/web"}, "authorities cannot be combined with --from"),
        (["svc"], {}, "a service is measured by its callers: use it with --from, or as --to"),
        (["svc/web-svc"], {"to": "deploy/web"}, "a service is measured by its callers"),
        (["deploy"], {"from_": "svc/web-svc"}, "--from svc/web-svc: only namespaces, deployments"),
        (["deploy"], {"to": "all"}, "--to takes one resource type, not all"),
        (["deploy/web"], {"all_namespaces": True}, "deployment/web names one object"),
        (["deploy"], {"window": "5x"}, 'invalid time window "5x"'),
        (["deploy", "web", "po/x"], {}, "give either TYPE NAME... or TYPE/NAME..."),
        (["statefulsetz"], {}, 'unknown resource type "statefulsetz"'),
        ([], {}, "no resource given"),
    ],
)
def test_bad_command_lines_are_refused_with_one_line(
    args: list[str], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises((InputError, ResourceError)) as info:
        stat_query(args, "emojivoto", **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# -- output ---------------------------------------------------------------------------------------


def test_deployments_table(golden: GoldenChecker) -> None:
    golden.check(
        "viz/stat_deploy.txt", render_table(rows(answers.DEPLOYMENTS), 60.0, False, False) + "\n"
    )


def test_deployments_wide_table_adds_byte_rates(golden: GoldenChecker) -> None:
    golden.check(
        "viz/stat_deploy_wide.txt",
        render_table(rows(answers.DEPLOYMENTS), 60.0, True, False) + "\n",
    )


def test_pods_table_has_status_and_hides_completed_pods(golden: GoldenChecker) -> None:
    text = render_table(rows(answers.PODS), 60.0, False, False)
    assert "migrate" not in text
    golden.check("viz/stat_pods.txt", text + "\n")


def test_several_types_are_one_table_each_with_typed_names(golden: GoldenChecker) -> None:
    text = render_table(
        rows(answers.PODS, answers.DEPLOYMENTS, answers.AUTHORITIES), 60.0, False, False
    )
    golden.check("viz/stat_all.txt", text + "\n")


def test_all_namespaces_adds_a_namespace_column(golden: GoldenChecker) -> None:
    golden.check(
        "viz/stat_all_namespaces.txt",
        render_table(rows(answers.ALL_NAMESPACES), 60.0, False, True) + "\n",
    )


def test_trafficsplit_rows_show_apex_leaf_and_weight(golden: GoldenChecker) -> None:
    golden.check(
        "viz/stat_trafficsplit.txt", render_table(rows(answers.SPLITS), 60.0, False, False) + "\n"
    )


def test_json_has_linkerds_keys(golden: GoldenChecker) -> None:
    text = render_json(rows(answers.DEPLOYMENTS, answers.SPLITS, answers.AUTHORITIES), 60.0)
    data = json.loads(text)
    web = next(r for r in data if r["name"] == "web")
    assert web == {
        "namespace": "emojivoto",
        "kind": "deployment",
        "name": "web",
        "meshed": "1/1",
        "success": 0.95,
        "rps": 100 / 60,
        "latency_ms_p50": 12,
        "latency_ms_p95": 48,
        "latency_ms_p99": 97,
        "tcp_open_connections": 3,
        "tcp_read_bytes_rate": 100.0,
        "tcp_write_bytes_rate": 200.0,
    }
    bot = next(r for r in data if r["name"] == "vote-bot")
    assert bot["success"] is None and bot["rps"] is None and bot["latency_ms_p99"] is None
    assert "tcp_open_connections" not in bot
    split = next(r for r in data if r["kind"] == "trafficsplit")
    assert (split["apex"], split["leaf"], split["weight"]) == ("web-svc", "web-v1", "900m")
    assert "meshed" not in split
    golden.check("viz/stat.json", text + "\n")


def test_rows_named_twice_are_shown_once() -> None:
    assert [r.name for r in rows(answers.DEPLOYMENTS, answers.DEPLOYMENTS)] == [
        "emoji",
        "vote-bot",
        "voting",
        "web",
    ]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"statTables": {}}, "statTables is not a list"),
        (
            {
                "statTables": [
                    {
                        "podGroup": {
                            "rows": [
                                {"resource": {"type": "deployment"}, "stats": {"successCount": "x"}}
                            ]
                        }
                    }
                ]
            },
            "successCount is not a number",
        ),
        (
            {"statTables": [{"podGroup": {"rows": [{"resource": {"type": "widget"}}]}}]},
            'unknown resource type "widget"',
        ),
    ],
)
def test_answers_of_another_shape_are_one_line(answer: dict[str, Any], message: str) -> None:
    with pytest.raises(AnswerError, match=message):
        parse_rows(answer)
