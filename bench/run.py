"""Benchmark weft against no proxy, an nginx pair and a haproxy pair, in network namespaces.

Run as root: ``.venv/bin/python bench/run.py [--quick] [--out FILE]``. A client pod and a server
pod (namespaces on a bridge, from ``harness/mesh.py``) are created once; each scenario is deployed
into them in turn, loaded from the client pod, and torn down again. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from types import FrameType

from bench import configs
from bench.loadgen import GRPC_PATH, H1, H2, LOADS, BenchError, Load, LoadGen, grpc_frame
from bench.report import (
    WEFT_PREFIX,
    RunResult,
    ScenarioResult,
    compute_checks,
    describe,
    render_report,
)
from bench.usage import monitor
from harness.mesh import Mesh, Pod, Proc
from weft.local import proxy_init
from weft.local.netns import NetnsError

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BACKEND_H1_PORT = 8080
BACKEND_H2_PORT = 8081
NGINX_PAIR_PORT = 10080
HAPROXY_PAIR_PORT = 10081
TOOLS = ("ip", "iptables-restore", "setpriv", "ss", "curl", "nginx", "haproxy", "wrk", "h2load")
FULL_SECONDS = 10
QUICK_SECONDS = 2
# What a failing step raises: ours, harness/mesh.py's (assertions; its timeouts are OSErrors),
# the netns helpers' and subprocess's.
FAILURES = (
    BenchError,
    AssertionError,
    NetnsError,
    OSError,
    subprocess.SubprocessError,
)


def say(message: str) -> None:
    """Progress output (stderr, so that stdout holds only the report)."""
    print(message, file=sys.stderr, flush=True)


# -- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """The pods and the scratch directory a scenario is deployed with."""

    client: Pod
    server: Pod
    workdir: Path


@dataclass(frozen=True)
class Deployment:
    """A deployed scenario: the URL the client loads per protocol, and its proxies by label."""

    urls: Mapping[str, str]
    proxies: Mapping[str, Proc]


@dataclass(frozen=True)
class Scenario:
    """A topology; ``deploy`` starts its proxies and rules, :func:`teardown` removes them."""

    name: str
    summary: str
    hops: int
    deploy: Callable[[Context], Deployment]


def start_nginx(
    ctx: Context, pod: Pod, name: str, ports: Sequence[int], render: Callable[[Path], str]
) -> Proc:
    """Start nginx in ``pod`` with the configuration ``render(prefix)``; wait for its ports."""
    prefix = ctx.workdir / f"{pod.name}-{name}"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(render(prefix))
    proc = pod.spawn(
        name, ["nginx", "-p", f"{prefix}/", "-e", f"{prefix}/error.log", "-c", str(conf)]
    )
    for port in ports:
        pod.wait_listening(port, 15, proc=proc)
    return proc


def start_haproxy(ctx: Context, pod: Pod, name: str, port: int, listen: str, upstream: str) -> Proc:
    """Start a one-thread h2c haproxy in ``pod`` from ``listen:port`` to ``upstream``."""
    cfg = ctx.workdir / f"{pod.name}-{name}.cfg"
    cfg.write_text(configs.haproxy_h2(f"{listen}:{port}", upstream))
    proc = pod.spawn(name, ["haproxy", "-db", "-f", str(cfg)])
    pod.wait_listening(port, 15, proc=proc)
    return proc


def backend_urls(ctx: Context) -> dict[str, str]:
    """The backend's URLs at the server pod's IP."""
    ip = ctx.server.ip
    return {H1: f"http://{ip}:{BACKEND_H1_PORT}/", H2: f"http://{ip}:{BACKEND_H2_PORT}{GRPC_PATH}"}


def deploy_direct(ctx: Context) -> Deployment:
    """No proxy: the client connects to the server pod's IP."""
    return Deployment(backend_urls(ctx), {})


