"""The real Prometheus server (Debian's /usr/bin/prometheus) on loopback, for tests.

Prometheus cannot take a listening socket from its parent, so it is started on
``127.0.0.1:0`` and the port the kernel gave it is read from its "Listening on" log line: no
port is probed and bound later, so no other process can take it in between. Its own scrape
target is then pointed at that port and the configuration reloaded (SIGHUP).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.mesh import wait_for
from weft.controller.prometheus.config import PrometheusSettings, render_config
from weft.controller.prometheus.launch import PROMETHEUS_BINARY, PrometheusLaunch

_LISTENING = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')


def prometheus_missing() -> str | None:
    """Why Prometheus tests cannot run here, or None."""
    if not Path(PROMETHEUS_BINARY).exists():
        return f"{PROMETHEUS_BINARY} is not installed"
    return None


class PrometheusProcess:
    """One Prometheus with its config and storage under ``directory``."""

    def __init__(self, directory: Path, settings: PrometheusSettings) -> None:
        self.directory = directory
        self.settings = settings
        self.config = directory / "prometheus.yml"
        self.log_path = directory / "prometheus.log"
        self.launch = PrometheusLaunch(
            self.config, directory / "data", listen="127.0.0.1:0", retention_time="1h"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Its HTTP API's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusProcess:
        """Start it, learn its port, point its self-scrape at it and wait until it is ready."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text(render_config(replace(self.settings, self_target="127.0.0.1:0")))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.launch.command(),
                env={**os.environ, **self.launch.env()},
                stdout=log,
                stderr=log,
            )
        port = wait_for(self._listening, timeout, what="Prometheus's listening port")
        assert port is not None
        self.port = int(port)
        self.config.write_text(
            render_config(replace(self.settings, self_target=f"127.0.0.1:{self.port}"))
        )
        self.proc.send_signal(signal.SIGHUP)
        wait_for(self._self_scraped, timeout, what="Prometheus reloading its config")
        return self

    def _listening(self) -> str | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()}")
        found = _LISTENING.search(self.log_path.read_text(errors="replace"))
        return found.group(1) if found else None

    def _self_scraped(self) -> bool:
        active = self.api("/api/v1/targets")["data"]["activeTargets"]
        return any(t["scrapeUrl"].startswith(f"{self.url}/") for t in active)

    def api(self, path: str, **params: str) -> Any:
        """GET an API path; the decoded JSON."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as rsp:
            return json.load(rsp)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` gives now."""
        answer = self.api("/api/v1/query", query=promql)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) if it runs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
