"""``weft routes`` output (pure): the metrics API's TopRoutes tables as Linkerd's or as JSON.

Effective figures count what the caller saw (a retried request once); actual figures count
every attempt. Routes without requests in the window show ``-``; unmatched traffic is the
route ``[DEFAULT]``, listed last.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from weft.cli import viz_format as fmt

DEFAULT_ROUTE = "[DEFAULT]"
NO_TRAFFIC = "No traffic found."
_JSON_FIGURES = (
    "success",
    "rps",
    "actual_success",
    "actual_rps",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
)


@dataclass(frozen=True)
class RouteStats:
    """Counts and latencies of one route."""

    successes: int
    failures: int
    actual_successes: int
    actual_failures: int
    latency_ms: tuple[float | None, float | None, float | None]

    @property
    def idle(self) -> bool:
        """No request (nor attempt) in the window."""
        return self.successes + self.failures + self.actual_successes + self.actual_failures == 0


@dataclass(frozen=True)
class RouteRow:
    """One route of a service (``stats`` None: no figures)."""

    route: str
    authority: str
    stats: RouteStats | None

    def sort_key(self) -> tuple[bool, str, str]:
        """Routes by name, ``[DEFAULT]`` last."""
        return (self.route == DEFAULT_ROUTE, self.route, self.authority)


@dataclass(frozen=True)
class RouteTable:
    """The routes of one resource (``deployment/web``)."""

    resource: str
    rows: list[RouteRow]


def _row(data: dict[str, Any]) -> RouteRow:
    stats = data.get("stats")
    parsed = None
    if stats is not None:
        stats = fmt.obj(stats, "rows[].stats")
        parsed = RouteStats(
            fmt.count(stats, "successCount"),
            fmt.count(stats, "failureCount"),
            fmt.count(stats, "actualSuccessCount"),
            fmt.count(stats, "actualFailureCount"),
            (
                fmt.optional_float(stats, "latencyMsP50"),
                fmt.optional_float(stats, "latencyMsP95"),
                fmt.optional_float(stats, "latencyMsP99"),
            ),
        )
    return RouteRow(fmt.text(data, "route") or DEFAULT_ROUTE, fmt.text(data, "authority"), parsed)


def parse_tables(answer: dict[str, Any]) -> list[RouteTable]:
    """The tables of a TopRoutes ``ok`` answer (``{"routes": [{"resource", "rows"}]}``), rows
    sorted; raises :class:`~weft.cli.viz_format.AnswerError`."""
    tables = []
    for table in fmt.objects(answer.get("routes"), "routes"):
        rows = sorted(
            (_row(r) for r in fmt.objects(table.get("rows"), "routes[].rows")),
            key=RouteRow.sort_key,
        )
        tables.append(RouteTable(fmt.text(table, "resource"), rows))
    return tables


def service_name(authority: str) -> str:
    """The SERVICE column: ``web-svc.emojivoto.svc.cluster.local:80`` → ``web-svc``; an
    address stays whole."""
    host = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.split(".", 1)[0]
    return authority


def _rate_cells(successes: int, failures: int, window: float) -> list[str]:
    return [
        fmt.percent(fmt.success_rate(successes, failures)),
        fmt.per_second((successes + failures) / window),
    ]


def _cells(row: RouteRow, window: float, wide: bool) -> list[str]:
    cells = [row.route, service_name(row.authority)]
    stats = row.stats
    if stats is None or stats.idle:
        return cells + [fmt.NO_VALUE] * (7 if wide else 5)
    cells += _rate_cells(stats.successes, stats.failures, window)
    if wide:
        cells += _rate_cells(stats.actual_successes, stats.actual_failures, window)
    return cells + [fmt.millis(latency) for latency in stats.latency_ms]


def render_table(tables: Sequence[RouteTable], window: float, wide: bool) -> str:
    """Linkerd's ``routes`` tables; with several, each under ``==> <resource> <==``."""
    header = ["ROUTE", "SERVICE"]
    if wide:
        header += ["EFFECTIVE_SUCCESS", "EFFECTIVE_RPS", "ACTUAL_SUCCESS", "ACTUAL_RPS"]
    else:
        header += ["SUCCESS", "RPS"]
    header += ["LATENCY_P50", "LATENCY_P95", "LATENCY_P99"]
    align = [fmt.LEFT, fmt.LEFT] + [fmt.RIGHT] * (len(header) - 2)
    blocks = []
    for table in tables:
        lines = fmt.table(header, [_cells(r, window, wide) for r in table.rows], align)
        if len(tables) > 1:
            lines.insert(0, f"==> {table.resource} <==")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _json_row(row: RouteRow, window: float) -> dict[str, Any]:
    entry: dict[str, Any] = {"route": row.route, "authority": row.authority}
    stats = row.stats
    if stats is None:
        return entry | dict.fromkeys(_JSON_FIGURES)
    p50, p95, p99 = stats.latency_ms
    return entry | {
        "success": fmt.success_rate(stats.successes, stats.failures),
        "rps": (stats.successes + stats.failures) / window,
        "actual_success": fmt.success_rate(stats.actual_successes, stats.actual_failures),
        "actual_rps": (stats.actual_successes + stats.actual_failures) / window,
        "latency_ms_p50": fmt.whole_ms(p50),
        "latency_ms_p95": fmt.whole_ms(p95),
        "latency_ms_p99": fmt.whole_ms(p99),
    }


def render_json(tables: Sequence[RouteTable], window: float) -> str:
    """``routes -o json``: an object of resource → list of route rows."""
    return json.dumps(
        {t.resource: [_json_row(r, window) for r in t.rows] for t in tables}, indent=2
    )
