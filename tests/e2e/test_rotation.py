"""Certificate rotation under load, in a real local cluster.

Proxy certificates live one minute and the generated issuer 75 seconds, so within the test every
proxy renews its certificate and the identity service renews its issuer; a new replica started
after that gets a certificate from the new issuer. Steady traffic through the mesh the whole time
must see no failed request.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from harness.local_cluster import APPS, LocalCluster, metric_total, running_cluster
from harness.mesh import REPO_ROOT, wait_for
from tests.e2e.test_cluster import app_manifest
from weft.identity import trust

pytestmark = pytest.mark.netns

POD_CIDR = "10.250.0.0/16"
SERVICE_CIDR = "10.251.0.0/16"
NS = "rotate"
LOAD_SECONDS = 85


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(
        tmp_path_factory.mktemp("clusters"),
        POD_CIDR,
        SERVICE_CIDR,
        "--identity-issuance-lifetime",
        "1m",
        "--identity-issuer-lifetime",
        "75s",
    ) as c:
        yield c


def _cert_expiry(cluster: LocalCluster, pod: str) -> float:
    text = cluster.exec(pod, NS, ["curl", "-sS", "http://127.0.0.1:4191/metrics"]).stdout
    expiry = metric_total(text, "identity_cert_expiration_timestamp_seconds")
    assert expiry, "no identity_cert_expiration_timestamp_seconds"
    return expiry


def test_rotating_leaves_and_issuer_under_load_fails_no_request(cluster: LocalCluster) -> None:
    cluster.apply(app_manifest(NS, inject=True))
    cluster.wait_ready(NS, "whoami-", 2)
    client = cluster.wait_ready(NS, "client-", 1)[0]["metadata"]["name"]
    files = trust.TrustFiles.in_dir(cluster.state_dir / "identity")
    first_issuer = trust.read_trust(files).issuer.cert.serial_number
    first_expiry = _cert_expiry(cluster, client)

    argv = [sys.executable, "-m", "weft", "cluster", "--name", cluster.name,
            "--state-dir", str(cluster.state_dir), "exec", client, "-n", NS, "--",
            "python", str(APPS / "load.py"), "http://whoami-svc/",
            "--seconds", str(LOAD_SECONDS)]  # fmt: skip
    load = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        wait_for(
            lambda: trust.read_trust(files).issuer.cert.serial_number != first_issuer,
            LOAD_SECONDS - 10,
            what="the identity service renewing its issuer",
            interval=0.5,
        )
        wait_for(
            lambda: _cert_expiry(cluster, client) != first_expiry,
            30,
            what="the client proxy renewing its certificate",
            interval=0.5,
        )
        # A replica started now gets its certificate from the new issuer.
        cluster.apply(app_manifest(NS, inject=True, replicas=3))
        pods = cluster.wait_ready(NS, "whoami-", 3, timeout=30)
        out, _ = load.communicate(timeout=LOAD_SECONDS + 30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failed"] == 0, result
    assert result["ok"] > 1000, result
    names = {p["metadata"]["name"] for p in pods}
    assert names <= set(result["bodies"]), result["bodies"]  # the new replica served too
