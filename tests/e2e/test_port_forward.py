"""``weft cluster port-forward`` end to end: host ports relayed into a real local cluster.

One cluster is shared by this module; the last test removes it while a forwarder runs and checks
that ``down`` stopped the forwarder.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.local_cluster import APPS, LocalCluster, running_cluster
from harness.mesh import REPO_ROOT, wait_for
from weft.local.port_forward import bind

pytestmark = pytest.mark.netns

POD_CIDR = "10.238.0.0/16"
SERVICE_CIDR = "10.239.0.0/16"
NS = "pf"
FORWARDING = re.compile(r"^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$")
# Straight to 127.0.0.1, whatever proxy the environment names.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

MANIFEST = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo, namespace: {NS}}}
spec:
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers:
      - name: app
        command: [{sys.executable}, {APPS / "echo.py"}, --port, "8080"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: echo-svc, namespace: {NS}}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("clusters"), POD_CIDR, SERVICE_CIDR) as c:
        yield c


@pytest.fixture(scope="module")
def pod(cluster: LocalCluster) -> str:
    """The echo app's pod, ready and behind ``echo-svc`` (whose endpoints list it)."""
    cluster.apply(MANIFEST)
    name: str = cluster.wait_deployment(NS, "echo", 1)[0]["metadata"]["name"]
    wait_for(
        lambda: cluster.get("endpoints", NS)[0]["subsets"][0].get("addresses"),
        10,
        what="endpoints of echo-svc",
    )
    return name


class Forwarder:
    """A running ``weft cluster port-forward`` and the local ports it announced."""

    def __init__(self, proc: subprocess.Popen[bytes], ports: list[tuple[int, int]]) -> None:
        self.proc = proc
        self.ports = ports

    def stderr(self) -> str:
        """What the forwarder wrote to stderr (once it has exited)."""
        assert self.proc.stderr is not None and self.proc.poll() is not None
        return self.proc.stderr.read().decode()


def command(cluster: LocalCluster, *args: str) -> list[str]:
    """The argv of ``weft cluster port-forward ARGS`` for ``cluster``."""
    return [sys.executable, "-m", "weft", "cluster", "--name", cluster.name,
            "--state-dir", str(cluster.state_dir), "port-forward", *args]  # fmt: skip


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float = 30) -> list[str]:
    """The first ``count`` lines ``proc`` prints, read with a deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout
    while out.count(b"\n") < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {count} lines; got {out!r}"
        if select.select([fd], [], [], remaining)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                assert proc.stderr is not None
                raise AssertionError(
                    f"port-forward exited {proc.wait()}: {out!r} {proc.stderr.read()!r}"
                )
            out += chunk
    return out.decode().splitlines()


@contextmanager
def forward(cluster: LocalCluster, *args: str, pairs: int = 1) -> Iterator[Forwarder]:
    """Run the forwarder until it has announced ``pairs`` ports; kill it afterwards."""
    proc = subprocess.Popen(
        command(cluster, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT
    )
    try:
        ports = []
        for line in read_lines(proc, pairs):
            match = FORWARDING.match(line)
            assert match, line
            ports.append((int(match[1]), int(match[2])))
        yield Forwarder(proc, ports)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            stream.close()


def http(port: int, path: str = "/", body: bytes | None = None) -> bytes:
    """The body of a GET (or, with ``body``, a POST) to ``127.0.0.1:port``."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body)
    with DIRECT.open(request, timeout=10) as response:
        data: bytes = response.read()
        return data


