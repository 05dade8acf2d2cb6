"""Mutual TLS between meshed pods in a real local cluster, with the real control plane.

The cluster runs ``weft controller identity`` and ``weft controller destination`` as pods; every
injected proxy gets its certificate from the identity service and learns its peers' identities
from the destination service, so meshed-to-meshed traffic is TLS without any configuration.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.local_cluster import APPS, LocalCluster, metric_total, running_cluster
from harness.mesh import wait_for
from tests.e2e.test_cluster import app_manifest
from weft.identity import certs, trust

pytestmark = pytest.mark.netns

POD_CIDR = "10.248.0.0/16"
SERVICE_CIDR = "10.249.0.0/16"
NS = "secure"


def identity(sa: str, namespace: str) -> str:
    """The identity name of a service account."""
    return f"{sa}.{namespace}.serviceaccount.identity.weft.cluster.local"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("clusters"), POD_CIDR, SERVICE_CIDR) as c:
        c.apply(app_manifest(NS, inject=True))
        c.apply(TCP_APP.format(ns=NS, app=APPS / "tcp_app.py", python=sys.executable))
        c.apply(app_manifest("outside"))  # an unmeshed namespace
        yield c


TCP_APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: banner, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: banner}}}}
  template:
    metadata: {{labels: {{app: banner}}}}
    spec:
      serviceAccountName: banner
      containers:
      - name: app
        command: [python, {app}, banner, --port, "4444"]
        ports: [{{name: tcp, containerPort: 4444}}]
        # Ready once the app itself listens: a tcpSocket probe from the node would be accepted
        # by the inbound proxy before the app is up. (In the pod's namespace, loopback is not
        # redirected.) Exec probes get no venv on their PATH: the interpreter is named in full.
        readinessProbe:
          exec:
            command: [{python}, -c, "import socket; socket.create_connection(('127.0.0.1', 4444))"]
          periodSeconds: 1
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: banner, namespace: {ns}}}
---
apiVersion: v1
kind: Service
metadata: {{name: banner, namespace: {ns}}}
spec:
  selector: {{app: banner}}
  ports: [{{port: 4444, targetPort: 4444}}]
"""


def _pod(cluster: LocalCluster, namespace: str, prefix: str) -> dict[str, Any]:
    return cluster.wait_ready(namespace, prefix, 1)[0]


def _curl(cluster: LocalCluster, namespace: str, pod: str, *args: str) -> str:
    proc = cluster.exec(pod, namespace, ["curl", "-sS", "--max-time", "5", *args])
    return proc.stdout


def _metrics(cluster: LocalCluster, namespace: str, pod: str) -> str:
    return _curl(cluster, namespace, pod, "http://127.0.0.1:4191/metrics")


