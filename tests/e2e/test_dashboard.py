"""The dashboard end to end: a real local cluster with its control plane (Prometheus, the metrics
API, tap, web), emojivoto meshed with traffic, ``weft dashboard`` on a host port, and Debian's
Chromium driven by Playwright (never a downloaded browser).

Every page must load without console errors and show what the issue asks for; a screenshot of
each page is saved under ``tests/artifacts/dashboard/`` (printed at the end) to be looked at.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.local_cluster import LocalCluster, running_cluster
from harness.mesh import REPO_ROOT, wait_for
from weft.demo.runner import manifest_objects
from weft.web import manifest

pytestmark = pytest.mark.netns

POD_CIDR = "10.232.0.0/16"
SERVICE_CIDR = "10.233.0.0/16"
NS = "emojivoto"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
UP_TIMEOUT = 240.0
WORKLOADS = ("emoji", "voting", "web", "vote-bot")
EDGES = (("vote-bot", "web"), ("web", "emoji"), ("web", "voting"))


def get_json(url: str) -> Any:
    """GET a JSON document; None when it is not (yet) a 200."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


@dataclass
class Dashboard:
    """A running ``weft dashboard`` and what it printed."""

    proc: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))


def start_dashboard(cluster: LocalCluster) -> Dashboard:
    """``weft dashboard --show url --port 0`` for the test's cluster, once it printed its URL."""
    argv = [sys.executable, "-m", "weft", "dashboard", "--name", cluster.name,
            "--state-dir", str(cluster.state_dir), "--show", "url", "--port", "0",
            "--address", "127.0.0.1", "--wait", "3m"]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT
    )
    dashboard = Dashboard(proc)
    threading.Thread(target=dashboard.read, daemon=True).start()

    def printed_url() -> str | None:
        assert proc.poll() is None, "\n".join(dashboard.lines)
        found = [line for line in dashboard.lines if re.fullmatch(r"http://[0-9.]+:\d+", line)]
        return found[0] if found else None

    url = wait_for(printed_url, 200, what="weft dashboard's URL", interval=0.2)
    assert url is not None
    dashboard.url = url
    return dashboard


def ensure_web(cluster: LocalCluster) -> None:
    """Deploy ``weft-web`` when the cluster's control plane does not run it already."""
    if not any(s["metadata"]["name"] == manifest.NAME for s in cluster.get("services", "weft")):
        cluster.apply(yaml.safe_dump_all(manifest.manifests("weft", "cluster.local")))


