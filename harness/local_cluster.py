"""A local weft cluster for tests, driven through the real ``weft cluster`` command.

Each :class:`LocalCluster` has a unique name (so its namespaces are ``<name>-…``), its own state
directory and test-only CIDRs; :meth:`LocalCluster.down` removes it, and
:meth:`LocalCluster.leftovers` lists anything of it that is still on the host.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.mesh import REPO_ROOT, netns_skip_reason, wait_for
from weft.local import netns as ns
from weft.local.cluster_config import ClusterConfig

Obj = dict[str, Any]
APPS = REPO_ROOT / "tests" / "e2e" / "apps"


class LocalCluster:
    """``weft cluster`` with ``--name`` and ``--state-dir`` filled in."""

    def __init__(self, state_root: Path, *, pod_cidr: str, service_cidr: str) -> None:
        self.name = "wt" + secrets.token_hex(3)
        self.state_dir = state_root / self.name
        self.pod_cidr = pod_cidr
        self.service_cidr = service_cidr

    # -- the command ----------------------------------------------------------------------

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``weft cluster <args>``; raises with the output if it fails and ``check``."""
        argv = [
            sys.executable,
            "-m",
            "weft",
            "cluster",
            "--name",
            self.name,
            "--state-dir",
            str(self.state_dir),
            *args,
        ]
        proc = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPO_ROOT,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"weft cluster {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout}{proc.stderr}"
            )
        return proc

    def up(self, *extra: str) -> None:
        """Bring the cluster up with a short restart back-off (tests wait for restarts)."""
        self.run(
            "up",
            "--pod-cidr",
            self.pod_cidr,
            "--service-cidr",
            self.service_cidr,
            "--restart-backoff",
            "0.5",
            *extra,
        )

    def down(self) -> subprocess.CompletedProcess[str]:
        """Remove the cluster."""
        return self.run("down", "--grace", "5", check=False, timeout=120)

    def apply(self, manifest: str) -> str:
        """Apply YAML from stdin; returns the output."""
        return self.run("apply", "-f", "-", stdin=manifest).stdout

    def get(self, resource: str, namespace: str = "default") -> list[Obj]:
        """Objects of a kind, as JSON."""
        out = self.run("get", resource, "-n", namespace, "-o", "json").stdout
        items: list[Obj] = json.loads(out)["items"]
        return items

    def exec(
        self, pod: str, namespace: str, argv: Sequence[str], check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside a pod's network namespace."""
        return self.run("exec", pod, "-n", namespace, "--", *argv, check=check, timeout=timeout)

    def exec_background(
        self, pod: str, namespace: str, argv: Sequence[str]
    ) -> subprocess.Popen[str]:
        """Start ``argv`` inside a pod's network namespace; its stdout is a text pipe."""
        command = [sys.executable, "-m", "weft", "cluster", "--name", self.name,
                   "--state-dir", str(self.state_dir), "exec", pod, "-n", namespace, "--",
                   *argv]  # fmt: skip
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)

    def pids(self, pod: Obj, pattern: str) -> list[int]:
        """PIDs of the processes in ``pod``'s namespace whose command line contains ``pattern``."""
        netns = ClusterConfig.load(self.state_dir).pod_netns(pod["metadata"]["uid"])
        found = []
        for pid in ns.netns_pids(netns):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if pattern.encode() in cmdline:
                found.append(pid)
        return found

    # -- waiting --------------------------------------------------------------------------

    def ready_pods(self, namespace: str, prefix: str = "") -> list[Obj]:
        """Ready, non-terminating pods whose name starts with ``prefix``."""
        return [
            p
            for p in self.get("pods", namespace)
            if p["metadata"]["name"].startswith(prefix)
            and not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
        ]

    def wait_ready(self, namespace: str, prefix: str, count: int, timeout: float = 60) -> list[Obj]:
        """Wait until exactly ``count`` pods starting with ``prefix`` are ready."""

        def check() -> list[Obj]:
            pods = self.ready_pods(namespace, prefix)
            everything = [
                p for p in self.get("pods", namespace) if p["metadata"]["name"].startswith(prefix)
            ]
            return pods if len(pods) == count and len(everything) == count else []

        return wait_for(
            check, timeout, what=f"{count} ready {prefix}* pods in {namespace}", interval=0.2
        )

    def deployment_pods(self, namespace: str, deployment: str) -> list[Obj]:
        """The pods a Deployment controls (terminating ones included)."""
        return [
            p
            for p in self.get("pods", namespace)
            if any(
                ref.get("controller")
                and ref.get("kind") == "Deployment"
                and ref["name"] == deployment
                for ref in p["metadata"].get("ownerReferences") or []
            )
        ]

    def wait_deployment(
        self, namespace: str, deployment: str, count: int, timeout: float = 60
    ) -> list[Obj]:
        """Wait until a Deployment has exactly ``count`` pods, all ready and none terminating
        (``count`` 0: until its pods are gone)."""

        def check() -> tuple[list[Obj]] | None:
            pods = self.deployment_pods(namespace, deployment)
            ready = [
                p
                for p in pods
                if not p["metadata"].get("deletionTimestamp")
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions", [])
                )
            ]
            return (ready,) if len(ready) == count and len(pods) == count else None

        found = wait_for(
            check, timeout, what=f"{count} ready pods of {namespace}/{deployment}", interval=0.2
        )
        assert found is not None
        return found[0]

    def logs(self, pod: str, namespace: str, container: str = "") -> str:
        """A container's output so far."""
        args = ["logs", pod, "-n", namespace] + (["-c", container] if container else [])
        return self.run(*args).stdout

    def proxy_metrics(self, pod: str, namespace: str) -> str:
        """The ``/metrics`` text of a meshed pod's proxy (read over the pod's loopback)."""
        argv = ["curl", "-sS", "--fail", "--max-time", "5", "http://127.0.0.1:4191/metrics"]
        return self.exec(pod, namespace, argv).stdout

    # -- what is left ---------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """Namespaces, /etc/netns dirs, host links and rules, processes and files still present."""
        found = [f"netns {n}" for n in ns.list_netns() if n.startswith(f"{self.name}-")]
        found += [f"/etc/netns/{p.name}" for p in ns.NETNS_ETC_DIR.glob(f"{self.name}-*")]
        ps = subprocess.run(
            ["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True
        ).stdout
        found += [
            f"process {line.strip()}"
            for line in ps.splitlines()
            if str(self.state_dir) in line and "ps -eo" not in line
        ]
        links = ns.run([ns.IP, "-o", "link"]).stdout
        found += [
            f"host link {line.split(':')[1].strip()}"
            for line in links.splitlines()
            if self.name in line
        ]
        rules = ns.run(["iptables-save"]).stdout + ns.run(["iptables-save", "-t", "nat"]).stdout
        found += [f"host rule {line}" for line in rules.splitlines() if "WEFT-" in line]
        if self.state_dir.exists():
            found.append(f"state dir {self.state_dir}")
        return found


@contextmanager
def running_cluster(
    state_root: Path, pod_cidr: str, service_cidr: str, *up_args: str
) -> Iterator[LocalCluster]:
    """A cluster that is up for the block; afterwards it is removed and nothing of it may remain.

    Skips the test when the host cannot make network namespaces.
    """
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = LocalCluster(state_root, pod_cidr=pod_cidr, service_cidr=service_cidr)
    cluster.up(*up_args)
    try:
        yield cluster
    finally:
        proc = cluster.down()
    assert proc.returncode == 0, proc.stderr
    assert cluster.leftovers() == []


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` in a Prometheus exposition whose labels match."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
