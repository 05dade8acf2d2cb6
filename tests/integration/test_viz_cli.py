"""``weft stat/routes/edges/tap/top`` through a real node-agent API server.

The agent's ApiServer (weft/local/api_server.py) serves its unix socket in a thread, with
Services and Endpoints for the metrics API and the tap controller in its store; its service
proxy forwards to a small HTTP server on loopback that answers as those components would
(canned answers shaped as the design specifies). So the CLI's requests, the agent's 503/404/502
answers and the streaming of NDJSON are all real; only the components' figures are canned.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from tests import viz_answers as answers
from tests.conftest import GoldenChecker
from weft.cli.main import cli
from weft.cli.top_output import ENTER_SCREEN, LEAVE_SCREEN
from weft.local.api_server import ApiServer
from weft.local.cluster_config import ClusterConfig
from weft.local.store import ObjectStore
from weft.local.tokens import UserClaims, verify

T = TypeVar("T")
JSON = dict[str, Any]
TAP_PATH = "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/deployments/web/tap"


@dataclass
class Components:
    """What the canned metrics API and tap controller answer, and what they were asked."""

    token_key: bytes
    metrics: dict[str, tuple[int, JSON]] = field(default_factory=dict)
    tap_events: list[JSON] = field(default_factory=list)
    tap_error: tuple[int, JSON] | None = None
    tap_hold: bool = False  # keep the stream open after the events, until released
    released: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[tuple[str, JSON, str]] = field(default_factory=list)

    async def metrics_api(self, request: web.Request) -> web.Response:
        body = await request.json()
        method = request.match_info["method"]
        self.received.append((method, body, ""))
        status, answer = self.metrics.get(method, (404, {"error": f"no {method}"}))
        return web.json_response(answer, status=status)

    async def tap(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.received.append((request.path, body, token))
        claims = verify(self.token_key, token)
        if not isinstance(claims, UserClaims):
            return web.json_response({"error": "not authenticated"}, status=401)
        if self.tap_error is not None:
            return web.json_response(self.tap_error[1], status=self.tap_error[0])
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for event in self.tap_events:
            await response.write(json.dumps(event).encode() + b"\n")
        if self.tap_hold:
            await self.released.wait()
        return response


class Agent:
    """A node agent's API server and the components behind its service proxy, in a thread."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.cfg = ClusterConfig(name="viztest", state_dir=str(state))
        self.cfg.save()
        self.store = ObjectStore()
        self.components = Components(token_key=os.urandom(32))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ApiServer(self.cfg, self.store, self.components.token_key)
        self.runner: web.AppRunner | None = None
        self.call(self._start())

    def call(self, coro: Awaitable[T]) -> T:
        """Run ``coro`` on the agent's loop and wait for it."""

        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout=30)

    async def _start(self) -> None:
        await self.server.start(self.cfg.api_socket)
        app = web.Application()
        app.add_routes(
            [
                web.post("/api/v1/{method}", self.components.metrics_api),
                web.post(TAP_PATH, self.components.tap),
                web.post(
                    "/apis/tap.linkerd.io/v1alpha1/watch/namespaces/{ns}/tap", self.components.tap
                ),
            ]
        )
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(self.runner, sock)
        await site.start()
        port = sock.getsockname()[1]
        for name, service_port in (("weft-metrics-api", 8085), ("weft-tap", 8088)):
            self.store.put(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"namespace": "weft", "name": name},
                    "spec": {
                        "ports": [
                            {"name": "http", "port": service_port},
                            {"name": "admin-http", "port": 9995},
                        ]
                    },
                }
            )
            self._put_endpoints(name, ready=True, port=port)

    def _put_endpoints(self, name: str, ready: bool, port: int = 0) -> None:
        old = self.store.get("Endpoints", "weft", name)
        target = port or (old or {})["subsets"][0]["ports"][0]["port"]
        key = "addresses" if ready else "notReadyAddresses"
        subset = {"ports": [{"name": "http", "port": target}], key: [{"ip": "127.0.0.1"}]}
        self.store.put(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"namespace": "weft", "name": name},
                "subsets": [subset],
            }
        )

    def set_endpoints(self, name: str, ready: bool, port: int = 0) -> None:
        """Give ``name``'s Endpoints a ready or a not-ready address (port 0: the same port)."""

        async def put() -> None:
            self._put_endpoints(name, ready, port)

        self.call(put())

    def delete_service(self, name: str) -> None:
        """Remove a component's Service."""

        async def delete() -> None:
            self.store.delete("Service", "weft", name)

        self.call(delete())

    def close(self) -> None:
        """Stop serving and the thread."""

        async def stop() -> None:
            self.components.released.set()
            await self.server.close()
            if self.runner is not None:
                await self.runner.cleanup()
            # Streams whose client left are still waiting on their upstream: end them.
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path / "state")
    try:
        yield a
    finally:
        a.close()


