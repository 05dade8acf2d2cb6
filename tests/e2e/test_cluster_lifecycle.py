"""The local runtime's lifecycle and platform interface: up, crash, down; list, watch, tokens."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.local_cluster import APPS, LocalCluster
from harness.mesh import netns_skip_reason, wait_for
from weft.local.cluster_config import ClusterConfig
from weft.local.platform import LocalPlatform

pytestmark = pytest.mark.netns

MESHED_APP = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: app, annotations: {{linkerd.io/inject: enabled}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: whoami, namespace: app}}
spec:
  selector: {{matchLabels: {{app: whoami}}}}
  template:
    metadata: {{labels: {{app: whoami}}}}
    spec:
      serviceAccountName: whoami
      containers:
      - name: app
        command: [python, {APPS / "whoami.py"}]
        ports: [{{name: http, containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: whoami-svc, namespace: app}}
spec:
  selector: {{app: whoami}}
  ports: [{{port: 80, targetPort: http}}]
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    c = LocalCluster(tmp_path, pod_cidr="10.244.0.0/16", service_cidr="10.96.0.0/12")
    try:
        yield c
    finally:
        c.down()


def test_down_after_the_agent_is_killed_leaves_nothing_behind(cluster: LocalCluster) -> None:
    cluster.up()
    assert cluster.run("up").stdout.count("already up") == 1
    cluster.apply(MESHED_APP)
    cluster.wait_ready("app", "whoami-", 1)
    assert cluster.leftovers()

    pid = int((cluster.state_dir / "agent.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    proc = cluster.down()
    assert proc.returncode == 0, proc.stderr
    assert cluster.leftovers() == []
    again = cluster.down()
    assert again.returncode == 0, again.stderr
    assert cluster.leftovers() == []


def test_the_state_survives_between_invocations_and_a_restart_of_the_node(
    cluster: LocalCluster,
) -> None:
    cluster.up()
    cluster.apply(MESHED_APP)
    first = cluster.wait_ready("app", "whoami-", 1)[0]["metadata"]["name"]
    pid = int((cluster.state_dir / "agent.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    cluster.up()
    # The Deployment is still there and runs a fresh pod.
    assert [d["metadata"]["name"] for d in cluster.get("deploy", "app")] == ["whoami"]
    second = cluster.wait_ready("app", "whoami-", 1)[0]["metadata"]["name"]
    assert second != first


def test_the_platform_interface_lists_watches_and_verifies_tokens(
    cluster: LocalCluster,
) -> None:
    cluster.up()
    cfg = ClusterConfig.load(cluster.state_dir)

    async def scenario() -> None:
        platform = LocalPlatform(cfg.api_socket)
        try:
            events = platform.watch("Service", "app")
            cluster_apply = asyncio.ensure_future(asyncio.to_thread(cluster.apply, MESHED_APP))
            first = await asyncio.wait_for(anext(events), 30)
            await cluster_apply
            assert first.type == "ADDED"
            assert first.object["metadata"]["name"] == "whoami-svc"
            assert first.object["spec"]["clusterIP"].startswith("10.")
            await asyncio.to_thread(cluster.wait_ready, "app", "whoami-", 1)
            pods = await platform.list("Pod", "app")
            pod = pods[0]["metadata"]["name"]
            token = await platform.mint_token("app", "whoami", pod)
            review = await platform.verify_token(token)
            assert review.authenticated
            assert review.username == "system:serviceaccount:app:whoami"
            forged = await platform.verify_token(token[:-2] + "xx")
            assert not forged.authenticated
            # The token the kubelet wrote for the pod proves the same identity.
            uid = pods[0]["metadata"]["uid"]
            written = (cluster.state_dir / "pods" / uid / "token").read_text()
            assert (await platform.verify_token(written)).service_account == "whoami"
        finally:
            await platform.close()

    asyncio.run(scenario())
    wait_for(lambda: cluster.get("endpoints", "app")[0]["subsets"], 10, what="endpoints")
