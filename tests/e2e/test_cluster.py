"""The local runtime end to end: a real cluster of network namespaces driven by ``weft cluster``.

One cluster is shared by this module (bringing one up costs about a second); each test works
in its own Kubernetes namespace. The last test removes the cluster and checks that nothing of
it is left on the host.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.local_cluster import APPS, LocalCluster, metric_total, running_cluster
from harness.mesh import wait_for

pytestmark = pytest.mark.netns

POD_CIDR = "10.246.0.0/16"
SERVICE_CIDR = "10.247.0.0/16"


UNREADY_DIR = Path("/tmp")


def app_manifest(namespace: str, *, inject: bool = False, replicas: int = 2) -> str:
    """A namespace with a ``whoami`` Deployment + Service and an idle client Deployment.

    A ``whoami`` pod turns unready while ``/tmp/unready-<namespace>-<pod>`` exists.
    """
    annotations = "  annotations: {linkerd.io/inject: enabled}\n" if inject else ""
    return f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
{annotations}---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: whoami, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: whoami}}}}
  template:
    metadata: {{labels: {{app: whoami}}}}
    spec:
      containers:
      - name: app
        image: whoami:test
        command: [python, {APPS / "whoami.py"}, --port, "8080"]
        args: [--unready-file, "{UNREADY_DIR}/unready-{namespace}-$(POD_NAME)"]
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 1
        livenessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {{name: whoami-svc, namespace: {namespace}}}
spec:
  selector: {{app: whoami}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata: {{labels: {{app: client}}}}
    spec:
      containers:
      - name: sleep
        command: [sleep, infinity]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("clusters"), POD_CIDR, SERVICE_CIDR) as c:
        yield c


def curl(cluster: LocalCluster, namespace: str, client: str, url: str) -> str:
    """GET ``url`` from the client pod; returns the body."""
    proc = cluster.exec(client, namespace, ["curl", "-sS", "--max-time", "5", url])
    return proc.stdout.strip()


def test_unmeshed_client_reaches_a_service_by_name_and_ip_spread_over_replicas(
    cluster: LocalCluster,
) -> None:
    cluster.apply(app_manifest("plain"))
    backends = {p["metadata"]["name"] for p in cluster.wait_ready("plain", "whoami-", 2)}
    client = cluster.wait_ready("plain", "client-", 1)[0]["metadata"]["name"]
    (svc,) = cluster.get("svc", "plain")
    cluster_ip = svc["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.247.")
    wait_for(
        lambda: cluster.get("endpoints", "plain")[0]["subsets"][0].get("addresses"),
        10,
        what="endpoints",
    )

    for url in (
        "http://whoami-svc/",
        "http://whoami-svc.plain/",
        "http://whoami-svc.plain.svc.cluster.local/",
        f"http://{cluster_ip}/",
    ):
        assert curl(cluster, "plain", client, url) in backends, url

    seen = {curl(cluster, "plain", client, "http://whoami-svc/") for _ in range(30)}
    assert seen == backends


def test_endpoints_follow_readiness(cluster: LocalCluster) -> None:
    cluster.apply(app_manifest("ready"))
    pods = cluster.wait_ready("ready", "whoami-", 2)
    client = cluster.wait_ready("ready", "client-", 1)[0]["metadata"]["name"]
    names = sorted(p["metadata"]["name"] for p in pods)
    flag = UNREADY_DIR / f"unready-ready-{names[0]}"

    def serving() -> set[str]:
        (ep,) = cluster.get("endpoints", "ready")
        ips = {a["ip"] for s in ep["subsets"] for a in s.get("addresses", [])}
        return {p["metadata"]["name"] for p in pods if p["status"]["podIP"] in ips}

    flag.touch()
    try:
        wait_for(lambda: serving() == {names[1]}, 20, what="the unready pod leaves the endpoints")
        seen = {curl(cluster, "ready", client, "http://whoami-svc/") for _ in range(15)}
        assert seen == {names[1]}
    finally:
        flag.unlink()
    wait_for(lambda: serving() == set(names), 20, what="the pod is back in the endpoints")


def test_a_killed_container_restarts_and_a_deleted_pod_is_replaced(
    cluster: LocalCluster,
) -> None:
    cluster.apply(app_manifest("heal", replicas=1))
    pod = cluster.wait_ready("heal", "whoami-", 1)[0]
    name = pod["metadata"]["name"]
    # SIGKILL the app's process (found among the processes in the pod's namespace).
    pids = cluster.pids(pod, "whoami.py")
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        pods = cluster.ready_pods("heal", "whoami-")
        return (
            bool(pods)
            and pods[0]["metadata"]["name"] == name
            and (pods[0]["status"]["containerStatuses"][0]["restartCount"] >= 1)
        )

    wait_for(restarted, 30, what="the container restarted and the pod is ready again")

    cluster.run("delete", "pod", name, "-n", "heal")
    replacement = cluster.wait_ready("heal", "whoami-", 1)[0]["metadata"]["name"]
    assert replacement != name


def test_scaling_and_a_template_change_roll_the_pods(cluster: LocalCluster) -> None:
    cluster.apply(app_manifest("roll", replicas=1))
    old = {p["metadata"]["name"] for p in cluster.wait_ready("roll", "whoami-", 1)}
    cluster.apply(app_manifest("roll", replicas=3))
    scaled = {p["metadata"]["name"] for p in cluster.wait_ready("roll", "whoami-", 3)}
    assert old < scaled
    changed = app_manifest("roll", replicas=3).replace("periodSeconds: 2", "periodSeconds: 3")
    assert "configured" in cluster.apply(changed)

    def rolled() -> bool:
        pods = {p["metadata"]["name"] for p in cluster.wait_ready("roll", "whoami-", 3)}
        return not pods & scaled

    # Pods are replaced a few at a time; at the end, three new ones serve.
    wait_for(rolled, 90, what="every pod replaced by one of the new template", interval=0.2)


def test_injected_pods_go_through_their_proxies(cluster: LocalCluster) -> None:
    cluster.apply(app_manifest("meshed", inject=True))
    backends = cluster.wait_ready("meshed", "whoami-", 2)
    client_pod = cluster.wait_ready("meshed", "client-", 1)[0]
    client = client_pod["metadata"]["name"]
    for pod in [*backends, client_pod]:
        init = [c["name"] for c in pod["spec"]["initContainers"]]
        assert init == ["linkerd-init", "linkerd-proxy"], pod["metadata"]["name"]
        assert pod["metadata"]["labels"]["linkerd.io/proxy-deployment"] in ("whoami", "client")

    requests = 20
    for _ in range(requests):
        assert curl(cluster, "meshed", client, "http://whoami-svc/")

    def outbound() -> float:
        text = curl(cluster, "meshed", client, "http://127.0.0.1:4191/metrics")
        return metric_total(text, "request_total", direction="outbound")

    assert outbound() == requests
    inbound = 0.0
    for pod in backends:
        text = curl(cluster, "meshed", client, f"http://{pod['status']['podIP']}:4191/metrics")
        inbound += metric_total(text, "request_total", direction="inbound")
    # Readiness and liveness probes also come in through the inbound proxy.
    assert inbound >= requests
    logs = cluster.run("logs", client, "-n", "meshed", "-c", "linkerd-proxy").stdout
    assert "error" not in logs.lower()


def test_a_meshed_job_calls_out_at_once_and_completes_because_its_proxy_stops(
    cluster: LocalCluster,
) -> None:
    cluster.apply(app_manifest("batch", inject=True, replicas=1))
    cluster.wait_ready("batch", "whoami-", 1)
    # No retries and no back-off: the very first outbound connection must find the proxy
    # listening (Linkerd's start-up race), and the pod must finish although the proxy ran.
    cluster.apply("""
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: batch}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        command: [curl, -sSf, --max-time, "5", "http://whoami-svc/"]
""")

    def finished() -> str:
        pods = [
            p for p in cluster.get("pods", "batch") if p["metadata"]["name"].startswith("once-")
        ]
        phase = pods[0]["status"].get("phase", "") if pods else ""
        return phase if phase in ("Succeeded", "Failed") else ""

    assert wait_for(finished, 60, what="the job's pod to finish", interval=0.2) == "Succeeded"
    (job,) = cluster.get("jobs", "batch")
    assert job["status"]["succeeded"] == 1
    pod = next(p for p in cluster.get("pods", "batch") if p["metadata"]["name"].startswith("once-"))
    assert pod["spec"]["initContainers"][1]["name"] == "linkerd-proxy"
    proxy = [c for c in pod["status"]["initContainerStatuses"] if c["name"] == "linkerd-proxy"]
    assert "terminated" in proxy[0]["state"]
    out = cluster.run("logs", pod["metadata"]["name"], "-n", "batch", "-c", "work").stdout
    assert out.strip().startswith("whoami-")


BAD_INPUTS = {
    "malformed YAML": ("kind: Service\nmetadata: {name: [x\n", r"invalid YAML"),
    "unknown kind": ("apiVersion: v1\nkind: Deploymnt\nmetadata: {name: x}\n", r"unknown kind"),
    "missing selector": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: nosel}\nspec: {ports: [{port: 80}]}\n",
        r"spec\.selector",
    ),
    "unknown named port": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: badport, namespace: plain}\n"
        "spec: {selector: {app: whoami}, ports: [{port: 80, targetPort: nope}]}\n",
        r"targetPort.*nope",
    ),
    "duplicate names": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\n",
        r"dup",
    ),
    "invalid ServiceProfile": (
        "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\n"
        "metadata: {name: web-svc.default.svc.cluster.local}\n"
        "spec: {routes: [{name: r, condition: {}}]}\n",
        r"spec\.routes\[0\]\.condition",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_changes_nothing(cluster: LocalCluster, case: str) -> None:
    manifest, pattern = BAD_INPUTS[case]
    good = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bystander-{len(case)}}}\n---\n"
    before = {o["metadata"]["name"] for o in cluster.get("cm")}
    proc = cluster.run("apply", "-f", "-", stdin=good + manifest, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("weft cluster: "), proc.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert "document" in lines[0] or "YAML" in lines[0]
    assert {o["metadata"]["name"] for o in cluster.get("cm")} == before


def test_the_cli_says_what_to_do_when_no_cluster_runs(tmp_path: Path) -> None:
    ghost = LocalCluster(tmp_path, pod_cidr=POD_CIDR, service_cidr=SERVICE_CIDR)
    proc = ghost.run("get", "pods", check=False)
    assert proc.returncode == 1
    assert "weft cluster up" in proc.stderr
