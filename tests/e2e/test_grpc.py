"""gRPC (grpcio client and server) through both proxies."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.mesh import REPO_ROOT, Mesh, Pod, parse_samples, select, wait_equal

pytestmark = pytest.mark.netns

PORT = 50051
PROTO_DIR = REPO_ROOT / "tests" / "e2e" / "protos"


@dataclass
class Pods:
    client: Pod
    server: Pod
    gen: Path

    def call(self, case: str, *args: str, timeout: float = 90) -> dict[str, Any]:
        argv = self.client.python(
            "grpc_app.py",
            "client",
            "--target",
            f"{self.server.ip}:{PORT}",
            "--gen",
            str(self.gen),
            "--case",
            case,
            *args,
        )
        proc = self.client.run(argv, timeout=timeout)
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result


def generate_stubs(out: Path) -> None:
    """Compile ``echo.proto`` with grpc_tools.protoc into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "echo.proto",
        ],
        check=True,
    )


@pytest.fixture(scope="module")
def pods(module_mesh: Mesh) -> Iterator[Pods]:
    gen = module_mesh.workdir / "gen"
    generate_stubs(gen)
    server = module_mesh.add_pod("server")
    client = module_mesh.add_pod("client")
    server.spawn_app("grpc", "grpc_app.py", "serve", "--port", str(PORT), "--gen", str(gen),
                     port=PORT)  # fmt: skip
    yield Pods(client, server, gen)


def test_unary(pods: Pods) -> None:
    result = pods.call("unary", "--count", "5")
    assert result["code"] == "OK", result
    assert result["payloads"] == [f"hello {i}" for i in range(5)]


def test_server_streaming(pods: Pods) -> None:
    result = pods.call("stream", "--count", "200", "--size", "1000")
    assert result["code"] == "OK", result
    assert result["seqs"] == list(range(200))
    assert result["sizes_ok"]


def test_bidi_streaming(pods: Pods) -> None:
    result = pods.call("bidi", "--count", "50")
    assert result["code"] == "OK", result
    assert result["payloads"] == [f"msg-{i}"[::-1] for i in range(50)]


def test_ten_megabyte_message(pods: Pods) -> None:
    result = pods.call("big", "--size", str(10 * 1024 * 1024))
    assert result["code"] == "OK", result
    assert result["received_len"] == 10 * 1024 * 1024
    assert result["received_sha256"] == result["sent_sha256"]


def test_error_status_is_passed_through_and_classified_as_failure(pods: Pods) -> None:
    def failures(pod: Pod, direction: str) -> float:
        samples = select(
            parse_samples(pod.metrics()),
            "response_total",
            direction=direction,
            classification="failure",
        )
        return sum(s[2] for s in samples if s[1].get("grpc_status") == "5")

    before = (failures(pods.client, "outbound"), failures(pods.server, "inbound"))
    result = pods.call("error", "--code", "5")
    assert result["code"] == "NOT_FOUND", result
    assert result["details"] == "asked to fail with 5"
    wait_equal(
        lambda: (failures(pods.client, "outbound"), failures(pods.server, "inbound")),
        (before[0] + 1, before[1] + 1),
        10,
        what="grpc_status=5 failures (client outbound, server inbound)",
    )