def deploy_weft(
    ctx: Context, *, outbound: bool, proxy_env: Mapping[str, str] | None = None
) -> Deployment:
    """weft inbound in the server pod and, if ``outbound``, weft outbound in the client pod.

    Each proxy gets proxy-init's rules and runs with GID 2102 (``Pod.start_proxy``).
    """
    proxies = {f"{WEFT_PREFIX}in": ctx.server.start_proxy(proxy_env)}
    if outbound:
        proxies = {f"{WEFT_PREFIX}out": ctx.client.start_proxy(proxy_env), **proxies}
    return Deployment(backend_urls(ctx), proxies)


def deploy_nginx_pair(ctx: Context) -> Deployment:
    """nginx on 127.0.0.1 in the client pod -> nginx at the server pod's IP -> the backend."""
    port, server_ip = NGINX_PAIR_PORT, ctx.server.ip
    to_backend = partial(
        configs.nginx_proxy, listen=f"{server_ip}:{port}", upstream=f"127.0.0.1:{BACKEND_H1_PORT}"
    )
    to_server = partial(
        configs.nginx_proxy, listen=f"127.0.0.1:{port}", upstream=f"{server_ip}:{port}"
    )
    server = start_nginx(ctx, ctx.server, "nginx", [port], to_backend)
    client = start_nginx(ctx, ctx.client, "nginx", [port], to_server)
    return Deployment({H1: f"http://127.0.0.1:{port}/"}, {"nginx-cli": client, "nginx-srv": server})


def deploy_haproxy_pair(ctx: Context) -> Deployment:
    """haproxy on 127.0.0.1 in the client pod -> haproxy at the server pod's IP, h2c throughout."""
    port, server_ip = HAPROXY_PAIR_PORT, str(ctx.server.ip)
    backend = f"127.0.0.1:{BACKEND_H2_PORT}"
    server = start_haproxy(ctx, ctx.server, "haproxy", port, server_ip, backend)
    client = start_haproxy(ctx, ctx.client, "haproxy", port, "127.0.0.1", f"{server_ip}:{port}")
    return Deployment(
        {H2: f"http://127.0.0.1:{port}{GRPC_PATH}"}, {"haproxy-cli": client, "haproxy-srv": server}
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("direct", "client -> server pod IP, no proxy", 0, deploy_direct),
    Scenario(
        "weft-inbound",
        "weft inbound in the server pod (proxy-init PREROUTING redirect)",
        1,
        partial(deploy_weft, outbound=False),
    ),
    Scenario(
        "weft-pair",
        "weft outbound (client pod, OUTPUT redirect, GID 2102) -> weft inbound",
        2,
        partial(deploy_weft, outbound=True),
    ),
    Scenario(
        "nginx-pair",
        "nginx -> nginx (HTTP/1.1, keep-alive upstreams, 1 worker each)",
        2,
        deploy_nginx_pair,
    ),
    Scenario(
        "haproxy-pair", "haproxy -> haproxy (h2c both sides, nbthread 1)", 2, deploy_haproxy_pair
    ),
)


def teardown(ctx: Context, marks: Mapping[str, int]) -> list[str]:
    """Stop what a scenario started in each pod (past ``marks[pod]``) and remove its rules."""
    problems: list[str] = []
    for pod in (ctx.client, ctx.server):
        if pod.proxy is not None:
            pod.stop_proxy()
        for proc in pod.procs[marks[pod.name] :]:
            if proc.alive():
                proc.stop()
        del pod.procs[marks[pod.name] :]  # stopped: the mesh need not signal them again
        try:
            proxy_init.remove(pod.netns)
        except FAILURES as exc:
            problems.append(f"removing proxy-init rules from {pod.netns}: {exc}")
    return problems


# -- running --------------------------------------------------------------------------------


