"""``weft install | kubectl apply``, the webhooks called by the real API server, ``weft check``
and ``weft uninstall | kubectl delete``, in that order, against one test cluster."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from harness.mesh import wait_for
from tests.k8s.cluster import REPO, KubeCluster
from tests.k8s.webhooks import Webhooks
from weft.cli.check_results import GLYPHS
from weft.k8s.install.webhook_tls import generate

pytestmark = pytest.mark.k8s

Obj = dict[str, Any]
NS = "weft"
FAIL = GLYPHS["error"]


def weft(
    kube: KubeCluster, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``weft`` CLI against the test cluster (``KUBECONFIG`` set)."""
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "weft"), *args],
        input=input,
        capture_output=True,
        text=True,
        env=kube.env(),
        timeout=180,
    )


def documents(manifest: str) -> list[Obj]:
    import yaml

    return [d for d in yaml.safe_load_all(manifest) if d]


@pytest.fixture(scope="module")
def webhooks(kube: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhooks]:
    """The control plane installed, its webhooks serving."""
    if os.geteuid() != 0:
        pytest.skip("the webhooks bind their Service's port 443, which needs root")
    install = weft(kube, "install")
    assert install.returncode == 0, install.stderr
    objects = documents(install.stdout)
    cluster_scoped = [o for o in objects if "namespace" not in o["metadata"]]
    # Cluster-scoped objects (the namespace first) pass a server-side dry run on a clean cluster.
    kube.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": cluster_scoped}))  # fmt: skip
    kube.kubectl("apply", "-f", "-", input=install.stdout)
    hooks = Webhooks(kube, tmp_path_factory.mktemp("webhooks"))
    try:
        hooks.start("proxy-injector")
        hooks.start("sp-validator")
        yield hooks
    finally:
        hooks.stop()


def test_check_pre_passes_on_a_clean_cluster(kube: KubeCluster) -> None:
    done = weft(kube, "check", "--pre")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "can create CustomResourceDefinitions" in done.stdout
    assert "has NET_ADMIN capability" in done.stdout
    assert done.stdout.rstrip().endswith("Status check results are √")


def test_install_applies_and_every_object_passes_a_server_dry_run(
    kube: KubeCluster, webhooks: Webhooks
) -> None:
    manifest = weft(kube, "install").stdout
    done = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest)
    kinds = {line.split("/")[0] for line in done.stdout.splitlines()}
    assert {
        "namespace",
        "deployment.apps",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io",
    } <= kinds
    deployments = kube.kubectl_json("get", "deployments", "-n", NS)["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == [
        "weft-destination",
        "weft-identity",
        "weft-metrics-api",
        "weft-prometheus",
        "weft-proxy-injector",
        "weft-sp-validator",
        "weft-tap",
        "weft-web",
    ]
    json_output = weft(kube, "install", "-o", "json")
    assert json.loads(json_output.stdout)["kind"] == "List"


def injected_pod(kube: KubeCluster, ns: str, selector: str) -> Obj:
    def found() -> Obj | None:
        items = kube.kubectl_json("get", "pods", "-n", ns, "-l", selector)["items"]
        return items[0] if items else None

    pod = wait_for(found, 30, what=f"a pod {selector} in {ns}", interval=0.2)
    assert pod is not None
    return pod


def containers(pod: Obj) -> list[str]:
    spec = pod["spec"]
    return [c["name"] for c in [*spec.get("initContainers", []), *spec["containers"]]]


def test_pods_in_an_annotated_namespace_are_stored_injected(
    kube: KubeCluster, webhooks: Webhooks
) -> None:
    ns = "meshed"
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "annotations": {"linkerd.io/inject": "enabled"}},
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "weft:0.1.0"}]},
                    },
                },
            },
        ]
    )
    pod = injected_pod(kube, ns, "app=web")
    assert containers(pod) == ["linkerd-init", "linkerd-proxy", "web"], webhooks.log(
        "proxy-injector"
    )
    labels = pod["metadata"]["labels"]
    assert labels["linkerd.io/proxy-deployment"] == "web"
    assert labels["linkerd.io/control-plane-ns"] == NS
    env = {e["name"]: e.get("value") for e in pod["spec"]["initContainers"][1]["env"]}
    assert (
        env["LINKERD2_PROXY_IDENTITY_TOKEN_FILE"]
        == "/var/run/secrets/tokens/linkerd-identity-token"
    )
    assert (
        env["LINKERD2_PROXY_DESTINATION_SVC_ADDR"] == "weft-destination.weft.svc.cluster.local:8086"
    )
    assert "BEGIN CERTIFICATE" in env["LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS"]

    # A bare pod is injected too; one that opts out is not.
    kube.kubectl("run", "bare", "-n", ns, "--image=weft:0.1.0", "--labels=app=bare")
    assert "linkerd-proxy" in containers(injected_pod(kube, ns, "app=bare"))
    kube.kubectl(
        "run", "optout", "-n", ns, "--image=weft:0.1.0", "--labels=app=optout",
        "--annotations=linkerd.io/inject=disabled",
    )  # fmt: skip
    assert containers(injected_pod(kube, ns, "app=optout")) == ["optout"]


def profile(timeout: str) -> Obj:
    return {
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": "web.meshed.svc.cluster.local", "namespace": "meshed"},
        "spec": {
            "routes": [
                {
                    "name": "home",
                    "condition": {"method": "GET", "pathRegex": "/"},
                    "timeout": timeout,
                }
            ]
        },
    }


