"""A test backend for routing tests (HTTP/1.1, one thread per connection).

- every request first waits ``--delay-ms`` milliseconds;
- ``/healthz`` answers 200 (readiness);
- ``/slow`` (and anything under it) answers after a further 2 seconds;
- ``/sleep/<ms>`` answers 200 after a further ``<ms>`` milliseconds;
- ``/status/<code>`` answers with that status code;
- paths starting with ``/flaky`` answer 500 at random with probability ``--fail-rate``;
- a request with an ``x-fail-once: <token>`` header answers 500 the first time that token is
  seen (a deterministic failed first attempt);
- POST answers ``len=<n> sha256=<hex>`` of the request body it received;
- anything else answers ``<name> <pod>`` (``--name`` and ``POD_NAME``).

On SIGTERM it keeps serving for ``--drain-ms`` milliseconds before it exits, as an application
behind a Kubernetes ``preStop`` sleep would. Prints ``LISTENING <port>`` once bound.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

SLOW_SECONDS = 2.0


class Handler(BaseHTTPRequestHandler):
    """See the module docstring."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no delayed-ACK stalls
    name = ""
    fail_rate = 0.0
    delay = 0.0
    seen_tokens: set[str] = set()
    lock = threading.Lock()

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, body: bytes) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._reply(200, b"ok\n")
            return
        if self.delay:
            time.sleep(self.delay)
        if path == "/slow" or path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)
        if path.startswith("/sleep/") and path[7:].isdigit():
            time.sleep(int(path[7:]) / 1000)
        if path.startswith("/status/") and path[8:].isdigit():
            self._reply(int(path[8:]), f"status {path[8:]}\n".encode())
            return
        token = self.headers.get("x-fail-once")
        if token:
            with self.lock:
                first = token not in self.seen_tokens
                self.seen_tokens.add(token)
            if first:
                self._reply(500, b"failing the first attempt\n")
                return
        if path.startswith("/flaky") and random.random() < self.fail_rate:
            self._reply(500, b"injected failure\n")
            return
        if self.command == "POST":
            digest = hashlib.sha256(body).hexdigest()
            self._reply(200, f"len={len(body)} sha256={digest}\n".encode())
            return
        pod = os.environ.get("POD_NAME", "?")
        self._reply(200, f"{self.name} {pod}\n".encode())

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # thousands of requests per test: no line per request


class Server(ThreadingHTTPServer):
    """Connection threads do not keep the process alive; a deep accept backlog for load."""

    daemon_threads = True
    request_queue_size = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--name", default="backend")
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--drain-ms", type=float, default=0.0)
    args = parser.parse_args()
    Handler.name = args.name
    Handler.fail_rate = args.fail_rate
    Handler.delay = args.delay_ms / 1000
    server = Server(("0.0.0.0", args.port), Handler)

    def drain_then_stop() -> None:
        time.sleep(args.drain_ms / 1000)  # keep serving while clients learn we are going
        server.shutdown()

    def on_term(signum: int, frame: FrameType | None) -> None:
        print("SIGTERM: draining", flush=True)
        threading.Thread(target=drain_then_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"LISTENING {args.port}", flush=True)
    server.serve_forever()
    server.server_close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
