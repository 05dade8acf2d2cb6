"""Load patterns, the wrk and h2load command lines that produce them, and their results.

Fixed-rate loads use ``h2load --rps`` (HTTP/1.1 with ``--h1``). h2load starts every client's
rate timer at the same instant, so all clients send together: bursts of ``-c`` requests, which
inflate latency (measured: a 1 ms floor with 50 clients against a 30 µs server). The clients are
therefore started one per ``1/rate`` seconds (``-r``/``--rate-period``), which spreads the sends
evenly. Latency comes from h2load's per-request log, measured from the actual send, so a target
that falls behind is not corrected for coordinated omission: the achieved rate tells.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

H1 = "h1"
H2 = "h2"
H1_RATE_CONNECTIONS = 50
H1_MAX_CONNECTIONS = 32
GRPC_CONNECTIONS = 4
GRPC_STREAMS = 10
GRPC_PATH = "/bench.v1.Echo/Say"
GRPC_HEADERS = ("content-type: application/grpc", "te: trailers", ":method: POST")
GRPC_MESSAGE_BYTES = 1024

# Runs ``argv`` in the client pod with a timeout in seconds.
Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess[str]]

_WRK_SCRIPT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us": %d, "requests": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d, "p50": %d, "p99": %d, "p999": %d}\\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
"""
_H2LOAD_RPS = re.compile(r"finished in [\d.]+s, ([\d.]+) req/s")
_H2LOAD_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed"
)
_H2LOAD_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and why."""


def grpc_frame() -> bytes:
    """A gRPC length-prefixed message: a 1 KiB protobuf (field 1, a string)."""
    text = b"x" * (GRPC_MESSAGE_BYTES - 3)
    message = b"\x0a" + bytes([0x80 | (len(text) & 0x7F), len(text) >> 7]) + text
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass(frozen=True)
class Load:
    """One load pattern: a protocol and a fixed request rate, or ``None`` for the maximum."""

    proto: str
    rate: int | None

    @property
    def key(self) -> str:
        """``h1@1000``, ``grpc@max``, ..."""
        return f"{'h1' if self.proto == H1 else 'grpc'}@{self.rate or 'max'}"

    @property
    def label(self) -> str:
        """Human-readable: ``h1 1000/s``, ``grpc max``."""
        return f"{'h1' if self.proto == H1 else 'grpc'} {f'{self.rate}/s' if self.rate else 'max'}"


LOADS = (
    Load(H1, 200),
    Load(H1, 1000),
    Load(H1, 2000),
    Load(H1, None),
    Load(H2, 1000),
    Load(H2, None),
)


@dataclass
class Outcome:
    """What a load run measured (latency in milliseconds)."""

    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    errors: int
    non_2xx: int


def percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile ``q`` (0-100) of an ascending, non-empty sequence."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def stagger(rate: int) -> tuple[int, int]:
    """``(clients, milliseconds)`` for ``-r``/``--rate-period``: one client per 1/rate s."""
    per_period = max(1, math.ceil(rate / 1000))
    return per_period, max(1, round(1000 * per_period / rate))


class LoadGen:
    """Runs loads from the client pod; its scratch files live in ``workdir``."""

    def __init__(self, run: Runner, workdir: Path) -> None:
        self._run = run
        self.workdir = workdir
        self.wrk_script = workdir / "wrk-done.lua"
        self.wrk_script.write_text(_WRK_SCRIPT)
        self.grpc_request = workdir / "grpc-request.bin"
        self.grpc_request.write_bytes(grpc_frame())
        self._serial = 0

    def measure(self, load: Load, url: str, seconds: int) -> Outcome:
        """Apply ``load`` to ``url`` for about ``seconds`` seconds."""
        if load.proto == H1 and load.rate is None:
            return self._wrk(url, seconds)
        self._serial += 1
        log = self.workdir / f"h2load-{self._serial}.log"
        argv = ["h2load", "-t", "1", "--log-file", str(log)]
        if load.proto == H1:
            conns = H1_RATE_CONNECTIONS
            argv += ["--h1", "-c", str(conns)]
        else:
            conns = GRPC_CONNECTIONS
            argv += self._grpc_args()
        if load.rate is None:
            argv += ["-D", str(seconds)]
        else:
            clients, period_ms = stagger(load.rate)
            argv += ["--rps", f"{load.rate / conns:g}", "-r", str(clients)]
            argv += ["--rate-period", f"{period_ms}ms", "-n", str(load.rate * seconds)]
        # A proxy that falls behind stretches an -n run; allow a third of the target rate.
        stdout = self._check([*argv, url], 3 * seconds + 20)
        return parse_h2load(stdout, log)

    def warm_up(self, proto: str, url: str) -> None:
        """A short unmeasured run, so that pools and caches are warm."""
        if proto == H1:
            self._check(["wrk", "-t1", f"-c{H1_MAX_CONNECTIONS}", "-d1s", url], 30)
        else:
            self._check(["h2load", "-t", "1", "-n", "2000", *self._grpc_args(), url], 30)

    def _grpc_args(self) -> list[str]:
        argv = ["-c", str(GRPC_CONNECTIONS), "-m", str(GRPC_STREAMS)]
        argv += ["-d", str(self.grpc_request)]
        for header in GRPC_HEADERS:
            argv += ["-H", header]
        return argv

    def _wrk(self, url: str, seconds: int) -> Outcome:
        argv = [
            "wrk",
            "-t1",
            f"-c{H1_MAX_CONNECTIONS}",
            f"-d{seconds}s",
            "-s",
            str(self.wrk_script),
        ]
        stdout = self._check([*argv, url], seconds + 30)
        return parse_wrk(stdout)

    def _check(self, argv: list[str], timeout: float) -> str:
        try:
            done = self._run(argv, timeout)
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"{argv[0]} did not finish within {timeout:.0f}s") from exc
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise BenchError(f"{argv[0]} exited with status {done.returncode}: {tail}")
        return done.stdout


def parse_wrk(stdout: str) -> Outcome:
    """The outcome from wrk's output with our ``done`` hook's ``WRKJSON`` line."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no summary: {stdout.strip()[-200:]}")
    data = json.loads(line[len("WRKJSON ") :])
    seconds = data["duration_us"] / 1e6
    requests = data["requests"]
    return Outcome(
        requests=requests,
        rps=requests / seconds if seconds else 0.0,
        p50_ms=data["p50"] / 1000 if requests else None,
        p99_ms=data["p99"] / 1000 if requests else None,
        p999_ms=data["p999"] / 1000 if requests else None,
        errors=sum(data[k] for k in ("connect", "read", "write", "timeout")),
        non_2xx=data["status"],
    )


def parse_h2load(stdout: str, log: Path) -> Outcome:
    """The outcome from h2load's summary and its per-request log (2xx latencies only)."""
    rps = _H2LOAD_RPS.search(stdout)
    requests = _H2LOAD_REQUESTS.search(stdout)
    status = _H2LOAD_STATUS.search(stdout)
    if not (rps and requests and status):
        raise BenchError(f"unexpected h2load output: {stdout.strip()[-200:]}")
    latencies: list[int] = []
    if log.exists():
        with log.open() as fh:
            for row in fh:
                fields = row.split("\t")  # start time, status, microseconds to the end
                if fields[1].startswith("2"):
                    latencies.append(int(fields[2]))
    latencies.sort()

    def pct(q: float) -> float | None:
        return percentile(latencies, q) / 1000 if latencies else None

    return Outcome(
        requests=int(requests.group(3)),
        rps=float(rps.group(1)),
        p50_ms=pct(50),
        p99_ms=pct(99),
        p999_ms=pct(99.9),
        errors=int(requests.group(5)),
        non_2xx=sum(int(status.group(i)) for i in (2, 3, 4)),
    )
