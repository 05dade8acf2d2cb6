"""Network namespaces, bridges and veth pairs through the ``ip`` command.

Everything is created inside named namespaces (the host namespace is never touched) and recorded
by name in a :class:`Topology`, whose :meth:`Topology.cleanup` removes it again, idempotently.
Commands inside a namespace run through ``ip netns exec`` so that ``/etc/netns/NAME/*`` overrides
(hosts, resolv.conf) apply to them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

IP = "ip"
NETNS_RUN_DIR = Path("/run/netns")
NETNS_ETC_DIR = Path("/etc/netns")

_NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$")


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message carries its argv and stderr."""


def check_netns_name(name: str) -> str:
    """Return ``name`` if it is usable as a namespace name, else raise ``ValueError``."""
    if not _NETNS_NAME.match(name):
        raise ValueError(f"invalid network namespace name {name!r}")
    return name


def check_ifname(name: str) -> str:
    """Return ``name`` if it is a valid interface name (at most 15 characters)."""
    if not _IFNAME.match(name):
        raise ValueError(f"invalid interface name {name!r} (1-15 of [A-Za-z0-9_.-])")
    return name


def exec_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``netns`` with ``ip netns exec`` (None: as it is)."""
    if netns is None:
        return list(argv)
    return [IP, "netns", "exec", check_netns_name(netns), *argv]


def run(
    argv: Sequence[str],
    *,
    stdin: str | None = None,
    check: bool = True,
    timeout: float | None = 30.0,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, capturing text output; raise :class:`NetnsError` if it fails and ``check``."""
    proc = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        raise NetnsError(f"{' '.join(argv)} exited {proc.returncode}: {detail}")
    return proc


