"""``weft stat`` output (pure): the metrics API's StatSummary rows as Linkerd's tables or JSON.

One table per resource type (alphabetical, as Linkerd orders them), a blank line between; with
more than one table every name carries its type (``deploy/web``). Success rate and request rate
are computed here from the counts, as Linkerd's CLI does: S/(S+F) and (S+F)/window.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from weft.cli import viz_format as fmt
from weft.viz.resources import (
    AUTHORITY,
    POD,
    SERVICE,
    TRAFFIC_SPLIT,
    ResourceError,
    canonical_type,
    short_name,
)

# Pods that have finished are not shown (Linkerd hides completed pods too).
_FINISHED = frozenset({"Succeeded", "Failed"})
# Types whose rows have no pod counts: their MESHED cell is ``-``.
_NOT_MESHED = frozenset({AUTHORITY, SERVICE})
NO_TRAFFIC = "No traffic found."

Latencies = tuple[float | None, float | None, float | None]


@dataclass(frozen=True)
class StatRow:
    """One resource's row of a StatSummary answer (``requests``/``tcp`` None: no such traffic)."""

    kind: str
    namespace: str
    name: str
    status: str = ""
    meshed_pods: int = 0
    running_pods: int = 0
    requests: tuple[int, int] | None = None  # successes, failures
    latency_ms: Latencies = (None, None, None)  # p50, p95, p99
    tcp: tuple[int, int, int] | None = None  # open connections, bytes read, bytes written
    split: tuple[str, str, str] | None = None  # apex, leaf, weight (trafficsplit rows)

    def sort_key(self) -> tuple[str, str, str, str]:
        """Type, namespace, name, then leaf."""
        return (self.kind, self.namespace, self.name, self.split[1] if self.split else "")


def _row(data: dict[str, Any]) -> StatRow:
    resource = fmt.obj(data.get("resource"), "row.resource")
    stats = data.get("stats")
    tcp = data.get("tcpStats")
    split = data.get("trafficSplitStats")
    requests: tuple[int, int] | None = None
    latencies: Latencies = (None, None, None)
    if stats is not None:
        stats = fmt.obj(stats, "row.stats")
        requests = (fmt.count(stats, "successCount"), fmt.count(stats, "failureCount"))
        latencies = (
            fmt.optional_float(stats, "latencyMsP50"),
            fmt.optional_float(stats, "latencyMsP95"),
            fmt.optional_float(stats, "latencyMsP99"),
        )
    if tcp is not None:
        tcp = fmt.obj(tcp, "row.tcpStats")
    if split is not None:
        split = fmt.obj(split, "row.trafficSplitStats")
    try:
        kind = canonical_type(fmt.text(resource, "type"))
    except ResourceError as exc:
        raise fmt.AnswerError(f"row.resource: {exc}") from None
    return StatRow(
        kind=kind,
        namespace=fmt.text(resource, "namespace"),
        name=fmt.text(resource, "name"),
        status=fmt.text(data, "status"),
        meshed_pods=fmt.count(data, "meshedPodCount"),
        running_pods=fmt.count(data, "runningPodCount"),
        requests=requests,
        latency_ms=latencies,
        tcp=None
        if tcp is None
        else (
            fmt.count(tcp, "openConnections"),
            fmt.count(tcp, "readBytesTotal"),
            fmt.count(tcp, "writeBytesTotal"),
        ),
        split=None
        if split is None
        else (fmt.text(split, "apex"), fmt.text(split, "leaf"), fmt.text(split, "weight")),
    )


def parse_rows(answer: dict[str, Any]) -> list[StatRow]:
    """The rows of a StatSummary ``ok`` answer (``{"statTables": [{"podGroup": {"rows":
    [...]}}]}``); raises :class:`~weft.cli.viz_format.AnswerError`."""
    rows = []
    for table in fmt.objects(answer.get("statTables"), "statTables"):
        group = fmt.obj(table.get("podGroup") or {}, "statTables[].podGroup")
        rows += [_row(r) for r in fmt.objects(group.get("rows"), "podGroup.rows")]
    return rows


def shown(rows: Iterable[StatRow]) -> list[StatRow]:
    """The rows to show, sorted, without finished pods or repeats (several selectors may
    name the same object)."""
    unique = {r.sort_key(): r for r in rows if not (r.kind == POD and r.status in _FINISHED)}
    return [unique[key] for key in sorted(unique)]


