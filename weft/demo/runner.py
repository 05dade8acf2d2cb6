"""``weft demo``: emojivoto on a local cluster, meshed, from one command, and its removal.

The steps are Linkerd's getting-started walkthrough: check the host, bring up the cluster and its
control plane, check it, deploy emojivoto with ``linkerd.io/inject: enabled`` on its pod
templates, wait for every proxy and for traffic, forward a host port to ``web-svc``, and show the
live golden metrics (``weft stat deploy -n emojivoto``). The process stays in the foreground;
Ctrl-C (SIGINT), SIGTERM or ``weft demo down`` remove it all.

A marker file in the cluster's state directory records that the demo made the cluster and which
process runs it, so re-running is safe and ``weft demo down`` never removes a cluster the user
made by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.resources
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from weft.cli.check import (
    API,
    DATA_PLANE,
    IDENTITY,
    IDENTITY_DATA_PLANE,
    LOCAL_CLUSTER,
    CheckEnv,
    run_checks,
)
from weft.cli.check_results import Category, pod_ready
from weft.cli.cluster import Ctx
from weft.cli.stat_output import StatRow, parse_rows, render_table, shown
from weft.cli.viz_client import VizClient, VizError
from weft.demo import prereqs
from weft.demo.traffic import Edge, edges_seen, identity
from weft.demo.ui import Ui
from weft.inject.annotations import annotate_inject
from weft.local import control_plane, lifecycle
from weft.local import port_forward as pf
from weft.local.api_client import ApiClient, ApiError
from weft.local.cluster_config import (
    DEFAULT_NAME,
    DEFAULT_POD_CIDR,
    DEFAULT_SERVICE_CIDR,
    ClusterConfig,
    state_dir_for,
)
from weft.platform import PlatformError
from weft.web import manifest as web_manifest

NAMESPACE = "emojivoto"
MARKER = "demo.json"
PROXY = "linkerd-proxy"
POLL = 0.5
STAT_WINDOW = "1m"
# The workloads whose live numbers the demo waits for (vote-bot only sends: no inbound rows).
SERVED = ("web", "emoji", "voting")
Obj = dict[str, Any]


class DemoError(RuntimeError):
    """The demo cannot go on; the message is one actionable line."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``weft demo`` was asked for."""

    name: str
    state_dir: Path
    pod_cidr: str = DEFAULT_POD_CIDR
    service_cidr: str = DEFAULT_SERVICE_CIDR
    address: str = "127.0.0.1"
    port: int = 8080
    dashboard_port: int = 50750
    inject: bool = True
    timeout: float = 300.0

    @property
    def url(self) -> str:
        """Where the emojivoto page is served on this host."""
        return f"http://{self.address}:{self.port}/"


def manifest_objects(inject: bool) -> list[Obj]:
    """emojivoto's objects, with every pod template annotated for (or against) injection."""
    text = (importlib.resources.files("weft.demo") / "emojivoto.yml").read_text()
    mode = "enabled" if inject else "disabled"
    return [annotate_inject(obj, mode) for obj in yaml.safe_load_all(text) if obj]


# -- the marker -----------------------------------------------------------------------------