def weft(agent: Agent, *args: str) -> Result:
    """Run ``weft ARGS --state-dir <the agent's>`` in this process."""
    return CliRunner().invoke(cli, [*args, "--state-dir", str(agent.state)])


def one_error_line(result: Result, text: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert text in result.stderr, result.stderr


# -- the metrics API ------------------------------------------------------------------------------


def test_stat_shows_the_metrics_apis_answer_as_linkerds_table(
    agent: Agent, golden: GoldenChecker
) -> None:
    agent.components.metrics["StatSummary"] = (200, answers.DEPLOYMENTS)
    result = weft(agent, "stat", "deploy", "-n", "emojivoto", "-t", "1m")
    assert result.exit_code == 0, result.output
    golden.check("viz/stat_deploy.txt", result.stdout)
    [(method, body, _)] = agent.components.received
    assert method == "StatSummary"
    assert body["selector"]["resource"] == {
        "namespace": "emojivoto",
        "type": "deployment",
        "name": "",
    }
    assert (body["timeWindow"], body["tcpStats"]) == ("1m", True)


def test_stat_json_through_the_agent(agent: Agent) -> None:
    agent.components.metrics["StatSummary"] = (200, answers.SPLITS)
    result = weft(agent, "stat", "ts", "-n", "emojivoto", "-o", "json")
    assert result.exit_code == 0, result.output
    assert [r["leaf"] for r in json.loads(result.stdout)] == ["web-v1", "web-v2"]


def test_stat_without_rows_says_so_on_stderr(agent: Agent) -> None:
    agent.components.metrics["StatSummary"] = (200, answers.stat_answer([]))
    result = weft(agent, "stat", "deploy", "-n", "empty")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "No traffic found.\n")


def test_routes_and_edges_through_the_agent(agent: Agent, golden: GoldenChecker) -> None:
    agent.components.metrics["TopRoutes"] = (200, answers.ROUTES)
    agent.components.metrics["Edges"] = (200, answers.EDGES)
    routes = weft(agent, "routes", "deploy/web", "-n", "emojivoto")
    assert routes.exit_code == 0, routes.output
    golden.check("viz/routes.txt", routes.stdout)
    edges = weft(agent, "edges", "deploy", "-n", "emojivoto", "-o", "wide")
    assert edges.exit_code == 0, edges.output
    golden.check("viz/edges_wide.txt", edges.stdout)


def test_a_metrics_api_without_ready_endpoints_points_to_weft_check(agent: Agent) -> None:
    agent.set_endpoints("weft-metrics-api", ready=False)
    result = weft(agent, "stat", "deploy", "-n", "emojivoto")
    one_error_line(result, "weft stat: the metrics API is not ready yet: see `weft check`")


