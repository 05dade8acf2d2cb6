"""Benchmark results, the comparisons and targets computed from them, and the printed report."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bench.loadgen import Outcome
from bench.usage import Usage

WEFT_PREFIX = "weft-"  # label prefix of weft proxies (``weft-out``, ``weft-in``)
SATURATED = 0.95  # a fixed-rate run achieving less than this share of its target fell behind


@dataclass
class RunResult:
    """One scenario under one load."""

    load: str
    label: str
    proto: str
    target_rps: int | None
    outcome: Outcome | None = None
    cpu_us_per_req_hop: float | None = None
    proxies: dict[str, Usage] = field(default_factory=dict)
    error: str | None = None


@dataclass
class ScenarioResult:
    """A scenario's runs, or why it could not be deployed."""

    name: str
    summary: str
    hops: int
    runs: list[RunResult] = field(default_factory=list)
    error: str | None = None


def fmt(value: float | None, spec: str = ".3f") -> str:
    """``value`` formatted, or ``-``."""
    return "-" if value is None else format(value, spec)


def _added(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f} ms"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} req/s"


def describe(run: RunResult) -> str:
    """A one-line summary of a run for the progress output."""
    if run.outcome is None:
        return f"error: {run.error}"
    out = run.outcome
    text = f"p50 {fmt(out.p50_ms)} ms, p99 {fmt(out.p99_ms)} ms, {out.rps:.0f} req/s"
    return text + (f" (error: {run.error})" if run.error else "")


@dataclass(frozen=True)
class Check:
    """A comparison, with a target (``op`` and ``target``) or for information only."""

    label: str
    value: float | None
    unit: str
    op: str = ""
    target: float | None = None
    detail: str = ""

    @property
    def verdict(self) -> str:
        """``PASS``/``FAIL``, ``n/a`` without data, empty for information only."""
        if self.target is None:
            return ""
        if self.value is None:
            return "n/a"
        ok = self.value <= self.target if self.op == "<=" else self.value >= self.target
        return "PASS" if ok else "FAIL"


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def compute_checks(results: Sequence[ScenarioResult]) -> list[Check]:
    """The ratios against the references, and the targets."""
    outcomes = {
        (s.name, r.load): r.outcome for s in results for r in s.runs if r.outcome and not r.error
    }

    def p50(name: str, key: str) -> float | None:
        out = outcomes.get((name, key))
        return out.p50_ms if out else None

    def added(name: str, key: str) -> float | None:
        value, direct = p50(name, key), p50("direct", key)
        return None if value is None or direct is None else value - direct

    def rps(name: str, key: str) -> float | None:
        out = outcomes.get((name, key))
        return out.rps if out else None

    checks: list[Check] = []
    for rate in (200, 1000, 2000):
        weft, nginx = added("weft-pair", f"h1@{rate}"), added("nginx-pair", f"h1@{rate}")
        checks.append(
            Check(
                f"HTTP/1.1 {rate}/s added p50, weft pair / nginx pair",
                _ratio(weft, nginx),
                "x",
                "<=" if rate == 1000 else "",
                1.5 if rate == 1000 else None,
                f"weft {_added(weft)}, nginx {_added(nginx)}",
            )
        )
    weft_max, nginx_max = rps("weft-pair", "h1@max"), rps("nginx-pair", "h1@max")
    share = _ratio(weft_max, nginx_max)
    checks.append(
        Check(
            "HTTP/1.1 max throughput, weft pair / nginx pair",
            None if share is None else 100 * share,
            "%",
            ">=",
            45,
            f"weft {_rate(weft_max)}, nginx {_rate(nginx_max)}",
        )
    )
    rss = [
        (usage.max_rss_mb, f"{name} in {s.name} {r.label}")
        for s in results
        for r in s.runs
        for name, usage in r.proxies.items()
        if name.startswith(WEFT_PREFIX)
    ]
    peak = max(rss, default=None)
    checks.append(
        Check(
            "peak RSS of a weft proxy under load",
            peak[0] if peak else None,
            "MB",
            "<=",
            40,
            peak[1] if peak else "",
        )
    )
    weft_max, haproxy_max = rps("weft-pair", "grpc@max"), rps("haproxy-pair", "grpc@max")
    share = _ratio(weft_max, haproxy_max)
    checks.append(
        Check(
            "h2c gRPC max throughput, weft pair / haproxy pair",
            None if share is None else 100 * share,
            "%",
            ">=",
            15,
            f"weft {_rate(weft_max)}, haproxy {_rate(haproxy_max)}",
        )
    )
    weft, haproxy = added("weft-pair", "grpc@1000"), added("haproxy-pair", "grpc@1000")
    checks.append(
        Check(
            "h2c gRPC 1000/s added p50, weft pair",
            weft,
            "ms",
            "<=",
            2,
            f"haproxy {_added(haproxy)}",
        )
    )
    checks.append(
        Check(
            "h2c gRPC 1000/s added p50, weft pair / haproxy pair",
            _ratio(weft, haproxy),
            "x",
            detail=f"weft {_added(weft)}, haproxy {_added(haproxy)}",
        )
    )
    return checks


