"""A test load generator: GET a URL from several threads for a while, then print one JSON line
with the count of good answers, the failures (with their first few reasons) and how many times
each distinct body (a pod name, from whoami) was seen. Each thread opens a new connection every
``--per-connection`` requests."""

from __future__ import annotations

import argparse
import http.client
import json
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
    args = parser.parse_args()
    parts = urlsplit(args.url)
    host, port = parts.hostname or "", parts.port or 80
    path = parts.path or "/"
    deadline = time.monotonic() + args.seconds
    lock = threading.Lock()
    bodies: Counter[str] = Counter()
    failures: list[str] = []
    ok = 0

    def worker() -> None:
        nonlocal ok
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            try:
                for _ in range(args.per_connection):
                    if time.monotonic() >= deadline:
                        break
                    conn.request("GET", path)
                    response = conn.getresponse()
                    body = response.read().decode("latin-1").strip()
                    with lock:
                        if response.status == 200:
                            ok += 1
                            bodies[body] += 1
                        else:
                            failures.append(
                                f"{response.status} {response.getheader('l5d-proxy-error')}"
                            )
            except OSError as exc:
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(
        json.dumps({"ok": ok, "failed": len(failures), "reasons": failures[:5], "bodies": bodies})
    )


if __name__ == "__main__":
    main()
