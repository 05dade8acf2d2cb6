"""A test application for raw TCP checks; prints results as JSON lines.

- ``banner --port P``: a server-speaks-first service. On accept it writes ``BANNER <P>\\r\\n``
  at once, then echoes what it receives.
- ``probe HOST PORT``: connect, time the arrival of the banner, then check an echo.
- ``raw HOST PORT``: send stdin verbatim (write side left open), then read until the peer closes
  or ``--timeout`` passes; reports the bytes (latin-1) and whether the peer closed.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time


def banner(port: int) -> None:
    srv = socket.create_server(("0.0.0.0", port), reuse_port=False)
    print(f"LISTENING {port}", flush=True)

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.sendall(f"BANNER {port}\r\n".encode())
            while data := conn.recv(65536):
                conn.sendall(data)

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def probe(host: str, port: int, timeout: float) -> None:
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        connected = time.monotonic() - started
        first = b""
        try:
            while not first.endswith(b"\r\n"):
                chunk = sock.recv(1024)
                if not chunk:
                    break
                first += chunk
        except TimeoutError:
            pass
        banner_at = time.monotonic() - started
        sock.sendall(b"ping\n")
        echo = b""
        try:
            while len(echo) < 5:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                echo += chunk
        except TimeoutError:
            pass
    out = {
        "connect_s": connected,
        "banner": first.decode("latin-1"),
        "banner_s": banner_at,
        "echo": echo.decode("latin-1"),
    }
    print(json.dumps(out), flush=True)


def raw(host: str, port: int, timeout: float) -> None:
    payload = sys.stdin.buffer.read()
    started = time.monotonic()
    received = b""
    closed = False
    error = ""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except OSError as exc:
            error = f"send: {exc}"
        deadline = started + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError as exc:  # e.g. reset after the proxy closed with unread input
                error = f"recv: {exc}"
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    out = {
        "response": received.decode("latin-1"),
        "closed": closed,
        "error": error,
        "elapsed": time.monotonic() - started,
    }
    print(json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("banner")
    b.add_argument("--port", type=int, required=True)
    for name in ("probe", "raw"):
        p = sub.add_parser(name)
        p.add_argument("host")
        p.add_argument("port", type=int)
        p.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    if args.cmd == "banner":
        banner(args.port)
    elif args.cmd == "probe":
        probe(args.host, args.port, args.timeout)
    else:
        raw(args.host, args.port, args.timeout)


if __name__ == "__main__":
    main()
