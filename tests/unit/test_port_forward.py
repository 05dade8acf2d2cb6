"""The pure parts of ``weft cluster port-forward``: targets, port specs and their resolution."""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest

from weft.local.cluster_config import ClusterConfig
from weft.local.port_forward import (
    PortForwardError,
    PortInUseError,
    bind,
    parse_port_spec,
    parse_target,
    relay_argv,
    resolve_target,
)

SERVICE: dict[str, Any] = {
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "clusterIP": "10.96.0.10",
        "ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "admin", "port": 9990, "targetPort": "admin"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ],
    },
}

POD: dict[str, Any] = {
    "kind": "Pod",
    "metadata": {"name": "web-abc12", "namespace": "shop"},
    "spec": {
        "containers": [
            {"name": "app", "ports": [{"name": "http", "containerPort": 8080}]},
            {"name": "side", "ports": [{"containerPort": 9000}]},
        ]
    },
    "status": {"phase": "Running", "podIP": "10.244.0.7"},
}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("svc/web", ("Service", "web")),
        ("service/web", ("Service", "web")),
        ("services/web", ("Service", "web")),
        ("pod/web-abc12", ("Pod", "web-abc12")),
        ("po/web-abc12", ("Pod", "web-abc12")),
        ("web-abc12", ("Pod", "web-abc12")),
    ],
)
def test_targets(target: str, expected: tuple[str, str]) -> None:
    assert parse_target(target) == expected


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("svc/", 'invalid target "svc/"'),
        ("", 'invalid target ""'),
        ("frob/x", 'unknown resource type "frob"'),
        ("deploy/web", 'cannot forward to "deploy/web"'),
    ],
)
def test_bad_targets(target: str, message: str) -> None:
    with pytest.raises(PortForwardError, match=message):
        parse_target(target)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("8080:80", (8080, "80")),
        (":80", (0, "80")),
        ("0:80", (0, "80")),
        ("80", (None, "80")),
        ("8080:http", (8080, "http")),
        ("http", (None, "http")),
        ("65535:65535", (65535, "65535")),
        ("admin-http", (None, "admin-http")),
    ],
)
def test_port_specs(spec: str, expected: tuple[int | None, str]) -> None:
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "want \\[LOCAL_PORT:\\]REMOTE_PORT"),
        ("8080:", "want \\[LOCAL_PORT:\\]REMOTE_PORT"),
        ("1:2:3", "want \\[LOCAL_PORT:\\]REMOTE_PORT"),
        ("x:80", 'local port "x" is not a number'),
        ("65536:80", 'local port "65536" is not a number'),
        ("-1:80", 'local port "-1" is not a number'),
        ("8080:0", 'remote port "0" is neither'),
        ("8080:70000", 'remote port "70000" is neither'),
        ("8080:HTTP", 'remote port "HTTP" is neither'),
        ("8080:a--b", 'remote port "a--b" is neither'),
        ("8080:-http", 'remote port "-http" is neither'),
        ("8080:a-very-long-port-name", "is neither"),
        ("²", 'remote port "²" is neither'),
    ],
)
def test_bad_port_specs(spec: str, message: str) -> None:
    with pytest.raises(PortForwardError, match=message):
        parse_port_spec(spec)


@pytest.mark.parametrize(("port", "expected"), [("80", 80), ("http", 80), ("admin", 9990)])
def test_a_service_resolves_to_its_cluster_ip_and_service_port(port: str, expected: int) -> None:
    assert resolve_target(SERVICE, "Service", port) == ("10.96.0.10", expected)


@pytest.mark.parametrize("port", ["8080", "81", "https", "53", "dns"])
def test_a_service_port_that_is_not_there_is_an_error_listing_the_ports(port: str) -> None:
    with pytest.raises(PortForwardError) as info:
        resolve_target(SERVICE, "Service", port)
    assert str(info.value) == (
        f'service "web" in namespace "shop" has no port {port} (its ports: 80 (http), 9990 (admin))'
    )


def test_a_service_without_a_cluster_ip_is_an_error() -> None:
    pending = {**SERVICE, "spec": {**SERVICE["spec"], "clusterIP": None}}
    with pytest.raises(PortForwardError, match="has no cluster IP"):
        resolve_target(pending, "Service", "80")


@pytest.mark.parametrize(
    ("port", "expected"), [("8080", 8080), ("http", 8080), ("9000", 9000), ("1234", 1234)]
)
def test_a_pod_resolves_to_its_ip_and_a_port_number_or_container_port_name(
    port: str, expected: int
) -> None:
    assert resolve_target(POD, "Pod", port) == ("10.244.0.7", expected)


def test_a_container_port_name_that_is_not_there_is_an_error_listing_the_ports() -> None:
    with pytest.raises(PortForwardError) as info:
        resolve_target(POD, "Pod", "grpc")
    assert str(info.value) == (
        'pod "web-abc12" in namespace "shop" has no container port named "grpc" '
        "(its ports: 8080 (http), 9000)"
    )


@pytest.mark.parametrize(
    ("status", "phase"),
    [({}, "Pending"), ({"phase": "Pending"}, "Pending"), ({"phase": "Succeeded"}, "Succeeded")],
)
def test_a_pod_that_does_not_run_is_an_error(status: dict[str, str], phase: str) -> None:
    with pytest.raises(PortForwardError) as info:
        resolve_target({**POD, "status": status}, "Pod", "8080")
    assert str(info.value) == f'pod "web-abc12" in namespace "shop" is not running (phase {phase})'


def test_other_kinds_cannot_be_resolved() -> None:
    with pytest.raises(PortForwardError, match="cannot forward to a Deployment"):
        resolve_target({"metadata": {"name": "web"}}, "Deployment", "80")


def test_bind_listens_and_a_taken_port_is_a_clear_error() -> None:
    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            bind("127.0.0.1", port)
        assert str(info.value) == f"127.0.0.1:{port} is in use"
        assert info.value.port == port
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # queued in the backlog: the socket listens
    finally:
        first.close()


def test_bind_to_an_address_that_is_not_local_is_a_clear_error() -> None:
    with pytest.raises(PortForwardError, match=r"cannot listen on 192\.0\.2\.1:8080: "):
        bind("192.0.2.1", 8080)


def test_the_relay_runs_in_the_node_namespace_with_one_target_per_fd() -> None:
    cfg = ClusterConfig("demo", state_dir="/tmp/weft-demo")
    assert relay_argv(cfg, [(5, "10.96.0.10", 80), (6, "10.244.0.7", 8080)]) == [
        "nsenter",
        "--net=/run/netns/demo-node",
        "--",
        sys.executable,
        "-m",
        "weft.local.port_forward",
        "--listen-fd",
        "5",
        "--to",
        "10.96.0.10:80",
        "--listen-fd",
        "6",
        "--to",
        "10.244.0.7:8080",
    ]
