"""``weft controller metrics-api`` and ``weft controller prometheus-targets`` as processes:
they bind what they are given (port 0 here, read back from their log), serve their admin
endpoints, answer in one line when the platform or Prometheus cannot be reached, and exit
cleanly on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.mesh import base_env, wait_for

_LISTENING = re.compile(r"on 127\.0\.0\.1:(\d+)(?:, admin on 127\.0\.0\.1:(\d+))?")


@contextmanager
def component(log: Path, *args: str) -> Iterator[tuple[int, int]]:
    """Run ``weft controller ARGS``; yields (port, admin port) from its log line."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "weft", "controller", *args],
            stdout=out,
            stderr=out,
            env=base_env(),
        )
    try:

        def ports() -> tuple[int, int] | None:
            if proc.poll() is not None:
                raise AssertionError(f"exited {proc.returncode}: {log.read_text()}")
            found = _LISTENING.search(log.read_text())
            return (int(found[1]), int(found[2] or 0)) if found else None

        found = wait_for(ports, 20, what=f"{args[0]} listening")
        assert found is not None
        yield found
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def fetch(url: str, body: Any = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as rsp:
            return rsp.status, rsp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_metrics_api_answers_503_naming_what_it_cannot_reach(tmp_path: Path) -> None:
    # Bound but not listening: connecting to it is refused for as long as the test holds it.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    prometheus = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with closed, component(
        tmp_path / "metrics-api.log",
        "metrics-api",
        "--addr", "127.0.0.1:0",
        "--admin-addr", "127.0.0.1:0",
        "--platform", f"local:{tmp_path}/api.sock",
        "--prometheus-url", prometheus,
    ) as (port, admin):  # fmt: skip
        assert fetch(f"http://127.0.0.1:{admin}/ready") == (200, "ready\n")
        body = {"selector": {"resource": {"type": "deploy", "namespace": "x"}}}
        status, text = fetch(f"http://127.0.0.1:{port}/api/v1/StatSummary", body)
        assert status == 503
        assert json.loads(text)["error"].startswith("the platform: ")
        status, text = fetch(f"http://127.0.0.1:{port}/api/v1/SelfCheck")
        results = json.loads(text)["results"]
        assert [r["status"] for r in results] == ["FAIL", "FAIL"]
        assert results[1]["friendlyMessageToUser"].startswith(f"prometheus at {prometheus}: ")
        status, text = fetch(f"http://127.0.0.1:{admin}/metrics")
        assert 'metrics_api_requests_total{code="503",method="StatSummary"} 1.0' in text


def test_prometheus_targets_is_not_ready_until_it_has_listed_pods(tmp_path: Path) -> None:
    with component(
        tmp_path / "targets.log",
        "prometheus-targets",
        "--addr", "127.0.0.1:0",
        "--admin-addr", "127.0.0.1:0",
        "--platform", f"local:{tmp_path}/api.sock",
    ) as (port, admin):  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        assert fetch(f"{base}/ready")[0] == 503
        assert fetch(f"http://127.0.0.1:{admin}/ready")[0] == 503
        assert fetch(f"{base}/targets?job=weft-proxy") == (200, "[]")
        status, text = fetch(f"{base}/targets?job=nope")
        assert status == 400
        assert json.loads(text)["error"] == (
            'unknown job "nope": expected one of weft-proxy, weft-controller'
        )
        assert "sd_watch_restarts_total" in fetch(f"{base}/metrics")[1]
