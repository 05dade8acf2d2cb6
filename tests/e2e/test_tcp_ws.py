"""Opaque TCP (server-speaks-first) and WebSocket upgrades through both proxies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness.mesh import Mesh, Pod, parse_samples, total, wait_equal

pytestmark = pytest.mark.netns

WS_PORT = 8765


@dataclass
class Pods:
    client: Pod
    server: Pod


@pytest.fixture(scope="module")
def pods(module_mesh: Mesh) -> Iterator[Pods]:
    server = module_mesh.add_pod("server")
    client = module_mesh.add_pod("client")
    for port in (3306, 5432):
        server.spawn_app(f"banner{port}", "tcp_app.py", "banner", "--port", str(port), port=port)
    server.spawn_app("ws", "ws_app.py", "serve", "--port", str(WS_PORT), port=WS_PORT)
    yield Pods(client, server)


def probe(client: Pod, server: Pod, port: int, timeout: float = 5.0) -> dict[str, Any]:
    proc = client.run(
        client.python("tcp_app.py", "probe", str(server.ip), str(port), "--timeout", str(timeout))
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("port", [3306, 5432])
def test_server_speaks_first_on_opaque_port(pods: Pods, port: int) -> None:
    before = parse_samples(pods.client.metrics())
    result = probe(pods.client, pods.server, port)
    assert result["banner"] == f"BANNER {port}\r\n", result
    # Opaque ports skip protocol detection: the banner arrives at once, not after a timeout.
    assert result["banner_s"] < 1.0, result
    assert result["echo"] == "ping\n", result

    def opened() -> tuple[float, float]:
        s = parse_samples(pods.client.metrics())
        return (
            total(s, "tcp_open_total", direction="outbound", peer="src"),
            total(s, "tcp_open_total", direction="outbound", peer="dst"),
        )

    src = total(before, "tcp_open_total", direction="outbound", peer="src")
    dst = total(before, "tcp_open_total", direction="outbound", peer="dst")
    wait_equal(opened, (src + 1, dst + 1), 10, what="outbound (src, dst) tcp_open_total")


def test_server_speaks_first_on_configured_opaque_port(mesh: Mesh) -> None:
    env = {
        "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION": "7001",
        "LINKERD2_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION": "7001",
    }
    server = mesh.add_pod("server", proxy_env=env)
    client = mesh.add_pod("client", proxy_env=env)
    server.spawn_app("banner", "tcp_app.py", "banner", "--port", "7001", port=7001)
    result = probe(client, server, 7001)
    assert result["banner"] == "BANNER 7001\r\n" and result["banner_s"] < 1.0, result
    assert result["echo"] == "ping\n"


def test_websocket_upgrade_messages_both_ways(pods: Pods) -> None:
    url = f"ws://{pods.server.ip}:{WS_PORT}/chat"
    proc = pods.client.run(pods.client.python("ws_app.py", "client", url, "--count", "5"))
    result = json.loads(proc.stdout)
    assert result["status"] == 101
    assert result["received"] == ["hello from server"] + [f"MESSAGE {i} " for i in range(5)]


def test_websocket_large_messages(pods: Pods) -> None:
    url = f"ws://{pods.server.ip}:{WS_PORT}/big"
    proc = pods.client.run(
        pods.client.python("ws_app.py", "client", url, "--count", "3", "--size", "300000")
    )
    result = json.loads(proc.stdout)
    assert result["status"] == 101
    assert result["lengths"] == [17] + [300010] * 3