def _meshed(row: StatRow) -> str:
    return fmt.NO_VALUE if row.kind in _NOT_MESHED else f"{row.meshed_pods}/{row.running_pods}"


def _request_cells(row: StatRow, window: float) -> list[str]:
    if row.requests is None:
        return [fmt.NO_VALUE] * 5
    successes, failures = row.requests
    return [
        fmt.percent(fmt.success_rate(successes, failures)),
        fmt.per_second((successes + failures) / window),
        *(fmt.millis(latency) for latency in row.latency_ms),
    ]


def _tcp_cells(row: StatRow, window: float, wide: bool) -> list[str]:
    if row.tcp is None:
        return [fmt.NO_VALUE] * (3 if wide else 1)
    open_connections, read, written = row.tcp
    cells = [str(open_connections)]
    if wide:
        cells += [fmt.bytes_per_second(read / window), fmt.bytes_per_second(written / window)]
    return cells


def _kind_table(
    kind: str,
    rows: Sequence[StatRow],
    window: float,
    wide: bool,
    all_namespaces: bool,
    prefix: bool,
) -> list[str]:
    header: list[str] = ["NAMESPACE"] if all_namespaces else []
    align: list[str] = [fmt.LEFT] if all_namespaces else []
    header.append("NAME")
    align.append(fmt.LEFT)
    if kind == TRAFFIC_SPLIT:
        header += ["APEX", "LEAF", "WEIGHT"]
        align += [fmt.LEFT, fmt.LEFT, fmt.RIGHT]
    else:
        if kind == POD:
            header.append("STATUS")
            align.append(fmt.LEFT)
        header.append("MESHED")
        align.append(fmt.RIGHT)
    header += ["SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99"]
    if kind != TRAFFIC_SPLIT:
        header.append("TCP_CONN")
        if wide:
            header += ["READ_BYTES/SEC", "WRITE_BYTES/SEC"]
    align += [fmt.RIGHT] * (len(header) - len(align))

    cells = []
    for row in rows:
        line = [row.namespace] if all_namespaces else []
        line.append(f"{short_name(kind)}/{row.name}" if prefix else row.name)
        if row.split is not None:
            line += list(row.split)
        elif kind == POD:
            line.append(row.status or fmt.NO_VALUE)
        if kind != TRAFFIC_SPLIT:
            line.append(_meshed(row))
        line += _request_cells(row, window)
        if kind != TRAFFIC_SPLIT:
            line += _tcp_cells(row, window, wide)
        cells.append(line)
    return fmt.table(header, cells, align)


def render_table(rows: Sequence[StatRow], window: float, wide: bool, all_namespaces: bool) -> str:
    """Linkerd's ``stat`` tables for rows already :func:`shown`; ``window`` in seconds."""
    by_kind: dict[str, list[StatRow]] = {}
    for row in rows:
        by_kind.setdefault(row.kind, []).append(row)
    prefix = len(by_kind) > 1
    return "\n\n".join(
        "\n".join(_kind_table(kind, by_kind[kind], window, wide, all_namespaces, prefix))
        for kind in sorted(by_kind)
    )


def json_row(row: StatRow, window: float) -> dict[str, Any]:
    """One row as Linkerd's ``stat -o json`` writes it."""
    entry: dict[str, Any] = {"namespace": row.namespace, "kind": row.kind, "name": row.name}
    if row.split is None and row.kind not in _NOT_MESHED:
        entry["meshed"] = _meshed(row)
    if row.requests is None:
        entry |= {"success": None, "rps": None}
    else:
        successes, failures = row.requests
        entry["success"] = fmt.success_rate(successes, failures)
        entry["rps"] = (successes + failures) / window
    p50, p95, p99 = row.latency_ms
    entry |= {
        "latency_ms_p50": fmt.whole_ms(p50),
        "latency_ms_p95": fmt.whole_ms(p95),
        "latency_ms_p99": fmt.whole_ms(p99),
    }
    if row.split is not None:
        entry |= dict(zip(("apex", "leaf", "weight"), row.split, strict=True))
    elif row.tcp is not None:
        open_connections, read, written = row.tcp
        entry |= {
            "tcp_open_connections": open_connections,
            "tcp_read_bytes_rate": read / window,
            "tcp_write_bytes_rate": written / window,
        }
    return entry


def render_json(rows: Sequence[StatRow], window: float) -> str:
    """Linkerd's ``stat -o json``: a list of row objects."""
    return json.dumps([json_row(r, window) for r in rows], indent=2)