def test_an_invalid_service_profile_is_refused_with_the_validators_message(
    kube: KubeCluster, webhooks: Webhooks
) -> None:
    refused = kube.kubectl("apply", "-f", "-", input=json.dumps(profile("soon")), check=False)
    assert refused.returncode != 0
    assert 'admission webhook "weft-sp-validator.weft.io" denied the request' in refused.stderr
    assert 'spec.routes[0].timeout: invalid duration "soon"' in refused.stderr
    kube.kubectl("apply", "-f", "-", input=json.dumps(profile("300ms")))


def check(kube: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return weft(kube, "check", "--wait", "20", *args)


def test_check_passes_once_the_control_plane_is_ready(
    kube: KubeCluster, webhooks: Webhooks
) -> None:
    kube.mark_ready(NS)
    done = check(kube)
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (
        "√ control plane replica sets are ready",
        "√ issuer cert is issued by the trust anchor",
        "√ proxy-injector webhook is configured with the right caBundle",
        "√ [kubernetes] control plane can talk to Kubernetes",
    ):
        assert line in done.stdout
    assert done.stdout.rstrip().endswith("Status check results are √")
    pre = weft(kube, "check", "--pre")
    assert pre.returncode == 1
    assert f"{FAIL} control plane namespace does not already exist" in pre.stdout


def test_check_proxy_sees_the_meshed_pods(kube: KubeCluster, webhooks: Webhooks) -> None:
    kube.mark_ready("meshed")
    done = check(kube, "--proxy", "-n", "meshed")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "√ data plane proxies are ready" in done.stdout
    assert "√ data plane proxies certificate match CA" in done.stdout


def test_check_fails_with_a_hint_on_a_wrong_ca_bundle_and_upgrade_repairs_it(
    kube: KubeCluster, webhooks: Webhooks
) -> None:
    other = base64.b64encode(generate("elsewhere", "other", datetime.now(UTC)).ca_pem).decode()
    patch = [{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": other}]
    kube.kubectl(
        "patch", "mutatingwebhookconfiguration", "weft-proxy-injector-webhook-config",
        "--type=json", "-p", json.dumps(patch),
    )  # fmt: skip
    done = check(kube, "-o", "json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["success"] is False
    (category,) = [
        c for c in report["categories"] if c["categoryName"] == "weft-webhooks-and-apisvc-tls"
    ]
    (bad,) = [c for c in category["checks"] if c["result"] == "error"]
    assert bad["description"] == "proxy-injector webhook is configured with the right caBundle"
    assert "caBundle does not hold the CA" in bad["error"]
    assert "weft upgrade" in bad["hint"]

    roots_before = kube.kubectl_json("get", "configmap", "weft-identity-trust-roots", "-n", NS)
    upgrade = weft(kube, "upgrade", "--controller-replicas", "2")
    assert upgrade.returncode == 0, upgrade.stderr
    kube.kubectl("apply", "-f", "-", input=upgrade.stdout)
    roots_after = kube.kubectl_json("get", "configmap", "weft-identity-trust-roots", "-n", NS)
    assert roots_after["data"] == roots_before["data"]
    deployment = kube.kubectl_json("get", "deployment", "weft-destination", "-n", NS)
    assert deployment["spec"]["replicas"] == 2
    values = json.loads(
        kube.kubectl_json("get", "configmap", "weft-config", "-n", NS)["data"]["values"]
    )
    assert values["controller_replicas"] == 2

    def second_replicas_ready() -> bool:
        kube.mark_ready(NS)
        ready = kube.kubectl_json("get", "deployments", "-n", NS)["items"]
        return all(d.get("status", {}).get("readyReplicas") == d["spec"]["replicas"] for d in ready)

    wait_for(second_replicas_ready, 60, what="two ready replicas of each component", interval=0.5)
    done = check(kube)
    assert done.returncode == 0, done.stdout


def test_check_fails_when_a_component_is_scaled_to_zero(
    kube: KubeCluster, webhooks: Webhooks
) -> None:
    kube.kubectl("scale", "deployment", "weft-destination", "-n", NS, "--replicas=0")
    done = weft(kube, "check", "--wait", "0")
    assert done.returncode == 1
    assert f"{FAIL} control plane replica sets are ready" in done.stdout
    assert "weft-destination is scaled to zero" in done.stdout
    assert "hint: " in done.stdout
    assert done.stdout.rstrip().endswith(f"Status check results are {FAIL}")
    kube.kubectl("scale", "deployment", "weft-destination", "-n", NS, "--replicas=2")


def test_uninstall_removes_everything(kube: KubeCluster, webhooks: Webhooks) -> None:
    webhooks.stop()
    done = weft(kube, "uninstall")
    assert done.returncode == 0, done.stderr
    kinds = [d["kind"] for d in documents(done.stdout)]
    assert kinds[:2] == ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
    kube.kubectl("delete", "-f", "-", "--wait=false", input=done.stdout)

    def namespace_gone() -> bool:
        kube.finish_deletions(NS)
        return kube.kubectl("get", "namespace", NS, check=False).returncode != 0

    wait_for(namespace_gone, 90, what=f"namespace {NS} deleted", interval=0.5)
    for kind in (
        "clusterroles",
        "clusterrolebindings",
        "customresourcedefinitions",
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "namespaces",
    ):
        left = kube.kubectl_json("get", kind, "-l", "weft.io/control-plane-ns=weft")["items"]
        assert left == [], f"{kind} left: {[o['metadata']['name'] for o in left]}"
    again = weft(kube, "uninstall")
    assert again.returncode == 1
    assert "no weft control plane found" in again.stderr
