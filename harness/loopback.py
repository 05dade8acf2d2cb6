"""A weft proxy process on loopback ports, for tests that need no network namespaces; and
ports for tests, always bound before they are handed on (never "free now, bound later")."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# The proxy binds port 0 on each of these, so the test tells its listeners apart by address.
INBOUND_HOST = "127.0.0.1"
OUTBOUND_HOST = "127.0.0.2"
ADMIN_HOST = "127.0.0.3"
CONTROL_HOST = "127.0.0.4"


@contextlib.contextmanager
def refused_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that refuses connections while the block runs: it is bound (so nothing else can
    take it) and not listening."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])


@contextlib.contextmanager
def reserved_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port held for a server that binds it itself with ``SO_REUSEPORT`` (gRPC servers do by
    default): bound here first, with ``SO_REUSEPORT`` and not listening, for as long as the block
    runs. No other process can take it meanwhile (ephemeral binds skip bound ports), and
    connections go only to the server's listening socket."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, 0))
        yield int(sock.getsockname()[1])


def listening(pid: int) -> dict[str, int]:
    """The TCP (IPv4) ports process ``pid`` listens on, by local address."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and inode in inodes:  # TCP_LISTEN
            addr, port = local.split(":")
            host = socket.inet_ntoa(bytes.fromhex(addr)[::-1])
            found[host] = int(port, 16)
    return found


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class LoopbackProxy:
    """``python -m weft proxy`` with its inbound listener forwarding to ``forward``.

    Every listener binds port 0 on its own loopback address; :meth:`start` reads the ports the
    process bound from ``/proc``.
    """

    def __init__(
        self, forward: tuple[str, int], log_dir: Path, *, host: str | None = None, **env: str
    ) -> None:
        self.inbound = self.outbound = self.admin = 0
        # One address for every listener (a "pod IP"), or one address per listener.
        self.hosts = {
            "inbound": host or INBOUND_HOST,
            "outbound": host or OUTBOUND_HOST,
            "admin": host or ADMIN_HOST,
        }
        self.shared_host = host is not None
        self.log_path = log_dir / f"proxy-{id(self):x}.log"
        self.env = {
            **os.environ,
            "LINKERD2_PROXY_IDENTITY_DISABLED": "1",
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR": f"{self.hosts['inbound']}:0",
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR": f"{self.hosts['outbound']}:0",
            "LINKERD2_PROXY_ADMIN_LISTEN_ADDR": f"{self.hosts['admin']}:0",
            "LINKERD2_PROXY_CONTROL_LISTEN_ADDR": f"{host or CONTROL_HOST}:0",
            "LINKERD2_PROXY_INBOUND_FORWARD": f"{forward[0]}:{forward[1]}",
            "LINKERD2_PROXY_OUTBOUND_FORWARD": f"{forward[0]}:{forward[1]}",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LoopbackProxy:
        """Start the process, learn its ports and wait until ``/ready`` answers 200."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "weft", "proxy"], env=self.env, stdout=log, stderr=log
            )
        ports = wait_for(self._bound, 15, "the proxy's listeners")
        self.inbound, self.outbound, self.admin = (
            ports["inbound"],
            ports["outbound"],
            ports["admin"],
        )
        wait_for(self.ready, 15, "the proxy's /ready")
        return self

    def _bound(self) -> dict[str, int] | None:
        """The listeners' ports: from ``/proc`` by address, or (one shared address) from the
        proxy's ``<direction> listener on``/``admin server on`` log lines."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"proxy exited: {self.log_path.read_text()}")
        if self.shared_host:
            text = self.log_path.read_text(errors="replace")
            found = {
                role: int(m.group(1))
                for role, pattern in (
                    ("inbound", r"inbound listener on [^:]+:(\d+)"),
                    ("outbound", r"outbound listener on [^:]+:(\d+)"),
                    ("admin", r"admin server on [^:]+:(\d+)"),
                )
                if (m := re.search(pattern, text))
            }
            return found if len(found) == 3 else None
        listeners = listening(self.proc.pid)
        if not all(host in listeners for host in self.hosts.values()):
            return None
        return {role: listeners[host] for role, host in self.hosts.items()}

    def ready(self) -> bool:
        """Whether ``/ready`` answers 200."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"proxy exited: {self.log_path.read_text()}")
        try:
            with urllib.request.urlopen(self.admin_url("/ready"), timeout=1) as rsp:
                return bool(rsp.status == 200)
        except OSError:
            return False

    def admin_url(self, path: str) -> str:
        """The admin server's URL for ``path``."""
        return f"http://{self.hosts['admin']}:{self.admin}{path}"

    def metrics(self) -> str:
        """The current ``/metrics`` text."""
        with urllib.request.urlopen(self.admin_url("/metrics"), timeout=5) as rsp:
            return str(rsp.read().decode())

    def stop(self) -> None:
        """Kill the process if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
