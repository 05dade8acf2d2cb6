"""Pods on a bridge: the network fixture of the end-to-end tests.

A :class:`Mesh` owns a "node" namespace holding a bridge, and any number of :class:`Pod`
namespaces, each with ``eth0`` on the bridge. A meshed pod gets Linkerd's proxy-init rules and a
``weft proxy`` running with GID :data:`PROXY_GID` (exempt from the outbound redirect). Processes
started in pods are tracked, have their output written to a log file, and are killed on
:meth:`Mesh.close`, which also removes every namespace, link and rule it created.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from weft.local import proxy_init
from weft.local.netns import Topology, exec_argv

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
APPS_DIR = REPO_ROOT / "tests" / "e2e" / "apps"
PROXY_GID = 2102
ADMIN_PORT = 4191
INBOUND_PORT = 4143
OUTBOUND_PORT = 4140

# Settings every test proxy gets unless a test overrides them.
DEFAULT_PROXY_ENV: dict[str, str] = {
    "LINKERD2_PROXY_IDENTITY_DISABLED": "1",
    "LINKERD2_PROXY_LOG": "warn,weft=info",
    "LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD": "1s",
    "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED": "1",
}


def wait_for(
    condition: Callable[[], T], timeout: float, *, what: str = "condition", interval: float = 0.05
) -> T:
    """Poll ``condition`` until it returns a truthy value (returned) or ``timeout`` expires.

    Exceptions raised by ``condition`` count as "not yet" (the last one is reported on timeout),
    except ``AssertionError``, which means "never" and propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = condition()
            if result:
                return result
            last = result
        except AssertionError:
            raise
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)  # polling interval of a bounded wait, not a synchronisation


def wait_equal(get: Callable[[], T], expected: object, timeout: float, *, what: str = "value") -> T:
    """Poll ``get()`` until it equals ``expected``; on timeout report the last value seen."""
    seen: list[T] = []

    def check() -> bool:
        seen[:] = [get()]
        return seen[0] == expected

    try:
        wait_for(check, timeout, what=what)
    except TimeoutError as exc:
        last = repr(seen[0]) if seen else "nothing"
        raise AssertionError(f"{what}: expected {expected!r}, last saw {last}") from exc
    return seen[0]


def tool_missing(*names: str) -> list[str]:
    """The executables among ``names`` that are not on PATH."""
    return [n for n in names if shutil.which(n) is None]


NETNS_TOOLS = ("ip", "iptables", "iptables-restore", "iptables-save", "setpriv", "curl", "ss")