HEADER = (
    "scenario",
    "load",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "req/s",
    "err/non2xx",
    "CPU us/req/hop",
    "RSS MB",
)


def table_rows(results: Iterable[ScenarioResult]) -> list[tuple[str, ...]]:
    """Rows of the results table; a row of three cells (scenario, load, message) is an error."""
    rows: list[tuple[str, ...]] = []
    for s in results:
        if s.error:
            rows.append((s.name, "", f"failed: {s.error}"))
        for run in s.runs:
            out = run.outcome
            if out is None:
                rows.append((s.name, run.label, run.error or ""))
                continue
            rps = f"{out.rps:.0f}"
            if run.target_rps and out.rps < SATURATED * run.target_rps:
                rps += "*"
            rss = " ".join(
                f"{name.rpartition('-')[2]}:{usage.max_rss_mb:.1f}"
                for name, usage in run.proxies.items()
            )
            rows.append(
                (
                    s.name,
                    run.label,
                    fmt(out.p50_ms),
                    fmt(out.p99_ms),
                    fmt(out.p999_ms),
                    rps,
                    f"{out.errors}/{out.non_2xx}",
                    fmt(run.cpu_us_per_req_hop, ".1f"),
                    rss or "-",
                )
            )
            if run.error:
                rows.append(("", "", run.error))
    return rows


def render_report(results: Sequence[ScenarioResult], checks: Sequence[Check]) -> str:
    """The printed report: the results table, then the comparisons and targets."""
    rows = table_rows(results)
    widths = [max(len(row[i]) for row in (HEADER, *rows) if i < len(row)) for i in range(2)]
    widths += [
        max(len(row[i]) for row in (HEADER, *rows) if len(row) == len(HEADER))
        for i in range(2, len(HEADER))
    ]

    def line(row: tuple[str, ...]) -> str:
        if len(row) < len(HEADER):  # an error: scenario, load, message
            return f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip()
        parts = [
            cell.ljust(width) if i < 2 or i == len(row) - 1 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [line(HEADER), "-" * len(line(HEADER))]
    out += [line(row) for row in rows]
    out += [
        "* achieved rate below 95% of the target: the path is saturated at that rate.",
        "CPU: proxies' user+system time / requests / hops. RSS: peak per proxy "
        "(out/in = weft outbound/inbound, cli/srv = client/server pod).",
        "",
        "Comparisons (added = p50 minus direct p50 under the same load) and targets:",
    ]
    for check in checks:
        target = (
            f"target {check.op} {check.target:g}{check.unit}" if check.target is not None else ""
        )
        out.append(
            f"  {check.verdict or 'info':<5} {check.label:<52} "
            f"{fmt(check.value, '.2f'):>8} {check.unit:<3} {target:<16} {check.detail}".rstrip()
        )
    return "\n".join(out)
