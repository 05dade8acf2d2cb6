"""``up`` and ``down`` from the host: create the node and start its agent; remove it all.

``down`` works from names alone (every namespace the cluster created starts with
``<cluster>-``, and everything else lives inside those namespaces), so it also cleans up after
a crash or a ``kill -9`` of the agent, and running it twice is harmless.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time

from weft.local import netns as ns
from weft.local import pod_network
from weft.local.cluster_config import ClusterConfig

REQUIRED_TOOLS = ("ip", "iptables", "iptables-save", "iptables-restore", "nsenter", "setpriv")


class LifecycleError(RuntimeError):
    """The cluster cannot be brought up or down; the message says what to do."""


def preflight() -> None:
    """Fail with one actionable line when this host cannot run a cluster."""
    if os.geteuid() != 0:
        raise LifecycleError(
            "the local runtime needs root (or CAP_NET_ADMIN) to create network namespaces "
            "and iptables rules: run it with sudo"
        )
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise LifecycleError(
            f"missing {', '.join(missing)}: install iproute2, iptables and util-linux "
            "(scripts/setup does)"
        )


def agent_pid(cfg: ClusterConfig) -> int | None:
    """The pid of the cluster's running agent, if it runs."""
    try:
        pid = int(cfg.agent_pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not ns.netns_exists(cfg.node_netns) or pid not in ns.netns_pids(cfg.node_netns):
        return None
    return pid


def up(cfg: ClusterConfig, *, timeout: float = 30.0, backoff_initial: float = 10.0) -> bool:
    """Start the cluster; returns False if it was already running (nothing changed)."""
    preflight()
    if agent_pid(cfg) is not None:
        return False
    existing = cfg.state / "cluster.json"
    if existing.exists():
        stored = ClusterConfig.load(cfg.state)
        if stored != cfg:
            raise LifecycleError(
                f"cluster {cfg.name} exists with other settings (pod CIDR {stored.pod_cidr}, "
                f"service CIDR {stored.service_cidr}): run `weft cluster down` first"
            )
    # A dead agent may have left namespaces behind: start from a clean network.
    remove_network(cfg)
    cfg.save()
    pod_network.create_node(cfg)
    log = cfg.agent_log.open("ab")
    argv = [
        "nsenter",
        f"--net=/run/netns/{cfg.node_netns}",
        "--",
        sys.executable,
        "-m",
        "weft",
        "cluster",
        "agent",
        "--state-dir",
        str(cfg.state),
        "--backoff",
        str(backoff_initial),
    ]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        close_fds=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while not (cfg.api_socket.exists() and agent_pid(cfg) is not None):
        if proc.poll() is not None:
            tail = cfg.agent_log.read_text(errors="replace").strip().splitlines()[-5:]
            raise LifecycleError(
                f"the node agent exited with {proc.returncode}: " + " / ".join(tail)
            )
        if time.monotonic() > deadline:
            raise LifecycleError(
                f"the node agent did not start within {timeout:.0f}s (see {cfg.agent_log})"
            )
        time.sleep(0.05)  # polling interval of a bounded wait
    return True


def stop_agent(cfg: ClusterConfig, grace: float = 30.0) -> None:
    """Ask the agent to stop its pods and exit; kill it after ``grace`` seconds."""
    pid = agent_pid(cfg)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if pid not in ns.netns_pids(cfg.node_netns):
            return
        time.sleep(0.05)  # polling interval of a bounded wait
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def cluster_namespaces(cfg: ClusterConfig) -> list[str]:
    """Every network namespace of the cluster that exists now."""
    return [n for n in ns.list_netns() if cfg.owns_netns(n)]


def remove_network(cfg: ClusterConfig) -> list[str]:
    """Kill every process in the cluster's namespaces and delete them; returns errors."""
    errors = []
    pods = [n for n in cluster_namespaces(cfg) if n != cfg.node_netns]
    for netns in [*pods, cfg.node_netns]:
        try:
            ns.delete_netns(netns)
        except (ns.NetnsError, OSError) as exc:
            errors.append(str(exc))
    return errors


def down(cfg: ClusterConfig, *, grace: float = 30.0) -> list[str]:
    """Remove the cluster entirely; returns what could not be removed (empty on success)."""
    preflight()
    stop_agent(cfg, grace)
    errors = remove_network(cfg)
    if not errors:
        shutil.rmtree(cfg.state, ignore_errors=True)
        if cfg.state.exists():
            errors.append(f"could not remove {cfg.state}")
    return errors