def test_a_cluster_without_the_metrics_api_says_which_service_is_missing(agent: Agent) -> None:
    agent.delete_service("weft-metrics-api")
    result = weft(agent, "edges", "deploy", "-n", "emojivoto")
    one_error_line(
        result,
        "weft edges: the metrics API is missing from this cluster "
        "(no service weft/weft-metrics-api): see `weft check`",
    )


def test_a_metrics_api_that_does_not_answer_says_so(agent: Agent) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        agent.set_endpoints("weft-metrics-api", ready=True, port=closed.getsockname()[1])
        result = weft(agent, "routes", "deploy/web", "-n", "emojivoto")
    one_error_line(result, "weft routes: the metrics API does not answer (cannot reach 127.0.0.1:")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (
            503,
            "prometheus at http://weft-prometheus.weft.svc.cluster.local:9090: connection refused",
        ),
        (404, "deployment/nope not found in namespace emojivoto"),
        (400, 'invalid time window "9q"'),
    ],
)
def test_the_metrics_apis_own_errors_are_passed_through(
    agent: Agent, status: int, message: str
) -> None:
    agent.components.metrics["StatSummary"] = (status, {"error": message})
    result = weft(agent, "stat", "deploy/nope", "-n", "emojivoto")
    one_error_line(result, f"weft stat: {message}")


def test_an_answer_of_another_shape_is_one_line(agent: Agent) -> None:
    agent.components.metrics["Edges"] = (200, {"ok": {"edges": {"not": "a list"}}})
    one_error_line(weft(agent, "edges", "po"), "weft edges: an answer weft does not understand")


def test_no_agent_and_no_cluster_are_one_line_each(agent: Agent, tmp_path: Path) -> None:
    agent.cfg.api_socket.unlink()
    one_error_line(weft(agent, "stat", "deploy"), "the cluster's node agent does not answer on")
    missing = CliRunner().invoke(cli, ["stat", "deploy", "--state-dir", str(tmp_path / "none")])
    one_error_line(missing, f"weft stat: no cluster at {tmp_path / 'none'} (run `weft cluster up`)")


def test_bad_input_is_refused_before_any_request(agent: Agent) -> None:
    one_error_line(weft(agent, "stat", "deploy", "-t", "5x"), 'weft stat: invalid time window "5x"')
    one_error_line(weft(agent, "tap", "svc/web-svc"), "weft tap: cannot tap services")
    one_error_line(weft(agent, "edges", "svc"), "weft edges: edges connect")
    assert agent.components.received == []


# -- the tap controller ---------------------------------------------------------------------------

EVENTS = [
    answers.request(1, src_labels=answers.WEB_SRC, dst_labels=answers.WEB_DST),
    answers.response(1, src_labels=answers.WEB_SRC, dst_labels=answers.WEB_DST),
    answers.end(1, src_labels=answers.WEB_SRC, dst_labels=answers.WEB_DST),
    answers.request(2, path="/api/vote", src_labels=answers.WEB_SRC, dst_labels=answers.WEB_DST),
    answers.response(2, 500, src_labels=answers.WEB_SRC, dst_labels=answers.WEB_DST),
    answers.end(2, src_labels=answers.WEB_SRC, dst_labels=answers.WEB_DST),
]


def test_tap_streams_linkerds_lines_as_the_cluster_admin(agent: Agent) -> None:
    agent.components.tap_events = EVENTS
    result = weft(agent, "tap", "deploy/web", "-n", "emojivoto", "--path", "/api", "--max-rps", "5")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("req id=0:1 proxy=in  src=10.244.0.7:41000 dst=10.244.0.5:8080")
    assert lines[4].endswith(":status=500 latency=2500µs")
    [(path, body, token)] = agent.components.received
    assert path == TAP_PATH
    assert body == {"maxRps": 5.0, "extract": False, "path": "/api"}
    assert isinstance(verify(agent.components.token_key, token), UserClaims)