def netns_skip_reason() -> str | None:
    """Why netns tests cannot run here, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "netns tests need root (network namespaces and iptables)"
    missing = tool_missing(*NETNS_TOOLS)
    if missing:
        return f"netns tests need {', '.join(missing)} on PATH"
    return None


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of processes started in pods: ours minus ``LINKERD2_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINKERD2_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTEST_CURRENT_TEST", None)
    if extra:
        env.update(extra)
    return env


@dataclass
class Proc:
    """A background process in a pod; stdout and stderr go to ``log_path``."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of output."""
        return "\n".join(self.output().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process group (the process runs in its own session)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit status."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.signal(signal.SIGKILL)
        return self.popen.wait(10)


class Pod:
    """A network namespace with ``eth0`` on the mesh bridge, optionally with a proxy."""

    def __init__(
        self, mesh: Mesh, name: str, netns: str, ip: ipaddress.IPv4Address, meshed: bool
    ) -> None:
        self.mesh = mesh
        self.name = name
        self.netns = netns
        self.ip = ip
        self.meshed = meshed
        self.procs: list[Proc] = []
        self.proxy: Proc | None = None
        self.proxy_env: dict[str, str] = {}
        self.admin_port = ADMIN_PORT

    def __repr__(self) -> str:
        return f"Pod({self.name!r}, netns={self.netns!r}, ip={self.ip})"

    # -- processes ------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the pod and wait for it; raises on failure if ``check``."""
        proc = subprocess.run(
            exec_argv(self.netns, argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=base_env(env),
            cwd=REPO_ROOT,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{self.name}: {' '.join(argv)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout[-4000:]}\nstderr: {proc.stderr[-4000:]}"
            )
        return proc

    def run_bytes(
        self, argv: Sequence[str], *, stdin: bytes = b"", timeout: float = 60.0
    ) -> subprocess.CompletedProcess[bytes]:
        """Like :meth:`run` with binary input and output, never raising on exit status."""
        return subprocess.run(
            exec_argv(self.netns, argv),
            input=stdin,
            capture_output=True,
            timeout=timeout,
            env=base_env(),
            cwd=REPO_ROOT,
            check=False,
        )

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        """Start ``argv`` in the background; killed on teardown, output in ``<pod>-<name>.log``."""
        log_path = self.mesh.workdir / f"{self.name}-{name}.log"
        with log_path.open("wb") as log:
            popen = self.mesh.topology.popen(
                self.netns,
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=base_env(env),
                cwd=REPO_ROOT,
            )
        proc = Proc(f"{self.name}/{name}", popen, log_path)
        self.procs.append(proc)
        return proc

    def python(self, script: str, *args: str) -> list[str]:
        """The argv running ``tests/e2e/apps/<script>`` with the test interpreter."""
        return [sys.executable, str(APPS_DIR / script), *args]

    def spawn_app(
        self, name: str, script: str, *args: str, port: int | None = None, timeout: float = 20.0
    ) -> Proc:
        """Spawn a test application and, if ``port`` is given, wait until it listens there."""
        proc = self.spawn(name, self.python(script, *args))
        if port is not None:
            self.wait_listening(port, timeout, proc=proc)
        return proc

    def listening(self, port: int) -> bool:
        """Whether a TCP socket listens on ``port`` in the pod."""
        out = self.run(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout
        return bool(out.strip())

    def wait_listening(self, port: int, timeout: float = 20.0, proc: Proc | None = None) -> None:
        """Wait until something listens on ``port``; fail early if ``proc`` exits."""

        def ready() -> bool:
            if proc is not None and not proc.alive():
                raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
            return self.listening(port)

        try:
            wait_for(ready, timeout, what=f"{self.name} listening on :{port}")
        except TimeoutError as exc:
            detail = f"\n{proc.name} output:\n{proc.tail()}" if proc else ""
            raise AssertionError(f"{exc}{detail}") from exc

    # -- proxy ----------------------------------------------------------------------------

    def proxy_init_config(self, **overrides: object) -> proxy_init.ProxyInitConfig:
        """proxy-init settings for this pod: GID-exempt proxy on the default ports."""
        settings: dict[str, object] = {"proxy_gid": PROXY_GID}
        settings.update(overrides)
        return proxy_init.ProxyInitConfig(**settings)  # type: ignore[arg-type]

    def start_proxy(
        self,
        extra_env: Mapping[str, str] | None = None,
        *,
        init: proxy_init.ProxyInitConfig | None = None,
        argv: Sequence[str] | None = None,
        timeout: float = 30.0,
    ) -> Proc:
        """Apply proxy-init rules, start ``weft proxy`` as GID 2102 and wait for ``/ready``."""
        if self.proxy is not None and self.proxy.alive():
            raise RuntimeError(f"{self.name}: proxy already running")
        self.meshed = True
        proxy_init.install(self.netns, init or self.proxy_init_config())
        env = {**DEFAULT_PROXY_ENV, **(extra_env or {})}
        self.proxy_env = env
        admin = env.get("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", f"0.0.0.0:{ADMIN_PORT}")
        self.admin_port = int(admin.rpartition(":")[2])
        command = list(argv) if argv is not None else [sys.executable, "-m", "weft", "proxy"]
        setpriv = ["setpriv", f"--regid={PROXY_GID}", "--clear-groups", "--"]
        proxy = self.spawn("proxy", [*setpriv, *command], env=env)
        self.proxy = proxy

        def ready() -> bool:
            if not proxy.alive():
                raise AssertionError(
                    f"{self.name}: proxy exited {proxy.popen.returncode}:\n{proxy.tail()}"
                )
            status, body = self.admin_get("/ready", timeout=1.0)
            return status == 200 and body == "ready\n"

        try:
            wait_for(ready, timeout, what=f"{self.name} proxy /ready")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\nproxy output:\n{proxy.tail()}") from exc
        return proxy

    def stop_proxy(self, timeout: float = 5.0) -> int | None:
        """Stop the proxy (SIGTERM, then SIGKILL); the iptables rules stay."""
        if self.proxy is None:
            return None
        status = self.proxy.stop(timeout)
        self.proxy = None
        return status

    def admin_get(self, path: str, *, timeout: float = 10.0) -> tuple[int, str]:
        """GET ``path`` from the proxy's admin server over the pod's loopback."""
        return self.http_get(f"http://127.0.0.1:{self.admin_port}{path}", timeout=timeout)

    def http_get(self, url: str, *, timeout: float = 10.0, method: str = "GET") -> tuple[int, str]:
        """Request ``url`` with curl inside the pod; returns (status, body), status 0 if none."""
        marker = "\n--weft-status:"
        proc = self.run(
            [
                *("curl", "-sS", "-X", method, "--max-time", str(timeout)),
                *("-w", marker + "%{http_code}", url),
            ],
            check=False,
            timeout=timeout + 5,
        )
        body, _, status = proc.stdout.rpartition(marker)
        return (int(status) if status.strip().isdigit() else 0), body

    def metrics(self) -> str:
        """The proxy's ``/metrics`` text."""
        status, body = self.admin_get("/metrics")
        if status != 200:
            raise AssertionError(f"{self.name}: /metrics answered {status}: {body[:500]}")
        return body

    def curl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run curl in the pod (``-sS --max-time``) with ``args``; never raises on status."""
        return self.run(
            ["curl", "-sS", "--max-time", str(timeout), *args], check=False, timeout=timeout + 10
        )

    def stop_all(self) -> None:
        """Stop every process started in this pod, the proxy last."""
        for proc in reversed(self.procs):
            if proc is not self.proxy:
                proc.stop(timeout=3.0)
        if self.proxy is not None:
            self.stop_proxy()


class Mesh:
    """A node namespace with a bridge, and pods attached to it."""

    def __init__(self, workdir: Path, *, name: str | None = None, subnet: int | None = None):
        self.id = name or secrets.token_hex(3)
        self.prefix = f"wt-{self.id}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        third = subnet if subnet is not None else random.randint(16, 250)
        self.network = ipaddress.IPv4Network(f"10.244.{third}.0/24")
        self.gateway = ipaddress.IPv4Interface(f"{self.network[1]}/{self.network.prefixlen}")
        self.topology = Topology()
        self.pods: dict[str, Pod] = {}
        self.node = f"{self.prefix}-node"
        self.bridge = f"wb{self.id}"
        self._closed = False
        try:
            self.topology.add_netns(self.node)
            self.topology.set_sysctl(self.node, "net.ipv4.ip_forward", 1)
            self.topology.add_bridge(self.node, self.bridge, self.gateway)
        except BaseException:
            self.topology.cleanup()
            raise

    def __enter__(self) -> Mesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this mesh created (still recorded)."""
        return list(self.topology.namespaces)

    def add_pod(
        self,
        name: str,
        meshed: bool = True,
        *,
        proxy_env: Mapping[str, str] | None = None,
        init: proxy_init.ProxyInitConfig | None = None,
    ) -> Pod:
        """Create pod ``name`` on the bridge; if ``meshed``, start its proxy too."""
        if name in self.pods:
            raise ValueError(f"pod {name!r} exists")
        index = len(self.pods)
        ip = self.network[index + 2]
        netns = f"{self.prefix}-{name}"
        self.topology.add_netns(netns)
        self.topology.add_veth(
            pod_netns=netns,
            node_netns=self.node,
            bridge=self.bridge,
            node_ifname=f"wv{self.id}{index:02d}",
            address=ipaddress.IPv4Interface(f"{ip}/{self.network.prefixlen}"),
            gateway=self.gateway.ip,
        )
        pod = Pod(self, name, netns, ip, meshed=False)
        self.pods[name] = pod
        if meshed:
            pod.start_proxy(proxy_env, init=init)
        return pod

    def logs(self, lines: int = 60) -> str:
        """The tail of every process log, for failure reports."""
        out: list[str] = []
        for pod in self.pods.values():
            for proc in pod.procs:
                out.append(f"----- {proc.name} ({proc.log_path}) -----\n{proc.tail(lines)}")
        return "\n".join(out)

    def close(self) -> None:
        """Stop every process, then remove rules, links and namespaces. Idempotent."""
        if self._closed:
            return
        try:
            for pod in reversed(list(self.pods.values())):
                pod.stop_all()
        finally:
            errors = self.topology.cleanup()
            self._closed = not errors
            if errors:
                raise RuntimeError(f"mesh {self.prefix} cleanup failed: {errors}")


# -- metrics ------------------------------------------------------------------------------

Sample = tuple[str, dict[str, str], float]


def parse_samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition as (name, labels, value)."""
    out: list[Sample] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append((s.name, dict(s.labels), float(s.value)))
    return out


def select(samples: Iterable[Sample], name: str, **labels: str) -> list[Sample]:
    """The samples called ``name`` whose labels include ``labels``."""
    return [s for s in samples if s[0] == name and all(s[1].get(k) == v for k, v in labels.items())]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of the selected samples' values (0 if none)."""
    return sum(s[2] for s in select(samples, name, **labels))