def listening(port: int) -> bool:
    """Whether something accepts connections on ``127.0.0.1:port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def test_a_service_port_is_forwarded_to_a_free_local_port(cluster: LocalCluster, pod: str) -> None:
    with forward(cluster, "-n", NS, "svc/echo-svc", ":80") as fwd:
        ((port, remote),) = fwd.ports
        assert remote == 80
        info = json.loads(http(port))
        assert (info["method"], info["path"]) == ("GET", "/")

        payload = os.urandom(1 << 20)
        assert http(port, "/echo", payload) == payload

        # The client's half-close reaches the app, and the answer still comes back.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET /bytes/100000 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            conn.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert len(body) == 100000
        assert fwd.proc.poll() is None


def test_a_named_service_port_and_a_fixed_local_port(cluster: LocalCluster, pod: str) -> None:
    # The one port in the tests that is released before something else binds it: a port number
    # given on the command line is the point of this test, and the command binds it itself. If
    # another process took it meanwhile, the command says so ("is in use") and fails; it never
    # shares the port (no SO_REUSEPORT).
    probe = bind("127.0.0.1", 0)
    local = probe.getsockname()[1]
    probe.close()
    with forward(cluster, "-n", NS, "service/echo-svc", f"{local}:http") as fwd:
        assert fwd.ports == [(local, 80)]
        assert json.loads(http(local))["method"] == "GET"


def test_pod_ports_by_number_and_by_name_and_an_unreachable_one(
    cluster: LocalCluster, pod: str
) -> None:
    with forward(cluster, "-n", NS, f"pod/{pod}", ":8080", ":http", ":9999", pairs=3) as fwd:
        (by_number, _), (by_name, _), (closed, _) = fwd.ports
        assert [remote for _, remote in fwd.ports] == [8080, 8080, 9999]
        payload = os.urandom(1 << 20)
        assert http(by_number, "/echo", payload) == payload
        assert json.loads(http(by_name))["path"] == "/"

        # Nothing listens on 9999: that connection is closed, the forwarder carries on.
        with socket.create_connection(("127.0.0.1", closed), timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert conn.recv(100) == b""
        assert json.loads(http(by_number))["method"] == "GET"
        fwd.proc.send_signal(signal.SIGTERM)
        assert fwd.proc.wait(timeout=10) == 0
        (pod_ip,) = [p["status"]["podIP"] for p in cluster.get("pods", NS)]
        lines = fwd.stderr().splitlines()
        assert lines == [f"port-forward: cannot reach {pod_ip}:9999: Connection refused"]


def test_a_busy_local_port_is_one_line(cluster: LocalCluster, pod: str) -> None:
    busy = bind("127.0.0.1", 0)
    try:
        port = busy.getsockname()[1]
        proc = cluster.run("port-forward", "-n", NS, "svc/echo-svc", f"{port}:80", check=False)
    finally:
        busy.close()
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"weft cluster: 127.0.0.1:{port} is in use: pick another local port (e.g. {port + 1}:80)"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("svc/nope", ":80"), 'services "nope" not found in namespace "pf"'),
        (("nope", ":80"), 'pods "nope" not found in namespace "pf"'),
        (("svc/echo-svc", ":81"), 'service "echo-svc" in namespace "pf" has no port 81'),
        (("svc/echo-svc", "80:80:80"), 'invalid port "80:80:80"'),
        (("deploy/echo", ":80"), 'cannot forward to "deploy/echo"'),
    ],
)
def test_a_missing_target_or_port_is_one_line(
    cluster: LocalCluster, pod: str, args: tuple[str, ...], message: str
) -> None:
    proc = cluster.run("port-forward", "-n", NS, *args, check=False)
    assert proc.returncode == 1
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"weft cluster: {message}"), line


def test_a_pod_port_name_that_is_not_there_is_one_line(cluster: LocalCluster, pod: str) -> None:
    proc = cluster.run("port-forward", "-n", NS, pod, ":grpc", check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f'weft cluster: pod "{pod}" in namespace "pf" has no container port named "grpc" '
        "(its ports: 8080 (http))"
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_forwarder(
    cluster: LocalCluster, pod: str, signum: signal.Signals
) -> None:
    with forward(cluster, "-n", NS, "svc/echo-svc", ":80") as fwd:
        ((port, _),) = fwd.ports
        # A kept-alive connection is still open when the signal comes.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 200")
            fwd.proc.send_signal(signum)
            assert fwd.proc.wait(timeout=10) == 0  # it served: its handlers are in place
        assert fwd.stderr() == ""
        assert not listening(port)


def test_down_stops_a_running_forwarder(cluster: LocalCluster, pod: str) -> None:
    """Last: removes the cluster (the fixture's ``down`` then finds nothing left)."""
    with forward(cluster, "-n", NS, "svc/echo-svc", ":80") as fwd:
        ((port, _),) = fwd.ports
        assert http(port)
        relay = Path(f"/proc/{fwd.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert b"weft.local.port_forward" in relay, relay
        proc = cluster.down()
        assert proc.returncode == 0, proc.stderr
        assert fwd.proc.wait(timeout=30) == -signal.SIGKILL
        assert not Path(f"/proc/{fwd.proc.pid}").exists()
        assert not listening(port)
    assert cluster.leftovers() == []