@dataclass
class Mesh:
    """The cluster and the dashboard the tests look at."""

    cluster: LocalCluster
    url: str


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    state = tmp_path_factory.mktemp("dashboard")
    with running_cluster(
        state, POD_CIDR, SERVICE_CIDR, "--prometheus-scrape-interval", "1s"
    ) as cluster:
        ensure_web(cluster)
        cluster.apply(yaml.safe_dump_all(manifest_objects(inject=True), sort_keys=False))
        for name in WORKLOADS:
            cluster.wait_deployment(NS, name, 1, timeout=UP_TIMEOUT)
        dashboard = start_dashboard(cluster)
        try:
            # Traffic has been scraped and every edge is known (the dashboard's own API).
            def graph_ready() -> bool:
                page = get_json(f"{dashboard.url}/api/namespaces/{NS}")
                if not page:
                    return False
                pairs = {
                    (e["source"].split("/")[2], e["target"].split("/")[2])
                    for e in page["graph"]["edges"]
                    if e["secured"] and e["rps"]
                }
                return set(EDGES) <= pairs

            wait_for(graph_ready, UP_TIMEOUT, what="emojivoto's edges in the dashboard", interval=1)
            yield Mesh(cluster, dashboard.url)
        finally:
            dashboard.proc.send_signal(signal.SIGINT)
            code = dashboard.proc.wait(30)
            assert code == 0, "\n".join(dashboard.lines)
            relays = subprocess.run(
                ["pgrep", "-f", f"weft.local.port_forward.*{cluster.name}"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert relays.stdout == "", "weft dashboard left its relay running"


@dataclass
class Browser:
    """A headless Debian Chromium page that records console errors."""

    page: Any
    errors: list[str]

    def open(self, url: str) -> None:
        self.errors.clear()
        self.page.goto(url)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup --test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.new_page()
        errors: list[str] = []
        page.on(
            "console",
            lambda msg: (
                errors.append(f"{msg.type}: {msg.text}")
                if msg.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.set_default_timeout(30_000)
        try:
            yield Browser(page, errors)
        finally:
            context.close()


def cells(browser: Browser, selector: str) -> list[list[str]]:
    """The text of each body row of a table."""
    rows: list[list[str]] = browser.page.eval_on_selector_all(
        f"{selector} tbody tr",
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(td => td.innerText.trim()))",
    )
    return rows


def test_overview_lists_emojivoto_with_numbers(mesh: Mesh, browser: Browser) -> None:
    browser.open(mesh.url + "/")
    browser.page.wait_for_selector("[data-testid=namespaces] >> text=emojivoto")

    def emojivoto() -> list[str] | None:
        for row in cells(browser, "[data-testid=namespaces]"):
            if row[0] == NS and row[2] != "-" and row[3].endswith("rps"):
                return row
        return None

    row = wait_for(emojivoto, 30, what="emojivoto's numbers on the overview", interval=0.5)
    assert row is not None
    assert row[1] == "4/4"  # meshed/running pods
    assert re.fullmatch(r"\d+\.\d\d%", row[2]) and float(row[2][:-1]) > 0
    assert browser.page.inner_text("[data-testid=cli] pre").strip() == "$ weft stat ns"
    assert "Last updated" in browser.page.inner_text("[data-testid=last-updated]")
    browser.shot("overview")
    assert browser.errors == []


def test_namespace_graph_shows_the_mtls_edges(mesh: Mesh, browser: Browser) -> None:
    browser.open(f"{mesh.url}/namespaces/{NS}")
    graph = browser.page.wait_for_selector("[data-testid=topology][data-edges]")
    assert int(graph.get_attribute("data-nodes")) >= 4
    names = set(graph.get_attribute("data-node-names").split(","))
    assert set(WORKLOADS) <= names
    edges = {(row[0], row[1]): row for row in cells(browser, "[data-testid=edges]")}
    for pair in EDGES:
        assert pair in edges, edges
        assert edges[pair][-1] == "✔ mTLS"
        assert edges[pair][3].endswith("rps")
    deployments = [row[0] for row in cells(browser, "[data-testid=table-deployment]")]
    assert sorted(deployments) == sorted(WORKLOADS)
    graph = browser.page.wait_for_selector("[data-testid=topology][data-positions]")
    browser.shot("namespace")
    assert browser.errors == []
    # Clicking a workload in the graph opens its page.
    x, y = json.loads(graph.get_attribute("data-positions"))["voting"]
    graph.click(position={"x": x, "y": y})
    browser.page.wait_for_url(f"{mesh.url}/namespaces/{NS}/deployments/voting")
    browser.page.wait_for_selector("h1 >> text=Deployment voting")
    assert browser.errors == []


def test_web_workload_has_charts_and_a_failing_success_rate(mesh: Mesh, browser: Browser) -> None:
    browser.open(f"{mesh.url}/namespaces/{NS}/deployments/web?chart=5m")

    def charted() -> int:
        """The success-rate chart's points once it has a few (a 5 s step), so lines show."""
        if browser.page.query_selector("[data-testid=chart-0]") is None:
            return 0
        points = int(browser.page.get_attribute("[data-testid=chart-0]", "data-points") or 0)
        return points if points >= 3 else 0

    assert wait_for(charted, 90, what="points on web's success-rate chart", interval=1)
    assert browser.page.query_selector("[data-testid=charts] canvas") is not None

    def failing() -> bool:
        """Whether the summary (refreshed by the page itself) shows a success rate under 100 %:
        the doughnut fails by design, though a failure counter's first scrape adds nothing."""
        summary = browser.page.inner_text("[data-testid=summary]")
        rate = re.search(r"Success rate\s+(\d+\.\d\d)%", summary)
        assert rate is not None, summary
        return float(rate.group(1)) < 100.0

    assert wait_for(failing, 60, what="a success rate under 100 % on web's page", interval=1)
    octopus = browser.page.inner_text("[data-testid=octopus]")
    for neighbour in ("deploy/vote-bot", "deploy/emoji", "deploy/voting"):
        assert neighbour in octopus
    browser.page.wait_for_selector("[data-testid=top] tbody tr")
    browser.shot("workload-web")
    assert browser.errors == []


def test_tap_shows_the_requests_the_test_makes(mesh: Mesh, browser: Browser) -> None:
    # Only the test sends HEAD (vote-bot GETs); its header, shown in the expanded row, marks it.
    token = secrets.token_hex(4)
    browser.open(
        f"{mesh.url}/tap?resource=deploy/web&namespace={NS}&method=HEAD&path=/api/list&extract=true"
    )
    browser.page.click("[data-testid=tap-form] button[type=submit]")
    browser.page.wait_for_selector("[data-testid=tap-status] >> text=Tapping")
    bot = next(
        p["metadata"]["name"]
        for p in mesh.cluster.deployment_pods(NS, "vote-bot")
        if not p["metadata"].get("deletionTimestamp")
    )
    curl = ["curl", "-s", "-o", "/dev/null", "-I", "-H", f"x-weft-probe: {token}"]
    url = f"http://web-svc.{NS}:80/api/list"

    def seen() -> list[list[str]]:
        mesh.cluster.exec(bot, NS, [*curl, url])
        if browser.page.query_selector("[data-testid=tap-events]") is None:
            return []
        # Request rows have a cell per column; an expanded row's details span them all.
        return [
            row for row in cells(browser, "[data-testid=tap-events]") if len(row) == 8 and row[6]
        ]

    rows = wait_for(seen, 60, what="the test's requests in the tap table", interval=0.5)
    assert all(row[3:5] == ["HEAD", "/api/list"] for row in rows), rows
    assert any(row[6] == "200" for row in rows), rows
    browser.page.click("[data-testid=tap-events] tr.event >> nth=0")
    details = browser.page.wait_for_selector("[data-testid=tap-events] tr.details")
    assert f"x-weft-probe{token}" in details.inner_text().replace("\n", "").replace("\t", "")
    browser.shot("tap")
    browser.page.click("text=Stop")
    browser.page.wait_for_selector("[data-testid=tap-status] >> text=Stopped")
    assert browser.errors == []


def test_control_plane_shows_the_trust_anchor_expiry(mesh: Mesh, browser: Browser) -> None:
    browser.open(f"{mesh.url}/controlplane")
    browser.page.wait_for_selector("[data-testid=certificates] >> text=trust anchor")
    anchor = next(r for r in cells(browser, "[data-testid=certificates]") if r[0] == "trust anchor")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", anchor[2])
    assert re.fullmatch(r"in \d+ days", anchor[3])
    components = {r[0]: r[1] for r in cells(browser, "[data-testid=components]")}
    for name in ("weft-identity", "weft-destination", "weft-metrics-api", "weft-tap", "weft-web"):
        assert components.get(name) == "healthy", components
    proxies = {r[0]: r[1] for r in cells(browser, "[data-testid=proxies]")}
    assert proxies[NS] == "4/4"
    browser.shot("controlplane")
    assert browser.errors == []


def test_a_narrow_window_and_a_missing_page(mesh: Mesh, browser: Browser) -> None:
    browser.page.set_viewport_size({"width": 420, "height": 900})
    try:
        browser.open(f"{mesh.url}/namespaces/{NS}/deployments/web")
        browser.page.wait_for_selector("[data-testid=summary]")
        width = browser.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 420, f"the page is {width}px wide in a 420px window"
        browser.shot("workload-web-narrow")
        assert browser.errors == []
        browser.open(f"{mesh.url}/namespaces/{NS}/deployments/nope")
        browser.page.wait_for_selector(
            "[data-testid=page-error] >> text=deployment/nope not found in namespace emojivoto"
        )
        browser.shot("not-found")
        # The browser reports the API's 404 itself; nothing else may go wrong.
        assert browser.errors, "the 404 should show in the console"
        assert all("status of 404" in e for e in browser.errors), browser.errors
    finally:
        browser.page.set_viewport_size({"width": 1400, "height": 1000})
