"""A test load generator: GET a URL from several threads for a while, then print one JSON line
with the count of good answers, the failures (with their first few reasons) and how many times
each distinct body (a pod name, from whoami) was seen. Each thread opens a new connection every
``--per-connection`` requests.

Optional: ``--rate`` paces all threads together to that many requests per second; ``--requests``
stops after that many requests; ``--stop-file`` stops once that file exists; ``--method`` and
``--body-file`` send another method with a body; ``--paths /a,/a,/b`` sends request *n* to the
*n*-th path of that list, round and round (a known mix), instead of the URL's own path. The JSON
line also counts the status codes (``statuses``) and says how long the run took (``elapsed``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--per-connection", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0, help="requests per second, all threads")
    parser.add_argument("--requests", type=int, default=0, help="stop after this many requests")
    parser.add_argument("--stop-file", default="", help="stop once this file exists")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body-file", default="", help="send this file's bytes as the body")
    parser.add_argument("--timeout", type=float, default=5)
    parser.add_argument("--paths", default="", help="comma-separated paths to cycle through")
    args = parser.parse_args()
    parts = urlsplit(args.url)
    host, port = parts.hostname or "", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    paths = [p for p in args.paths.split(",") if p] or [path]
    body = None
    headers: dict[str, str] = {}
    if args.body_file:
        with open(args.body_file, "rb") as fh:
            body = fh.read()
        headers["content-type"] = "application/octet-stream"
    start = time.monotonic()
    deadline = start + args.seconds
    lock = threading.Lock()
    bodies: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    ok = 0
    issued = 0

    def next_slot() -> int | None:
        """Claim the next request's slot (None: the run is over); wait for its turn when
        paced."""
        nonlocal issued
        with lock:
            if args.requests and issued >= args.requests:
                return None
            slot = issued
            issued += 1
        if args.stop_file and os.path.exists(args.stop_file):
            return None
        if args.rate:
            delay = start + slot / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing: the slot's start time
        return slot if time.monotonic() < deadline else None

    def worker() -> None:
        nonlocal ok
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
            try:
                for _ in range(args.per_connection):
                    slot = next_slot()
                    if slot is None:
                        return
                    target = paths[slot % len(paths)]
                    conn.request(args.method, target, body=body, headers=headers)
                    response = conn.getresponse()
                    text = response.read().decode("latin-1").strip()
                    with lock:
                        statuses[str(response.status)] += 1
                        if response.status == 200:
                            ok += 1
                            bodies[text] += 1
                        else:
                            failures.append(
                                f"{response.status} {response.getheader('l5d-proxy-error')}"
                            )
            except OSError as exc:
                with lock:
                    statuses["error"] += 1
                    failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = {
        "ok": ok,
        "failed": len(failures),
        "reasons": failures[:5],
        "bodies": bodies,
        "statuses": statuses,
        "elapsed": round(time.monotonic() - start, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
