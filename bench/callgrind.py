"""Instructions per request in one weft proxy process, counted by valgrind's callgrind.

Wall-clock figures on a shared machine move with whatever else runs; the number of instructions
the proxy executes per request does not. One proxy runs under ``valgrind --tool=callgrind`` on
127.0.0.1 with identity off, its inbound listener forwarding to an HTTP/1.1 backend and its
outbound listener to a gRPC-shaped h2c backend (both small Python servers in a child process).
For each protocol ``h2load`` (one connection, one request at a time) sends ``--warmup``
requests, the counters are zeroed (``callgrind_control -z``), ``--requests`` more are sent and
the counters dumped: the proxy's instructions (user space: Python, its extensions, libc) over
those requests, divided by their number.

``--pair`` measures a client's and a server's proxy instead, in one process with mTLS between
them (``bench/pair_proxy.py``): HTTP/1.1 through the pair (carried as HTTP/2 where the revision
has orig-proto) and gRPC through the pair; the figures are per request for both proxies, so
half of one is a proxy's share.

``--checkout DIR`` measures the weft in another worktree (its ``.venv``), so two revisions are
compared with the same backends and client; ``--rounds`` alternates between the checkouts given.

    .venv/bin/python bench/callgrind.py --checkout /work/wt/tap-before --checkout . --rounds 3
    .venv/bin/python bench/callgrind.py --pair --checkout /work/wt/before --checkout .
    .venv/bin/python bench/callgrind.py --pair --routed --clients 32 --requests 4000

Needs valgrind (callgrind_control) and h2load; no root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

REPO_ROOT = Path(__file__).resolve().parents[1]
LISTENERS = (("h1", "inbound"), ("grpc", "outbound"))  # the listener each protocol is sent to
sys.path.insert(0, str(REPO_ROOT))

from bench.h2_micro import Backend as H2Backend  # noqa: E402

H1_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 29\r\n\r\nhello from the weft benchmark"
GRPC_PATH = "/bench.Echo/Say"
START_TIMEOUT = 300.0  # Python's start-up under valgrind is slow
# ``python -m weft`` with the cyclic garbage collector off (see --no-gc).
NO_GC = "import gc, runpy; gc.disable(); runpy.run_module('weft', run_name='__main__')"
LISTENER_LINE = re.compile(r"(inbound|outbound) listener on 127\.0\.0\.1:(\d+)")
PAIR_LINE = re.compile(r"(h1|grpc) pair on 127\.0\.0\.1:(\d+)")


# --- the backends (a child process) ---------------------------------------------------------


class H1Backend(asyncio.Protocol):
    """Answers every request head (requests have no body) with a fixed 200."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        heads = self.buf.count(b"\r\n\r\n")
        if heads and self.transport is not None:
            self.buf = self.buf[self.buf.rindex(b"\r\n\r\n") + 4 :]
            self.transport.write(H1_RESPONSE * heads)


async def serve_backends(h1: socket.socket, h2: socket.socket) -> None:
    """Serve HTTP/1.1 on ``h1`` and h2c on ``h2`` (sockets bound by the driver)."""
    loop = asyncio.get_running_loop()
    await loop.create_server(H1Backend, sock=h1)
    server = await loop.create_server(H2Backend, sock=h2)
    await server.serve_forever()


def backend_main(h1_fd: int, h2_fd: int) -> None:
    """Entry point of the backend child: serve the two inherited listening sockets."""
    import uvloop

    uvloop.run(serve_backends(socket.socket(fileno=h1_fd), socket.socket(fileno=h2_fd)))


# --- the driver -----------------------------------------------------------------------------


def listening_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1, port chosen by the kernel."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    sock.set_inheritable(True)
    return sock


