"""The dashboard's speed with the demo running: how fast its JSON answers and how soon the
namespace page paints.

Targets (the dashboard issue): the JSON behind the overview and behind a namespace page each
answer within 300 ms (median over repeats), and the first contentful paint of the namespace page
in headless Chromium (Debian's) comes within 1.5 s.

The JSON is fetched over one keep-alive connection, the two documents interleaved, one request
at a time; each time covers the whole body. Each paint is a cold load in a fresh browser context
(no cache), read from the page's own ``performance`` paint entries; the time until the topology
graph is drawn is reported beside it.

    sudo scripts/demo &                                  # or any cluster with traffic
    sudo .venv/bin/python bench/dashboard.py [--repeats 20] [--paints 5] [--url URL]

Without ``--url`` it runs ``weft dashboard --show url --port 0`` for the cluster named by
``--name``/``--state-dir`` (the demo's by default) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
JSON_TARGET_MS = 300.0
PAINT_TARGET_MS = 1500.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


class BenchError(Exception):
    """The benchmark cannot run; ``str()`` says why."""


@contextmanager
def dashboard(name: str, state_dir: str | None) -> Iterator[str]:
    """``weft dashboard`` for the cluster, yielding its URL; stopped (Ctrl-C) afterwards."""
    argv = [sys.executable, "-m", "weft", "dashboard", "--name", name, "--show", "url",
            "--port", "0", "--address", "127.0.0.1", "--wait", "2m"]  # fmt: skip
    if state_dir:
        argv += ["--state-dir", state_dir]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            if re.fullmatch(r"http://\S+", line.strip()):
                url = line.strip()
                break
        if url is None:
            raise BenchError(f"weft dashboard exited {proc.wait()} without a URL")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile, min and max of ``samples`` (milliseconds)."""
    ordered = sorted(samples)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        "min": ordered[0],
        "max": ordered[-1],
        "n": len(ordered),
    }


async def json_times(url: str, namespace: str, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per answer of the overview's and the namespace page's JSON."""
    paths = {"overview": "/api/overview", "namespace": f"/api/namespaces/{namespace}"}
    times: dict[str, list[float]] = {key: [] for key in paths}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for path in paths.values():  # one warm-up each (connection, first imports)
            async with session.get(url + path) as response:
                body = await response.read()
                if response.status != 200:
                    raise BenchError(f"{path} answered {response.status}: {body[:200]!r}")
        for _ in range(repeats):
            for key, path in paths.items():
                started = time.perf_counter()
                async with session.get(url + path) as response:
                    await response.read()
                times[key].append((time.perf_counter() - started) * 1000)
    return times


def paint_times(url: str, namespace: str, paints: int) -> dict[str, list[float]]:
    """First contentful paint and graph-drawn times (ms) of cold loads of the namespace page."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {"first_contentful_paint": [], "graph_drawn": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            for _ in range(paints + 1):  # the first load warms the disk cache of the binary
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"{url}/namespaces/{namespace}")
                page.wait_for_selector("[data-testid=topology][data-edges]", timeout=30_000)
                drawn = (time.perf_counter() - started) * 1000
                fcp = page.evaluate(
                    "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"
                )
                context.close()
                if fcp is None:
                    raise BenchError("the browser reported no first-contentful-paint entry")
                out["first_contentful_paint"].append(float(fcp))
                out["graph_drawn"].append(drawn)
        finally:
            browser.close()
    return {key: values[1:] for key, values in out.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints a table and the target checks, writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a dashboard already reachable (else weft dashboard)")
    parser.add_argument("--name", default="weft", help="the cluster (the demo's: weft)")
    parser.add_argument("--state-dir")
    parser.add_argument("--namespace", default="emojivoto")
    parser.add_argument("--repeats", type=int, default=20, help="JSON requests per document")
    parser.add_argument("--paints", type=int, default=5, help="cold page loads")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        reach = nullcontext(args.url) if args.url else dashboard(args.name, args.state_dir)
        with reach as url:
            print(f"dashboard at {url}", file=sys.stderr)
            times: dict[str, Any] = asyncio.run(json_times(url, args.namespace, args.repeats))
            times.update(paint_times(url, args.namespace, args.paints))
    except (BenchError, aiohttp.ClientError, OSError) as exc:
        print(f"bench/dashboard.py: {exc}", file=sys.stderr)
        return 1
    results = {key: summary(values) for key, values in times.items()}
    targets = {
        "overview": JSON_TARGET_MS,
        "namespace": JSON_TARGET_MS,
        "first_contentful_paint": PAINT_TARGET_MS,
    }
    print(f"{'measure':<24} {'median':>9} {'p90':>9} {'min':>9} {'max':>9}  target")
    for key, stats in results.items():
        target = targets.get(key)
        verdict = ""
        if target is not None:
            verdict = f"< {target:.0f} ms: {'met' if stats['median'] < target else 'MISSED'}"
        print(
            f"{key:<24} {stats['median']:>7.1f}ms {stats['p90']:>7.1f}ms {stats['min']:>7.1f}ms"
            f" {stats['max']:>7.1f}ms  {verdict}"
        )
    out = args.out or ROOT / "bench" / "results" / (
        "dashboard-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + ".json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results, "samples": times}, indent=2) + "\n")
    print(f"JSON: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
