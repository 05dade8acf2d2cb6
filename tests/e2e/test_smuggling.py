"""HTTP/1 request-smuggling defences at the proxy, with raw bytes over a socket.

Each malformed request is sent from a pod to the server pod's IP. From the meshed ``client``
the outbound proxy parses it first; from the unmeshed ``plain`` pod the server's inbound proxy
does. Either way the proxy must answer ``400`` (``431`` for an oversized head) and close, and
the application must never see the request hidden in the body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness.mesh import Mesh, Pod

pytestmark = pytest.mark.netns

PORT = 8080
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@dataclass
class Pods:
    client: Pod
    plain: Pod
    server: Pod


@pytest.fixture(scope="module")
def pods(module_mesh: Mesh) -> Iterator[Pods]:
    server = module_mesh.add_pod("server")
    client = module_mesh.add_pod("client")
    plain = module_mesh.add_pod("plain", meshed=False)
    server.spawn_app("echo", "echo.py", "--port", str(PORT), port=PORT)
    yield Pods(client, plain, server)
    log = server.procs[-1].output()
    assert "/smuggled" not in log, "a smuggled request reached the application"


def send_raw(pod: Pod, target: Pod, payload: bytes, timeout: float = 5.0) -> dict[str, Any]:
    proc = pod.run_bytes(
        pod.python("tcp_app.py", "raw", str(target.ip), str(PORT), "--timeout", str(timeout)),
        stdin=payload,
        timeout=timeout + 30,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


HEAD = b"POST /x HTTP/1.1\r\nHost: server\r\n"

CASES: dict[str, tuple[bytes, int]] = {
    "cl-and-te": (
        HEAD + b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    "te-and-cl": (
        HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    "conflicting-cl": (
        HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + SMUGGLED,
        400,
    ),
    "conflicting-cl-list": (HEAD + b"Content-Length: 5, 6\r\n\r\nhello!" + SMUGGLED, 400),
    "bad-chunk-size": (
        HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        400,
    ),
    "obs-fold": (HEAD + b"X-Folded: a\r\n  b\r\nContent-Length: 0\r\n\r\n", 400),
    "bare-cr-in-header": (HEAD + b"X-Bad: a\rb\r\nContent-Length: 0\r\n\r\n", 400),
    "bare-lf-in-headers": (HEAD + b"X-Bad: a\nContent-Length: 0\r\n\r\n", 400),
    "oversized-head": (
        b"GET /big HTTP/1.1\r\nHost: server\r\n" + b"X-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n",
        431,
    ),
}


@pytest.mark.parametrize("via", ["outbound", "inbound"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_request_is_rejected_and_closed(pods: Pods, via: str, case: str) -> None:
    payload, status = CASES[case]
    sender = pods.client if via == "outbound" else pods.plain
    result = send_raw(sender, pods.server, payload)
    first_line = result["response"].split("\r\n", 1)[0]
    assert first_line.startswith(f"HTTP/1.1 {status}"), result
    assert result["closed"], f"connection left open: {result}"
    assert result["response"].count("HTTP/1.1 ") == 1, result  # nothing answered after it


@pytest.mark.parametrize("via", ["outbound", "inbound"])
def test_well_formed_request_over_the_same_path_succeeds(pods: Pods, via: str) -> None:
    sender = pods.client if via == "outbound" else pods.plain
    payload = HEAD + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"
    result = send_raw(sender, pods.server, payload)
    assert result["response"].startswith("HTTP/1.1 200"), result
    assert '"body_len": 5' in result["response"]
    assert result["closed"]
