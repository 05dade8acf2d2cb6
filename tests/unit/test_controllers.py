"""The Deployment, Job and Endpoints controllers, driven against an in-memory store.

The kubelet is simulated by editing pod status (phase, podIP, the Ready condition) and by
removing pods once they are marked for deletion.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from weft.local.controllers import deployments, endpoints, jobs
from weft.local.controllers.pods import (
    is_ready,
    is_terminating,
    new_pod,
    owned_by,
    owner_of,
    phase,
    request_delete,
    template_hash,
)
from weft.local.store import ObjectStore

Obj = dict[str, Any]


def identity(pod: Obj) -> Obj:
    return pod


# -- builders -----------------------------------------------------------------------------


def pod_template(version: str = "v1", ports: list[Obj] | None = None) -> Obj:
    container: Obj = {"name": "app", "command": ["serve", version]}
    if ports is not None:
        container["ports"] = ports
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}


def deployment(name: str = "web", replicas: int = 3, version: str = "v1") -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": pod_template(version),
        },
    }


def job(name: str = "migrate", backoff_limit: int | None = None) -> Obj:
    spec: Obj = {
        "template": {
            "metadata": {"labels": {"task": name}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "run", "command": ["x"]}]},
        }
    }
    if backoff_limit is not None:
        spec["backoffLimit"] = backoff_limit
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def service(name: str = "web", target_port: int | str = 8080, namespace: str = "default") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"tier": "front"}},
        "spec": {
            "clusterIP": "10.96.0.10",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": target_port, "protocol": "TCP"}],
        },
    }


def bare_pod(
    name: str,
    ip: str | None,
    *,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    ports: list[Obj] | None = None,
    namespace: str = "default",
) -> Obj:
    status: Obj = {"phase": "Running" if ip else "Pending"}
    if ip:
        status["podIP"] = ip
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    container: Obj = {"name": "app", "command": ["x"]}
    if ports is not None:
        container["ports"] = ports
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "web"} if labels is None else labels,
        },
        "spec": {"containers": [container]},
        "status": status,
    }


# -- the simulated kubelet ----------------------------------------------------------------


class FakeKubelet:
    """Starts pods (IP, Running, Ready) and removes those marked for deletion."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.next_ip = 2

    def remove_terminating(self) -> None:
        for pod in self.store.list("Pod"):
            if is_terminating(pod):
                self.store.delete("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])

    def start(self, pod: Obj, *, ready: bool = True) -> None:
        pod = self.store.get("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"]) or pod
        if not pod["status"].get("podIP"):
            pod["status"]["podIP"] = f"10.244.0.{self.next_ip}"
            self.next_ip += 1
        pod["status"]["phase"] = "Running"
        pod["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
        self.store.put(pod)

    def finish(self, pod: Obj, result: str) -> None:
        pod = self.store.get("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"]) or pod
        pod["status"] = {"phase": result, "podIP": pod["status"].get("podIP", "10.244.0.99")}
        self.store.put(pod)

    def start_all(self) -> None:
        for pod in self.pending():
            self.start(pod)

    def pending(self) -> list[Obj]:
        return [p for p in self.store.list("Pod") if not is_terminating(p) and not is_ready(p)]


def live_pods(store: ObjectStore, owner: str = "web") -> list[Obj]:
    return [
        p
        for p in store.list("Pod", "default")
        if owner_of(p) == ("Deployment", owner) and not is_terminating(p)
    ]


def job_pods(store: ObjectStore, name: str = "migrate") -> list[Obj]:
    return [p for p in store.list("Pod", "default") if owner_of(p) == ("Job", name)]


def steady_deployment(store: ObjectStore, kubelet: FakeKubelet, replicas: int) -> None:
    """Run the controller and the kubelet until every pod of the Deployment is ready."""
    for _ in range(replicas + 3):
        deployments.reconcile(store, identity)
        kubelet.remove_terminating()
        kubelet.start_all()
    deployments.reconcile(store, identity)
    assert len(live_pods(store)) == replicas
    assert all(is_ready(p) for p in live_pods(store))


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore()


# -- pod helpers --------------------------------------------------------------------------