class Proxy:
    """``<checkout>/.venv/bin/python -m weft proxy`` under callgrind, instrumentation off (with
    ``pair``: ``bench/pair_proxy.py``, two proxy pairs)."""

    def __init__(
        self,
        checkout: Path,
        h1: int,
        h2: int,
        workdir: Path,
        no_gc: bool,
        pair: bool = False,
        routed: bool = False,
    ) -> None:
        self.checkout = checkout
        self.lines = PAIR_LINE if pair else LISTENER_LINE
        self.log_path = workdir / f"proxy-{checkout.name}.log"
        self.out_prefix = workdir / f"callgrind-{checkout.name}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONHASHSEED": "0",
            "LINKERD2_PROXY_IDENTITY_DISABLED": "1",
            "LINKERD2_PROXY_LOG": "warn,weft=info",
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR": "127.0.0.1:0",
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR": "127.0.0.1:0",
            "LINKERD2_PROXY_ADMIN_LISTEN_ADDR": "127.0.0.1:0",
            "LINKERD2_PROXY_INBOUND_FORWARD": f"127.0.0.1:{h1}",
            "LINKERD2_PROXY_OUTBOUND_FORWARD": f"127.0.0.1:{h2}",
        }
        if pair:
            program = [str(REPO_ROOT / "bench" / "pair_proxy.py"), str(checkout), str(h1), str(h2)]
            program += ["--routed"] if routed else []
        else:
            program = [*(["-c", NO_GC] if no_gc else ["-m", "weft"]), "proxy"]
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={self.out_prefix}.%p",
            str(checkout / ".venv" / "bin" / "python"),
            *program,
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=checkout, env=env, stdout=log, stderr=log)
        self.ports: dict[str, int] = {}

    def wait_listening(self) -> None:
        """Wait until both listeners (or pairs) have logged their addresses."""
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.ports) < 2:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"proxy did not start:\n{self.log_path.read_text()}")
            for direction, port in self.lines.findall(self.log_path.read_text()):
                self.ports[direction] = int(port)
            time.sleep(0.2)

    def control(self, *args: str) -> None:
        """``callgrind_control <args> <pid>``."""
        subprocess.run(
            ["callgrind_control", *args, str(self.proc.pid)],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def dump(self) -> int:
        """Dump the counters; the instructions counted since they were last zeroed."""
        before = set(self.out_prefix.parent.glob(f"{self.out_prefix.name}.*"))
        self.control("-d")
        deadline = time.monotonic() + 120
        while True:
            new = set(self.out_prefix.parent.glob(f"{self.out_prefix.name}.*")) - before
            for path in new:
                text = path.read_text(errors="replace")
                found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
                if found:
                    return int(found.group(1))
            if time.monotonic() > deadline:
                raise TimeoutError("callgrind wrote no dump")
            time.sleep(0.2)

    def stop(self) -> None:
        """Terminate the proxy."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def h2load(proto: str, port: int, requests: int, body: Path, clients: int = 1) -> None:
    """``requests`` requests over ``clients`` connections, one at a time on each; fails unless
    all succeed."""
    cmd = ["h2load", "-n", str(requests), "-c", str(clients), "-m", "1"]
    if proto == "h1":
        cmd += ["--h1", f"http://127.0.0.1:{port}/"]
    else:
        cmd += ["-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
        cmd.append(f"http://127.0.0.1:{port}{GRPC_PATH}")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800).stdout
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    if done is None or int(done.group(1)) != requests:
        raise RuntimeError(f"h2load: not every request succeeded:\n{out}")


def measure(
    checkout: Path, args: argparse.Namespace, h1: int, h2: int, workdir: Path
) -> dict[str, float]:
    """Instructions per request of one proxy from ``checkout``, per protocol."""
    body = workdir / "req.bin"
    body.write_bytes(b"\x00\x00\x00\x00\x0a0123456789")
    proxy = Proxy(checkout, h1, h2, workdir, args.no_gc, args.pair, args.routed)
    try:
        proxy.wait_listening()
        proxy.control("-i", "on")
        result = {}
        ports = (("h1", "h1"), ("grpc", "grpc")) if args.pair else LISTENERS
        for proto, direction in ports:
            h2load(proto, proxy.ports[direction], args.warmup, body, args.clients)
            proxy.control("-z")
            h2load(proto, proxy.ports[direction], args.requests, body, args.clients)
            result[proto] = proxy.dump() / args.requests
        return result
    finally:
        proxy.stop()


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--backend":
        backend_main(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkout",
        type=Path,
        action="append",
        help="a weft worktree with its .venv (repeatable; default: this one)",
    )
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per protocol")
    parser.add_argument("--warmup", type=int, default=500, help="requests before counting")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per checkout")
    parser.add_argument(
        "--clients",
        type=int,
        default=1,
        help="concurrent h2load connections (one request at a time on each): with more than one, "
        "what the proxies batch per turn of their event loop is counted too",
    )
    parser.add_argument(
        "--pair", action="store_true", help="a client's and a server's proxy (mTLS) per request"
    )
    parser.add_argument(
        "--routed",
        action="store_true",
        help="with --pair: the client's proxy follows a ServiceProfile (route match, route_* "
        "series, a route timeout per request), as bench/mtls.py's routed path does",
    )
    parser.add_argument(
        "--no-gc",
        action="store_true",
        help="run the proxy with the cyclic GC off: its collections' share of a request depends "
        "on how many objects the whole process holds, which any code change moves",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument(
        "--dumps", type=Path, help="keep callgrind's dumps here (for callgrind_annotate)"
    )
    args = parser.parse_args(argv)
    if args.routed and not args.pair:
        parser.error("--routed needs --pair")
    missing = [t for t in ("valgrind", "callgrind_control", "h2load") if shutil.which(t) is None]
    if missing:
        print(f"callgrind.py: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    checkouts = [c.resolve() for c in (args.checkout or [REPO_ROOT])]
    for checkout in checkouts:
        if not (checkout / ".venv" / "bin" / "python").exists():
            print(
                f"callgrind.py: {checkout} has no .venv (run scripts/setup there)", file=sys.stderr
            )
            return 2
    h1, h2 = listening_socket(), listening_socket()
    backend = subprocess.Popen(
        [sys.executable, __file__, "--backend", str(h1.fileno()), str(h2.fileno())],
        pass_fds=(h1.fileno(), h2.fileno()),
    )
    results: dict[str, list[dict[str, float]]] = {str(c): [] for c in checkouts}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp) if args.dumps is None else args.dumps
            workdir.mkdir(parents=True, exist_ok=True)
            for round_no in range(args.rounds):
                for checkout in checkouts:
                    found = measure(
                        checkout, args, h1.getsockname()[1], h2.getsockname()[1], workdir
                    )
                    results[str(checkout)].append(found)
                    print(
                        f"round {round_no + 1} {checkout}: "
                        + ", ".join(f"{k} {v:,.0f} instructions/request" for k, v in found.items()),
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        backend.terminate()
        backend.wait(10)
        h1.close()
        h2.close()
    for checkout, rounds in results.items():
        for proto in ("h1", "grpc"):
            values = [r[proto] for r in rounds]
            spread = f" (min {min(values):,.0f}, max {max(values):,.0f})" if len(values) > 1 else ""
            print(f"{checkout} {proto}: median {statistics.median(values):,.0f} instr/req{spread}")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
