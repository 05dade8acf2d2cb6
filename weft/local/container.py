"""Containers as processes: one run (:class:`ContainerProcess`) and its restart loop.

A container is its ``command`` + ``args`` started in its own session inside the pod's network
namespace (through ``ip netns exec``), optionally with a lower UID/GID (through ``setpriv``),
with exactly the environment of its spec and its output appended to a log file.
:class:`ContainerSupervisor` restarts it under a Kubernetes restart policy with the kubelet's
exponential back-off and keeps a Kubernetes-like container state for the status.

Signals go to the process group only while the process has not been reaped (its
``returncode`` is still unset), so a reused PID is never hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from weft.local.netns import exec_argv

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

RestartPolicy = Literal["Always", "OnFailure", "Never"]
StateKind = Literal["waiting", "running", "terminated"]

_LOG_CHUNK = 64 * 1024
_LINE = re.compile(r"[^\n]*\n|[^\n]+")


@dataclass(frozen=True)
class ContainerSpec:
    """How to run one container; ``env`` is its complete environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    netns: str | None
    log_path: Path
    cwd: Path | None = None
    run_as_uid: int | None = None
    run_as_gid: int | None = None
    restart_policy: RestartPolicy = "Always"

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError(f"container {self.name!r} has no command")


@dataclass(frozen=True)
class ContainerState:
    """A Kubernetes-like container state."""

    kind: StateKind
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class StartFailure:
    """Why a container process could not be started, with the exit code it is given."""

    exit_code: int
    message: str


