"""``apply`` and ``delete`` of parsed manifests against an in-memory store."""

from __future__ import annotations

from typing import Any

import pytest

from weft.local import apply
from weft.local.controllers import deployments, endpoints
from weft.local.controllers.pods import is_terminating
from weft.local.pod_env import resolve_env
from weft.local.store import ObjectStore
from weft.resources import ManifestError, parse_manifest_text

Obj = dict[str, Any]
CIDR = "10.96.0.0/24"

CONFIG_MAP = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: app
        command: [serve]
        ports:
        - name: http
          containerPort: 8080
"""


def service_doc(name: str = "web", cluster_ip: str | None = None, namespace: str = "") -> str:
    lines = [
        "apiVersion: v1",
        "kind: Service",
        "metadata:",
        f"  name: {name}",
        *([f"  namespace: {namespace}"] if namespace else []),
        "spec:",
        "  selector: {app: web}",
        "  ports:",
        "  - port: 80",
        *([f"  clusterIP: {cluster_ip}"] if cluster_ip else []),
    ]
    return "\n".join(lines) + "\n"


def deployment_doc(replicas: int = 2) -> str:
    return DEPLOYMENT.format(replicas=replicas)


def join(*docs: str) -> str:
    return "---\n".join(docs)


def run_apply(store: ObjectStore, text: str, source: str = "app.yaml") -> list[str]:
    resources = apply.parse([apply.Source(source, text)], None)
    return apply.apply(store, resources, apply.ServiceIPs(CIDR))


def cluster_ip(store: ObjectStore, name: str, namespace: str = "default") -> str:
    svc = store.get("Service", namespace, name)
    assert svc is not None
    return str(svc["spec"]["clusterIP"])


def snapshot(store: ObjectStore) -> list[Obj]:
    kinds = ("Namespace", "ConfigMap", "Secret", "Service", "Deployment", "Pod", "Job")
    return [obj for kind in kinds for obj in store.list(kind)]


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore()


# -- parse --------------------------------------------------------------------------------


def test_parse_reads_every_document_of_every_source() -> None:
    resources = apply.parse(
        [apply.Source("a.yaml", join(CONFIG_MAP, service_doc())), apply.Source("b.yaml", "")],
        None,
    )
    assert [(r.kind, r.metadata.name, r.metadata.namespace) for r in resources] == [
        ("ConfigMap", "settings", "default"),
        ("Service", "web", "default"),
    ]


def test_parse_puts_documents_without_a_namespace_into_the_requested_one() -> None:
    (resource,) = apply.parse([apply.Source("a.yaml", CONFIG_MAP)], "shop")
    assert resource.metadata.namespace == "shop"


def test_parse_names_the_source_and_document_of_an_invalid_document() -> None:
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n"
    with pytest.raises(ManifestError, match=r"^b\.yaml: document 2 \(ConfigMap Bad_Name\)"):
        apply.parse(
            [apply.Source("a.yaml", CONFIG_MAP), apply.Source("b.yaml", join(CONFIG_MAP, bad))],
            None,
        )


# -- apply: results -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_apply_reports_created_then_unchanged_then_configured(store: ObjectStore) -> None:
    text = join(CONFIG_MAP, service_doc())
    assert run_apply(store, text) == ["configmap/settings created", "service/web created"]
    assert run_apply(store, text) == ["configmap/settings unchanged", "service/web unchanged"]
    changed = join(CONFIG_MAP.replace("fast", "slow"), service_doc())
    assert run_apply(store, changed) == ["configmap/settings configured", "service/web unchanged"]
    cm = store.get("ConfigMap", "default", "settings")
    assert cm is not None and cm["data"] == {"mode": "slow"}


@pytest.mark.anyio
async def test_an_unchanged_apply_writes_nothing(store: ObjectStore) -> None:
    run_apply(store, join(CONFIG_MAP, deployment_doc()))
    revision = store.revision
    watcher = store.subscribe(None)
    while not watcher.queue.empty():
        watcher.queue.get_nowait()
    run_apply(store, join(CONFIG_MAP, deployment_doc()))
    assert store.revision == revision
    assert watcher.queue.empty()


@pytest.mark.anyio
async def test_an_update_keeps_uid_and_creation_time(store: ObjectStore) -> None:
    run_apply(store, CONFIG_MAP)
    before = store.get("ConfigMap", "default", "settings")
    run_apply(store, CONFIG_MAP.replace("fast", "slow"))
    after = store.get("ConfigMap", "default", "settings")
    assert before is not None and after is not None
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"]["creationTimestamp"] == before["metadata"]["creationTimestamp"]
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])


@pytest.mark.anyio
async def test_apply_commits_all_documents_in_one_transaction(store: ObjectStore) -> None:
    watcher = store.subscribe(None)
    run_apply(store, join(CONFIG_MAP, service_doc(), deployment_doc()))
    kinds = []
    while not watcher.queue.empty():
        event = watcher.queue.get_nowait()
        kinds.append((event.type, event.object["kind"]))
    assert kinds == [("ADDED", "ConfigMap"), ("ADDED", "Service"), ("ADDED", "Deployment")]


# -- apply: all or nothing ----------------------------------------------------------------


@pytest.mark.anyio
async def test_an_invalid_document_applies_nothing(store: ObjectStore) -> None:
    run_apply(store, CONFIG_MAP)
    before = snapshot(store)
    bad = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec: {}\n"
    text = join(CONFIG_MAP.replace("fast", "slow"), service_doc(), bad)
    with pytest.raises(ManifestError, match=r"^app\.yaml: document 3 \(Deployment web\)"):
        run_apply(store, text)
    assert snapshot(store) == before


@pytest.mark.anyio
async def test_a_document_in_a_missing_namespace_applies_nothing(store: ObjectStore) -> None:
    text = join(CONFIG_MAP, service_doc("api", namespace="nowhere"))
    with pytest.raises(ManifestError, match=r'document 2 .*namespace "nowhere" not found'):
        run_apply(store, text)
    assert snapshot(store) == []
    assert store.revision == 0


@pytest.mark.anyio
async def test_a_namespace_applied_with_its_objects_is_accepted(store: ObjectStore) -> None:
    ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
    results = run_apply(store, join(ns, service_doc("api", namespace="shop")))
    assert results == ["namespace/shop created", "service/api created"]
    assert store.get("Service", "shop", "api") is not None


@pytest.mark.anyio
async def test_a_bad_cluster_ip_in_a_later_document_applies_nothing(store: ObjectStore) -> None:
    text = join(CONFIG_MAP, service_doc("a"), service_doc("b", cluster_ip="10.97.0.5"))
    with pytest.raises(ManifestError):
        run_apply(store, text)
    assert snapshot(store) == []
    assert store.revision == 0


# -- apply: cluster IPs -------------------------------------------------------------------


@pytest.mark.anyio
async def test_cluster_ips_are_allocated_from_the_cidr_skipping_the_first_address(
    store: ObjectStore,
) -> None:
    run_apply(store, join(service_doc("a"), service_doc("b")))
    run_apply(store, service_doc("c"))
    assert [cluster_ip(store, n) for n in "abc"] == ["10.96.0.2", "10.96.0.3", "10.96.0.4"]


@pytest.mark.anyio
async def test_a_freed_cluster_ip_is_reused(store: ObjectStore) -> None:
    run_apply(store, join(service_doc("a"), service_doc("b")))
    apply.delete(store, [("Service", "default", "a")])
    run_apply(store, service_doc("c"))
    assert cluster_ip(store, "c") == "10.96.0.2"


@pytest.mark.anyio
async def test_a_requested_cluster_ip_is_honoured_and_skipped_by_allocation(
    store: ObjectStore,
) -> None:
    run_apply(store, join(service_doc("fixed", cluster_ip="10.96.0.2"), service_doc("auto")))
    assert cluster_ip(store, "fixed") == "10.96.0.2"
    assert cluster_ip(store, "auto") == "10.96.0.3"


@pytest.mark.anyio
async def test_a_cluster_ip_outside_the_cidr_is_rejected(store: ObjectStore) -> None:
    with pytest.raises(ManifestError) as err:
        run_apply(store, join(CONFIG_MAP, service_doc("web", cluster_ip="10.97.0.5")))
    assert str(err.value) == (
        "app.yaml: document 2 (Service web): spec.clusterIP: 10.97.0.5 is not in the service "
        "CIDR 10.96.0.0/24"
    )


@pytest.mark.anyio
async def test_a_cluster_ip_already_taken_is_rejected(store: ObjectStore) -> None:
    run_apply(store, service_doc("first", cluster_ip="10.96.0.9"), source="one.yaml")
    with pytest.raises(ManifestError) as err:
        run_apply(store, service_doc("second", cluster_ip="10.96.0.9"), source="two.yaml")
    assert str(err.value) == (
        "two.yaml: document 1 (Service second): spec.clusterIP: 10.96.0.9 is already allocated"
    )
    assert store.get("Service", "default", "second") is None


@pytest.mark.anyio
async def test_two_documents_asking_for_the_same_cluster_ip_are_rejected(
    store: ObjectStore,
) -> None:
    text = join(service_doc("a", cluster_ip="10.96.0.9"), service_doc("b", cluster_ip="10.96.0.9"))
    with pytest.raises(ManifestError, match=r"document 2 \(Service b\).*already allocated"):
        run_apply(store, text)
    assert store.list("Service") == []


@pytest.mark.anyio
async def test_changing_the_cluster_ip_of_a_service_is_rejected(store: ObjectStore) -> None:
    run_apply(store, service_doc("web"))
    with pytest.raises(ManifestError) as err:
        run_apply(store, service_doc("web", cluster_ip="10.96.0.50"))
    assert str(err.value) == (
        "app.yaml: document 1 (Service web): spec.clusterIP: field is immutable (is 10.96.0.2)"
    )
    assert cluster_ip(store, "web") == "10.96.0.2"


@pytest.mark.anyio
async def test_reapplying_a_service_keeps_its_cluster_ip(store: ObjectStore) -> None:
    run_apply(store, service_doc("web"))
    assert run_apply(store, service_doc("web")) == ["service/web unchanged"]
    assert run_apply(store, service_doc("web", cluster_ip="10.96.0.2")) == ["service/web unchanged"]
    assert cluster_ip(store, "web") == "10.96.0.2"


def test_an_exhausted_service_cidr_is_reported() -> None:
    ips = apply.ServiceIPs("10.96.0.0/30")  # hosts .1 and .2; .1 is left out
    assert ips.allocate(set()) == "10.96.0.2"
    with pytest.raises(ManifestError, match=r"service CIDR 10\.96\.0\.0/30 is exhausted"):
        ips.allocate({"10.96.0.2"})


# -- apply: generation and status ---------------------------------------------------------


@pytest.mark.anyio
async def test_generation_starts_at_one_and_bumps_only_on_spec_change(store: ObjectStore) -> None:
    def generation() -> int:
        d = store.get("Deployment", "default", "web")
        assert d is not None
        return int(d["metadata"]["generation"])

    run_apply(store, deployment_doc(2))
    assert generation() == 1
    relabelled = deployment_doc(2).replace("  name: web\n", "  name: web\n  labels: {team: a}\n", 1)
    assert run_apply(store, relabelled) == ["deployment/web configured"]
    assert generation() == 1
    assert run_apply(store, deployment_doc(3)) == ["deployment/web configured"]
    assert generation() == 2
    assert run_apply(store, deployment_doc(3)) == ["deployment/web unchanged"]
    assert generation() == 2


@pytest.mark.anyio
async def test_status_is_never_taken_from_the_applied_document(store: ObjectStore) -> None:
    with_status = deployment_doc(2) + "status:\n  readyReplicas: 7\n  replicas: 7\n"
    run_apply(store, with_status)
    created = store.get("Deployment", "default", "web")
    assert created is not None and "status" not in created

    deployments.reconcile(store, lambda pod: pod)
    owned = store.get("Deployment", "default", "web")
    assert owned is not None
    controller_status = owned["status"]
    assert controller_status["replicas"] == 2

    assert run_apply(store, with_status) == ["deployment/web unchanged"]
    assert run_apply(store, deployment_doc(3) + "status:\n  replicas: 9\n") == [
        "deployment/web configured"
    ]
    after = store.get("Deployment", "default", "web")
    assert after is not None and after["status"] == controller_status


# -- apply: what re-applying keeps --------------------------------------------------------


@pytest.mark.anyio
async def test_reapplying_a_secret_without_string_data_drops_the_old_value(
    store: ObjectStore,
) -> None:
    plain = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  token: old\n"
    encoded = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  token: bmV3\n"
    run_apply(store, plain)
    run_apply(store, encoded)
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {}}
    container = {
        "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    }
    env = resolve_env(pod, container, {}, store.get)
    assert env["T"] == "new"


@pytest.mark.anyio
async def test_reapplying_a_terminating_pod_does_not_cancel_its_deletion(
    store: ObjectStore,
) -> None:
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
        "spec:\n  containers:\n  - name: app\n    command: [x]\n"
    )
    run_apply(store, pod)
    apply.delete(store, [("Pod", "default", "p")])
    run_apply(store, pod)
    stored = store.get("Pod", "default", "p")
    assert stored is not None and is_terminating(stored)


# -- delete -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_delete_removes_objects_and_reports_them(store: ObjectStore) -> None:
    run_apply(store, join(CONFIG_MAP, service_doc()))
    results = apply.delete(
        store, [("ConfigMap", "default", "settings"), ("Service", "default", "web")]
    )
    assert results == ['configmap "settings" deleted', 'service "web" deleted']
    assert store.get("ConfigMap", "default", "settings") is None
    assert store.get("Service", "default", "web") is None


@pytest.mark.anyio
async def test_deleting_a_pod_only_marks_it_for_deletion(store: ObjectStore) -> None:
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
        "spec:\n  containers:\n  - name: app\n    command: [x]\n"
    )
    run_apply(store, pod)
    assert apply.delete(store, [("Pod", "default", "p")]) == ['pod "p" deleted']
    stored = store.get("Pod", "default", "p")
    assert stored is not None and is_terminating(stored)


@pytest.mark.anyio
async def test_deleting_a_missing_object_raises_not_found(store: ObjectStore) -> None:
    with pytest.raises(ManifestError) as err:
        apply.delete(store, [("ConfigMap", "default", "nope")])
    assert str(err.value) == 'configmap "nope" not found'


@pytest.mark.anyio
async def test_deleting_an_object_of_another_namespace_raises_not_found(
    store: ObjectStore,
) -> None:
    run_apply(store, CONFIG_MAP)
    with pytest.raises(ManifestError, match='configmap "settings" not found'):
        apply.delete(store, [("ConfigMap", "shop", "settings")])
    assert store.get("ConfigMap", "default", "settings") is not None


@pytest.mark.anyio
async def test_deleting_a_namespace_removes_what_is_inside_it(store: ObjectStore) -> None:
    ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
        "spec:\n  containers:\n  - name: app\n    command: [x]\n"
    )
    run_apply(store, ns)
    run_apply(store, join(CONFIG_MAP, service_doc(), deployment_doc(), pod), source="default.yaml")
    resources = parse_manifest_text(join(CONFIG_MAP, service_doc(), pod), "shop.yaml", "shop")
    apply.apply(store, resources, apply.ServiceIPs(CIDR))
    deployments_in_shop = apply.parse([apply.Source("d.yaml", deployment_doc())], "shop")
    apply.apply(store, deployments_in_shop, apply.ServiceIPs(CIDR))
    deployments.reconcile(store, lambda p: p)
    endpoints.reconcile(store)
    assert store.get("Endpoints", "shop", "web") is not None
    shop_pods = store.list("Pod", "shop")
    assert len(shop_pods) == 3  # the bare pod and the Deployment's two

    assert apply.delete(store, [("Namespace", "", "shop")]) == ['namespace "shop" deleted']

    assert store.get("Namespace", "", "shop") is None
    for kind in ("ConfigMap", "Service", "Endpoints", "Deployment"):
        assert store.list(kind, "shop") == [], kind
    remaining = store.list("Pod", "shop")
    assert len(remaining) == 3
    assert all(is_terminating(p) for p in remaining)
    # The default namespace is untouched.
    assert store.get("ConfigMap", "default", "settings") is not None
    assert store.get("Service", "default", "web") is not None
    assert store.get("Deployment", "default", "web") is not None
    assert not any(is_terminating(p) for p in store.list("Pod", "default"))


@pytest.mark.anyio
async def test_a_bad_injection_annotation_rejects_the_whole_apply(store: ObjectStore) -> None:
    annotated = deployment_doc().replace(
        "      labels: {app: web}\n",
        "      labels: {app: web}\n      annotations: {config.linkerd.io/proxy-uid: nobody}\n",
    )
    with pytest.raises(ManifestError) as caught:
        run_apply(store, join(CONFIG_MAP, annotated))
    message = str(caught.value)
    assert "document 2 (Deployment web)" in message
    assert "config.linkerd.io/proxy-uid" in message
    assert snapshot(store) == []