def test_template_hash_is_stable_and_follows_the_template() -> None:
    assert template_hash(pod_template("v1")) == template_hash(pod_template("v1"))
    assert template_hash(pod_template("v1")) != template_hash(pod_template("v2"))
    assert len(template_hash(pod_template())) == 10


@pytest.mark.anyio
async def test_new_pod_copies_the_template_and_points_at_its_controller(
    store: ObjectStore,
) -> None:
    owner = store.put(deployment())
    template = pod_template()
    template["metadata"]["annotations"] = {"note": "x"}
    pod = new_pod(owner, template, "web-abc", {"pod-template-hash": "h"})
    assert pod["metadata"]["labels"] == {"app": "web", "pod-template-hash": "h"}
    assert pod["metadata"]["annotations"] == {"note": "x"}
    assert pod["metadata"]["namespace"] == "default"
    assert pod["status"] == {"phase": "Pending"}
    assert owner_of(pod) == ("Deployment", "web")
    assert owned_by(pod, owner)
    assert not owned_by(pod, {**owner, "kind": "Job"})
    recreated = {**owner, "metadata": {**owner["metadata"], "uid": "another"}}
    assert not owned_by(pod, recreated)
    assert pod["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    pod["spec"]["containers"][0]["command"].append("mutated")
    assert template["spec"]["containers"][0]["command"] == ["serve", "v1"]


def test_readiness_needs_a_true_ready_condition_and_no_deletion() -> None:
    pod = bare_pod("p", "10.244.0.2", ready=True)
    assert is_ready(pod)
    assert not is_ready(bare_pod("p", "10.244.0.2", ready=False))
    assert not is_ready(bare_pod("p", None))
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert is_terminating(pod)
    assert not is_ready(pod)


def test_phase_defaults_to_pending() -> None:
    pod = bare_pod("p", None)
    del pod["status"]
    assert phase(pod) == "Pending"


@pytest.mark.anyio
async def test_request_delete_marks_the_pod_once(store: ObjectStore) -> None:
    pod = store.put(bare_pod("p", "10.244.0.2"))
    request_delete(store, pod)
    marked = store.get("Pod", "default", "p")
    assert marked is not None and marked["metadata"]["deletionTimestamp"]
    revision = store.revision
    request_delete(store, marked)
    assert store.revision == revision


# -- Deployments --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_new_deployment_creates_its_replicas(store: ObjectStore) -> None:
    d = store.put(deployment(replicas=3))
    deployments.reconcile(store, identity)
    pods = live_pods(store)
    assert len(pods) == 3
    want_hash = template_hash(d["spec"]["template"])
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"web-{want_hash}-")
        assert pod["metadata"]["labels"] == {"app": "web", "pod-template-hash": want_hash}
        assert pod["spec"] == d["spec"]["template"]["spec"]
    assert len({p["metadata"]["name"] for p in pods}) == 3


@pytest.mark.anyio
async def test_reconciling_again_creates_no_extra_pods(store: ObjectStore) -> None:
    store.put(deployment(replicas=2))
    deployments.reconcile(store, identity)
    deployments.reconcile(store, identity)
    assert len(live_pods(store)) == 2


@pytest.mark.anyio
async def test_new_pods_go_through_admission(store: ObjectStore) -> None:
    def admit(pod: Obj) -> Obj:
        pod["metadata"]["annotations"]["admitted"] = "yes"
        return pod

    store.put(deployment(replicas=2))
    deployments.reconcile(store, admit)
    assert [p["metadata"]["annotations"] for p in live_pods(store)] == [{"admitted": "yes"}] * 2


