"""``weft cluster get`` tables (kubectl's columns) and resource name aliases."""

from __future__ import annotations

import calendar
import functools
import re
import time
from typing import Any

import pytest

from weft.cli import cluster_table
from weft.cli.cluster_table import age, table
from weft.local.kinds import KINDS, kind_of, plural

Obj = dict[str, Any]
NOW = float(calendar.timegm(time.strptime("2024-06-01T12:00:00Z", "%Y-%m-%dT%H:%M:%SZ")))


def stamp(seconds_ago: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - seconds_ago))


def meta(name: str, seconds_ago: int = 45, namespace: str = "default") -> Obj:
    return {"name": name, "namespace": namespace, "creationTimestamp": stamp(seconds_ago)}


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every age in a table is computed against ``NOW``."""
    monkeypatch.setattr(cluster_table, "age", functools.partial(age, now=NOW))


def container_status(name: str, *, ready: bool = True, restarts: int = 0, **state: Obj) -> Obj:
    return {"name": name, "ready": ready, "restartCount": restarts, "state": state}


def pod(
    name: str = "web-1",
    *,
    containers: int = 1,
    sidecars: int = 0,
    status: Obj | None = None,
    seconds_ago: int = 45,
    namespace: str = "default",
) -> Obj:
    return {
        "kind": "Pod",
        "metadata": meta(name, seconds_ago, namespace),
        "spec": {
            "containers": [{"name": f"c{i}"} for i in range(containers)],
            "initContainers": [
                {"name": f"s{i}", "restartPolicy": "Always"} for i in range(sidecars)
            ],
        },
        "status": status if status is not None else {"phase": "Pending"},
    }


def pod_row(p: Obj) -> list[str]:
    """The cells of the pod's row in a one-pod table."""
    return table("Pod", [p]).splitlines()[1].split()


# -- ages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (45, "45s"),
        (119, "119s"),
        (120, "2m"),
        (180, "3m"),
        (3599, "59m"),
        (7199, "119m"),
        (7200, "2h"),
        (23 * 3600, "23h"),
        (86400, "1d"),
        (5 * 86400 + 7200, "5d"),
    ],
)
def test_ages_are_short_like_kubectl(seconds: int, shown: str) -> None:
    assert age({"metadata": meta("x", seconds)}, now=NOW) == shown


def test_an_age_in_the_future_is_zero_and_a_missing_one_unknown() -> None:
    assert age({"metadata": meta("x", -30)}, now=NOW) == "0s"
    assert age({"metadata": {"name": "x"}}, now=NOW) == "<unknown>"


# -- pods ---------------------------------------------------------------------------------


def test_pods_table_has_kubectls_columns_aligned() -> None:
    running = pod(
        "web-1",
        status={
            "phase": "Running",
            "podIP": "10.244.0.12",
            "containerStatuses": [container_status("c0", restarts=2, running={})],
        },
        seconds_ago=180,
    )
    pending = pod("db", seconds_ago=7200)
    assert table("Pod", [running, pending]) == (
        "NAME    READY   STATUS    RESTARTS   AGE   IP\n"
        "web-1   1/1     Running   2          3m    10.244.0.12\n"
        "db      0/1     Pending   0          2h    <none>"
    )


def test_pod_ready_counts_native_sidecars_as_containers() -> None:
    p = pod(
        containers=2,
        sidecars=1,
        status={
            "phase": "Running",
            "podIP": "10.244.0.3",
            "initContainerStatuses": [container_status("s0", restarts=1, running={})],
            "containerStatuses": [
                container_status("c0", restarts=2, running={}),
                container_status("c1", ready=False, running={}),
            ],
        },
    )
    p["spec"]["initContainers"].insert(0, {"name": "setup"})
    p["status"]["initContainerStatuses"].insert(
        0, container_status("setup", ready=False, restarts=5, terminated={"exitCode": 0})
    )
    ready, status, restarts = pod_row(p)[1:4]
    assert (ready, status, restarts) == ("2/3", "Running", "3")


def test_pod_ready_counts_native_sidecars_before_they_report_status() -> None:
    assert pod_row(pod(containers=1, sidecars=1))[1] == "0/2"


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ({"phase": "Pending"}, "Pending"),
        ({"phase": "Running"}, "Running"),
        ({"phase": "Succeeded"}, "Completed"),
        ({"phase": "Failed"}, "Error"),
        ({}, "Pending"),
        (
            {
                "phase": "Running",
                "containerStatuses": [
                    container_status("c0", ready=False, waiting={"reason": "CrashLoopBackOff"})
                ],
            },
            "CrashLoopBackOff",
        ),
        (
            {
                "phase": "Pending",
                "containerStatuses": [
                    container_status("c0", ready=False, waiting={"reason": "ContainerCreating"})
                ],
            },
            "Pending",
        ),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    container_status("c0", ready=False, waiting={"reason": "CreateContainerError"})
                ],
            },
            "CreateContainerError",
        ),
    ],
)
def test_pod_status_column(status: Obj, shown: str) -> None:
    assert pod_row(pod(status=status))[2] == shown


def test_a_pod_marked_for_deletion_is_terminating() -> None:
    p = pod(
        status={
            "phase": "Running",
            "containerStatuses": [
                container_status("c0", ready=False, waiting={"reason": "CrashLoopBackOff"})
            ],
        }
    )
    p["metadata"]["deletionTimestamp"] = stamp(1)
    assert pod_row(p)[2] == "Terminating"


