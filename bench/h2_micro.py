"""Micro-benchmark of the HTTP/2 forwarder: h2load -> hop(s) -> a gRPC-shaped h2c backend.

Every part is its own process on 127.0.0.1: ``h2load`` sends unary gRPC-shaped POSTs, each hop is
weft's ``serve_http2`` behind a bare acceptor (or haproxy, for reference), and the backend
answers every request with response headers, a 15-byte gRPC message and ``grpc-status: 0``
trailers. The hops' CPU time (from /proc) divided by the requests gives µs CPU per request per
hop. With ``--rps`` the load is paced and the latency percentiles are reported, next to those of
the backend alone, so the added latency can be read off.

    .venv/bin/python bench/h2_micro.py                      # throughput, one weft hop
    .venv/bin/python bench/h2_micro.py --hops 2             # an outbound -> inbound pair
    .venv/bin/python bench/h2_micro.py --proxy haproxy      # the same through haproxy
    .venv/bin/python bench/h2_micro.py --hops 2 --rps 1000  # added latency at 1000 req/s
    .venv/bin/python bench/h2_micro.py --body 300000 -n 3000  # large request bodies
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from weft.proxy.h2 import frames as fr
from weft.proxy.h2.hpack_codec import encode_block

CLK_TCK = os.sysconf("SC_CLK_TCK")
MESSAGE = b"\x00\x00\x00\x00\x0a" + b"0123456789"  # a gRPC frame: not compressed, 10 bytes


# --- roles run in child processes ---------------------------------------------------------------


class Backend(fr.FrameReader, asyncio.Protocol):
    """Answers each request once its END_STREAM arrives (request headers are not decoded)."""

    HEAD = encode_block([(b":status", b"200"), (b"content-type", b"application/grpc")])
    TRAILERS = encode_block([(b"grpc-status", b"0")])

    def __init__(self) -> None:
        super().__init__()
        self.transport: asyncio.Transport | None = None
        self.preface = True
        self.out: list[bytes] = []
        self.consumed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(
            fr.settings_frame([(fr.SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24)])
            + fr.window_update(0, 1 << 30)
        )

    def data_received(self, data: bytes) -> None:
        if self.preface:
            self.preface = False
            data = data[len(fr.PREFACE) :]
        self.feed(data)
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
            self.out.clear()

    def respond(self, sid: int) -> None:
        self.out.append(fr.headers_frames(sid, self.HEAD, False, fr.DEFAULT_MAX_FRAME))
        self.out.append(fr.data_frame(sid, MESSAGE))
        self.out.append(fr.headers_frames(sid, self.TRAILERS, True, fr.DEFAULT_MAX_FRAME))

    def on_headers(self, sid: int, block: bytes, end: bool) -> None:
        if end:
            self.respond(sid)

    def on_data(self, sid: int, payload: memoryview, end: bool, flow_len: int) -> None:
        self.consumed += flow_len
        if self.consumed > 1 << 29:
            self.out.append(fr.window_update(0, self.consumed))
            self.consumed = 0
        if end:
            self.respond(sid)

    def on_settings(self, settings: list[tuple[int, int]]) -> None:
        self.out.append(fr.SETTINGS_ACK)

    def on_ping(self, opaque: bytes) -> None:
        self.out.append(fr.ping_ack(opaque))


async def run_backend(fd: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Backend, sock=socket.socket(fileno=fd), backlog=1024)
    await server.serve_forever()


async def run_weft_hop(fd: int, target: int) -> None:
    from weft.proxy.config import ProxyConfig
    from weft.proxy.context import ConnContext, ConnTracker, InFlight
    from weft.proxy.deadlines import Deadlines
    from weft.proxy.downgrade import AppConn
    from weft.proxy.http1 import H1Pool, H1Upstream
    from weft.proxy.http2 import H2Pool, serve_http2
    from weft.proxy.metrics import ProxyMetrics
    from weft.proxy.routing import OriginalDestination
    from weft.proxy.tap.registry import Taps
    from weft.proxy.tls import Dialer

    config = ProxyConfig.from_env({"LINKERD2_PROXY_IDENTITY_DISABLED": "1"})
    metrics = ProxyMetrics(config.metrics_retain_idle)
    tracker = ConnTracker()
    h1_pool: H1Pool[H1Upstream] = H1Pool()
    downgrade_pool: H1Pool[AppConn] = H1Pool()
    h2_pool = H2Pool()
    router = OriginalDestination()
    taps = Taps()
    in_flight = InFlight(config.inbound.max_in_flight)
    deadlines = Deadlines()
    tls = (("tls", "disabled"),)

    class Accept(asyncio.Protocol):
        def __init__(self) -> None:
            self.buf = b""
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            self.buf += data
            if len(self.buf) >= len(fr.PREFACE) and self.transport is not None:
                ctx = ConnContext(
                    direction="inbound",
                    config=config,
                    dcfg=config.inbound,
                    metrics=metrics,
                    router=router,
                    tracker=tracker,
                    h1_pool=h1_pool,
                    h2_pool=h2_pool,
                    downgrade_pool=downgrade_pool,
                    peer=("127.0.0.1", 0),
                    orig_dst=None,
                    target=("127.0.0.1", target),
                    tls=tls,
                    stats=metrics.tcp.stats((("direction", "inbound"), ("peer", "src"))).open(),
                    dialer=Dialer(None, outbound=False),
                    taps=taps,
                    in_flight=in_flight,
                    deadlines=deadlines,
                )
                ctx.stats.read += len(self.buf)
                serve_http2(self.transport, ctx, self.buf)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Accept, sock=socket.socket(fileno=fd), backlog=1024)
    await server.serve_forever()


def child_main(argv: list[str]) -> None:
    """A role on the listening socket it inherited as file descriptor ``argv[1]``."""
    import uvloop

    role, fd, target = argv[0], int(argv[1]), int(argv[2])
    if role == "backend":
        uvloop.run(run_backend(fd))
    else:
        uvloop.run(run_weft_hop(fd, target))


# --- the driver ---------------------------------------------------------------------------------


def listener() -> socket.socket:
    """A listening loopback socket on a port of its own, for a child process to inherit."""
    return socket.create_server(("127.0.0.1", 0), backlog=1024)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def haproxy_config(fd: int, target: int) -> str:
    return f"""global
    nbthread 1
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend fe
    bind fd@{fd} proto h2
    default_backend be
