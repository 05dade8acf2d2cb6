"""CPU cost of opaque TCP through a weft proxy pair, plaintext against mTLS.

An outbound and an inbound listener run in this process (``harness/proxy_pair.py``), on loopback;
the echo server and the client are separate processes, so this process's CPU time is the two
proxies' alone. Two loads over one connection each:

- ``pingpong``: 100-byte messages, one at a time (the shape of a request and its response);
- ``bulk``: 64 KiB chunks sent while the echo comes back (a transfer).

```
.venv/bin/python bench/opaque_pair.py             # both loads, mTLS and plaintext
.venv/bin/python bench/opaque_pair.py --rounds 5  # medians of 5 interleaved rounds
```
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time

import uvloop

from harness.proxy_pair import ProxyPair

PINGPONG_MESSAGES = 20000
BULK_CHUNKS = 3000
MESSAGE = 100
CHUNK = 65536


def echo_server() -> None:
    """Echo every connection's bytes back; prints the bound port first."""
    srv = socket.create_server(("127.0.0.1", 0))
    print(srv.getsockname()[1], flush=True)

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(1 << 20):
                conn.sendall(data)

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def client(port: int, load: str) -> None:
    """Run ``load`` against 127.0.0.1:``port``; prints the seconds it took."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.monotonic()
    if load == "pingpong":
        message = b"x" * MESSAGE
        for _ in range(PINGPONG_MESSAGES):
            sock.sendall(message)
            got = 0
            while got < MESSAGE:
                got += len(sock.recv(MESSAGE - got))
    else:
        total = BULK_CHUNKS * CHUNK

        def read() -> None:
            got = 0
            while got < total:
                got += len(sock.recv(1 << 20))

        reader = threading.Thread(target=read)
        reader.start()
        chunk = b"y" * CHUNK
        for _ in range(BULK_CHUNKS):
            sock.sendall(chunk)
        reader.join()
    print(time.monotonic() - started)


async def measure(load: str, mtls: bool) -> tuple[float, float]:
    """(operations per second, proxy CPU µs per operation) of one run."""
    me = [sys.executable, __file__]
    echo = subprocess.Popen([*me, "--echo"], stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout is not None
        port = int(echo.stdout.readline())
        pair = await ProxyPair(("127.0.0.1", port), mtls=mtls, opaque=True).start()
        before = resource.getrusage(resource.RUSAGE_SELF)
        proc = await asyncio.create_subprocess_exec(
            *me, "--client", str(pair.outbound[1]), load, stdout=subprocess.PIPE
        )
        out, _ = await proc.communicate()
        after = resource.getrusage(resource.RUSAGE_SELF)
        await pair.close()
    finally:
        echo.kill()
        echo.wait()
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    n = PINGPONG_MESSAGES if load == "pingpong" else BULK_CHUNKS
    return n / float(out), cpu / n * 1e6


def main() -> None:
    """Interleaved rounds of every load, mTLS and plaintext; medians printed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo:
        echo_server()
        return
    if args.client:
        client(int(args.client[0]), args.client[1])
        return
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for load in ("pingpong", "bulk"):
            for mtls in (True, False):
                key = (load, "mtls" if mtls else "plaintext")
                results.setdefault(key, []).append(uvloop.run(measure(load, mtls)))
    unit = {"pingpong": f"{MESSAGE}-byte round trip", "bulk": f"{CHUNK // 1024} KiB each way"}
    for (load, mode), runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{load:8} {mode:9} {rate:8.0f}/s  proxy pair CPU {cpu:6.1f} µs per {unit[load]}")


if __name__ == "__main__":
    main()