def test_tap_json_asks_for_headers(agent: Agent) -> None:
    agent.components.tap_events = EVENTS[:1]
    result = weft(agent, "tap", "ns/emojivoto", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["requestInitEvent"]["path"] == "/api/list"
    assert agent.components.received[0][1]["extract"] is True


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, "user weft:admin is not authorized to tap emojivoto"),
        (404, "no pods found for deployment/web"),
        (503, "all pods found for deployment/web have tapping disabled"),
    ],
)
def test_the_tap_controllers_errors_are_passed_through(
    agent: Agent, status: int, message: str
) -> None:
    agent.components.tap_error = (status, {"error": message})
    one_error_line(weft(agent, "tap", "deploy/web", "-n", "emojivoto"), f"weft tap: {message}")


def test_a_tap_controller_that_is_not_ready_points_to_weft_check(agent: Agent) -> None:
    agent.set_endpoints("weft-tap", ready=False)
    one_error_line(
        weft(agent, "top", "deploy/web", "-n", "emojivoto"),
        "weft top: the tap controller is not ready yet: see `weft check`",
    )


def test_top_without_a_terminal_prints_the_table(agent: Agent, golden: GoldenChecker) -> None:
    agent.components.tap_events = EVENTS
    result = weft(agent, "top", "deploy/web", "-n", "emojivoto", "--sort", "path")
    assert result.exit_code == 0, result.output
    golden.check("viz/top_piped.txt", result.stdout)


# -- real processes: Ctrl-C, a terminal ------------------------------------------------------------


def weft_process(agent: Agent, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "weft", *args, "--state-dir", str(agent.state)], **kwargs
    )


def read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    """Bytes from ``fd`` until ``wanted`` shows up (or the deadline passes: AssertionError)."""
    data = b""
    deadline = time.monotonic() + timeout
    while wanted not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"no {wanted!r} within {timeout}s; got {data!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the pty's other side closed
                chunk = b""
            assert chunk, f"stream ended before {wanted!r}; got {data!r}"
            data += chunk
    return data


def test_tap_ends_cleanly_on_ctrl_c(agent: Agent) -> None:
    agent.components.tap_events = EVENTS[:1]
    agent.components.tap_hold = True
    proc = weft_process(
        agent,
        "tap",
        "deploy/web",
        "-n",
        "emojivoto",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        read_until(proc.stdout.fileno(), b"\n", 30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("quit_by", ["q", "SIGINT"])
def test_top_on_a_terminal_redraws_sorts_by_key_and_restores_the_terminal(
    agent: Agent, quit_by: str
) -> None:
    agent.components.tap_events = EVENTS
    agent.components.tap_hold = True
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    before = termios.tcgetattr(slave)
    proc = weft_process(
        agent, "top", "deploy/web", "-n", "emojivoto", stdin=slave, stdout=slave, stderr=slave
    )
    try:
        screen = read_until(master, b"/api/vote", 30)
        assert ENTER_SCREEN.encode() in screen
        assert b"sorted by count; keys: c b w l s p" in screen
        os.write(master, b"s")
        read_until(master, b"sorted by success", 30)
        os.write(master, b"s")
        read_until(master, b"sorted by success (reversed)", 30)
        if quit_by == "q":
            os.write(master, b"q")
        else:
            proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        rest = read_until(master, LEAVE_SCREEN.encode(), 5)
        after = rest[rest.index(LEAVE_SCREEN.encode()) :].decode()
        assert "/api/list" in after  # the last table stays on the normal screen
        assert "Traceback" not in after
        assert termios.tcgetattr(slave) == before
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        os.close(slave)


def test_tap_into_a_pipe_that_closes_ends_quietly(agent: Agent) -> None:
    agent.components.tap_events = EVENTS * 2000  # more than a pipe holds
    proc = weft_process(
        agent,
        "tap",
        "deploy/web",
        "-n",
        "emojivoto",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        read_until(proc.stdout.fileno(), b"\n", 30)
        proc.stdout.close()  # as `| head -1` does
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()
