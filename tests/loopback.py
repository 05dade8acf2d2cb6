"""A weft proxy process on loopback ports, for tests that need no network namespaces."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
    """``python -m weft proxy`` with its inbound listener forwarding to ``forward``."""

    def __init__(self, forward: tuple[str, int], log_dir: Path, **env: str) -> None:
        self.inbound = free_port()
        self.outbound = free_port()
        self.admin = free_port()
        self.log_path = log_dir / f"proxy-{self.inbound}.log"
        self.env = {
            **os.environ,
            "LINKERD2_PROXY_IDENTITY_DISABLED": "1",
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR": f"127.0.0.1:{self.inbound}",
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR": f"127.0.0.1:{self.outbound}",
            "LINKERD2_PROXY_ADMIN_LISTEN_ADDR": f"127.0.0.1:{self.admin}",
            "LINKERD2_PROXY_INBOUND_FORWARD": f"{forward[0]}:{forward[1]}",
            "LINKERD2_PROXY_OUTBOUND_FORWARD": f"{forward[0]}:{forward[1]}",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> LoopbackProxy:
        """Start the process and wait until ``/ready`` answers 200."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "weft", "proxy"], env=self.env, stdout=log, stderr=log
            )
        wait_for(self.ready, 15, "the proxy's /ready")
        return self

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
        return f"http://127.0.0.1:{self.admin}{path}"

    def metrics(self) -> str:
        """The current ``/metrics`` text."""
        with urllib.request.urlopen(self.admin_url("/metrics"), timeout=5) as rsp:
            return str(rsp.read().decode())

    def stop(self) -> None:
        """Kill the process if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
