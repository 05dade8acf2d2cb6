"""Kubernetes probes: an HTTP GET, a TCP connect or a command, and a worker that thresholds them.

HTTP and TCP probes connect from the daemon's own namespace, like the kubelet's; HTTP redirects
are not followed (a 3xx is a success) and HTTPS certificates are not verified. Exec probes run
inside the pod's network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from multidict import CIMultiDict

from weft.local.container import container_env, in_netns

USER_AGENT = "kube-probe/weft"
_MAX_OUTPUT = 1024


@dataclass(frozen=True)
class ProbeSpec:
    """One probe; ``argv``, ``netns`` and ``env`` are for exec probes only."""

    kind: Literal["http", "tcp", "exec"]
    host: str
    port: int
    path: str = "/"
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    argv: tuple[str, ...] = ()
    netns: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3

    def __post_init__(self) -> None:
        if self.kind == "exec" and not self.argv:
            raise ValueError("an exec probe needs a command")
        if self.period <= 0 or self.timeout <= 0:
            raise ValueError("probe period and timeout must be positive")
        if self.success_threshold < 1 or self.failure_threshold < 1:
            raise ValueError("probe thresholds must be at least 1")


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one check."""

    ok: bool
    detail: str


def probe_url(spec: ProbeSpec) -> str:
    """The URL an HTTP probe requests."""
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    path = spec.path if spec.path.startswith("/") else f"/{spec.path}"
    return f"{spec.scheme.lower()}://{host}:{spec.port}{path}"


async def check(spec: ProbeSpec) -> ProbeResult:
    """Run the probe once."""
    if spec.kind == "http":
        return await _check_http(spec)
    if spec.kind == "tcp":
        return await _check_tcp(spec)
    return await _check_exec(spec)


async def _check_http(spec: ProbeSpec) -> ProbeResult:
    url = probe_url(spec)
    headers: CIMultiDict[str] = CIMultiDict(spec.headers)
    headers.setdefault("User-Agent", USER_AGENT)
    headers.setdefault("Accept", "*/*")
    try:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False, force_close=True),
                timeout=aiohttp.ClientTimeout(total=spec.timeout),
                trust_env=False,
            ) as session,
            session.get(url, headers=headers, allow_redirects=False) as response,
        ):
            status = response.status
    except TimeoutError:
        return ProbeResult(False, f'Get "{url}": timed out after {spec.timeout:g}s')
    except (aiohttp.ClientError, OSError) as exc:
        return ProbeResult(False, f'Get "{url}": {exc}')
    if 200 <= status < 400:
        return ProbeResult(True, f"HTTP probe succeeded with statuscode: {status}")
    return ProbeResult(False, f"HTTP probe failed with statuscode: {status}")


async def _check_tcp(spec: ProbeSpec) -> ProbeResult:
    address = f"{spec.host}:{spec.port}"
    try:
        async with asyncio.timeout(spec.timeout):
            _, writer = await asyncio.open_connection(spec.host, spec.port)
    except TimeoutError:
        return ProbeResult(False, f"dial tcp {address}: timed out after {spec.timeout:g}s")
    except OSError as exc:
        return ProbeResult(False, f"dial tcp {address}: {exc.strerror or exc}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, f"dial tcp {address}: connected")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


async def _check_exec(spec: ProbeSpec) -> ProbeResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *in_netns(spec.netns, spec.argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=container_env(spec.env),
            start_new_session=True,
        )
    except OSError as exc:
        return ProbeResult(False, f"exec {spec.argv[0]!r}: {exc}")
    try:
        async with asyncio.timeout(spec.timeout):
            output, _ = await proc.communicate()
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        return ProbeResult(False, f"command timed out after {spec.timeout:g}s")
    finally:
        _kill_group(proc)
    text = output[:_MAX_OUTPUT].decode("utf-8", errors="replace").strip()
    if proc.returncode == 0:
        return ProbeResult(True, text)
    detail = f"command exited with {proc.returncode}"
    return ProbeResult(False, f"{detail}: {text}" if text else detail)


class ProbeWorker:
    """Runs a probe periodically; ``healthy`` flips after enough consecutive equal results.

    ``healthy`` is ``None`` until ``success_threshold`` successes or ``failure_threshold``
    failures in a row; ``on_change`` is called with the new value whenever it flips.
    """

    def __init__(self, spec: ProbeSpec, on_change: Callable[[bool], None] | None = None) -> None:
        self.spec = spec
        self.on_change = on_change
        self.healthy: bool | None = None
        self.last_result: ProbeResult | None = None
        self._successes = 0
        self._failures = 0
        self._reset = asyncio.Event()

    def reset(self) -> None:
        """Start over (after a container restart): unknown again, initial delay again.

        ``on_change`` is not called for this.
        """
        self.healthy = None
        self.last_result = None
        self._successes = self._failures = 0
        self._reset.set()

    def _record(self, result: ProbeResult) -> None:
        self.last_result = result
        if result.ok:
            self._successes, self._failures = self._successes + 1, 0
            reached = self._successes >= self.spec.success_threshold
        else:
            self._successes, self._failures = 0, self._failures + 1
            reached = self._failures >= self.spec.failure_threshold
        if reached and self.healthy is not result.ok:
            self.healthy = result.ok
            if self.on_change is not None:
                self.on_change(result.ok)

    async def _pause_until(self, due: float) -> bool:
        """Wait until loop time ``due``; ``False`` if :meth:`reset` was called meanwhile."""
        delay = due - asyncio.get_running_loop().time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._reset.wait()
        return not self._reset.is_set()

    async def run(self) -> None:
        """Probe after the initial delay, then every period, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self._reset.clear()
            due = loop.time() + self.spec.initial_delay
            while await self._pause_until(due):
                due = loop.time() + self.spec.period
                result = await check(self.spec)
                if self._reset.is_set():
                    break
                self._record(result)
