"""Two weft checkouts through ``bench/run.py``, interleaved, so that drift on a shared machine
falls on both: rounds alternate the order (A B, B A, A B, ...) and each figure is the median over
the rounds.

Each checkout runs its own ``bench/run.py`` with its own ``.venv`` (``scripts/setup --test`` in
it first). The report gives, per load, the weft pair's p50 added over ``direct`` (fixed-rate
loads), its requests per second (``max`` loads) and its CPU per request per hop, for both, and
B as a share of A.

    sudo .venv/bin/python bench/ab.py --a /work/wt/tap-before --b . --rounds 3   # ~20 minutes
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCENARIO = "weft-pair"
BASELINE = "direct"

Figures = dict[str, dict[str, float]]  # load -> {"added_p50_ms", "rps", "cpu_us"}


def run_checkout(checkout: Path, out: Path, quick: bool) -> None:
    """``bench/run.py --only direct,weft-pair`` of ``checkout``, results to ``out``."""
    argv = [
        str(checkout / ".venv" / "bin" / "python"),
        str(checkout / "bench" / "run.py"),
        "--only",
        f"{BASELINE},{SCENARIO}",
        "--out",
        str(out),
    ]
    if quick:
        argv.append("--quick")
    subprocess.run(argv, cwd=checkout, check=True, stdout=subprocess.DEVNULL, timeout=3600)


def figures(document: dict[str, Any]) -> Figures:
    """The weft pair's figures per load from one run.py result document."""
    by_name = {s["name"]: s for s in document["scenarios"]}
    direct = {r["load"]: r for r in by_name[BASELINE]["runs"]}
    out: Figures = {}
    for run in by_name[SCENARIO]["runs"]:
        outcome = run.get("outcome")
        if outcome is None:
            continue
        found = {"rps": outcome["rps"]}
        base = direct.get(run["load"], {}).get("outcome")
        if outcome.get("p50_ms") is not None and base and base.get("p50_ms") is not None:
            found["added_p50_ms"] = outcome["p50_ms"] - base["p50_ms"]
        if run.get("cpu_us_per_req_hop") is not None:
            found["cpu_us"] = run["cpu_us_per_req_hop"]
        out[run["load"]] = found
    return out


def medians(rounds: list[Figures]) -> Figures:
    """Per load and figure, the median over the rounds that have it."""
    out: Figures = {}
    for load in rounds[0]:
        keys = set().union(*(r.get(load, {}) for r in rounds))
        out[load] = {
            key: statistics.median(r[load][key] for r in rounds if key in r.get(load, {}))
            for key in keys
        }
    return out


def report(a: Figures, b: Figures, names: tuple[str, str]) -> str:
    """A table of A, B and B/A per load."""
    lines = [f"{'load':<12} {'figure':<14} {names[0]:>12} {names[1]:>12} {'B/A':>8}"]
    for load in a:
        for key, unit in (("added_p50_ms", "ms"), ("rps", "req/s"), ("cpu_us", "µs/req/hop")):
            if key not in a[load] or key not in b.get(load, {}):
                continue
            if key == "added_p50_ms" and load.endswith("max"):
                continue  # p50 under saturation says little
            va, vb = a[load][key], b[load][key]
            ratio = f"{vb / va:.3f}" if va else "-"
            lines.append(f"{load:<12} {key:<14} {va:>12.3f} {vb:>12.3f} {ratio:>8}  {unit}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="first checkout (e.g. main)")
    parser.add_argument("--b", type=Path, required=True, help="second checkout (e.g. a branch)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="run.py --quick (2 s per load)")
    parser.add_argument("--out", type=Path, help="write every round's figures as JSON")
    args = parser.parse_args(argv)
    checkouts = (args.a.resolve(), args.b.resolve())
    for checkout in checkouts:
        if not (checkout / ".venv" / "bin" / "python").exists():
            print(
                f"ab.py: {checkout} has no .venv (run scripts/setup --test there)", file=sys.stderr
            )
            return 2
    rounds: dict[Path, list[Figures]] = {c: [] for c in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            order = checkouts if round_no % 2 == 0 else checkouts[::-1]
            for checkout in order:
                out = Path(tmp) / f"{round_no}-{checkout.name}.json"
                print(f"round {round_no + 1}: {checkout}", file=sys.stderr, flush=True)
                run_checkout(checkout, out, args.quick)
                rounds[checkout].append(figures(json.loads(out.read_text())))
    a, b = (medians(rounds[c]) for c in checkouts)
    print(f"A = {checkouts[0]}\nB = {checkouts[1]}\nmedians of {args.rounds} rounds, weft pair\n")
    print(report(a, b, ("A", "B")))
    if args.out is not None:
        document = {str(c): rounds[c] for c in checkouts}
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
