"""``weft demo`` end to end: the real command, a real local cluster, emojivoto, no browser.

The demo runs as a subprocess with the test's own cluster name, state directory, CIDRs and a
free host port. The test reads its progress from stdout, then checks what the issue asks for:
every emojivoto pod has a ready proxy, the proxies' ``/metrics`` show web → emoji-svc and
web → voting-svc over mTLS with the right identities and web's inbound failures (the doughnut),
the page lists emoji, and ``weft demo down`` (or Ctrl-C) leaves nothing behind.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.local_cluster import LocalCluster, metric_total
from harness.mesh import REPO_ROOT, netns_skip_reason, wait_for

pytestmark = pytest.mark.netns

POD_CIDR = "10.242.0.0/16"
SERVICE_CIDR = "10.243.0.0/16"
NS = "emojivoto"
UP_TIMEOUT = 300.0
EMOJI_COUNT = 99


def identity(sa: str) -> str:
    """The identity of an emojivoto service account."""
    return f"{sa}.{NS}.serviceaccount.identity.weft.cluster.local"


def weft(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``weft <args>`` against the demo's cluster."""
    argv = [sys.executable, "-m", "weft", *args, "--name", cluster.name]
    argv += ["--state-dir", str(cluster.state_dir)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT
    )


def page_port(line: str) -> int:
    """The port in ``emojivoto is running: open http://127.0.0.1:<port>/``."""
    match = re.fullmatch(r"emojivoto is running: open http://127\.0\.0\.1:(\d+)/", line)
    assert match, line
    return int(match.group(1))


class Demo:
    """A running ``weft demo`` process and the lines it printed."""

    def __init__(self, cluster: LocalCluster, port: int, *extra: str) -> None:
        self.cluster = cluster
        self.port = port
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [*demo_argv(cluster), "--port", str(port), "--pod-cidr", POD_CIDR,
             "--service-cidr", SERVICE_CIDR, "--timeout", str(UP_TIMEOUT), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO_ROOT,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, start: str, timeout: float) -> str:
        """The first line starting with ``start``; fails with the output if it never comes."""
        deadline = timeout
        while True:
            try:
                line = self._queue.get(timeout=deadline)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(start):
                return line
        raise AssertionError(f"no line {start!r}; output:\n" + "\n".join(self.lines))

    def output(self, timeout: float = 60) -> str:
        """Everything printed until the process exits."""
        self.proc.wait(timeout)
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return "\n".join(self.lines)

    def stop(self) -> None:
        """Make sure the process is gone (the test failed half-way)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def demo_argv(cluster: LocalCluster, *args: str) -> list[str]:
    """``weft demo <args>`` for the test's cluster."""
    return [sys.executable, "-m", "weft", "demo", *args, "--name", cluster.name,
            "--state-dir", str(cluster.state_dir)]  # fmt: skip


def get(url: str) -> tuple[int, str]:
    """GET ``url`` from this host: (status, body)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = LocalCluster(tmp_path, pod_cidr=POD_CIDR, service_cidr=SERVICE_CIDR)
    try:
        yield cluster
    finally:
        if cluster.state_dir.exists():
            subprocess.run(
                [*demo_argv(cluster, "down")], capture_output=True, timeout=180, check=False
            )
            cluster.down()


def proxy_of(pod: dict[str, object]) -> dict[str, object] | None:
    """The linkerd-proxy entry of a pod's container statuses."""
    status = pod.get("status") or {}
    assert isinstance(status, dict)
    for entry in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        if entry["name"] == "linkerd-proxy":
            assert isinstance(entry, dict)
            return entry
    return None


def live_pods(cluster: LocalCluster) -> list[dict[str, object]]:
    """The emojivoto pods that are not terminating."""
    return [p for p in cluster.get("pods", NS) if not p["metadata"].get("deletionTimestamp")]


def pod_named(cluster: LocalCluster, deployment: str) -> str:
    """The name of the one live pod of an emojivoto deployment."""
    pods = [
        p["metadata"]["name"]
        for p in cluster.deployment_pods(NS, deployment)
        if not p["metadata"].get("deletionTimestamp")
    ]
    assert len(pods) == 1, pods
    return str(pods[0])


