"""The cost of one active tap: one weft proxy on 127.0.0.1 with identity on, loaded at full speed
with nobody tapping and with one tap matching every request, in interleaved rounds.

The identity service runs in this process (as the integration tests run it) and certifies the
proxy and the tap client; the backends are bench/callgrind.py's. Per protocol and mode it
reports the requests per second ``h2load`` achieved through the proxy, the proxy's CPU per
request (from /proc), and, with the tap, how many events the client received per request and
how many the proxy dropped (``tap_events_dropped_total``). The tap client is a grpcio client in
this process, reading every event.

    .venv/bin/python bench/tap_load.py [--seconds 5] [--rounds 3]

Needs h2load; no root.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import grpc.aio

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.callgrind import GRPC_PATH, listening_socket  # noqa: E402
from harness.identity_service import (  # noqa: E402
    IDENTITY_SVC,
    NS,
    TAP,
    WEB,
    client_certificate,
    running,
)
from weft.api import tap_pb2, tap_pb2_grpc  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
LINE = re.compile(r"(inbound listener|outbound listener|tap server|admin server) on [\d.]+:(\d+)")
PROTOCOLS = ("h1", "grpc")


@dataclass
class Proxy:
    """The proxy process and its bound ports."""

    proc: subprocess.Popen[bytes]
    ports: dict[str, int]

    def cpu_seconds(self) -> float:
        """User and system CPU time so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


@asynccontextmanager
async def proxy(
    tmp: Path, anchors: bytes, identity_port: int, token: bytes
) -> AsyncIterator[Proxy]:
    """A proxy with identity and tap on, forwarding to the backends; ports read from its log."""
    h1, h2 = listening_socket(), listening_socket()
    fds = (h1.fileno(), h2.fileno())
    script = str(REPO_ROOT / "bench" / "callgrind.py")
    backend = subprocess.Popen([sys.executable, script, "--backend", *map(str, fds)], pass_fds=fds)
    token_file = tmp / "token"
    token_file.write_bytes(token)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LINKERD2_PROXY_LOG": "warn,weft=info",
        "LINKERD2_PROXY_INBOUND_LISTEN_ADDR": "127.0.0.1:0",
        "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR": "127.0.0.1:0",
        "LINKERD2_PROXY_ADMIN_LISTEN_ADDR": "127.0.0.1:0",
        "LINKERD2_PROXY_CONTROL_LISTEN_ADDR": "127.0.0.1:0",
        "LINKERD2_PROXY_INBOUND_FORWARD": f"127.0.0.1:{h1.getsockname()[1]}",
        "LINKERD2_PROXY_OUTBOUND_FORWARD": f"127.0.0.1:{h2.getsockname()[1]}",
        "LINKERD2_PROXY_IDENTITY_LOCAL_NAME": WEB,
        "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS": anchors.decode(),
        "LINKERD2_PROXY_IDENTITY_TOKEN_FILE": str(token_file),
        "LINKERD2_PROXY_IDENTITY_SVC_ADDR": f"127.0.0.1:{identity_port}",
        "LINKERD2_PROXY_IDENTITY_SVC_NAME": IDENTITY_SVC,
        "LINKERD2_PROXY_TAP_SVC_NAME": TAP,
    }
    log_path = tmp / "proxy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "weft", "proxy"], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while "proxy ready" not in text:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the proxy did not start:\n{text}")
            await asyncio.sleep(0.05)
            text = log_path.read_text()
        ports = {name.split()[0]: int(port) for name, port in LINE.findall(text)}
        yield Proxy(proc, ports)
    finally:
        proc.terminate()
        proc.wait(10)
        backend.terminate()
        backend.wait(10)
        h1.close()
        h2.close()