class _CannotStart(Exception):
    def __init__(self, failure: StartFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def container_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` as a process environment: nothing inherited, ``PATH`` defaulted if absent."""
    out = dict(env)
    out.setdefault("PATH", DEFAULT_PATH)
    return out


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns`` (unchanged for ``None``), ``ip`` found on the daemon's PATH."""
    wrapped = exec_argv(netns, argv)
    if netns is None:
        return wrapped
    wrapped[0] = shutil.which(wrapped[0]) or wrapped[0]
    return wrapped


def launch_argv(spec: ContainerSpec) -> list[str]:
    """The full argv that starts ``spec``: ``ip netns exec`` around ``setpriv`` around it."""
    argv = list(spec.argv)
    if spec.run_as_uid is not None or spec.run_as_gid is not None:
        ids = [] if spec.run_as_uid is None else [f"--reuid={spec.run_as_uid}"]
        ids += [] if spec.run_as_gid is None else [f"--regid={spec.run_as_gid}"]
        argv = [shutil.which("setpriv") or "setpriv", *ids, "--clear-groups", "--", *argv]
    return in_netns(spec.netns, argv)


def _find_executable(command: str, env: Mapping[str, str], cwd: Path | None) -> None:
    """Raise :class:`_CannotStart` unless ``command`` resolves like ``execvp`` would find it."""
    base = cwd if cwd is not None else Path.cwd()
    if "/" in command:
        candidates = [base / command]
    else:
        candidates = [base / (entry or ".") / command for entry in env["PATH"].split(":")]
    denied = False
    for candidate in candidates:
        if candidate.is_file():
            if os.access(candidate, os.X_OK):
                return
            denied = True
    if denied:
        raise _CannotStart(StartFailure(126, f'exec: "{command}": permission denied'))
    what = "no such file or directory" if "/" in command else "executable file not found in $PATH"
    raise _CannotStart(StartFailure(127, f'exec: "{command}": {what}'))


def _failure_from_oserror(exc: OSError) -> StartFailure:
    if exc.errno == errno.ENOENT:
        code = 127
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC):
        code = 126
    else:
        code = 128
    return StartFailure(code, str(exc))


def _exit_code(returncode: int) -> int:
    """A wait status as Kubernetes reports it: ``128 + N`` for death by signal ``N``."""
    return 128 - returncode if returncode < 0 else returncode


class ContainerProcess:
    """One run of a container: start it, wait for it, stop it."""

    def __init__(self, spec: ContainerSpec) -> None:
        self.spec = spec
        self.start_failure: StartFailure | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._start_called = False
        self._started = asyncio.Event()

    @property
    def pid(self) -> int | None:
        """The process ID, once started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def exit_code(self) -> int | None:
        """The exit code once the run is over (a start failure counts), else ``None``."""
        if self.start_failure is not None:
            return self.start_failure.exit_code
        if self._proc is None or self._proc.returncode is None:
            return None
        return _exit_code(self._proc.returncode)

    async def start(self) -> None:
        """Start the process; a failure to start is recorded in :attr:`start_failure`."""
        if self._start_called:
            raise RuntimeError(f"container {self.spec.name!r} was already started")
        self._start_called = True
        spec = self.spec
        env = container_env(spec.env)
        try:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            _find_executable(spec.argv[0], env, spec.cwd)
            with spec.log_path.open("ab") as log:
                self._proc = await asyncio.create_subprocess_exec(
                    *launch_argv(spec),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=spec.cwd,
                    start_new_session=True,
                )
        except _CannotStart as exc:
            self._fail(exc.failure)
        except OSError as exc:
            self._fail(_failure_from_oserror(exc))
        finally:
            self._started.set()

    def _fail(self, failure: StartFailure) -> None:
        self.start_failure = failure
        with contextlib.suppress(OSError), self.spec.log_path.open("a") as log:
            log.write(f"failed to start container {self.spec.name!r}: {failure.message}\n")

    async def wait(self) -> int:
        """Wait for the process to end and return its exit code."""
        if not self._start_called:
            raise RuntimeError(f"container {self.spec.name!r} was not started")
        await self._started.wait()
        if self._proc is None:
            assert self.start_failure is not None
            return self.start_failure.exit_code
        return _exit_code(await self._proc.wait())

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process group, unless the process was already reaped."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signum)

    async def stop(self, grace: float) -> int:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds; return the exit code."""
        if not self._start_called:
            raise RuntimeError(f"container {self.spec.name!r} was not started")
        await self._started.wait()
        if self._proc is not None and self._proc.returncode is None:
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), grace)
            except TimeoutError:
                self.signal_group(signal.SIGKILL)
        return await self.wait()


class ContainerSupervisor:
    """Runs a container under its restart policy with the kubelet's exponential back-off."""

    def __init__(
        self,
        spec: ContainerSpec,
        *,
        on_change: Callable[[], None] | None = None,
        backoff_initial: float = 10.0,
        backoff_max: float = 300.0,
        backoff_reset_after: float = 600.0,
    ) -> None:
        self.spec = spec
        self.on_change = on_change
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_reset_after = backoff_reset_after
        self.restart_count = 0
        self.state = ContainerState("waiting", "ContainerCreating")
        self.last_state: ContainerState | None = None
        self.done = asyncio.Event()
        self._proc: ContainerProcess | None = None
        self._running = False
        self._stopping = False
        self._restart_reason: str | None = None
        self._wake = asyncio.Event()

    @property
    def pid(self) -> int | None:
        """The PID of the current run while it is running."""
        if self._proc is None or self._proc.exit_code is not None:
            return None
        return self._proc.pid

    def _set_state(self, state: ContainerState) -> None:
        self.state = state
        if self.on_change is not None:
            self.on_change()

    def _should_restart(self, exit_code: int, forced: bool) -> bool:
        policy = self.spec.restart_policy
        return policy == "Always" or (policy == "OnFailure" and (exit_code != 0 or forced))

    async def run(self) -> None:
        """Start the container and restart it as its policy says, until it is done for good."""
        if self._running:
            raise RuntimeError(f"container {self.spec.name!r} is already supervised")
        if self.done.is_set():
            return
        self._running = True
        loop = asyncio.get_running_loop()
        delay = self.backoff_initial
        try:
            while not self._stopping:
                proc = self._proc = ContainerProcess(self.spec)
                began = loop.time()
                await proc.start()
                started_at = time.time()
                if proc.start_failure is None:
                    self._set_state(ContainerState("running", started_at=started_at))
                exit_code = await proc.wait()
                forced, self._restart_reason = self._restart_reason, None
                self._set_state(self._terminated(proc, exit_code, forced, started_at))
                if self._stopping or not self._should_restart(exit_code, forced is not None):
                    break
                if loop.time() - began >= self.backoff_reset_after:
                    delay = self.backoff_initial
                await self._back_off(delay)
                delay = min(delay * 2, self.backoff_max)
                if not self._stopping:
                    self.restart_count += 1
        finally:
            if self._proc is not None:
                self._proc.signal_group(signal.SIGKILL)
            self._running = False
            self.done.set()

    def _terminated(
        self, proc: ContainerProcess, exit_code: int, forced: str | None, started_at: float
    ) -> ContainerState:
        if proc.start_failure is not None:
            return ContainerState(
                "terminated",
                "StartError",
                proc.start_failure.message,
                exit_code,
                started_at,
                started_at,
            )
        reason = "Completed" if exit_code == 0 else "Error"
        return ContainerState(
            "terminated", reason, forced or "", exit_code, started_at, time.time()
        )

    async def _back_off(self, delay: float) -> None:
        """Wait ``delay`` seconds in CrashLoopBackOff, or less if stopped meanwhile."""
        terminated, previous = self.state, self.last_state
        self.last_state = terminated
        message = f"back-off {delay:g}s restarting failed container={self.spec.name}"
        self._set_state(ContainerState("waiting", "CrashLoopBackOff", message))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)
        if self._stopping:
            self.last_state = previous
            self._set_state(terminated)

    async def restart(self, reason: str, grace: float = 30.0) -> None:
        """Stop the running container (e.g. failed liveness) so the loop restarts it.

        Under ``OnFailure`` it is restarted whatever its exit code; under ``Never`` it is not.
        """
        proc = self._proc
        if self._stopping or proc is None or proc.exit_code is not None:
            return
        self._restart_reason = reason
        await proc.stop(grace)

    async def stop(self, grace: float) -> None:
        """Stop the container for good (SIGTERM, SIGKILL after ``grace``); :meth:`run` returns."""
        self._stopping = True
        self._wake.set()
        if self._proc is not None:
            await self._proc.stop(grace)
        if self._running:
            await self.done.wait()
        else:
            self.done.set()


def read_log(path: Path, tail: int | None = None) -> str:
    """The log file's text (all of it, or its last ``tail`` lines); empty if it does not exist."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    if tail is None:
        return text
    return "".join(_LINE.findall(text)[-tail:]) if tail > 0 else ""


def _read_chunk(path: Path, position: int) -> tuple[int, bytes]:
    """Read from ``position`` (from 0 if the file shrank or is missing): (start, data)."""
    try:
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size < position:
                position = 0
            fh.seek(position)
            return position, fh.read(_LOG_CHUNK)
    except FileNotFoundError:
        return 0, b""


async def follow_log(path: Path, offset: int = 0, interval: float = 0.2) -> AsyncIterator[bytes]:
    """Yield the log file's bytes from ``offset`` on as it grows, until cancelled."""
    position = offset
    while True:
        position, chunk = _read_chunk(path, position)
        if chunk:
            position += len(chunk)
            yield chunk
        else:
            await asyncio.sleep(interval)  # polling interval of a file tail