def list_netns() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    out = run([IP, "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_exists(name: str) -> bool:
    """Whether the named namespace exists."""
    return (NETNS_RUN_DIR / check_netns_name(name)).exists()


def batch(netns: str | None, commands: Sequence[str]) -> None:
    """Run several ``ip`` commands in one process (``ip [-n NS] -batch -``)."""
    if not commands:
        return
    argv = [IP] + (["-n", check_netns_name(netns)] if netns else []) + ["-batch", "-"]
    run(argv, stdin="".join(c + "\n" for c in commands))


def netns_pids(netns: str) -> list[int]:
    """PIDs of the processes currently inside ``netns``."""
    out = run([IP, "netns", "pids", check_netns_name(netns)], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def iptables_save(netns: str | None, *args: str) -> str:
    """``iptables-save [args]`` inside ``netns`` (None: the current namespace)."""
    return run(exec_argv(netns, ["iptables-save", *args])).stdout


def iptables_restore(netns: str | None, rules: str) -> None:
    """Load ``rules`` with ``iptables-restore --noflush`` inside ``netns``."""
    run(exec_argv(netns, ["iptables-restore", "--noflush", "--wait"]), stdin=rules)


def kill_all(netns: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process inside ``netns``; returns the pids still there after ``timeout``."""
    if not netns_exists(netns):
        return []
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid in netns_pids(netns) if pid != me]
        if not pids or time.monotonic() >= deadline:
            return pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)  # polling interval of a bounded wait


def delete_netns(netns: str) -> None:
    """Kill what runs in ``netns`` and delete it (its links go with it) and its /etc files."""
    leftover = kill_all(netns)
    if leftover:
        raise NetnsError(f"processes {leftover} still run in {netns}")
    if netns_exists(netns):
        proc = run([IP, "netns", "del", netns], check=False)
        if proc.returncode != 0 and netns_exists(netns):
            raise NetnsError(f"ip netns del {netns}: {proc.stderr.strip()}")
    shutil.rmtree(NETNS_ETC_DIR / netns, ignore_errors=True)


class Topology:
    """Creates namespaces, bridges, veth pairs and ``/etc/netns`` files, and removes them again.

    Every object is recorded by name when it is created; :meth:`cleanup` kills the processes left
    inside the recorded namespaces, deletes the links and namespaces and the ``/etc/netns``
    directories, and may be called any number of times.
    """

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.etc_dirs: list[Path] = []

    # -- creation -------------------------------------------------------------------------

    def add_netns(self, name: str) -> str:
        """Create the namespace ``name`` with its loopback up; returns the name."""
        check_netns_name(name)
        if netns_exists(name):
            raise NetnsError(f"network namespace {name!r} already exists")
        run([IP, "netns", "add", name])
        self.namespaces.append(name)
        batch(name, ["link set lo up"])
        return name

    def add_bridge(
        self, netns: str, name: str, address: ipaddress.IPv4Interface | str | None = None
    ) -> None:
        """Create bridge ``name`` (up) in ``netns``, optionally with an ``address``."""
        check_ifname(name)
        commands = [f"link add {name} type bridge"]
        if address is not None:
            commands.append(f"addr add {ipaddress.IPv4Interface(address)} dev {name}")
        commands.append(f"link set {name} up")
        self.links.append((netns, name))
        batch(netns, commands)

    def add_veth(
        self,
        *,
        pod_netns: str,
        node_netns: str,
        bridge: str,
        node_ifname: str,
        address: ipaddress.IPv4Interface | str,
        gateway: ipaddress.IPv4Address | str | None = None,
        pod_ifname: str = "eth0",
    ) -> None:
        """Connect ``pod_netns`` to ``bridge`` in ``node_netns`` with a veth pair.

        Both ends are created directly in their namespaces: ``node_ifname`` becomes a port of the
        bridge, ``pod_ifname`` gets ``address`` and a default route via ``gateway``.
        """
        check_ifname(node_ifname)
        check_ifname(pod_ifname)
        check_netns_name(pod_netns)
        iface = ipaddress.IPv4Interface(address)
        self.links.append((node_netns, node_ifname))
        batch(
            node_netns,
            [
                f"link add {node_ifname} type veth peer name {pod_ifname} netns {pod_netns}",
                f"link set {node_ifname} master {bridge}",
                f"link set {node_ifname} up",
            ],
        )
        pod_commands = [f"addr add {iface} dev {pod_ifname}", f"link set {pod_ifname} up"]
        if gateway is not None:
            pod_commands.append(f"route add default via {ipaddress.IPv4Address(gateway)}")
        batch(pod_netns, pod_commands)

    def set_sysctl(self, netns: str, key: str, value: str | int) -> None:
        """Set a (network) sysctl inside ``netns``, e.g. ``net.ipv4.ip_forward`` = 1."""
        if not _SYSCTL_KEY.match(key):
            raise ValueError(f"invalid sysctl key {key!r}")
        run(exec_argv(netns, ["sysctl", "-q", "-w", f"{key}={value}"]))

    def write_etc_file(self, netns: str, filename: str, content: str) -> Path:
        """Write ``/etc/netns/<netns>/<filename>`` (seen as ``/etc/<filename>`` by ``exec``).

        An existing file is rewritten in place (truncate and write), because running processes
        see the bind-mounted inode, not a replacement.
        """
        if "/" in filename or filename in ("", ".", ".."):
            raise ValueError(f"invalid file name {filename!r}")
        directory = NETNS_ETC_DIR / check_netns_name(netns)
        if not directory.exists():
            directory.mkdir(parents=True)
            self.etc_dirs.append(directory)
        path = directory / filename
        with path.open("w", encoding="utf-8") as fh:
            fh.write(content)
        return path

    # -- running commands -----------------------------------------------------------------

    def exec(
        self,
        netns: str,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        check: bool = True,
        timeout: float | None = 30.0,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``netns`` and wait for it."""
        return run(
            exec_argv(netns, argv), stdin=stdin, check=check, timeout=timeout, env=env, cwd=cwd
        )

    def popen(
        self,
        netns: str,
        argv: Sequence[str],
        *,
        stdout: IO[Any] | int | None = None,
        stderr: IO[Any] | int | None = None,
        stdin: IO[Any] | int | None = subprocess.DEVNULL,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``netns`` in its own session (so its group can be signalled)."""
        return subprocess.Popen(
            exec_argv(netns, argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )

    # -- removal --------------------------------------------------------------------------

    def kill_processes(self, netns: str, timeout: float = 5.0) -> None:
        """SIGKILL whatever still runs inside ``netns`` (all of it was started in it by us).

        Waits up to ``timeout`` seconds for the processes to leave the namespace.
        """
        pids = kill_all(netns, timeout)
        if pids:
            raise NetnsError(f"processes {pids} still run in {netns}")

    def cleanup(self) -> list[str]:
        """Remove everything recorded, newest first. Returns the errors (empty on success).

        What could not be removed stays recorded, so a later call tries again.
        """
        errors: list[str] = []
        for netns in reversed(self.namespaces):
            try:
                self.kill_processes(netns)
            except (NetnsError, OSError) as exc:
                errors.append(str(exc))
        kept_links: list[tuple[str, str]] = []
        for netns, ifname in reversed(self.links):
            if not netns_exists(netns):
                continue  # gone with its namespace
            proc = run([IP, "-n", netns, "link", "del", ifname], check=False)
            if proc.returncode != 0 and "Cannot find device" not in proc.stderr:
                errors.append(proc.stderr.strip())
                kept_links.insert(0, (netns, ifname))
        self.links = kept_links
        kept_ns: list[str] = []
        for netns in reversed(self.namespaces):
            if not netns_exists(netns):
                continue
            proc = run([IP, "netns", "del", netns], check=False)
            if proc.returncode != 0 and netns_exists(netns):
                errors.append(proc.stderr.strip())
                kept_ns.insert(0, netns)
        self.namespaces = kept_ns
        kept_dirs: list[Path] = []
        for directory in reversed(self.etc_dirs):
            shutil.rmtree(directory, ignore_errors=True)
            if directory.exists():
                errors.append(f"could not remove {directory}")
                kept_dirs.insert(0, directory)
        self.etc_dirs = kept_dirs
        return errors

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
