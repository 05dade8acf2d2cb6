"""h2spec (RFC 9113 and RFC 7541 conformance) against a weft pair fronting nghttpd.

The path is ``h2spec → weft outbound → weft inbound → nghttpd``, all on 127.0.0.1: each proxy is
``<checkout>/.venv/bin/python -m weft proxy`` with identity off, the first forwarding its outbound
listener to the second's inbound listener, the second forwarding to nghttpd (Debian's
nghttp2-server, serving one 5000-byte file, so that window tests have a body to hold back). Every
process binds port 0; the proxies say their ports in their log, nghttpd's is read from ``/proc``.
h2spec writes a JUnit report, from which the script prints the pass count and each failure (its
id, e.g. ``http2/5.1.1/2``, its title and what h2spec expected).

    .venv/bin/python bench/h2spec.py [--checkout DIR] [--hops 1|2] [--strict] [--out r.json]
                                     [--verbose] [spec ...]   # e.g. http2/5.1

h2spec is built from the Go module proxy (``GOBIN=/tmp/h2spec go install
github.com/summerwind/h2spec/cmd/h2spec@latest``); give its path with ``--h2spec`` unless it is on
``PATH``. Needs nghttpd; no root. Exit status: 0 when every test passed, 1 when some failed, 2 when
a tool is missing or the setup failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from harness.loopback import listening  # noqa: E402

LISTENER_LINE = re.compile(r"(inbound|outbound) listener on 127\.0\.0\.1:(\d+)")
START_TIMEOUT = 30.0
BODY = b"h2spec body\n" * 417  # 5004 bytes


def wait_until(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll ``check()`` until it is true; fail if ``proc`` exits or the start timeout passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited:\n{log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


class Nghttpd:
    """``nghttpd --no-tls`` on 127.0.0.1, port chosen by the kernel."""

    def __init__(self, workdir: Path) -> None:
        docroot = workdir / "htdocs"
        docroot.mkdir()
        (docroot / "index.html").write_bytes(BODY)
        self.log = workdir / "nghttpd.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["nghttpd", "--no-tls", "--address=127.0.0.1", "-d", str(docroot), "0"],
                stdout=out,
                stderr=out,
            )
        self.port = 0

        def bound() -> bool:
            self.port = listening(self.proc.pid).get("127.0.0.1", 0)
            return bool(self.port)

        wait_until("nghttpd's listener", bound, self.proc, self.log)

    def stop(self) -> None:
        """Terminate nghttpd."""
        stop(self.proc)


class Proxy:
    """A weft proxy from ``checkout`` whose listeners forward to ``forward``'s port."""

    def __init__(self, checkout: Path, forward: int, workdir: Path, name: str) -> None:
        self.log = workdir / f"proxy-{name}.log"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "LINKERD2_PROXY_IDENTITY_DISABLED": "1",
            "LINKERD2_PROXY_LOG": "warn,weft=info",
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR": "127.0.0.1:0",
            "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR": "127.0.0.1:0",
            "LINKERD2_PROXY_ADMIN_LISTEN_ADDR": "127.0.0.1:0",
            "LINKERD2_PROXY_CONTROL_LISTEN_ADDR": "127.0.0.1:0",
            "LINKERD2_PROXY_INBOUND_FORWARD": f"127.0.0.1:{forward}",
            "LINKERD2_PROXY_OUTBOUND_FORWARD": f"127.0.0.1:{forward}",
        }
        python = checkout / ".venv" / "bin" / "python"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [str(python), "-m", "weft", "proxy"], cwd=checkout, env=env, stdout=out, stderr=out
            )
        self.ports: dict[str, int] = {}

        def bound() -> bool:
            for direction, port in LISTENER_LINE.findall(self.log.read_text(errors="replace")):
                self.ports[direction] = int(port)
            return len(self.ports) == 2

        wait_until(f"proxy {name}'s listeners", bound, self.proc, self.log)

    def stop(self) -> None:
        """Terminate the proxy."""
        stop(self.proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` (kill it if it lingers)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def results(report: Path) -> list[dict[str, str]]:
    """Every test case of an h2spec JUnit report: id, title, outcome and, for a failure, what
    h2spec expected and what it got (its ``<error>`` holds the expected frames, one a line, then
    the actual one)."""
    cases = []
    # h2spec copies frame payloads (PING's opaque data: NUL bytes) into its messages verbatim.
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "?", report.read_text(errors="replace"))
    for suite in ET.fromstring(text).iter("testsuite"):
        package = suite.get("package", "")
        for number, case in enumerate(suite.iter("testcase"), 1):
            error = case.find("error")
            if error is None:
                error = case.find("failure")
            message = ""
            if error is not None:
                outcome = "failed"
                *expected, actual = (error.text or "?").strip().splitlines() or ["?"]
                message = f"expected {' or '.join(expected)}; got {actual}"
            else:
                outcome = "skipped" if case.find("skipped") is not None else "passed"
            cases.append(
                {
                    "id": f"{package}/{number}",
                    "section": suite.get("name", ""),
                    "title": case.get("classname", ""),
                    "outcome": outcome,
                    "message": message,
                }
            )
    return cases


def run(args: argparse.Namespace, h2spec: str, workdir: Path) -> list[dict[str, str]]:
    """Start nghttpd and the proxies, run h2spec through them, and return its results."""
    started: list[Nghttpd | Proxy] = []
    try:
        server = Nghttpd(workdir)
        started.append(server)
        port = server.port
        for hop in range(args.hops):  # the hop next to the server first
            proxy = Proxy(args.checkout.resolve(), port, workdir, f"hop{args.hops - hop}")
            started.append(proxy)
            port = proxy.ports["inbound" if hop == 0 else "outbound"]
        report = workdir / "h2spec.xml"
        cmd = [h2spec, "-h", "127.0.0.1", "-p", str(port), "-o", str(args.timeout)]
        cmd += ["-j", str(report), *(["--strict"] if args.strict else [])]
        cmd += ["--verbose", *args.spec] if args.verbose else args.spec
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if args.verbose:
            print(done.stdout)
        if not report.exists():
            raise RuntimeError(f"h2spec wrote no report:\n{done.stdout}{done.stderr}")
        return results(report)
    finally:
        for process in reversed(started):
            process.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkout", type=Path, default=REPO_ROOT, help="a weft worktree with its .venv"
    )
    parser.add_argument("--h2spec", help="the h2spec binary (default: h2spec on PATH)")
    parser.add_argument(
        "--hops", type=int, choices=(1, 2), default=2, help="one inbound proxy, or a pair"
    )
    parser.add_argument("--strict", action="store_true", help="h2spec's strict cases too")
    parser.add_argument("--timeout", type=int, default=2, help="h2spec's per-test timeout (s)")
    parser.add_argument("--out", type=Path, help="write every test's outcome as JSON")
    parser.add_argument("--verbose", action="store_true", help="print h2spec's verbose log")
    parser.add_argument("spec", nargs="*", help="h2spec's test ids to run (e.g. http2/5.1)")
    args = parser.parse_args(argv)
    h2spec = args.h2spec or shutil.which("h2spec")
    if h2spec is None or not Path(h2spec).exists():
        print("h2spec.py: no h2spec (build it, then pass --h2spec)", file=sys.stderr)
        return 2
    if shutil.which("nghttpd") is None:
        print("h2spec.py: missing nghttpd (Debian package nghttp2-server)", file=sys.stderr)
        return 2
    if not (args.checkout / ".venv" / "bin" / "python").exists():
        print(f"h2spec.py: {args.checkout} has no .venv (run scripts/setup)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cases = run(args, h2spec, Path(tmp))
        except (RuntimeError, TimeoutError) as exc:
            print(f"h2spec.py: {exc}", file=sys.stderr)
            return 2
    failed = [case for case in cases if case["outcome"] == "failed"]
    for case in failed:
        print(f"FAIL {case['id']} {case['section']}: {case['title']}\n     {case['message']}")
    passed = sum(case["outcome"] == "passed" for case in cases)
    print(f"{args.checkout.resolve()}: {len(cases)} tests, {passed} passed, {len(failed)} failed")
    if args.out is not None:
        args.out.write_text(json.dumps(cases, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
