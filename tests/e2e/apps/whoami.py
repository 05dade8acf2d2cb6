"""A test application: answers every HTTP request with the pod's name (from ``POD_NAME``);
``/headers`` answers with the request's headers as a JSON object (lower-case names).

``/healthz`` answers 200 while the file named by ``--unready-file`` does not exist, so a test can
make the pod unready. Prints ``LISTENING <port>`` once bound.
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    """GET/POST: the pod name; /healthz: readiness."""

    protocol_version = "HTTP/1.1"
    unready_file = ""

    def do_GET(self) -> None:
        if self.path == "/healthz" and self.unready_file and os.path.exists(self.unready_file):
            self._reply(503, b"unready\n")
            return
        if self.path == "/headers":
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._reply(200, json.dumps(headers).encode())
            return
        self._reply(200, (os.environ.get("POD_NAME", "?") + "\n").encode())

    do_POST = do_GET

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"REQ {self.command} {self.path}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--unready-file", default="")
    args = parser.parse_args()
    Handler.unready_file = args.unready_file
    server = ThreadingHTTPServer(("0.0.0.0", args.port), Handler)
    print(f"LISTENING {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