def test_unmeshed_then_crash_then_meshed_then_down(cluster: LocalCluster) -> None:
    # -- --no-inject: the same app without proxies; then the demo process dies ---------------
    demo = Demo(cluster, 0, "--no-inject")  # the demo binds any free port and shows it
    try:
        port = page_port(demo.wait_for_line("emojivoto is running: open", UP_TIMEOUT + 30))
        pods = live_pods(cluster)
        assert len(pods) == 4
        assert all(proxy_of(p) is None for p in pods)
        status, body = get(f"http://127.0.0.1:{port}/api/list")
        assert status == 200 and len(json.loads(body)) == EMOJI_COUNT
        demo.proc.kill()  # a closed terminal: no teardown, the port-forward lives on
        demo.proc.wait(30)
        assert get(f"http://127.0.0.1:{port}/api/list")[0] == 200
    finally:
        demo.stop()

    # -- re-run, meshed, on the same port: the cluster is reused and the pods replaced ------
    demo = Demo(cluster, port)
    try:
        demo.wait_for_line("emojivoto is running: open", UP_TIMEOUT + 30)
        text = "\n".join(demo.lines)
        for step in ("stopping the port-forward of an earlier demo", "was already up",
                     "control plane:", "weft check:", "pods: 4/4 pods ready, 4/4 proxies",
                     "weft check --proxy:", "traffic: mTLS requests seen by web's proxy",
                     "web page:", "live numbers:",
                     "Live numbers (weft stat deploy -n emojivoto):"):  # fmt: skip
            assert step in text, text
        table = text.split("Live numbers (weft stat deploy -n emojivoto):", 1)[1].splitlines()
        assert table[1].split()[:3] == ["NAME", "MESHED", "SUCCESS"], table
        assert {"web", "emoji", "voting", "vote-bot"} <= {line.split()[0] for line in table[2:6]}

        # Every pod has a ready proxy.
        pods = live_pods(cluster)
        assert len(pods) == 4
        for pod in pods:
            proxy = proxy_of(pod)
            assert proxy is not None and proxy["ready"] is True, pod

        # web → emoji-svc and web → voting-svc over mTLS, counted on both sides.
        web = pod_named(cluster, "web")
        text = cluster.proxy_metrics(web, NS)
        for server in ("emoji", "voting"):
            assert metric_total(
                text, "request_total", direction="outbound", tls="true",
                server_id=identity(server),
            ) > 0, server  # fmt: skip
        assert not metric_total(text, "request_total", direction="outbound", tls="no_identity")
        for server in ("emoji", "voting"):
            served = cluster.proxy_metrics(pod_named(cluster, server), NS)
            assert metric_total(
                served, "request_total", direction="inbound", tls="true",
                client_id=identity("web"),
            ) > 0, server  # fmt: skip

        # vote-bot's doughnut votes fail at web: web's inbound side counts failures.
        def doughnut_failed() -> bool:
            metrics = cluster.proxy_metrics(web, NS)
            return (
                metric_total(
                    metrics, "response_total", direction="inbound", classification="failure",
                    status_code="500", tls="true", client_id=identity("default"),
                ) > 0
            )  # fmt: skip

        wait_for(doughnut_failed, timeout=90, what="a failed doughnut vote at web's proxy")

        # The golden metrics, as `weft stat` reads them from Prometheus: every served workload
        # has traffic, and web's success rate shows the doughnut.
        def stat_rows() -> dict[str, dict[str, object]] | None:
            proc = weft(cluster, "stat", "deploy", "-n", NS, "-o", "json")
            if proc.returncode != 0:
                return None
            rows = {r["name"]: r for r in json.loads(proc.stdout)}
            served = all((rows.get(n) or {}).get("rps") for n in ("web", "emoji", "voting"))
            return rows if served and rows["web"]["success"] < 1.0 else None

        rows = wait_for(stat_rows, timeout=90, what="web below 100 % in weft stat", interval=1)
        assert rows is not None
        assert {"web", "emoji", "voting", "vote-bot"} <= set(rows)
        assert all(rows[n]["meshed"] == "1/1" for n in ("web", "emoji", "voting", "vote-bot"))
        check = weft(cluster, "check", "--proxy")
        assert check.returncode == 0, check.stdout + check.stderr

        # The page, through the demo's port-forward.
        status, page = get(f"http://127.0.0.1:{port}/")
        assert status == 200
        assert "🍩" in page and "😂" in page
        assert page.count("/vote?choice=") == EMOJI_COUNT
        status, _ = get(f"http://127.0.0.1:{port}/api/vote?choice=:doughnut:")
        assert status == 500

        # Re-running while it runs changes nothing.
        again = subprocess.run(
            [*demo_argv(cluster), "--port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already runs" in again.stdout
        assert demo.proc.poll() is None

        # `weft demo down` stops the foreground demo and removes everything.
        down = subprocess.run(
            demo_argv(cluster, "down"), capture_output=True, text=True, timeout=180, check=False
        )
        assert down.returncode == 0, down.stdout + down.stderr
        out = demo.output(60)
    finally:
        demo.stop()
    assert demo.proc.returncode == 0, out
    assert cluster.leftovers() == []
    with pytest.raises(OSError):  # the port-forward is gone too
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    again = subprocess.run(
        demo_argv(cluster, "down"), capture_output=True, text=True, timeout=60, check=False
    )
    assert (again.returncode, again.stdout.strip()) == (0, "no demo to remove")


def test_ctrl_c_while_starting_removes_everything(cluster: LocalCluster) -> None:
    demo = Demo(cluster, 0)
    try:
        demo.wait_for_line("Deploying emojivoto", UP_TIMEOUT)
        demo.proc.send_signal(signal.SIGINT)
        out = demo.output(120)
    finally:
        demo.stop()
    assert demo.proc.returncode == 0, out
    assert "stopping the demo" in out
    assert out.splitlines()[-1].startswith(f"√ cluster {cluster.name} removed")
    assert cluster.leftovers() == []


def test_a_busy_port_stops_the_demo_before_it_starts(cluster: LocalCluster) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [*demo_argv(cluster), "--port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert errors == [f"weft demo: 127.0.0.1:{port} is in use: pick another with --port"]
    assert not cluster.state_dir.exists()
    assert cluster.leftovers() == []


def test_without_privileges_the_demo_says_so(cluster: LocalCluster) -> None:
    """Root without CAP_NET_ADMIN (as in an unprivileged container): one line, nothing made."""
    proc = subprocess.run(
        ["setpriv", "--bounding-set", "-net_admin,-sys_admin", "--inh-caps", "-all",
         *demo_argv(cluster)],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "weft demo: weft demo creates network namespaces and iptables rules; this root lacks "
        "CAP_NET_ADMIN or CAP_SYS_ADMIN (run the container privileged)"
    ]
    assert not cluster.state_dir.exists()