@pytest.mark.anyio
async def test_scaling_up_adds_pods(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(deployment(replicas=2))
    steady_deployment(store, kubelet, 2)
    before = {p["metadata"]["name"] for p in live_pods(store)}
    d = store.get("Deployment", "default", "web")
    assert d is not None
    d["spec"]["replicas"] = 5
    store.put(d)
    deployments.reconcile(store, identity)
    after = {p["metadata"]["name"] for p in live_pods(store)}
    assert len(after) == 5
    assert before <= after


@pytest.mark.anyio
async def test_scaling_down_marks_not_ready_pods_for_deletion_first(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(deployment(replicas=4))
    deployments.reconcile(store, identity)
    pods = live_pods(store)
    kubelet.start(pods[0])
    kubelet.start(pods[1])
    kubelet.start(pods[2], ready=False)
    ready = {pods[0]["metadata"]["name"], pods[1]["metadata"]["name"]}
    d = store.get("Deployment", "default", "web")
    assert d is not None
    d["spec"]["replicas"] = 2
    store.put(d)
    deployments.reconcile(store, identity)
    assert {p["metadata"]["name"] for p in live_pods(store)} == ready
    marked = [p for p in store.list("Pod") if is_terminating(p)]
    assert len(marked) == 2


@pytest.mark.anyio
async def test_scaling_to_zero_marks_every_pod_for_deletion(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(deployment(replicas=2))
    steady_deployment(store, kubelet, 2)
    d = store.get("Deployment", "default", "web")
    assert d is not None
    d["spec"]["replicas"] = 0
    store.put(d)
    deployments.reconcile(store, identity)
    assert live_pods(store) == []
    assert len(store.list("Pod")) == 2


@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 5, 10])
@pytest.mark.anyio
async def test_rolling_update_keeps_enough_pods_ready_and_never_surges_too_far(
    store: ObjectStore, replicas: int
) -> None:
    kubelet = FakeKubelet(store)
    store.put(deployment(replicas=replicas, version="v1"))
    steady_deployment(store, kubelet, replicas)
    max_surge = math.ceil(replicas * 0.25)
    max_unavailable = math.floor(replicas * 0.25)
    if max_surge == 0 and max_unavailable == 0:
        max_surge = 1

    d = store.get("Deployment", "default", "web")
    assert d is not None
    d["spec"]["template"] = pod_template("v2")
    new_hash = template_hash(d["spec"]["template"])
    store.put(d)

    most_pods = 0
    fewest_ready = replicas
    for _ in range(10 * replicas + 10):
        deployments.reconcile(store, identity)
        pods = live_pods(store)
        most_pods = max(most_pods, len(pods))
        fewest_ready = min(fewest_ready, sum(1 for p in pods if is_ready(p)))
        done = len(pods) == replicas and all(
            is_ready(p) and p["metadata"]["labels"]["pod-template-hash"] == new_hash for p in pods
        )
        if done:
            break
        # The kubelet removes stopped pods and brings up one new pod per round.
        kubelet.remove_terminating()
        pending = kubelet.pending()
        if pending:
            kubelet.start(pending[0])
    else:
        pytest.fail(f"rollout did not finish: {[p['metadata']['labels'] for p in pods]}")
    assert most_pods <= replicas + max_surge
    assert fewest_ready >= replicas - max_unavailable
    if max_unavailable == 0:
        assert most_pods == replicas + max_surge  # no old pod may go before a new one is up


@pytest.mark.anyio
async def test_rolling_update_waits_while_new_pods_are_not_ready(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(deployment(replicas=4, version="v1"))
    steady_deployment(store, kubelet, 4)
    old_hash = live_pods(store)[0]["metadata"]["labels"]["pod-template-hash"]
    d = store.get("Deployment", "default", "web")
    assert d is not None
    d["spec"]["template"] = pod_template("v2")
    store.put(d)
    for _ in range(5):
        deployments.reconcile(store, identity)
        kubelet.remove_terminating()
    pods = live_pods(store)
    old = [p for p in pods if p["metadata"]["labels"]["pod-template-hash"] == old_hash]
    # 4 replicas: one may be unavailable, one extra may be surged; new pods never get ready.
    assert len(old) == 3
    assert all(is_ready(p) for p in old)
    assert len(pods) == 5


@pytest.mark.anyio
async def test_rolling_update_replaces_a_single_replica_only_once_the_new_pod_is_ready(
    store: ObjectStore,
) -> None:
    kubelet = FakeKubelet(store)
    store.put(deployment(replicas=1, version="v1"))
    steady_deployment(store, kubelet, 1)
    (old,) = live_pods(store)
    d = store.get("Deployment", "default", "web")
    assert d is not None
    d["spec"]["template"] = pod_template("v2")
    store.put(d)
    deployments.reconcile(store, identity)
    pods = live_pods(store)
    assert len(pods) == 2
    assert old["metadata"]["name"] in {p["metadata"]["name"] for p in pods}
    (new,) = [p for p in pods if p["metadata"]["name"] != old["metadata"]["name"]]
    kubelet.start(new)
    deployments.reconcile(store, identity)
    assert [p["metadata"]["name"] for p in live_pods(store)] == [new["metadata"]["name"]]


@pytest.mark.anyio
async def test_pods_of_a_deleted_deployment_are_marked_for_deletion(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(deployment("web", replicas=2))
    store.put(deployment("api", replicas=1))
    deployments.reconcile(store, identity)
    kubelet.start_all()
    store.delete("Deployment", "default", "web")
    deployments.reconcile(store, identity)
    pods = store.list("Pod")
    web = [p for p in pods if owner_of(p) == ("Deployment", "web")]
    api = [p for p in pods if owner_of(p) == ("Deployment", "api")]
    assert len(web) == 2 and all(is_terminating(p) for p in web)
    assert len(api) == 1 and not is_terminating(api[0])


@pytest.mark.anyio
async def test_the_deployment_controller_leaves_other_pods_alone(store: ObjectStore) -> None:
    store.put(bare_pod("standalone", "10.244.0.2"))
    store.put(job())
    jobs.reconcile(store, identity)
    deployments.reconcile(store, identity)
    assert not any(is_terminating(p) for p in store.list("Pod"))
    assert len(store.list("Pod")) == 2


@pytest.mark.anyio
async def test_deployment_status_counts_pods(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    d = deployment(replicas=3)
    d["metadata"]["generation"] = 4
    store.put(d)
    deployments.reconcile(store, identity)
    pods = live_pods(store)
    kubelet.start(pods[0])
    kubelet.start(pods[1], ready=False)
    deployments.reconcile(store, identity)
    stored = store.get("Deployment", "default", "web")
    assert stored is not None
    assert stored["status"] == {
        "observedGeneration": 4,
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 1,
        "availableReplicas": 1,
    }


@pytest.mark.anyio
async def test_deployment_status_counts_old_pods_as_not_updated(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(deployment(replicas=4))
    steady_deployment(store, kubelet, 4)
    d = store.get("Deployment", "default", "web")
    assert d is not None
    d["spec"]["template"] = pod_template("v2")
    store.put(d)
    deployments.reconcile(store, identity)
    status = (store.get("Deployment", "default", "web") or {})["status"]
    assert status["replicas"] == 4  # 3 old ready + 1 new (one old pod is terminating)
    assert status["updatedReplicas"] == 1
    assert status["readyReplicas"] == 3


@pytest.mark.anyio
async def test_an_unchanged_deployment_status_is_not_rewritten(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(deployment(replicas=2))
    steady_deployment(store, kubelet, 2)
    revision = store.revision
    deployments.reconcile(store, identity)
    assert store.revision == revision


# -- Jobs ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_job_runs_one_pod(store: ObjectStore) -> None:
    store.put(job())
    jobs.reconcile(store, identity)
    jobs.reconcile(store, identity)
    (pod,) = job_pods(store)
    assert pod["metadata"]["name"].startswith("migrate-")
    assert pod["metadata"]["labels"] == {"task": "migrate", "job-name": "migrate"}
    stored = store.get("Job", "default", "migrate")
    assert stored is not None
    assert stored["status"] == {"active": 1, "succeeded": 0, "failed": 0}


@pytest.mark.anyio
async def test_a_job_is_complete_once_its_pod_succeeded(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(job())
    jobs.reconcile(store, identity)
    (pod,) = job_pods(store)
    kubelet.start(pod)
    kubelet.finish(pod, "Succeeded")
    jobs.reconcile(store, identity)
    jobs.reconcile(store, identity)
    assert len(job_pods(store)) == 1
    status = (store.get("Job", "default", "migrate") or {})["status"]
    assert status["succeeded"] == 1
    assert status["active"] == 0
    assert status["conditions"] == [{"type": "Complete", "status": "True"}]
    assert status["completionTime"].endswith("Z")


@pytest.mark.anyio
async def test_a_failed_job_pod_is_retried_up_to_the_backoff_limit(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(job(backoff_limit=2))
    for attempt in range(1, 4):
        jobs.reconcile(store, identity)
        pods = job_pods(store)
        assert len(pods) == attempt
        (running,) = [p for p in pods if phase(p) == "Pending"]
        kubelet.finish(running, "Failed")
    jobs.reconcile(store, identity)
    jobs.reconcile(store, identity)
    assert len(job_pods(store)) == 3
    status = (store.get("Job", "default", "migrate") or {})["status"]
    assert status["failed"] == 3
    assert status["active"] == 0
    assert status["conditions"] == [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    ]
    assert "completionTime" not in status


@pytest.mark.anyio
async def test_a_job_with_backoff_limit_zero_is_never_retried(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(job(backoff_limit=0))
    jobs.reconcile(store, identity)
    (pod,) = job_pods(store)
    kubelet.finish(pod, "Failed")
    jobs.reconcile(store, identity)
    assert len(job_pods(store)) == 1
    status = (store.get("Job", "default", "migrate") or {})["status"]
    assert status["conditions"][0]["type"] == "Failed"


@pytest.mark.anyio
async def test_a_retry_that_succeeds_completes_the_job(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(job())
    jobs.reconcile(store, identity)
    (first,) = job_pods(store)
    kubelet.finish(first, "Failed")
    jobs.reconcile(store, identity)
    (second,) = [p for p in job_pods(store) if phase(p) == "Pending"]
    kubelet.finish(second, "Succeeded")
    jobs.reconcile(store, identity)
    status = (store.get("Job", "default", "migrate") or {})["status"]
    assert (status["succeeded"], status["failed"]) == (1, 1)
    assert status["conditions"] == [{"type": "Complete", "status": "True"}]


@pytest.mark.anyio
async def test_pods_of_a_deleted_job_are_marked_for_deletion(store: ObjectStore) -> None:
    store.put(job("a"))
    store.put(job("b"))
    jobs.reconcile(store, identity)
    store.delete("Job", "default", "a")
    jobs.reconcile(store, identity)
    assert all(is_terminating(p) for p in job_pods(store, "a"))
    assert not any(is_terminating(p) for p in job_pods(store, "b"))
    assert len(job_pods(store, "a")) == 1


# -- Endpoints ----------------------------------------------------------------------------


def endpoint_ips(store: ObjectStore, name: str = "web") -> tuple[list[str], list[str]]:
    ep = store.get("Endpoints", "default", name)
    assert ep is not None
    ready = [a["ip"] for s in ep["subsets"] for a in s.get("addresses", [])]
    not_ready = [a["ip"] for s in ep["subsets"] for a in s.get("notReadyAddresses", [])]
    return ready, not_ready


@pytest.mark.anyio
async def test_endpoints_list_ready_pods_selected_by_the_service(store: ObjectStore) -> None:
    store.put(service())
    pod = store.put(bare_pod("a", "10.244.0.3"))
    store.put(bare_pod("b", "10.244.0.2"))
    store.put(bare_pod("other", "10.244.0.4", labels={"app": "db"}))
    store.put(bare_pod("elsewhere", "10.244.0.5", namespace="shop"))
    endpoints.reconcile(store)
    ep = store.get("Endpoints", "default", "web")
    assert ep is not None
    assert ep["metadata"]["labels"] == {"tier": "front"}
    assert ep["subsets"] == [
        {
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "addresses": [
                {
                    "ip": "10.244.0.2",
                    "targetRef": {
                        "kind": "Pod",
                        "name": "b",
                        "namespace": "default",
                        "uid": (store.get("Pod", "default", "b") or {})["metadata"]["uid"],
                    },
                },
                {
                    "ip": "10.244.0.3",
                    "targetRef": {
                        "kind": "Pod",
                        "name": "a",
                        "namespace": "default",
                        "uid": pod["metadata"]["uid"],
                    },
                },
            ],
        }
    ]


@pytest.mark.anyio
async def test_unready_pods_are_not_ready_addresses(store: ObjectStore) -> None:
    store.put(service())
    store.put(bare_pod("a", "10.244.0.2"))
    store.put(bare_pod("b", "10.244.0.3", ready=False))
    endpoints.reconcile(store)
    assert endpoint_ips(store) == (["10.244.0.2"], ["10.244.0.3"])


@pytest.mark.anyio
async def test_pods_without_an_ip_are_left_out(store: ObjectStore) -> None:
    store.put(service())
    store.put(bare_pod("a", None))
    endpoints.reconcile(store)
    ep = store.get("Endpoints", "default", "web")
    assert ep is not None and ep["subsets"] == []


@pytest.mark.anyio
async def test_endpoints_follow_pods_becoming_ready_and_terminating(store: ObjectStore) -> None:
    kubelet = FakeKubelet(store)
    store.put(service())
    pod = store.put(bare_pod("a", "10.244.0.7", ready=False))
    endpoints.reconcile(store)
    assert endpoint_ips(store) == ([], ["10.244.0.7"])
    kubelet.start(pod)
    endpoints.reconcile(store)
    assert endpoint_ips(store) == (["10.244.0.7"], [])
    request_delete(store, store.get("Pod", "default", "a") or pod)
    endpoints.reconcile(store)
    assert endpoint_ips(store) == ([], [])


@pytest.mark.anyio
async def test_unchanged_endpoints_are_not_rewritten(store: ObjectStore) -> None:
    store.put(service())
    store.put(bare_pod("a", "10.244.0.2"))
    endpoints.reconcile(store)
    revision = store.revision
    endpoints.reconcile(store)
    assert store.revision == revision


@pytest.mark.anyio
async def test_named_target_ports_are_resolved_per_pod(store: ObjectStore) -> None:
    store.put(service(target_port="web"))
    store.put(bare_pod("a", "10.244.0.2", ports=[{"name": "web", "containerPort": 8080}]))
    store.put(bare_pod("b", "10.244.0.3", ports=[{"name": "web", "containerPort": 9090}]))
    store.put(bare_pod("c", "10.244.0.4", ports=[{"name": "web", "containerPort": 8080}]))
    store.put(bare_pod("d", "10.244.0.5", ports=[{"name": "admin", "containerPort": 9000}]))
    endpoints.reconcile(store)
    ep = store.get("Endpoints", "default", "web")
    assert ep is not None
    by_port = {s["ports"][0]["port"]: [a["ip"] for a in s["addresses"]] for s in ep["subsets"]}
    assert by_port == {8080: ["10.244.0.2", "10.244.0.4"], 9090: ["10.244.0.3"]}


def test_target_ports_resolve_numbers_names_and_sidecar_ports() -> None:
    pod = bare_pod("a", "10.244.0.2", ports=[{"name": "http", "containerPort": 8080}])
    pod["spec"]["initContainers"] = [
        {
            "name": "proxy",
            "restartPolicy": "Always",
            "ports": [{"name": "admin", "containerPort": 4191}],
        }
    ]
    assert endpoints.resolve_target_port(pod, 7000) == 7000
    assert endpoints.resolve_target_port(pod, "7001") == 7001
    assert endpoints.resolve_target_port(pod, "http") == 8080
    assert endpoints.resolve_target_port(pod, "admin") == 4191
    assert endpoints.resolve_target_port(pod, "missing") is None


def test_an_empty_selector_selects_nothing() -> None:
    pod = bare_pod("a", "10.244.0.2")
    assert endpoints.selects({"app": "web"}, pod)
    assert not endpoints.selects({"app": "web", "tier": "x"}, pod)
    assert not endpoints.selects({}, pod)


@pytest.mark.anyio
async def test_endpoints_are_deleted_with_their_service(store: ObjectStore) -> None:
    store.put(service("web"))
    store.put(service("api"))
    store.put(bare_pod("a", "10.244.0.2"))
    endpoints.reconcile(store)
    store.delete("Service", "default", "web")
    endpoints.reconcile(store)
    assert store.get("Endpoints", "default", "web") is None
    assert store.get("Endpoints", "default", "api") is not None


@pytest.mark.anyio
async def test_endpoints_of_a_namespace_stay_in_that_namespace(store: ObjectStore) -> None:
    store.put(service("web", namespace="shop"))
    store.put(bare_pod("here", "10.244.0.2", namespace="shop"))
    store.put(bare_pod("there", "10.244.0.3"))
    endpoints.reconcile(store)
    ep = store.get("Endpoints", "shop", "web")
    assert ep is not None
    assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["10.244.0.2"]
    assert store.get("Endpoints", "default", "web") is None