def test_a_pending_pod_shows_init_progress() -> None:
    p = pod(
        status={
            "phase": "Pending",
            "initContainerStatuses": [
                container_status("a", ready=False, terminated={"exitCode": 0}),
                container_status("b", ready=False, running={}),
            ],
        }
    )
    p["spec"]["initContainers"] = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    assert pod_row(p)[2] == "Init:1/3"


# -- -A -----------------------------------------------------------------------------------


def test_all_namespaces_adds_a_namespace_column() -> None:
    pods = [pod("a", namespace="default"), pod("b", namespace="shop", seconds_ago=5 * 86400)]
    assert table("Pod", pods, all_namespaces=True) == (
        "NAMESPACE   NAME   READY   STATUS    RESTARTS   AGE   IP\n"
        "default     a      0/1     Pending   0          45s   <none>\n"
        "shop        b      0/1     Pending   0          5d    <none>"
    )


def test_namespaces_get_no_namespace_column_even_with_all_namespaces() -> None:
    ns = {"kind": "Namespace", "metadata": {"name": "shop", "creationTimestamp": stamp(180)}}
    assert table("Namespace", [ns], all_namespaces=True) == (
        "NAME   STATUS   AGE\nshop   Active   3m"
    )


def test_an_empty_table_is_just_the_header() -> None:
    assert table("Pod", []) == "NAME   READY   STATUS   RESTARTS   AGE   IP"
    assert table("Service", [], all_namespaces=True) == (
        "NAMESPACE   NAME   TYPE   CLUSTER-IP   PORT(S)   AGE"
    )


# -- other kinds --------------------------------------------------------------------------


def test_services_table() -> None:
    svc = {
        "kind": "Service",
        "metadata": meta("web", 7200),
        "spec": {
            "clusterIP": "10.96.0.2",
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
        },
    }
    assert table("Service", [svc]) == (
        "NAME   TYPE        CLUSTER-IP   PORT(S)         AGE\n"
        "web    ClusterIP   10.96.0.2    80/TCP,53/UDP   2h"
    )


def test_deployments_table() -> None:
    d = {
        "kind": "Deployment",
        "metadata": meta("web", 180),
        "spec": {"replicas": 3},
        "status": {"readyReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2},
    }
    fresh = {"kind": "Deployment", "metadata": meta("api"), "spec": {}}
    assert table("Deployment", [d, fresh]) == (
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE\n"
        "web    2/3     1            2           3m\n"
        "api    0/1     0            0           45s"
    )


def test_endpoints_table_shows_at_most_three_ready_addresses() -> None:
    def subset(port: int, *ips: str) -> Obj:
        return {"ports": [{"port": port}], "addresses": [{"ip": ip} for ip in ips]}

    few = {
        "kind": "Endpoints",
        "metadata": meta("web"),
        "subsets": [{**subset(8080, "10.244.0.2"), "notReadyAddresses": [{"ip": "10.244.0.9"}]}],
    }
    many = {
        "kind": "Endpoints",
        "metadata": meta("api"),
        "subsets": [subset(80, "10.244.0.2", "10.244.0.3"), subset(81, "10.244.0.4", "10.244.0.5")],
    }
    empty = {"kind": "Endpoints", "metadata": meta("db"), "subsets": []}
    rows = [
        re.split(r"\s{3,}", line) for line in table("Endpoints", [few, many, empty]).splitlines()
    ]
    assert rows == [
        ["NAME", "ENDPOINTS", "AGE"],
        ["web", "10.244.0.2:8080", "45s"],
        ["api", "10.244.0.2:80,10.244.0.3:80,10.244.0.4:81 + 1 more...", "45s"],
        ["db", "<none>", "45s"],
    ]


def test_jobs_table() -> None:
    done = {"kind": "Job", "metadata": meta("migrate", 180), "status": {"succeeded": 1}}
    new = {"kind": "Job", "metadata": meta("seed")}
    assert table("Job", [done, new]) == (
        "NAME      COMPLETIONS   AGE\nmigrate   1/1           3m\nseed      0/1           45s"
    )


def test_other_kinds_show_name_and_age() -> None:
    cm = {"kind": "ConfigMap", "metadata": meta("settings", 86400 * 2)}
    assert table("ConfigMap", [cm]) == "NAME       AGE\nsettings   2d"


# -- kinds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("po", "Pod"),
        ("pods", "Pod"),
        ("Pod", "Pod"),
        ("svc", "Service"),
        ("ep", "Endpoints"),
        ("endpoints", "Endpoints"),
        ("deploy", "Deployment"),
        ("Deployments", "Deployment"),
        ("ns", "Namespace"),
        ("job", "Job"),
        ("sa", "ServiceAccount"),
        ("cm", "ConfigMap"),
        ("secret", "Secret"),
        ("sp", "ServiceProfile"),
        ("ts", "TrafficSplit"),
        ("trafficsplit", "TrafficSplit"),
    ],
)
def test_resource_names_and_short_names_mean_their_kind(name: str, kind: str) -> None:
    assert kind_of(name) == kind


@pytest.mark.parametrize("name", ["pdos", "", "replicasets", "rs"])
def test_unknown_resource_names_raise_key_error(name: str) -> None:
    with pytest.raises(KeyError):
        kind_of(name)


def test_every_kind_has_a_plural_that_maps_back_to_it() -> None:
    assert "Pod" in KINDS and "Endpoints" in KINDS
    for kind in KINDS:
        assert kind_of(plural(kind)) == kind
        assert kind_of(kind) == kind
    assert plural("Endpoints") == "endpoints"
    assert plural("ServiceProfile") == "serviceprofiles"