def test_bytes_between_meshed_pods_are_tls_and_metrics_name_both_ends(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    backends = cluster.wait_ready(NS, "whoami-", 2)
    client = _pod(cluster, NS, "client-")["metadata"]["name"]
    capture = tmp_path / "wire.pcap"
    # Capture inside the client pod's namespace, on its veth: what its proxy sends to port 8080,
    # whichever backend the balancer picks (the app's own bytes only cross loopback).
    netns = cluster.run("get", "pod", client, "-n", NS, "-o", "json")
    uid = json.loads(netns.stdout)["metadata"]["uid"]
    pod_netns = f"{cluster.name}-p-{uid.replace('-', '')[:12]}"
    dump = subprocess.Popen(
        ["ip", "netns", "exec", pod_netns, "tcpdump", "-i", "eth0", "-U", "-n", "-s", "0",
         "-w", str(capture), "tcp port 8080"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert dump.stderr is not None
        said = ""
        for _ in range(3):  # tcpdump reports "listening on" (or an error and exits) at once
            said += dump.stderr.readline()
            if "listening on" in said or dump.poll() is not None:
                break
        assert "listening on" in said, said
        for _ in range(10):
            assert _curl(cluster, NS, client, "http://whoami-svc/").strip()
        wait_for(lambda: capture.stat().st_size > 2000, 10, what="packets in the capture")
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)
    wire = capture.read_bytes()
    assert b"\x16\x03\x01" in wire or b"\x16\x03\x03" in wire, "no TLS handshake on the wire"
    assert b"\x17\x03\x03" in wire, "no TLS application data on the wire"
    assert b"GET / HTTP/1.1" not in wire and b"whoami-" not in wire, "plaintext on the wire"

    client_id = identity("default", NS)
    text = _metrics(cluster, NS, client)
    assert metric_total(
        text, "request_total", direction="outbound", tls="true", server_id=client_id
    )
    assert not metric_total(text, "request_total", direction="outbound", tls="no_identity")
    inbound = opened = 0.0
    for pod in backends:  # the balancer may have sent every request to one of them
        text = _curl(cluster, NS, client, f"http://{pod['status']['podIP']}:4191/metrics")
        inbound += metric_total(
            text, "request_total", direction="inbound", tls="true", client_id=client_id
        )
        opened += metric_total(
            text, "tcp_open_total", direction="inbound", peer="src", client_id=client_id
        )
    assert inbound >= 10
    assert opened >= 1


def test_the_app_sees_the_verified_client_id_and_never_a_forged_one(
    cluster: LocalCluster,
) -> None:
    meshed = _pod(cluster, NS, "client-")["metadata"]["name"]
    outside = _pod(cluster, "outside", "client-")["metadata"]["name"]
    forged = ("-H", "l5d-client-id: admin.kube-system.serviceaccount.identity.weft.cluster.local")

    seen = json.loads(_curl(cluster, NS, meshed, *forged, "http://whoami-svc/headers"))
    assert seen["l5d-client-id"] == identity("default", NS)

    url = f"http://whoami-svc.{NS}/headers"
    seen = json.loads(_curl(cluster, "outside", outside, *forged, url))
    assert "l5d-client-id" not in seen  # plaintext from outside the mesh: stripped

    backend = cluster.wait_ready(NS, "whoami-", 2)
    total = 0.0
    for pod in backend:
        text = _curl(cluster, NS, meshed, f"http://{pod['status']['podIP']}:4191/metrics")
        total += metric_total(
            text,
            "request_total",
            direction="inbound",
            tls="no_identity",
            no_tls_reason="not_provided_by_remote",
        )
    assert total >= 1


def test_opaque_tcp_between_meshed_pods_is_tls_too(cluster: LocalCluster) -> None:
    client = _pod(cluster, NS, "client-")["metadata"]["name"]
    server = _pod(cluster, NS, "banner-")
    proc = cluster.exec(
        client, NS, ["python", str(APPS / "tcp_app.py"), "probe", f"banner.{NS}", "4444"]
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["banner"].startswith("BANNER 4444"), result
    assert result["echo"] == "ping\n", result
    ip = server["status"]["podIP"]
    text = _curl(cluster, NS, client, f"http://{ip}:4191/metrics")
    assert metric_total(
        text, "tcp_open_total", direction="inbound", peer="src", tls="true",
        client_id=identity("default", NS),
    )  # fmt: skip


def test_a_meshed_client_still_reaches_unmeshed_servers_in_plaintext(
    cluster: LocalCluster,
) -> None:
    client = _pod(cluster, NS, "client-")["metadata"]["name"]
    cluster.wait_ready("outside", "whoami-", 2)
    assert _curl(cluster, NS, client, "http://whoami-svc.outside/").startswith("whoami-")
    text = _metrics(cluster, NS, client)
    assert metric_total(
        text,
        "request_total",
        direction="outbound",
        tls="no_identity",
        no_tls_reason="not_provided_by_service_discovery",
    )


def test_every_proxy_waited_for_its_certificate(cluster: LocalCluster) -> None:
    pods = cluster.wait_ready(NS, "whoami-", 2)
    for pod in pods:
        logs = cluster.run("logs", pod["metadata"]["name"], "-n", NS, "-c", "linkerd-proxy")
        lines = logs.stdout.splitlines()
        got = next(i for i, line in enumerate(lines) if "got certificate for" in line)
        ready = next(i for i, line in enumerate(lines) if "proxy ready" in line)
        assert got < ready
    wait_for(
        lambda: all(p["status"]["phase"] == "Running" for p in cluster.get("pods", "weft")),
        30,
        what="the control plane running",
    )


def _write_leaf(
    directory: Path, issuer: certs.Issuer, name: str, now: datetime, lifetime: timedelta
) -> tuple[Path, Path]:
    key = certs.new_key()
    csr = certs.check_csr(certs.make_csr(key, name), name)
    leaf = certs.issue_leaf(
        issuer, csr, name, lifetime=lifetime, clock_skew=timedelta(seconds=0), now=now
    )
    stem = directory / f"{name}-{certs.not_after(leaf).timestamp()}"
    cert_file, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
    cert_file.write_bytes(certs.certs_to_pem([leaf, *issuer.chain]))
    key_file.write_bytes(certs.key_to_pem(key))
    return cert_file, key_file


def test_the_inbound_proxy_refuses_a_foreign_or_expired_client_certificate(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    backend = cluster.wait_ready(NS, "whoami-", 2)[0]
    outside = _pod(cluster, "outside", "client-")["metadata"]["name"]
    ip = backend["status"]["podIP"]
    server_name = identity("default", NS)
    claimed = identity("default", NS)
    real = trust.read_trust(trust.TrustFiles.in_dir(cluster.state_dir / "identity"))
    foreign = trust.generate_trust("weft", "cluster.local", now=datetime.now(UTC))
    issued_at = certs.not_before(real.issuer.cert) + timedelta(seconds=10)
    cases = {
        "another anchor": _write_leaf(
            tmp_path, foreign.issuer, claimed, datetime.now(UTC), timedelta(hours=1)
        ),
        "expired": _write_leaf(tmp_path, real.issuer, claimed, issued_at, timedelta(seconds=30)),
    }
    text = _curl(cluster, "outside", outside, f"http://{ip}:4191/metrics")
    before = metric_total(text, "inbound_tcp_errors_total", error="tls_handshake")
    for what, (cert_file, key_file) in cases.items():
        proc = cluster.exec(
            outside,
            "outside",
            ["python", str(APPS / "tls_client.py"), ip, "8080", "--name", server_name,
             "--cert", str(cert_file), "--key", str(key_file)],
        )  # fmt: skip
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert not result["ok"], (what, result)
    text = _curl(cluster, "outside", outside, f"http://{ip}:4191/metrics")
    assert metric_total(text, "inbound_tcp_errors_total", error="tls_handshake") == before + 2
    logs = cluster.run("logs", backend["metadata"]["name"], "-n", NS, "-c", "linkerd-proxy")
    refusals = [line for line in logs.stdout.splitlines() if "refused TLS from" in line]
    assert any("certificate has expired" in line for line in refusals), refusals
    assert any("unable to get local issuer certificate" in line for line in refusals), refusals
    # A certificate from the cluster's own issuer is accepted (the same path, for contrast).
    good = _write_leaf(tmp_path, real.issuer, claimed, datetime.now(UTC), timedelta(hours=1))
    proc = cluster.exec(
        outside,
        "outside",
        ["python", str(APPS / "tls_client.py"), ip, "8080", "--name", server_name,
         "--cert", str(good[0]), "--key", str(good[1])],
    )  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and "200 OK" in result["response"], result