def preflight(ctx: Context, gen: LoadGen, proto: str, url: str) -> str | None:
    """Send one request the way the load will; returns what is wrong with the answer, if any."""
    curl = ["curl", "-sS", "--max-time", "5"]
    if proto == H1:
        done = ctx.client.run([*curl, "-w", "\n%{http_code}", url], check=False, timeout=15)
        body, _, code = done.stdout.rpartition("\n")
        if done.returncode or code != "200" or body != configs.H1_BODY:
            return f"HTTP/1.1 check: status {code or '-'} {done.stderr.strip()}".strip()
        return None
    body_file = ctx.workdir / "preflight-body.bin"
    body_file.unlink(missing_ok=True)
    argv = [*curl, "--http2-prior-knowledge", "-X", "POST", "--data-binary"]
    argv += [f"@{gen.grpc_request}", "-H", "content-type: application/grpc", "-H", "te: trailers"]
    done = ctx.client.run([*argv, "-D", "-", "-o", str(body_file), url], check=False, timeout=15)
    head = done.stdout.lower()
    if done.returncode:
        return f"gRPC check: {done.stderr.strip()}"
    if not head.startswith("http/2 200"):
        return f"gRPC check: got {done.stdout.splitlines()[:1]}"
    if "grpc-status: 0" not in head:
        return "gRPC check: no 'grpc-status: 0' trailer in the response"
    if not body_file.exists() or body_file.read_bytes() != grpc_frame():
        return "gRPC check: the response body differs from what the backend sent"
    return None


def measure(
    gen: LoadGen, load: Load, url: str, seconds: int, dep: Deployment, hops: int
) -> RunResult:
    """Apply one load, accounting the proxies' CPU time and peak memory."""
    run = RunResult(load.key, load.label, load.proto, load.rate)
    try:
        pids = {label: proc.popen.pid for label, proc in dep.proxies.items()}
        with monitor(pids) as usage:
            run.outcome = gen.measure(load, url, seconds)
        run.proxies = usage
        if hops and run.outcome.requests:
            cpu = sum(entry.cpu_s for entry in usage.values())
            run.cpu_us_per_req_hop = cpu / run.outcome.requests / hops * 1e6
        for label, proc in dep.proxies.items():
            if not proc.alive():
                raise BenchError(f"{label} exited ({proc.popen.returncode}): {proc.tail(5)}")
    except BenchError as exc:
        run.error = str(exc)
    return run


def run_scenario(
    ctx: Context, gen: LoadGen, scenario: Scenario, seconds: int, result: ScenarioResult
) -> None:
    """Deploy ``scenario``, check and warm each protocol, apply the loads into ``result``."""
    say(f"[{scenario.name}] {scenario.summary}")
    marks = {pod.name: len(pod.procs) for pod in (ctx.client, ctx.server)}
    try:
        dep = scenario.deploy(ctx)
        broken: dict[str, str] = {}
        for proto, url in dep.urls.items():
            try:
                problem = preflight(ctx, gen, proto, url)
                if problem is None:
                    gen.warm_up(proto, url)
            except FAILURES as exc:
                problem = str(exc)
            if problem is not None:
                broken[proto] = problem
                say(f"[{scenario.name}] {proto} unavailable: {problem}")
        for load in LOADS:
            if load.proto not in dep.urls:
                continue
            if load.proto in broken:
                run = RunResult(load.key, load.label, load.proto, load.rate)
                run.error = f"not measured: {broken[load.proto]}"
            else:
                run = measure(gen, load, dep.urls[load.proto], seconds, dep, scenario.hops)
                say(f"[{scenario.name}] {load.label}: {describe(run)}")
            result.runs.append(run)
    except FAILURES as exc:
        result.error = " ".join(str(exc).split())[:500]
        say(f"[{scenario.name}] failed: {exc}")
    except KeyboardInterrupt:
        result.error = "interrupted"
        raise
    finally:
        for problem in teardown(ctx, marks):
            say(f"[{scenario.name}] teardown: {problem}")


# -- main -----------------------------------------------------------------------------------