backend be
    server s1 127.0.0.1:{target} proto h2
"""


def start(argv: list[str], sock: socket.socket) -> subprocess.Popen[bytes]:
    """Run ``argv`` with ``sock`` inherited (same descriptor number), then close our copy."""
    with sock:
        return subprocess.Popen(argv, pass_fds=(sock.fileno(),))


def start_hop(kind: str, sock: socket.socket, target: int, tmp: Path) -> subprocess.Popen[bytes]:
    fd = sock.fileno()
    if kind == "haproxy":
        cfg = tmp / f"haproxy-{sock.getsockname()[1]}.cfg"  # fds are reused; ports are not
        cfg.write_text(haproxy_config(fd, target))
        return start(["haproxy", "-db", "-f", str(cfg)], sock)
    return start([sys.executable, __file__, "--child", "hop", str(fd), str(target)], sock)


def h2load(args: argparse.Namespace, port: int, tmp: Path, log: Path | None) -> tuple[float, int]:
    """Run h2load; returns (req/s, succeeded requests)."""
    body = tmp / "req.bin"
    size = max(args.body, 5)
    body.write_bytes(b"\x00" + (size - 5).to_bytes(4, "big") + b"x" * (size - 5))
    cmd = [
        "h2load",
        "-c",
        str(args.clients),
        "-m",
        str(args.streams),
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
    ]
    if args.rps:
        cmd += ["--rps", str(max(1, args.rps // args.clients)), "-D", str(args.duration)]
    else:
        cmd += ["-n", str(args.requests)]
    if log is not None:
        cmd += ["--log-file", str(log)]
    cmd.append(f"http://127.0.0.1:{port}/bench.Echo/Say")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if rate is None or done is None:
        raise RuntimeError(f"cannot parse h2load output:\n{out}")
    return float(rate.group(1)), int(done.group(1))


def percentiles(log: Path) -> tuple[float, float]:
    """p50 and p99 request durations (ms) from an h2load log file."""
    durations = sorted(int(line.split("\t")[2]) / 1000.0 for line in log.read_text().splitlines())
    q = statistics.quantiles(durations, n=100)
    return q[49], q[98]


def run(args: argparse.Namespace) -> None:
    if args.proxy == "haproxy" and shutil.which("haproxy") is None:
        sys.exit("haproxy is not installed")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            # Each listening socket is bound here and inherited by the process that serves it.
            sock = listener()
            backend = sock.getsockname()[1]
            argv = [sys.executable, __file__, "--child", "backend", str(sock.fileno()), "0"]
            procs.append(start(argv, sock))
            entry = backend
            hops: list[subprocess.Popen[bytes]] = []
            for _ in range(args.hops if args.proxy != "none" else 0):
                sock = listener()
                port = sock.getsockname()[1]
                hop = start_hop(args.proxy, sock, entry, tmp)
                procs.append(hop)
                hops.append(hop)
                entry = port
            # One request through the chain: every process has started before CPU is counted.
            warm_up = argparse.Namespace(**{**vars(args), "rps": 0, "requests": 1, "clients": 1})
            h2load(warm_up, entry, tmp, None)
            baseline = None
            if args.rps:
                log = tmp / "direct.log"
                h2load(args, backend, tmp, log)
                baseline = percentiles(log)
            log = tmp / "proxied.log"
            before = sum(cpu_seconds(p.pid) for p in hops)
            rate, done = h2load(args, entry, tmp, log if args.rps else None)
            cpu = sum(cpu_seconds(p.pid) for p in hops) - before
            hop_count = len(hops)
            label = f"{args.proxy} x{hop_count}" if hop_count else "backend only"
            print(f"{label}: {done} requests, {rate:.0f} req/s", end="")
            if hop_count:
                per = cpu / done / hop_count * 1e6
                print(f", {per:.1f} µs CPU per request per hop ({cpu:.2f} s CPU)", end="")
            print()
            if baseline is not None:
                p50, p99 = percentiles(log)
                print(
                    f"latency at {args.rps} req/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms; backend "
                    f"alone p50 {baseline[0]:.2f} ms, p99 {baseline[1]:.2f} ms; added p50 "
                    f"{p50 - baseline[0]:.2f} ms"
                )
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proxy", choices=("weft", "haproxy", "none"), default="weft")
    parser.add_argument("--hops", type=int, default=1)
    parser.add_argument("-n", "--requests", type=int, default=50000)
    parser.add_argument("-c", "--clients", type=int, default=10)
    parser.add_argument("-m", "--streams", type=int, default=10)
    parser.add_argument("--body", type=int, default=15, help="request body bytes (gRPC frame)")
    parser.add_argument("--rps", type=int, default=0, help="paced total rate (latency mode)")
    parser.add_argument("-D", "--duration", type=int, default=10, help="seconds, with --rps")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
