"""Probes against servers on 127.0.0.1 that the tests control."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from weft.local.probe import ProbeResult, ProbeSpec, ProbeWorker, check, probe_url

pytestmark = pytest.mark.anyio


class Backend:
    """An HTTP server whose ``/scripted`` answers follow ``statuses`` (then 200)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[web.Request] = []
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_get("/ok", self.ok)
        app.router.add_get("/fail", self.fail)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/scripted", self.scripted)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def close(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def ok(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return web.Response(text="ok")

    async def fail(self, request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/fail"})

    async def slow(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(text="late")

    async def scripted(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    server = Backend()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def http(port: int, path: str, **kwargs: Any) -> ProbeSpec:
    return ProbeSpec("http", "127.0.0.1", port, path, **kwargs)


async def test_http_200_is_ok(backend: Backend) -> None:
    result = await check(http(backend.port, "/ok"))
    assert result == ProbeResult(True, "HTTP probe succeeded with statuscode: 200")


async def test_http_sends_kube_probe_user_agent_and_extra_headers(backend: Backend) -> None:
    spec = http(backend.port, "/ok", headers=(("X-Custom", "1"),))
    assert (await check(spec)).ok
    headers = backend.requests[-1].headers
    assert headers["User-Agent"] == "kube-probe/weft"
    assert headers["X-Custom"] == "1"


async def test_http_user_agent_can_be_overridden(backend: Backend) -> None:
    assert (await check(http(backend.port, "/ok", headers=(("user-agent", "mine"),)))).ok
    assert backend.requests[-1].headers.getall("User-Agent") == ["mine"]


async def test_http_500_fails(backend: Backend) -> None:
    result = await check(http(backend.port, "/fail"))
    assert result == ProbeResult(False, "HTTP probe failed with statuscode: 500")


async def test_http_302_is_ok_and_not_followed(backend: Backend) -> None:
    result = await check(http(backend.port, "/redirect"))
    assert result.ok and "302" in result.detail


async def test_http_timeout_fails(backend: Backend) -> None:
    result = await check(http(backend.port, "/slow", timeout=0.2))
    assert not result.ok and "timed out" in result.detail


async def test_http_refused_fails(refused_port: int) -> None:
    result = await check(http(refused_port, "/"))
    assert not result.ok and f"127.0.0.1:{refused_port}" in result.detail


async def test_http_ignores_proxy_environment(
    backend: Backend, refused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{refused_port}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{refused_port}")
    assert (await check(http(backend.port, "/ok"))).ok


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
async def test_https_does_not_verify_certificates(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    argv += ["-subj", "/CN=not-this-host", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(argv, check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Backend()
    await server.start(context)
    try:
        assert (await check(http(server.port, "/ok", scheme="HTTPS"))).ok
    finally:
        await server.close()


def test_probe_url() -> None:
    assert probe_url(http(80, "healthz?x=1")) == "http://127.0.0.1:80/healthz?x=1"
    spec = ProbeSpec("http", "fd00::1", 8443, "/ready", scheme="HTTPS")
    assert probe_url(spec) == "https://[fd00::1]:8443/ready"


async def test_tcp_connect_ok_and_refused(backend: Backend, refused_port: int) -> None:
    assert (await check(ProbeSpec("tcp", "127.0.0.1", backend.port))).ok
    result = await check(ProbeSpec("tcp", "127.0.0.1", refused_port))
    assert not result.ok and "refused" in result.detail.lower()


async def test_exec_exit_code_decides() -> None:
    ok = await check(ProbeSpec("exec", "", 0, argv=("sh", "-c", "echo fine")))
    assert ok == ProbeResult(True, "fine")
    bad = await check(ProbeSpec("exec", "", 0, argv=("sh", "-c", "echo broken >&2; exit 3")))
    assert bad == ProbeResult(False, "command exited with 3: broken")


async def test_exec_missing_command_fails() -> None:
    result = await check(ProbeSpec("exec", "", 0, argv=("/nonexistent/probe",)))
    assert not result.ok and "/nonexistent/probe" in result.detail


async def test_exec_timeout_kills_the_command() -> None:
    spec = ProbeSpec("exec", "", 0, argv=("sleep", "30"), timeout=0.2)
    result = await check(spec)
    assert result == ProbeResult(False, "command timed out after 0.2s")


async def test_exec_env_is_the_given_one() -> None:
    argv = (sys.executable, "-c", "import os; print(sorted(os.environ))")
    result = await check(ProbeSpec("exec", "", 0, argv=argv, env={"ONLY": "1"}))
    assert result.ok
    assert "ONLY" in result.detail and "HOME" not in result.detail


class Flips:
    """Records ``on_change`` calls with the number of requests the backend had seen."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.calls: list[tuple[bool, int]] = []
        self.changed = asyncio.Event()

    def __call__(self, healthy: bool) -> None:
        self.calls.append((healthy, len(self.backend.requests)))
        self.changed.set()

    async def wait_calls(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.calls) < count:
                self.changed.clear()
                await self.changed.wait()


async def run_worker(worker: ProbeWorker, flips: Flips, count: int) -> None:
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        await flips.wait_calls(count)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_failures_below_threshold_do_not_flip(backend: Backend) -> None:
    backend.statuses = [200, 500, 500, 200, 500, 500, 500]
    flips = Flips(backend)
    worker = ProbeWorker(http(backend.port, "/scripted", period=0.01), flips)
    assert worker.healthy is None
    await run_worker(worker, flips, 2)
    assert flips.calls == [(True, 1), (False, 7)]
    assert worker.healthy is False
    assert worker.last_result is not None and "500" in worker.last_result.detail


async def test_success_threshold(backend: Backend) -> None:
    backend.statuses = [200, 500, 200, 200]
    flips = Flips(backend)
    spec = http(backend.port, "/scripted", period=0.01, success_threshold=2)
    await run_worker(ProbeWorker(spec, flips), flips, 1)
    assert flips.calls == [(True, 4)]


async def test_first_failures_reach_the_threshold(backend: Backend) -> None:
    backend.statuses = [500, 500]
    flips = Flips(backend)
    spec = http(backend.port, "/scripted", period=0.01, failure_threshold=2)
    await run_worker(ProbeWorker(spec, flips), flips, 1)
    assert flips.calls == [(False, 2)]


async def test_reset_starts_over(backend: Backend) -> None:
    flips = Flips(backend)
    worker = ProbeWorker(http(backend.port, "/scripted", period=0.01), flips)
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        await flips.wait_calls(1)
        assert worker.healthy is True
        backend.statuses = [500]
        worker.reset()
        assert worker.healthy is None and worker.last_result is None
        await flips.wait_calls(2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # after the reset the worker needed a new success to become healthy again
    assert [healthy for healthy, _ in flips.calls] == [True, True]
    assert worker.last_result is not None and worker.last_result.ok


async def test_initial_delay_postpones_the_first_check(backend: Backend) -> None:
    flips = Flips(backend)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    await run_worker(ProbeWorker(http(backend.port, "/ok", initial_delay=0.3), flips), flips, 1)
    assert loop.time() - begin >= 0.3