async def load(proto: str, port: int, seconds: int, body: Path, rate: int = 0) -> tuple[int, float]:
    """h2load for ``seconds``, at ``rate`` req/s (0: full speed): the requests that succeeded,
    and the rate achieved."""
    clients = 32 if proto == "h1" else 4
    args = ["-c", str(clients)]
    if rate:
        args += ["--rps", str(max(1, rate // clients))]
    if proto == "h1":
        args += ["--h1", "-m", "1", f"http://127.0.0.1:{port}/"]
    else:
        args += ["-m", "10", "-d", str(body)]
        args += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
        args.append(f"http://127.0.0.1:{port}{GRPC_PATH}")
    proc = await asyncio.create_subprocess_exec(
        "h2load", "-D", str(seconds), *args, stdout=asyncio.subprocess.PIPE
    )
    out = (await proc.communicate())[0].decode()
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    achieved = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if proc.returncode != 0 or done is None or achieved is None:
        raise RuntimeError(f"h2load failed:\n{out}")
    return int(done.group(1)), float(achieved.group(1))


async def dropped(http: aiohttp.ClientSession, admin: int) -> float:
    """``tap_events_dropped_total`` of the proxy."""
    async with http.get(f"http://127.0.0.1:{admin}/metrics") as rsp:
        text = await rsp.text()
    found = re.search(r"^tap_events_dropped_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        body = tmp / "req.bin"
        body.write_bytes(b"\x00\x00\x00\x00\x0a0123456789")
        async with AsyncExitStack() as stack:
            r = await stack.enter_async_context(running(tmp))
            p = await stack.enter_async_context(
                proxy(tmp, r.anchors_pem, r.port, r.token(NS, "web"))
            )
            key, chain = await client_certificate(r, TAP)
            creds = grpc.ssl_channel_credentials(r.anchors_pem, key, chain)
            channel = await stack.enter_async_context(
                grpc.aio.secure_channel(
                    f"127.0.0.1:{p.ports['tap']}",
                    creds,
                    options=[("grpc.ssl_target_name_override", WEB)],
                )
            )
            http = await stack.enter_async_context(aiohttp.ClientSession())
            ports = {"h1": p.ports["inbound"], "grpc": p.ports["outbound"]}
            for proto in PROTOCOLS:
                await load(proto, ports[proto], 1, body)  # warm up
            results: dict[tuple[str, int, str], list[tuple[float, float, float, float]]] = {}
            for round_no in range(args.rounds):
                modes = ("idle", "tapped") if round_no % 2 == 0 else ("tapped", "idle")
                for proto in PROTOCOLS:
                    for rate in (0, args.rate):
                        for mode in modes:
                            found = await measure(
                                channel, http, p, proto, ports[proto], mode, rate, args, body
                            )
                            results.setdefault((proto, rate, mode), []).append(found)
                            say(round_no, proto, rate, mode, found)
    print(f"one proxy, loopback, identity on; medians of {args.rounds} rounds of {args.seconds} s")
    for proto in PROTOCOLS:
        for rate in (0, args.rate):
            idle = results[(proto, rate, "idle")]
            tapped = results[(proto, rate, "tapped")]
            rps = [statistics.median(x[0] for x in runs) for runs in (idle, tapped)]
            cpu = [statistics.median(x[1] for x in runs) for runs in (idle, tapped)]
            events = statistics.median(x[2] for x in tapped)
            drops = statistics.median(x[3] for x in tapped)
            print(
                f"{proto:<4} {'max' if not rate else f'{rate}/s':>7}: nobody tapping "
                f"{rps[0]:>7,.0f} req/s {cpu[0]:5.1f} µs CPU/req | one tap {rps[1]:>7,.0f} req/s "
                f"({rps[1] / rps[0]:.0%}) {cpu[1]:5.1f} µs CPU/req, {events:.2f} events "
                f"received and {drops:.2f} dropped per request"
            )


def say(
    round_no: int, proto: str, rate: int, mode: str, found: tuple[float, float, float, float]
) -> None:
    """Progress on stderr."""
    rps, cpu, events, drops = found
    line = f"round {round_no + 1} {proto} {rate or 'max'} {mode}: {rps:,.0f} req/s, {cpu:.1f} µs"
    if mode == "tapped":
        line += f", {events:.2f} events and {drops:.2f} dropped per request"
    print(line, file=sys.stderr, flush=True)


async def measure(
    channel: grpc.aio.Channel,
    http: aiohttp.ClientSession,
    p: Proxy,
    proto: str,
    port: int,
    mode: str,
    rate: int,
    args: argparse.Namespace,
    body: Path,
) -> tuple[float, float, float, float]:
    """(req/s, µs CPU per request, events received and dropped per request) of one run."""
    received = 0
    drops = await dropped(http, p.ports["admin"])
    reader = None
    call = None
    if mode == "tapped":
        stub = tap_pb2_grpc.TapStub(channel)  # type: ignore[no-untyped-call]
        call = stub.Observe(tap_pb2.ObserveRequest(limit=2**32 - 1))
        await call.initial_metadata()  # the proxy answers once the tap is registered

        async def read() -> None:
            nonlocal received
            async for _ in call:
                received += 1

        reader = asyncio.create_task(read())
    cpu = p.cpu_seconds()
    done, rps = await load(proto, port, args.seconds, body, rate)
    cpu = p.cpu_seconds() - cpu
    if call is not None and reader is not None:
        # Events still queued in the proxy arrive after the load: read until they stop.
        deadline = time.monotonic() + 10
        last = -1
        while received != last and time.monotonic() < deadline:
            last = received
            await asyncio.sleep(0.3)
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    drops = await dropped(http, p.ports["admin"]) - drops
    return rps, cpu / done * 1e6, received / done, drops / done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rate", type=int, default=2000, help="the fixed rate (req/s) also measured"
    )
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
