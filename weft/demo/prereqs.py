"""What ``weft demo`` needs from the host, checked before anything is created.

Each check returns a :class:`Finding`; a failed one carries a single line saying what to do.
The kernel check is real: it makes a throwaway network namespace with a bridge, a veth pair
and a nat table, then removes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from weft.local import lifecycle, port_forward
from weft.local import netns as ns

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
DEMO_TOOLS = (*lifecycle.REQUIRED_TOOLS, "curl")


@dataclass(frozen=True)
class Finding:
    """One prerequisite: ``ok`` with a description, or not with the one line that fixes it."""

    ok: bool
    description: str
    fix: str = ""


def effective_capabilities(status: str) -> int:
    """The ``CapEff`` mask from the text of ``/proc/<pid>/status`` (0 if absent)."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def privileges(euid: int, cap_eff: int) -> Finding:
    """CAP_NET_ADMIN (links, iptables) and CAP_SYS_ADMIN (namespace mounts), as root has them."""
    needed = (1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN)
    if cap_eff & needed == needed:
        who = "root" if euid == 0 else "CAP_NET_ADMIN and CAP_SYS_ADMIN"
        return Finding(True, f"running with {who}")
    why = "weft demo creates network namespaces and iptables rules"
    if euid == 0:
        fix = (
            f"{why}; this root lacks CAP_NET_ADMIN or CAP_SYS_ADMIN (run the container privileged)"
        )
    else:
        fix = f"{why}: run it with sudo (or grant CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    return Finding(False, "privileges", fix)


def check_privileges() -> Finding:
    """:func:`privileges` for this process."""
    status = Path("/proc/self/status").read_text()
    return privileges(os.geteuid(), effective_capabilities(status))


def binaries(found: dict[str, bool]) -> Finding:
    """Every tool the local runtime and the demo run, given which of them are on PATH."""
    missing = [tool for tool, present in found.items() if not present]
    if missing:
        return Finding(
            False,
            "required binaries",
            f"missing {', '.join(missing)}: install iproute2, iptables, util-linux and curl "
            "(scripts/setup does)",
        )
    return Finding(True, f"binaries found: {', '.join(found)}")


def check_binaries() -> Finding:
    """:func:`binaries` for this host's PATH."""
    return binaries({tool: shutil.which(tool) is not None for tool in DEMO_TOOLS})


# (feature, command run inside the probe namespace)
KERNEL_STEPS = (
    ("network namespaces", [ns.IP, "link", "set", "lo", "up"]),
    ("bridges", [ns.IP, "link", "add", "wprobe-br", "type", "bridge"]),
    ("veth pairs", [ns.IP, "link", "add", "wprobe-a", "type", "veth", "peer", "name", "wprobe-b"]),
    ("iptables nat", ["iptables", "-w", "-t", "nat", "-S"]),
)


def check_kernel() -> Finding:
    """Network namespaces, bridges, veth pairs and the iptables nat table work on this kernel."""
    probe = f"weft-probe-{os.getpid()}"
    features = []
    try:
        added = _run([ns.IP, "netns", "add", probe])
        if added:
            return Finding(False, "kernel features", f"cannot create a network namespace: {added}")
        for feature, command in KERNEL_STEPS:
            problem = _run(ns.exec_argv(probe, command))
            if problem:
                return Finding(False, "kernel features", f"{feature} do not work here: {problem}")
            features.append(feature)
    finally:
        if ns.netns_exists(probe):
            _run([ns.IP, "netns", "delete", probe])
    return Finding(True, f"kernel features: {', '.join(features)}")


def _run(argv: list[str]) -> str:
    """Run ``argv``; "" on success, else its last line of error output."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return ""
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def check_port(address: str, port: int) -> Finding:
    """Whether ``address:port`` on this host is free for the page's port-forward."""
    where = f"{address}:{port}"
    try:
        port_forward.bind(address, port).close()
    except port_forward.PortInUseError:
        return Finding(False, f"{where} is free", f"{where} is in use: pick another with --port")
    except port_forward.PortForwardError as exc:
        return Finding(False, f"{where} is free", f"{exc}: pick another with --address/--port")
    return Finding(True, f"{where} is free")
