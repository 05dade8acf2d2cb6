"""Containers as real processes: logs, restart policies, back-off, stopping, env, netns, IDs."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from weft.local.container import (
    DEFAULT_PATH,
    ContainerSpec,
    ContainerState,
    ContainerSupervisor,
    follow_log,
    launch_argv,
    read_log,
)
from weft.local.netns import Topology

SH = "/bin/sh"
TIMEOUT = 10.0
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def spec(tmp_path: Path, *argv: str, **kwargs: Any) -> ContainerSpec:
    kwargs.setdefault("env", {"PATH": DEFAULT_PATH})
    kwargs.setdefault("netns", None)
    kwargs.setdefault("log_path", tmp_path / "logs" / "app.log")
    return ContainerSpec("app", argv, **kwargs)


class Watch:
    """A supervisor's ``on_change``: records (loop time, state, restart count), wakes waiters."""

    def __init__(self) -> None:
        self.sup: ContainerSupervisor | None = None
        self.history: list[tuple[float, ContainerState, int]] = []
        self.changed = asyncio.Event()

    def __call__(self) -> None:
        assert self.sup is not None
        now = asyncio.get_running_loop().time()
        self.history.append((now, self.sup.state, self.sup.restart_count))
        self.changed.set()

    async def until(
        self, predicate: Callable[[ContainerState, int], bool], timeout: float = TIMEOUT
    ) -> None:
        """Wait until some recorded (state, restart count) satisfies ``predicate``."""
        seen = 0
        async with asyncio.timeout(timeout):
            while True:
                self.changed.clear()
                if any(predicate(state, count) for _, state, count in self.history[seen:]):
                    return
                seen = len(self.history)
                await self.changed.wait()

    def times(self, kind: str) -> list[float]:
        return [t for t, state, _ in self.history if state.kind == kind]


def supervise(container: ContainerSpec, **kwargs: Any) -> tuple[ContainerSupervisor, Watch]:
    watch = Watch()
    kwargs.setdefault("backoff_initial", 0.1)
    sup = ContainerSupervisor(container, on_change=watch, **kwargs)
    watch.sup = sup
    return sup, watch


@asynccontextmanager
async def running(sup: ContainerSupervisor) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.get_running_loop().create_task(sup.run())
    try:
        yield task
    finally:
        async with asyncio.timeout(TIMEOUT):
            await sup.stop(grace=1.0)
            await task


async def run_to_end(sup: ContainerSupervisor) -> ContainerState:
    async with asyncio.timeout(TIMEOUT):
        await sup.run()
    assert sup.done.is_set()
    return sup.state


async def wait_for_log(path: Path, text: str) -> None:
    seen = b""
    async with asyncio.timeout(TIMEOUT):
        async for chunk in follow_log(path, interval=0.02):
            seen += chunk
            if text.encode() in seen:
                return


async def eventually(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)  # polling interval of a bounded wait