def read_marker(state_dir: Path) -> Obj | None:
    """The demo's marker in a cluster's state directory, if the demo made that cluster."""
    try:
        data = json.loads((state_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(marker: Obj | None, key: str, needle: bytes) -> int | None:
    """The pid under ``key`` if that process runs (not this one) and its argv has ``needle``."""
    pid = (marker or {}).get(key)
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if needle in cmdline else None


def running_demo(marker: Obj | None) -> int | None:
    """The pid of the ``weft demo`` process the marker names, if it still runs."""
    return _alive(marker, "pid", b"demo")


def stale_forward(marker: Obj | None) -> int | None:
    """The pid of the port-forward of a demo that died without removing it, if it still runs."""
    return _alive(marker, "relay", b"weft.local.port_forward")


def _write_marker(opts: DemoOptions, pid: int | None, relay: int | None = None) -> None:
    if opts.state_dir.is_dir():  # not when the cluster was removed under the demo
        marker = {"pid": pid, "relay": relay, "url": opts.url, "inject": opts.inject}
        (opts.state_dir / MARKER).write_text(json.dumps(marker))


# -- bringing it up ---------------------------------------------------------------------------


def preflight(opts: DemoOptions, ui: Ui) -> None:
    """Check the host; raises DemoError on the first thing that would stop the demo."""
    ui.section("Checking this host")
    for check in (
        prereqs.check_privileges,
        prereqs.check_binaries,
        prereqs.check_kernel,
        lambda: prereqs.check_port(opts.address, opts.port),
    ):
        finding = check()
        if not finding.ok:
            ui.fail(finding.description)
            raise DemoError(finding.fix)
        ui.ok(finding.description)


def _cluster_config(opts: DemoOptions) -> ClusterConfig:
    if (opts.state_dir / "cluster.json").exists():
        return ClusterConfig.load(opts.state_dir)
    return ClusterConfig(
        name=opts.name,
        pod_cidr=opts.pod_cidr,
        service_cidr=opts.service_cidr,
        state_dir=str(opts.state_dir),
    )


Probe = Callable[[], Awaitable[tuple[bool, str]]]


async def _wait(ui: Ui, what: str, deadline: float, probe: Probe, hint: str) -> None:
    """Poll ``probe`` (``(done, progress text)``) until done; DemoError(hint) at the deadline."""
    while True:
        done, progress = await probe()
        if done:
            ui.ok(f"{what}: {progress}")
            return
        ui.progress(f"{what}: {progress}")
        if time.monotonic() > deadline:
            ui.fail(f"{what}: {progress}")
            raise DemoError(hint)
        await asyncio.sleep(POLL)  # polling interval of a bounded wait


def _live(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def _is_web(pod: Obj) -> bool:
    return str(pod["metadata"]["name"]).startswith("web-")


def proxy_ready(pod: Obj) -> bool | None:
    """Whether the pod's linkerd-proxy is ready; None when the pod has no proxy."""
    status = pod.get("status") or {}
    for entry in (status.get("initContainerStatuses") or []) + (
        status.get("containerStatuses") or []
    ):
        if entry.get("name") == PROXY:
            return bool(entry.get("ready"))
    names = [
        c.get("name") for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    ]
    return False if PROXY in names else None


def rollout_state(pods: list[Obj], wanted: int, inject: bool) -> tuple[bool, str]:
    """Whether exactly ``wanted`` pods are live and ready, each with (or without) a ready proxy."""
    live = _live(pods)
    ready = [p for p in live if pod_ready(p)]
    proxies = [p for p in live if proxy_ready(p)]
    unmeshed = [p for p in live if proxy_ready(p) is None]
    if inject:
        done = len(live) == wanted and len(ready) == wanted and len(proxies) == wanted
        return done, f"{len(ready)}/{wanted} pods ready, {len(proxies)}/{wanted} proxies ready"
    done = len(live) == wanted and len(ready) == wanted and len(unmeshed) == wanted
    return done, f"{len(ready)}/{wanted} pods ready, {len(unmeshed)}/{wanted} without a proxy"


async def pod_metrics(cfg: ClusterConfig, pod: Obj, port: int = 4191) -> str:
    """A meshed pod's proxy ``/metrics``, read over the pod's own loopback ("" if unreachable)."""
    argv = ["ip", "netns", "exec", cfg.pod_netns(pod["metadata"]["uid"])]
    argv += ["curl", "-sS", "--fail", "--max-time", "5", f"http://127.0.0.1:{port}/metrics"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode(errors="replace") if proc.returncode == 0 else ""


class Demo:
    """One run of the demo, from the host checks to its removal."""

    def __init__(self, opts: DemoOptions, ui: Ui) -> None:
        self.opts = opts
        self.ui = ui
        self.cfg = _cluster_config(opts)
        self.relay: subprocess.Popen[bytes] | None = None
        self.deadline = 0.0
        self.web_pod = "<web pod>"
        self.dashboard_url: str | None = None
        self.stats: list[StatRow] = []

    async def up(self) -> None:
        """Everything up to the printed URL."""
        opts, ui = self.opts, self.ui
        self.deadline = time.monotonic() + opts.timeout
        ui.section(f"Starting the local cluster {self.cfg.name} and its control plane")
        started = await asyncio.to_thread(lifecycle.up, self.cfg)
        _write_marker(opts, os.getpid())
        ui.ok(
            f"cluster {self.cfg.name} {'is up' if started else 'was already up'}: "
            f"pods {self.cfg.pod_cidr}, services {self.cfg.service_cidr}"
        )
        async with ApiClient(self.cfg.api_socket) as client:
            await self._control_plane(client)
            await self._check("weft check", [IDENTITY, API])
            ui.section(f"Deploying emojivoto ({'meshed' if opts.inject else 'not meshed'})")
            objects = manifest_objects(opts.inject)
            text = yaml.safe_dump_all(objects, sort_keys=False)
            await client.post_json(
                "/v1/apply", {"sources": [{"name": "emojivoto.yml", "text": text}]}
            )
            mode = "enabled" if opts.inject else "disabled"
            ui.ok(f"applied emojivoto.yml with linkerd.io/inject: {mode}")
            wanted = sum(
                int(o["spec"].get("replicas", 1)) for o in objects if o["kind"] == "Deployment"
            )

            async def rollout() -> tuple[bool, str]:
                return rollout_state(await client.list("Pod", NAMESPACE), wanted, opts.inject)

            await _wait(
                ui,
                "pods",
                self.deadline,
                rollout,
                f"emojivoto did not come up in {opts.timeout:.0f}s: see "
                f"`weft cluster get pods -n {NAMESPACE}` and `weft cluster logs`",
            )
            web = [p for p in _live(await client.list("Pod", NAMESPACE)) if _is_web(p)]
            self.web_pod = web[0]["metadata"]["name"] if web else self.web_pod
            if opts.inject:
                await self._check("weft check --proxy", [IDENTITY_DATA_PLANE, DATA_PLANE])
                await self._traffic(client)
            await self._forward(client)
            if opts.inject:
                await self._stats(client)

    async def _control_plane(self, client: ApiClient) -> None:
        wanted = sum(1 for o in control_plane.manifests(self.cfg) if o["kind"] == "Deployment")

        async def ready() -> tuple[bool, str]:
            pods = _live(await client.list("Pod", control_plane.NAMESPACE))
            ready = [p["metadata"]["name"].rsplit("-", 2)[0] for p in pods if pod_ready(p)]
            done = len(pods) >= wanted and len(ready) == len(pods)
            return done, f"{len(ready)}/{max(len(pods), wanted)} ready"

        await _wait(
            self.ui,
            "control plane",
            self.deadline,
            ready,
            "the control plane did not become ready: see `weft cluster logs -n weft <pod>`",
        )

    async def _check(self, title: str, chosen: list[Category]) -> None:
        lines: list[str] = []
        env = CheckEnv(Ctx(self.cfg.name, str(self.opts.state_dir)), wait=30.0)
        code = await run_checks(env, [LOCAL_CLUSTER, *chosen], lines.append)
        checks = sum(1 for line in lines if line.startswith(("√", "‼")))
        if code != 0:
            for line in lines:
                self.ui.line(line)
            raise DemoError(f"{title} failed: the lines above say what is wrong")
        self.ui.ok(f"{title}: {checks} checks passed")

    async def _traffic(self, client: ApiClient) -> None:
        cfg = self.cfg
        domain = control_plane.TRUST_DOMAIN
        edges = [
            Edge(name, identity(sa, NAMESPACE, control_plane.NAMESPACE, domain))
            for name, sa in (("web → emoji-svc", "emoji"), ("web → voting-svc", "voting"))
        ]

        async def flowing() -> tuple[bool, str]:
            pods = [p for p in _live(await client.list("Pod", NAMESPACE)) if pod_ready(p)]
            web = [p for p in pods if _is_web(p)]
            seen = edges_seen(await pod_metrics(cfg, web[0]), edges) if web else []
            names = ", ".join(e.name for e in seen) or "none yet"
            return len(seen) == len(edges), f"mTLS requests seen by web's proxy: {names}"

        await _wait(
            self.ui,
            "traffic",
            self.deadline,
            flowing,
            "no meshed traffic between web and emoji-svc/voting-svc: see "
            f"`weft cluster logs -n {NAMESPACE} <pod> -c {PROXY}`",
        )

    async def _forward(self, client: ApiClient) -> None:
        opts = self.opts
        services = await client.list("Service", NAMESPACE, "web-svc")
        if not services:
            raise DemoError("service web-svc is missing from namespace emojivoto")
        ip, port = pf.resolve_target(services[0], "Service", "80")
        listener = pf.bind(opts.address, opts.port)
        if opts.port == 0:  # any free port: the page is where the listener was bound
            self.opts = opts = dataclasses.replace(opts, port=listener.getsockname()[1])
        listeners = [(listener, ip, port)]
        dashboard = await self._dashboard(client)
        if dashboard is not None:
            listeners.append(dashboard)
            bound = dashboard[0].getsockname()[1]
            self.dashboard_url = f"http://{pf.host_port(opts.address, bound)}/"
        try:
            argv = pf.relay_argv(self.cfg, [(s.fileno(), ip, port) for s, ip, port in listeners])
            # Its "cannot reach" lines while web-svc gets endpoints would clutter the progress.
            with (opts.state_dir / "port-forward.log").open("ab") as log:
                self.relay = subprocess.Popen(
                    argv, pass_fds=[s.fileno() for s, _, _ in listeners], stdout=log, stderr=log
                )
        finally:
            for sock, _, _ in listeners:
                sock.close()
        _write_marker(opts, os.getpid(), self.relay.pid)

        async def serving() -> tuple[bool, str]:
            return await page_state(opts.url)

        await _wait(
            self.ui,
            "web page",
            self.deadline,
            serving,
            f"{opts.url} does not serve emojivoto: see `weft cluster logs -n {NAMESPACE} <pod>`",
        )

    async def _dashboard(self, client: ApiClient) -> tuple[socket.socket, str, int] | None:
        """A host port for the dashboard (weft-web) when the control plane runs one."""
        try:
            services = await client.list("Service", control_plane.NAMESPACE, web_manifest.NAME)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        if not services:
            return None
        ip, port = pf.resolve_target(services[0], "Service", str(web_manifest.PORT))
        try:
            return pf.bind(self.opts.address, self.opts.dashboard_port), ip, port
        except pf.PortForwardError as exc:
            self.ui.line(f"the dashboard is not forwarded: {exc} (try --dashboard-port)")
            return None

    async def _stats(self, client: ApiClient) -> None:
        """Wait until Prometheus has enough scrapes for live numbers of every served workload."""
        body = {
            "selector": {"resource": {"namespace": NAMESPACE, "type": "deployment", "name": ""}},
            "timeWindow": STAT_WINDOW,
            "tcpStats": True,
        }
        viz = VizClient(client)

        async def live() -> tuple[bool, str]:
            try:
                self.stats = shown(parse_rows(await viz.metrics("StatSummary", body)))
            except VizError as exc:
                return False, str(exc)
            serving = [r.name for r in self.stats if r.requests and sum(r.requests) > 0]
            done = all(name in serving for name in SERVED)
            return done, f"requests measured for: {', '.join(sorted(serving)) or 'none yet'}"

        await _wait(
            self.ui,
            "live numbers",
            self.deadline,
            live,
            f"Prometheus has no numbers for emojivoto: see `weft stat deploy -n {NAMESPACE}` "
            "and `weft check --proxy`",
        )

    def stat_table(self) -> list[str]:
        """``weft stat deploy -n emojivoto``'s table of the numbers the demo last read."""
        if not self.stats:
            return []
        table = render_table(self.stats, 60.0, wide=False, all_namespaces=False)
        return ["", f"Live numbers (weft stat deploy -n {NAMESPACE}):", *table.splitlines()]

    async def serve(self) -> None:
        """Wait until the port-forward stops (``weft demo down`` removed the cluster)."""
        relay = self.relay
        if relay is None:
            return
        while relay.poll() is None:
            await asyncio.sleep(POLL)  # polling interval: the relay has no async handle
        raise DemoError(f"the port-forward to web-svc stopped (exit status {relay.returncode})")

    def stop_forward(self) -> None:
        """Stop the port-forward, if it runs."""
        if self.relay is not None and self.relay.poll() is None:
            self.relay.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.relay.wait(5)

    def down(self) -> list[str]:
        """Remove the cluster and everything in it; returns what could not be removed."""
        self.stop_forward()
        return lifecycle.down(self.cfg, grace=10.0)


async def page_state(url: str) -> tuple[bool, str]:
    """Whether ``url`` serves the emojivoto page and how many emoji ``/api/list`` returns."""
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url) as page:
                if page.status != 200:
                    return False, f"{url} answered {page.status}"
            async with session.get(url + "api/list") as listing:
                emoji = await listing.json() if listing.status == 200 else []
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return False, f"{url} does not answer yet ({type(exc).__name__})"
    return bool(emoji), f"{url} lists {len(emoji)} emoji"


# -- the commands -----------------------------------------------------------------------------


def next_steps(
    opts: DemoOptions, weft: str, web_pod: str, dashboard_url: str | None = None
) -> list[str]:
    """What the final screen suggests, with the command as the user invoked it."""
    flags = "" if opts.name == DEFAULT_NAME else f" --name {opts.name}"
    if opts.state_dir != state_dir_for(opts.name):
        flags += f" --state-dir {opts.state_dir}"
    return [
        "",
        f"emojivoto is running: open {opts.url}",
        *([f"the weft dashboard: open {dashboard_url}"] if dashboard_url else []),
        "",
        "Try next, in another terminal:",
        f"  sudo {weft} stat{flags} deploy -n {NAMESPACE}",
        f"  sudo {weft} top{flags} deploy/web -n {NAMESPACE}",
        f"  sudo {weft} tap{flags} deploy/web -n {NAMESPACE}",
        f"  sudo {weft} routes{flags} deploy/web -n {NAMESPACE} --to svc/voting-svc",
        f"  sudo {weft} edges{flags} deploy -n {NAMESPACE}",
        f"  sudo {weft} check{flags} --proxy",
        f"  sudo {weft} cluster{flags} logs {web_pod} -n {NAMESPACE} -c {PROXY}",
        "",
        f"Ctrl-C here, or `sudo {weft} demo down{flags}`, removes everything.",
    ]


def weft_command() -> str:
    """How the user ran weft (``.venv/bin/weft`` or ``weft``), for copy-pasteable hints."""
    argv0 = sys.argv[0]
    return argv0 if "/" in argv0 and not argv0.endswith("__main__.py") else "weft"


async def run(opts: DemoOptions, ui: Ui) -> int:
    """``weft demo``: up, then stay in the foreground until stopped; returns the exit status."""
    marker = read_marker(opts.state_dir)
    other = running_demo(marker)
    if other is not None:
        ui.line(f"the demo already runs (pid {other}): open {(marker or {}).get('url', opts.url)}")
        return 0
    relay = stale_forward(marker)
    if relay is not None:  # an earlier demo was killed: free its port before checking it
        ui.line(f"stopping the port-forward of an earlier demo (pid {relay})")
        with contextlib.suppress(ProcessLookupError, PermissionError):  # preflight says why
            os.kill(relay, signal.SIGTERM)
            await _gone(relay, 10.0)
    preflight(opts, ui)
    if marker is None and lifecycle.agent_pid(_cluster_config(opts)) is not None:
        raise DemoError(
            f"cluster {opts.name} is running and was not started by weft demo: remove it with "
            f"`weft cluster --name {opts.name} down`, or use `weft demo --name <other>`"
        )
    demo = Demo(opts, ui)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await demo.up()
        steps = next_steps(demo.opts, weft_command(), demo.web_pod, demo.dashboard_url)
        for line in demo.stat_table() + steps:
            ui.line(line)
        await demo.serve()
    except asyncio.CancelledError:
        ui.line("")
        ui.line("stopping the demo")
    except (
        DemoError,
        PlatformError,
        pf.PortForwardError,
        lifecycle.LifecycleError,
        OSError,
    ) as exc:
        # Left up so that the hints (logs, get pods) can be followed; `demo down` removes it.
        demo.stop_forward()
        _write_marker(opts, None)
        ui.error(str(exc))
        ui.error(f"the cluster is left up to look into: `{weft_command()} demo down` removes it")
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: ui.line("still removing the demo, please wait"))
    ui.section("Removing the demo")
    errors = await asyncio.to_thread(demo.down)
    if errors:
        ui.error("could not remove everything: " + "; ".join(errors))
        return 1
    ui.ok(f"cluster {opts.name} removed: no namespaces, links, rules or processes left")
    return 0


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has, whoever reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


async def _gone(pid: int, timeout: float) -> None:
    """Wait (bounded) until process ``pid`` has exited."""
    deadline = time.monotonic() + timeout
    while process_running(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # polling interval of a bounded wait


def down(opts: DemoOptions, ui: Ui, grace: float = 120.0) -> int:
    """``weft demo down``: stop a running demo and remove its cluster (safe to repeat)."""
    finding = prereqs.check_privileges()
    if not finding.ok:
        raise DemoError(finding.fix)
    marker = read_marker(opts.state_dir)
    if marker is None:
        if (opts.state_dir / "cluster.json").exists():
            raise DemoError(
                f"cluster {opts.name} was not started by weft demo: remove it with "
                f"`weft cluster --name {opts.name} down`"
            )
        ui.line("no demo to remove")
        return 0
    pid = running_demo(marker)
    if pid is not None:
        ui.line(f"stopping the demo (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process_running(pid) and time.monotonic() < deadline:
            time.sleep(POLL)  # polling interval of a bounded wait
    errors = []
    if (opts.state_dir / "cluster.json").exists():
        errors = lifecycle.down(ClusterConfig.load(opts.state_dir), grace=10.0)
    if errors:
        raise DemoError("could not remove everything: " + "; ".join(errors))
    ui.ok(f"the demo is removed (cluster {opts.name})")
    return 0
