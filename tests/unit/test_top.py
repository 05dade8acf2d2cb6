"""``weft top``: the aggregation of tap events into rows, their order, and the table (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from tests import viz_answers as answers
from tests.conftest import GoldenChecker
from weft.cli.top_output import ERASE_BELOW, HOME, latency, next_sort, screen, title, top_table
from weft.viz.tap_events import parse_event
from weft.viz.top import TopTable

BOT: dict[str, Any] = {"src_labels": {"pod": "vote-bot-77c4"}, "dst_labels": {"pod": "web-5d8f9"}}
OTHER: dict[str, Any] = {
    "src": ("10.244.0.8", 42000),
    "src_labels": {},
    "dst_labels": {"pod": "web-5d8f9"},
}


def feed(table: TopTable, *events: dict[str, Any]) -> list[bool]:
    return [table.add(parse_event(e)) for e in events]


def call(
    table: TopTable,
    stream: int,
    path: str = "/api/list",
    status: int = 200,
    total: str = "0.003000s",
    eos: dict[str, int] | None = None,
    route: dict[str, str] | None = None,
    **peer: Any,
) -> list[bool]:
    return feed(
        table,
        answers.request(stream, path, route=route, **peer),
        answers.response(stream, status, **peer),
        answers.end(stream, total, eos=eos, **peer),
    )


def test_a_request_counts_once_its_response_ends() -> None:
    table = TopTable()
    assert call(table, 1, **BOT) == [False, False, True]
    [row] = table.rows()
    assert (row.source, row.destination, row.method, row.path) == (
        "vote-bot-77c4",
        "web-5d8f9",
        "GET",
        "/api/list",
    )
    assert (row.count, row.best_ns, row.worst_ns, row.last_ns, row.success_rate) == (
        1,
        3_000_000,
        3_000_000,
        3_000_000,
        1.0,
    )
    assert table.pending == 0


def test_best_worst_last_and_success_rate_follow_the_requests() -> None:
    table = TopTable()
    call(table, 1, total="0.010s", **BOT)
    call(table, 2, total="0.002s", status=500, **BOT)
    call(table, 3, total="0.005s", eos={"grpcStatusCode": 14}, **BOT)
    call(table, 4, total="0.004s", **BOT)
    [row] = table.rows()
    assert (row.count, row.best_ns, row.worst_ns, row.last_ns) == (4, 2e6, 10e6, 4e6)
    assert row.success_rate == 0.5


def test_a_reset_stream_fails_and_a_response_without_its_request_is_not_counted() -> None:
    table = TopTable()
    feed(table, answers.request(1, **BOT), answers.end(1, eos={"resetErrorCode": 2}, **BOT))
    assert table.rows()[0].success_rate == 0.0
    assert feed(table, answers.response(9, **BOT), answers.end(9, **BOT)) == [False, False]
    assert table.rows()[0].count == 1


def test_the_same_stream_id_of_another_connection_is_another_request() -> None:
    table = TopTable()
    feed(table, answers.request(1, **BOT), answers.request(1, path="/other", **OTHER))
    feed(table, answers.response(1, **OTHER), answers.end(1, **OTHER))
    assert [(r.source, r.path) for r in table.rows()] == [("10.244.0.8", "/other")]
    assert table.pending == 1


def test_pending_requests_are_bounded_oldest_dropped_first() -> None:
    table = TopTable(max_pending=2)
    feed(table, *(answers.request(i, **BOT) for i in (1, 2, 3)))
    assert table.pending == 2
    assert feed(table, answers.end(1, **BOT), answers.end(3, **BOT)) == [False, True]


def test_hidden_sources_merge_rows_and_routes_replace_method_and_path() -> None:
    table = TopTable(by_route=True, hide_sources=True)
    call(table, 1, route={"route": "GET /api/list"}, **BOT)
    call(table, 2, path="/api/list?x=1", route={"route": "GET /api/list"}, **OTHER)
    call(table, 3, path="/nope", **BOT)
    assert [(r.source, r.method, r.path, r.count) for r in table.rows()] == [
        ("", "", "GET /api/list", 2),
        ("", "", "[DEFAULT]", 1),
    ]


def sample() -> TopTable:
    table = TopTable()
    for i in range(3):
        call(table, 10 + i, total=f"0.00{i + 1}s", **BOT)
    call(table, 20, path="/api/vote", total="0.250s", status=500, **BOT)
    call(table, 21, path="/api/vote", total="1.5s", **BOT)
    call(table, 30, path="/", total="0.000800s", **OTHER)
    return table


@pytest.mark.parametrize(
    ("sort", "reverse", "paths"),
    [
        ("count", False, ["/api/list", "/api/vote", "/"]),
        ("count", True, ["/", "/api/vote", "/api/list"]),
        ("worst", False, ["/api/vote", "/api/list", "/"]),
        ("best", False, ["/api/vote", "/api/list", "/"]),
        ("last", False, ["/api/vote", "/api/list", "/"]),
        ("success", False, ["/api/vote", "/", "/api/list"]),
        ("path", False, ["/", "/api/list", "/api/vote"]),
    ],
)
def test_rows_sort_by_any_column(sort: str, reverse: bool, paths: list[str]) -> None:
    assert [r.path for r in sample().rows(sort, reverse)] == paths


def test_top_table(golden: GoldenChecker) -> None:
    lines = top_table(sample().rows(), by_route=False, hide_sources=False)
    golden.check("viz/top.txt", "\n".join(lines) + "\n")


def test_top_table_by_route_without_sources(golden: GoldenChecker) -> None:
    table = TopTable(by_route=True, hide_sources=True)
    call(table, 1, route={"route": "GET /api/list"}, **BOT)
    lines = top_table(table.rows(), by_route=True, hide_sources=True)
    assert lines[0].split() == [
        "Destination",
        "Route",
        "Count",
        "Best",
        "Worst",
        "Last",
        "Success",
        "Rate",
    ]
    golden.check("viz/top_routes.txt", "\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (800_000, "800µs"),
        (999_600, "1ms"),
        (12_400_000, "12ms"),
        (1_500_000_000, "1.5s"),
        (2_000_000_000, "2s"),
    ],
)
def test_latencies_read_as_go_durations(ns: int, text: str) -> None:
    assert latency(ns) == text


def test_a_key_picks_a_sort_and_the_same_key_reverses_it() -> None:
    assert next_sort("count", False, "w") == ("worst", False)
    assert next_sort("worst", False, "w") == ("worst", True)
    assert next_sort("worst", True, "w") == ("worst", False)
    assert next_sort("worst", True, "c") == ("count", False)
    assert next_sort("count", False, "x") is None


def test_the_title_says_the_order_and_the_keys_only_when_they_work() -> None:
    assert title("deployment/web", "worst", True, keys=False) == (
        "weft top deployment/web: sorted by worst (reversed)"
    )
    assert "q quit" in title("deployment/web", "count", False, keys=True)


def test_a_redraw_goes_home_clips_to_the_terminal_and_erases_the_rest() -> None:
    text = screen(["title", "", "abcdefghij", "row 2", "row 3"], width=4, height=4)
    assert text == HOME + "titl\x1b[K\n\x1b[K\nabcd\x1b[K\n" + ERASE_BELOW