def tool_version(argv: Sequence[str]) -> str:
    """The first line a tool prints about its version."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def weft_revision(root: Path) -> str:
    """The checkout's commit, ``+dirty`` if it has changes, or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "weft"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def host_problems() -> list[str]:
    """What keeps this host from running the benchmark."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root (network namespaces, iptables)")
    problems += [f"{tool} not found on PATH" for tool in TOOLS if shutil.which(tool) is None]
    if not configs.ECHO_MODULE.exists():
        problems.append(f"{configs.ECHO_MODULE} missing (Debian: libnginx-mod-http-echo)")
    return problems


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS}s per run (smoke)")
    parser.add_argument("--out", type=Path, help="JSON results file (default bench/results/...)")
    parser.add_argument(
        "--only", help="comma-separated scenarios: " + ",".join(s.name for s in SCENARIOS)
    )
    args = parser.parse_args(argv)
    if args.only and not set(args.only.split(",")) <= {s.name for s in SCENARIOS}:
        parser.error(f"--only: unknown scenario in {args.only!r}")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run_all(
    mesh: Mesh,
    workdir: Path,
    scenarios: Sequence[Scenario],
    seconds: int,
    results: list[ScenarioResult],
) -> None:
    """Create the pods and the backend, then run each scenario in turn, appending its results."""
    client = mesh.add_pod("client", meshed=False)
    server = mesh.add_pod("server", meshed=False)
    say(f"bench: client pod {client.netns} {client.ip}, server pod {server.netns} {server.ip}")
    ctx = Context(client, server, workdir)
    grpc_body = workdir / "grpc-response.bin"
    grpc_body.write_bytes(grpc_frame())
    render = partial(
        configs.backend_nginx, h1_port=BACKEND_H1_PORT, h2_port=BACKEND_H2_PORT, grpc_body=grpc_body
    )
    start_nginx(ctx, server, "backend", [BACKEND_H1_PORT, BACKEND_H2_PORT], render)
    gen = LoadGen(lambda argv, timeout: client.run(argv, check=False, timeout=timeout), workdir)
    for scenario in scenarios:
        result = ScenarioResult(scenario.name, scenario.summary, scenario.hops)
        results.append(result)
        run_scenario(ctx, gen, scenario, seconds, result)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the report and write the JSON file. Returns the exit status."""
    args = parse_args(argv)
    problems = host_problems()
    if problems:
        for problem in problems:
            say(f"bench: {problem}")
        return 2
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    seconds = QUICK_SECONDS if args.quick else FULL_SECONDS
    started = datetime.datetime.now(datetime.UTC)
    load_average = os.getloadavg()[0]
    out_path = args.out or BENCH_DIR / "results" / f"{started:%Y%m%d-%H%M%S}.json"
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="weft-bench-"))
    results: list[ScenarioResult] = []
    status, failure, mesh = 0, None, None
    try:
        mesh = Mesh(workdir)
        run_all(mesh, workdir, scenarios, seconds, results)
    except KeyboardInterrupt as exc:
        status, failure = 130, f"interrupted ({exc or 'SIGINT'})"
    except FAILURES as exc:
        status, failure = 1, str(exc)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
        if mesh is not None:
            try:
                mesh.close()
            except RuntimeError as exc:
                say(f"bench: cleanup: {exc}")
        shutil.rmtree(workdir, ignore_errors=True)
    if failure:
        say(f"bench: {failure}")
    checks = compute_checks(results)
    print(render_report(results, checks))
    revision = weft_revision(REPO_ROOT)
    print(f"\nweft {revision}; {os.cpu_count()} CPUs, load average {load_average:.2f} at start")
    document = {
        "meta": {
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": [sys.executable, *sys.argv],
            "seconds_per_run": seconds,
            "failure": failure,
            "host": {
                "cpus": os.cpu_count(),
                "kernel": platform.release(),
                "load_average_at_start": load_average,
            },
            "weft_revision": revision,
            "tools": {
                "nginx": tool_version(["nginx", "-v"]),
                "haproxy": tool_version(["haproxy", "-v"]),
                "h2load": tool_version(["h2load", "--version"]),
                "wrk": tool_version(["wrk", "-v"]),
            },
        },
        "scenarios": [asdict(result) for result in results],
        "checks": [asdict(check) | {"verdict": check.verdict} for check in checks],
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(document, indent=2) + "\n")
    say(f"bench: results written to {out_path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