def gone(pid: int) -> bool:
    """Whether ``pid`` is dead (no longer in /proc, or a zombie waiting for a reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


# -- argv -----------------------------------------------------------------------------------


def test_launch_argv_plain(tmp_path: Path) -> None:
    assert launch_argv(spec(tmp_path, "app", "--flag")) == ["app", "--flag"]


def test_launch_argv_gid_only_keeps_uid(tmp_path: Path) -> None:
    argv = launch_argv(spec(tmp_path, "app", run_as_gid=2102))
    assert argv[0].endswith("setpriv")
    assert argv[1:] == ["--regid=2102", "--clear-groups", "--", "app"]


def test_launch_argv_netns_wraps_setpriv(tmp_path: Path) -> None:
    argv = launch_argv(spec(tmp_path, "app", netns="wt-x-pod", run_as_uid=5, run_as_gid=6))
    assert argv[0].endswith("ip")
    assert argv[1:4] == ["netns", "exec", "wt-x-pod"]
    assert argv[4].endswith("setpriv")
    assert argv[5:] == ["--reuid=5", "--regid=6", "--clear-groups", "--", "app"]


def test_empty_command_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        spec(tmp_path)


# -- logs -----------------------------------------------------------------------------------


def test_read_log_tail(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    assert read_log(path) == ""
    path.write_text("a\nb\nc")
    assert read_log(path) == "a\nb\nc"
    assert read_log(path, tail=2) == "b\nc"
    assert read_log(path, tail=0) == ""
    path.write_text("a\nb\n")
    assert read_log(path, tail=1) == "b\n"
    assert read_log(path, tail=5) == "a\nb\n"


@pytest.mark.anyio
async def test_follow_log_waits_for_the_file_and_survives_truncation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    chunks = follow_log(path, interval=0.01)
    async with asyncio.timeout(TIMEOUT):
        pending = asyncio.ensure_future(anext(chunks))
        path.write_bytes(b"one\n")
        assert await pending == b"one\n"
        with path.open("ab") as fh:
            fh.write(b"two\n")
        assert await anext(chunks) == b"two\n"
        path.write_bytes(b"x\n")
        assert await anext(chunks) == b"x\n"


# -- runs -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_output_is_appended_to_the_log_file(tmp_path: Path) -> None:
    container = spec(tmp_path, SH, "-c", "echo out; echo err >&2", restart_policy="Never")
    container.log_path.parent.mkdir()
    container.log_path.write_text("earlier\n")
    sup, _ = supervise(container)
    state = await run_to_end(sup)
    assert (state.kind, state.reason, state.exit_code) == ("terminated", "Completed", 0)
    assert state.started_at is not None and state.finished_at is not None
    assert state.started_at <= state.finished_at
    assert read_log(container.log_path) == "earlier\nout\nerr\n"


@pytest.mark.anyio
async def test_never_policy_ends_terminated_with_the_exit_code(tmp_path: Path) -> None:
    sup, watch = supervise(spec(tmp_path, SH, "-c", "exit 3", restart_policy="Never"))
    assert sup.state == ContainerState("waiting", "ContainerCreating")
    state = await run_to_end(sup)
    assert (state.kind, state.reason, state.exit_code) == ("terminated", "Error", 3)
    assert sup.restart_count == 0
    assert [s.kind for _, s, _ in watch.history] == ["running", "terminated"]


@pytest.mark.anyio
async def test_on_failure_stops_after_success(tmp_path: Path) -> None:
    script = "echo run; test -e marker && exit 0; touch marker; exit 1"
    container = spec(tmp_path, SH, "-c", script, cwd=tmp_path, restart_policy="OnFailure")
    sup, _ = supervise(container)
    state = await run_to_end(sup)
    assert (state.kind, state.reason, state.exit_code) == ("terminated", "Completed", 0)
    assert sup.restart_count == 1
    assert sup.last_state is not None and sup.last_state.exit_code == 1
    assert read_log(container.log_path) == "run\nrun\n"


def start_gaps(watch: Watch) -> list[float]:
    """Seconds from each termination to the next start."""
    ends, starts = watch.times("terminated"), watch.times("running")
    return [start - end for end, start in zip(ends, starts[1:], strict=False)]


def assert_delays(gaps: list[float], expected: list[float]) -> None:
    assert len(gaps) >= len(expected)
    for gap, delay in zip(gaps, expected, strict=False):
        assert delay * 0.95 <= gap <= delay + 0.3, (gaps, expected)


@pytest.mark.anyio
async def test_always_restarts_with_doubling_backoff(tmp_path: Path) -> None:
    container = spec(tmp_path, SH, "-c", "echo run; exit 1")
    sup, watch = supervise(container, backoff_initial=0.2, backoff_max=10)
    async with running(sup):
        await watch.until(lambda state, n: n == 3 and state.kind == "terminated")
    ended = [state for _, state, _ in watch.history if state.kind == "terminated"]
    assert {(state.reason, state.exit_code) for state in ended} == {("Error", 1)}
    waiting = [state for _, state, _ in watch.history if state.kind == "waiting"]
    assert {state.reason for state in waiting} == {"CrashLoopBackOff"}
    assert_delays(start_gaps(watch), [0.2, 0.4, 0.8])
    assert [count for _, state, count in watch.history if state.kind == "running"] == [0, 1, 2, 3]
    assert read_log(container.log_path) == "run\n" * 4


@pytest.mark.anyio
async def test_backoff_is_capped(tmp_path: Path) -> None:
    sup, watch = supervise(spec(tmp_path, SH, "-c", "exit 1"), backoff_max=0.2)
    async with running(sup):
        await watch.until(lambda state, n: n == 3)
    assert_delays(start_gaps(watch), [0.1, 0.2, 0.2])


@pytest.mark.anyio
async def test_backoff_resets_after_a_long_run(tmp_path: Path) -> None:
    container = spec(tmp_path, SH, "-c", "sleep 0.3; exit 1")
    sup, watch = supervise(container, backoff_reset_after=0.2)
    async with running(sup):
        await watch.until(lambda state, n: n == 3)
    assert_delays(start_gaps(watch), [0.1, 0.1, 0.1])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (("no-such-command-weft",), 127, 'exec: "no-such-command-weft": executable file not found'),
        (("/nonexistent/cmd",), 127, 'exec: "/nonexistent/cmd": no such file or directory'),
        (("./not-executable",), 126, 'exec: "./not-executable": permission denied'),
    ],
)
async def test_start_error_is_a_state_and_a_log_line(
    tmp_path: Path, argv: tuple[str, ...], code: int, message: str
) -> None:
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    container = spec(tmp_path, *argv, cwd=tmp_path, restart_policy="Never")
    sup, _ = supervise(container)
    state = await run_to_end(sup)
    assert (state.kind, state.reason, state.exit_code) == ("terminated", "StartError", code)
    assert message in state.message
    lines = read_log(container.log_path).splitlines()
    assert len(lines) == 1 and message in lines[0]


@pytest.mark.anyio
async def test_start_error_under_always_backs_off(tmp_path: Path) -> None:
    sup, watch = supervise(spec(tmp_path, "no-such-command-weft"))
    async with running(sup):
        await watch.until(lambda state, n: n == 2)
        assert sup.pid is None
    assert {s.reason for _, s, _ in watch.history} == {"StartError", "CrashLoopBackOff"}


@pytest.mark.anyio
async def test_stop_kills_a_group_ignoring_sigterm_after_the_grace(tmp_path: Path) -> None:
    script = 'trap "" TERM; sleep 60 & echo $! > child.pid; echo ready; wait'
    container = spec(tmp_path, SH, "-c", script, cwd=tmp_path)
    sup, watch = supervise(container)
    task = asyncio.get_running_loop().create_task(sup.run())
    await wait_for_log(container.log_path, "ready")
    child = int((tmp_path / "child.pid").read_text())
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(TIMEOUT):
        await sup.stop(grace=0.3)
        await task
    assert loop.time() - began >= 0.3 - 0.002  # libuv's clock has millisecond steps
    assert (sup.state.kind, sup.state.exit_code) == ("terminated", 137)
    assert sup.restart_count == 0 and sup.done.is_set()
    await eventually(lambda: gone(child))
    assert watch.history[-1][1] == sup.state


@pytest.mark.anyio
async def test_stop_is_quick_when_the_process_obeys_sigterm(tmp_path: Path) -> None:
    container = spec(tmp_path, SH, "-c", "echo ready; exec sleep 60")
    sup, _ = supervise(container)
    task = asyncio.get_running_loop().create_task(sup.run())
    await wait_for_log(container.log_path, "ready")
    async with asyncio.timeout(5):
        await sup.stop(grace=30)
        await task
    assert (sup.state.reason, sup.state.exit_code) == ("Error", 143)


@pytest.mark.anyio
async def test_stop_during_backoff_ends_the_loop(tmp_path: Path) -> None:
    sup, watch = supervise(spec(tmp_path, SH, "-c", "exit 2"), backoff_initial=60)
    async with running(sup):
        await watch.until(lambda state, n: state.reason == "CrashLoopBackOff")
    assert sup.done.is_set()
    assert (sup.state.kind, sup.state.exit_code, sup.restart_count) == ("terminated", 2, 0)
    assert sup.last_state is None


@pytest.mark.anyio
async def test_stop_before_run(tmp_path: Path) -> None:
    sup, _ = supervise(spec(tmp_path, SH, "-c", "exit 0"))
    await sup.stop(grace=1)
    assert sup.done.is_set()
    await run_to_end(sup)
    assert not sup.spec.log_path.exists()


TERM_EXITS_0 = (
    "import signal, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
    "print('ready', flush=True); signal.pause()"
)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("policy", "restarts"), [("Always", True), ("OnFailure", True), ("Never", False)]
)
async def test_restart_for_a_failed_liveness_probe(
    tmp_path: Path, policy: str, restarts: bool
) -> None:
    container = spec(tmp_path, sys.executable, "-c", TERM_EXITS_0, restart_policy=policy)
    sup, watch = supervise(container)
    async with running(sup) as task:
        await wait_for_log(container.log_path, "ready")
        await sup.restart("liveness probe failed", grace=5)
        if restarts:
            await watch.until(lambda state, n: n == 1 and state.kind == "running")
            assert sup.last_state is not None
            assert (sup.last_state.exit_code, sup.last_state.message) == (
                0,
                "liveness probe failed",
            )
        else:
            async with asyncio.timeout(TIMEOUT):
                await task
            assert (sup.state.kind, sup.state.message) == ("terminated", "liveness probe failed")
            assert sup.restart_count == 0


@pytest.mark.anyio
async def test_cancelling_run_kills_the_process(tmp_path: Path) -> None:
    container = spec(tmp_path, SH, "-c", "trap '' TERM; echo ready; exec sleep 60")
    sup, _ = supervise(container)
    task = asyncio.get_running_loop().create_task(sup.run())
    await wait_for_log(container.log_path, "ready")
    pid = sup.pid
    assert pid is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sup.done.is_set()
    await eventually(lambda: gone(pid))


# -- environment, working directory, identity, namespace ----------------------------------


@pytest.mark.anyio
async def test_env_is_exactly_the_given_one(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "FOO": "bar baz"}
    container = spec(tmp_path, "env", env=env, restart_policy="Never")
    await run_to_end(supervise(container)[0])
    assert sorted(read_log(container.log_path).splitlines()) == [
        "FOO=bar baz",
        "PATH=/usr/bin:/bin",
    ]


@pytest.mark.anyio
async def test_path_defaults_when_absent(tmp_path: Path) -> None:
    container = spec(tmp_path, "env", env={"ONLY": "1"}, restart_policy="Never")
    await run_to_end(supervise(container)[0])
    assert sorted(read_log(container.log_path).splitlines()) == ["ONLY=1", f"PATH={DEFAULT_PATH}"]


@pytest.mark.anyio
async def test_cwd(tmp_path: Path) -> None:
    container = spec(tmp_path, "pwd", "-P", cwd=tmp_path, restart_policy="Never")
    await run_to_end(supervise(container)[0])
    assert read_log(container.log_path) == f"{tmp_path.resolve()}\n"


@needs_root
@pytest.mark.anyio
async def test_uid_only_drop_keeps_gid_0(tmp_path: Path) -> None:
    script = "id -u; id -g; id -G"
    container = spec(tmp_path, "sh", "-c", script, run_as_uid=65534, restart_policy="Never")
    state = await run_to_end(supervise(container)[0])
    assert state.exit_code == 0
    assert read_log(container.log_path) == "65534\n0\n0\n"


@pytest.fixture
def topology() -> Iterator[Topology]:
    topo = Topology()
    try:
        yield topo
    finally:
        assert topo.cleanup() == []


@pytest.mark.netns
@pytest.mark.anyio
async def test_runs_inside_the_netns_with_the_gid(tmp_path: Path, topology: Topology) -> None:
    netns = topology.add_netns(f"wt-{secrets.token_hex(3)}-ctr")
    inode = os.stat(f"/run/netns/{netns}").st_ino
    script = "readlink /proc/self/ns/net; echo ready; exec sleep 60"
    container = spec(tmp_path, "sh", "-c", script, netns=netns, run_as_gid=2102)
    sup, _ = supervise(container)
    async with running(sup):
        await wait_for_log(container.log_path, "ready")
        assert read_log(container.log_path).splitlines()[0] == f"net:[{inode}]"
        pid = sup.pid
        assert pid is not None
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        assert status["Gid"].split() == ["2102"] * 4
        assert status["Uid"].split() == ["0"] * 4
        assert status["Groups"].split() == []
        assert os.readlink(f"/proc/{pid}/ns/net") == f"net:[{inode}]"
