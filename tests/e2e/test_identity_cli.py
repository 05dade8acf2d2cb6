"""``weft identity`` and ``weft check`` against a real local cluster with a meshed workload.

One cluster serves the module; the meshed ``whoami`` and ``client`` pods get certificates from
the cluster's identity service, which the commands read over TLS from the node namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from harness.local_cluster import LocalCluster, running_cluster
from harness.mesh import REPO_ROOT
from tests.e2e.test_cluster import app_manifest
from weft.identity.certs import dns_names, load_certs_pem
from weft.identity.trust import generate_trust

pytestmark = pytest.mark.netns

POD_CIDR = "10.252.0.0/16"
SERVICE_CIDR = "10.253.0.0/16"
NAMESPACE = "idcheck"
IDENTITY = f"default.{NAMESPACE}.serviceaccount.identity.weft.cluster.local"
CROSS = "\u00d7"
SECTIONS = ("weft-local-cluster", "weft-identity", "weft-identity-data-plane")

UNMESHED_POD = f"""
apiVersion: v1
kind: Pod
metadata:
  name: loner
  namespace: {NAMESPACE}
  annotations: {{linkerd.io/inject: disabled}}
spec:
  containers:
  - name: sleep
    command: [sleep, infinity]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("clusters"), POD_CIDR, SERVICE_CIDR) as c:
        c.apply(app_manifest(NAMESPACE, inject=True, replicas=1))
        c.apply(UNMESHED_POD)
        c.wait_ready(NAMESPACE, "whoami-", 1)
        c.wait_ready(NAMESPACE, "client-", 1)
        yield c


def weft(
    cluster: LocalCluster, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``weft <args>`` for the cluster, chosen through the environment as a user would."""
    env = {**os.environ, "WEFT_CLUSTER": cluster.name, "WEFT_STATE_DIR": str(cluster.state_dir)}
    return subprocess.run(
        [sys.executable, "-m", "weft", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
        env=env,
    )


def pod_names(cluster: LocalCluster, prefix: str) -> list[str]:
    return [p["metadata"]["name"] for p in cluster.ready_pods(NAMESPACE, prefix)]


def test_identity_shows_a_meshed_pods_certificate(cluster: LocalCluster) -> None:
    (whoami,) = pod_names(cluster, "whoami-")
    (client,) = pod_names(cluster, "client-")
    proc = weft(cluster, "identity", "-n", NAMESPACE, whoami, client)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"POD {whoami} (1 of 2)" in out
    assert f"POD {client} (2 of 2)" in out
    assert f"DNS name:    {IDENTITY}" in out
    assert "Issuer:      identity.weft.cluster.local" in out
    assert "-----BEGIN CERTIFICATE-----" in out
    assert out.count(f"√ valid for {IDENTITY}: chains to the trust anchors") == 2

    pem = weft(cluster, "identity", "-n", NAMESPACE, "--pem", whoami)
    assert pem.returncode == 0, pem.stderr
    leaf, *_ = load_certs_pem(pem.stdout.encode(), "weft identity --pem")
    assert dns_names(leaf) == [IDENTITY]
    assert leaf.not_valid_after_utc > datetime.now(UTC)


def test_check_passes_on_a_healthy_cluster(cluster: LocalCluster) -> None:
    proc = weft(cluster, "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for section in SECTIONS:
        assert section in lines, proc.stdout
    assert "√ the node agent is reachable" in lines
    assert "√ the control plane pods are ready" in lines
    assert "√ certificate config is valid" in lines
    assert "√ issuer cert is issued by the trust anchor" in lines
    assert "√ data plane proxies certificate match CA" in lines
    assert not any(line.startswith(CROSS) for line in lines), proc.stdout
    assert lines[-1] == "Status check results are √"


def test_check_fails_when_the_trust_anchor_changes(cluster: LocalCluster) -> None:
    anchors = cluster.state_dir / "identity" / "ca.crt"
    saved = anchors.with_name("ca.crt.saved")
    shutil.copy2(anchors, saved)
    try:
        stranger = generate_trust("weft", "cluster.local", now=datetime.now(UTC))
        anchors.write_bytes(stranger.anchors_pem())
        proc = weft(cluster, "check", "--wait", "5")
        (whoami,) = pod_names(cluster, "whoami-")
        shown = weft(cluster, "identity", "-n", NAMESPACE, whoami)
    finally:
        shutil.copy2(saved, anchors)
        saved.unlink()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert f"{CROSS} certificate config is valid" in lines, proc.stdout
    assert f"{CROSS} issuer cert is issued by the trust anchor" in lines, proc.stdout
    assert f"{CROSS} data plane proxies certificate match CA" in lines, proc.stdout
    assert any(line.startswith(f"    * {NAMESPACE}/whoami-") for line in lines), proc.stdout
    assert lines[-1] == f"Status check results are {CROSS}"
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert f"{CROSS} not valid: " in shown.stdout
    assert "TLS verification said:" in shown.stdout

    again = weft(cluster, "check")
    assert again.returncode == 0, again.stdout + again.stderr


def test_identity_of_an_unmeshed_pod_is_one_line(cluster: LocalCluster) -> None:
    proc = weft(cluster, "identity", "-n", NAMESPACE, "loner")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "weft identity: pod loner is not meshed (it has no linkerd-proxy container)"
    ]


def test_identity_of_a_missing_pod_is_one_line(cluster: LocalCluster) -> None:
    proc = weft(cluster, "identity", "-n", NAMESPACE, "nosuchpod")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f'weft identity: pod "nosuchpod" not found in namespace {NAMESPACE}'
    ]
