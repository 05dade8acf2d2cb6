"""Path parsing, endpoint resolution and stream diffs of the destination service (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest

from weft.controller.destination.addresses import (
    Add,
    Address,
    AddressSet,
    ClusterState,
    MeshSettings,
    NoEndpoints,
    Remove,
    Target,
    diff,
    owner_label,
    parse_path,
    resolve,
)

Obj = dict[str, Any]

SETTINGS = MeshSettings()
NS = "emojivoto"
WEB = "web.emojivoto.svc.cluster.local:80"
WEB_IP = "10.96.0.30"
WEB_ID = "web.emojivoto.serviceaccount.identity.weft.cluster.local"


# -- builders (shaped like the local runtime's objects) -----------------------------------


def proxy(identity_disabled: bool = False) -> Obj:
    env: list[Obj] = [{"name": "LINKERD2_PROXY_LOG", "value": "warn"}]
    if identity_disabled:
        env.append({"name": "LINKERD2_PROXY_IDENTITY_DISABLED", "value": "disabled"})
    return {"name": "linkerd-proxy", "restartPolicy": "Always", "env": env}


def pod(
    name: str,
    ip: str | None,
    *,
    namespace: str = NS,
    service_account: str | None = "web",
    meshed: bool = True,
    identity_disabled: bool = False,
    owner: tuple[str, str] | None = ("Deployment", "web"),
    pod_hash: str | None = "5d8f7c6b9",
    phase: str = "Running",
    sidecar_in_containers: bool = False,
) -> Obj:
    labels = {"app": "web"}
    if pod_hash:
        labels["pod-template-hash"] = pod_hash
    meta: Obj = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "controller": True}
        ]
    spec: Obj = {"containers": [{"name": "app", "command": ["serve"]}]}
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    if meshed:
        init = [{"name": "linkerd-init", "command": ["init"]}]
        if sidecar_in_containers:
            spec["initContainers"] = init
            spec["containers"].append(proxy(identity_disabled))
        else:
            spec["initContainers"] = [*init, proxy(identity_disabled)]
    status: Obj = {"phase": phase}
    if ip:
        status["podIP"] = ip
        status["conditions"] = [{"type": "Ready", "status": "True"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def service(
    name: str = "web",
    cluster_ip: str = WEB_IP,
    ports: list[Obj] | None = None,
    namespace: str = NS,
) -> Obj:
    if ports is None:
        ports = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "selector": {"app": name}, "ports": ports},
    }


def address(ip: str, pod_name: str | None, namespace: str = NS) -> Obj:
    out: Obj = {"ip": ip}
    if pod_name is not None:
        out["targetRef"] = {"kind": "Pod", "name": pod_name, "namespace": namespace}
    return out


def endpoints(
    ready: list[Obj],
    not_ready: list[Obj] | None = None,
    ports: list[Obj] | None = None,
    name: str = "web",
    namespace: str = NS,
) -> Obj:
    subset: Obj = {"ports": ports or [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": namespace},
        "subsets": [subset],
    }


def state_of(*objects: Obj) -> ClusterState:
    state = ClusterState()
    for obj in objects:
        state.apply(obj["kind"], "ADDED", obj)
    return state


def web_state() -> ClusterState:
    return state_of(
        service(),
        pod("web-1", "10.1.0.5"),
        pod("web-2", "10.1.0.6"),
        endpoints([address("10.1.0.5", "web-1"), address("10.1.0.6", "web-2")]),
    )


def meshed_labels(name: str, sa: str = "web") -> tuple[tuple[str, str], ...]:
    return (
        ("control_plane_ns", "weft"),
        ("deployment", "web"),
        ("pod", name),
        ("pod_template_hash", "5d8f7c6b9"),
        ("serviceaccount", sa),
    )


def web_address(ip: str, name: str, port: int = 8080) -> Address:
    return Address(ip, port, meshed_labels(name), WEB_ID, True)


SET_LABELS = (("namespace", NS), ("service", "web"))


# -- parse_path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "target"),
    [
        (WEB, Target("service", 80, namespace=NS, name="web")),
        (
            "web.emojivoto.svc.cluster.local.:8080",
            Target("service", 8080, namespace=NS, name="web"),
        ),
        ("Web.EmojiVoto.SVC.Cluster.Local:80", Target("service", 80, namespace=NS, name="web")),
        ("web.emojivoto.svc.cluster.local", Target("service", 80, namespace=NS, name="web")),
        ("web.emojivoto.svc.cluster.local.", Target("service", 80, namespace=NS, name="web")),
        ("10.1.2.3:8080", Target("ip", 8080, ip="10.1.2.3")),
        ("10.1.2.3", Target("ip", 80, ip="10.1.2.3")),
    ],
)
def test_parse_path_known(path: str, target: Target) -> None:
    assert parse_path(path, SETTINGS) == target


@pytest.mark.parametrize(
    "path",
    [
        "",
        ":80",
        "example.com:80",
        "web:80",
        "web.emojivoto:80",
        "web.svc.cluster.local:80",
        "web.emojivoto.svc.example.org:80",
        "pod-0.web.emojivoto.svc.cluster.local:80",
        "web..svc.cluster.local:80",
        "web.emojivoto.svc.cluster.local:http",
        "web.emojivoto.svc.cluster.local:",
        "web.emojivoto.svc.cluster.local:0",
        "web.emojivoto.svc.cluster.local:70000",
        "10.1.2.300:80",
        "[::1]:80",
    ],
)
def test_parse_path_unknown(path: str) -> None:
    assert parse_path(path, SETTINGS).kind == "unknown"


def test_parse_path_uses_the_cluster_domain() -> None:
    settings = MeshSettings(cluster_domain="Corp.Example.")
    assert parse_path("api.shop.svc.corp.example:9000", settings) == Target(
        "service", 9000, namespace="shop", name="api"
    )
    assert parse_path("api.shop.svc.cluster.local:9000", settings).kind == "unknown"


# -- resolve: services --------------------------------------------------------------------


def test_service_by_name() -> None:
    assert resolve(web_state(), WEB, SETTINGS) == AddressSet(
        True,
        SET_LABELS,
        {
            ("10.1.0.5", 8080): web_address("10.1.0.5", "web-1"),
            ("10.1.0.6", 8080): web_address("10.1.0.6", "web-2"),
        },
    )


def test_service_by_cluster_ip_matches_by_name() -> None:
    state = web_state()
    by_ip = resolve(state, f"{WEB_IP}:80", SETTINGS)
    assert by_ip == resolve(state, WEB, SETTINGS)
    assert len(by_ip.addrs) == 2


def test_named_ports_pick_the_matching_endpoint_port() -> None:
    ports = [
        {"name": "http", "port": 80, "targetPort": "web-http"},
        {"name": "admin", "port": 9090, "targetPort": 9990},
    ]
    subset_ports = [{"name": "admin", "port": 9990}, {"name": "http", "port": 8080}]
    state = state_of(
        service(ports=ports),
        pod("web-1", "10.1.0.5"),
        endpoints([address("10.1.0.5", "web-1")], ports=subset_ports),
    )
    assert list(resolve(state, WEB, SETTINGS).addrs) == [("10.1.0.5", 8080)]
    admin = "web.emojivoto.svc.cluster.local:9090"
    assert list(resolve(state, admin, SETTINGS).addrs) == [("10.1.0.5", 9990)]


def test_unnamed_port_uses_the_only_endpoint_port() -> None:
    state = state_of(
        service(ports=[{"port": 80, "targetPort": 3000}]),
        endpoints([address("10.1.0.5", None)], ports=[{"port": 3000}]),
    )
    assert list(resolve(state, WEB, SETTINGS).addrs) == [("10.1.0.5", 3000)]


def test_port_the_service_does_not_list_is_used_as_is() -> None:
    state = web_state()
    got = resolve(state, "web.emojivoto.svc.cluster.local:7000", SETTINGS)
    assert sorted(got.addrs) == [("10.1.0.5", 7000), ("10.1.0.6", 7000)]


def test_unready_addresses_are_excluded() -> None:
    state = state_of(
        service(),
        pod("web-1", "10.1.0.5"),
        pod("web-2", "10.1.0.6"),
        endpoints([address("10.1.0.5", "web-1")], not_ready=[address("10.1.0.6", "web-2")]),
    )
    assert list(resolve(state, WEB, SETTINGS).addrs) == [("10.1.0.5", 8080)]


def test_service_without_endpoints_exists_empty() -> None:
    assert resolve(state_of(service()), WEB, SETTINGS) == AddressSet(True, SET_LABELS, {})
    state = state_of(service(), endpoints([]))
    assert resolve(state, WEB, SETTINGS) == AddressSet(True, SET_LABELS, {})


def test_endpoint_of_an_unknown_pod_is_bare() -> None:
    state = state_of(service(), endpoints([address("10.1.0.9", "gone")]))
    assert resolve(state, WEB, SETTINGS).addrs == {
        ("10.1.0.9", 8080): Address("10.1.0.9", 8080, (), None, False)
    }


def test_unknown_destinations_do_not_exist() -> None:
    state = web_state()
    for path in ("nope.emojivoto.svc.cluster.local:80", "10.96.9.9:80", "example.com:80", "x"):
        assert resolve(state, path, SETTINGS) == AddressSet(False, (), {})


# -- resolve: pods ------------------------------------------------------------------------


def test_pod_ip_gives_that_pod() -> None:
    state = web_state()
    assert resolve(state, "10.1.0.6:4191", SETTINGS) == AddressSet(
        True,
        (("namespace", NS),),
        {("10.1.0.6", 4191): web_address("10.1.0.6", "web-2", port=4191)},
    )


@pytest.mark.parametrize("phase", ["Pending", "Succeeded", "Failed"])
def test_only_running_pods_answer_for_their_ip(phase: str) -> None:
    state = state_of(pod("web-1", "10.1.0.5", phase=phase))
    assert not resolve(state, "10.1.0.5:8080", SETTINGS).exists


def test_meshed_unmeshed_and_identity_disabled_pods() -> None:
    state = state_of(
        pod("meshed", "10.1.0.1", service_account="emoji"),
        pod("plain", "10.1.0.2", meshed=False),
        pod("noid", "10.1.0.3", identity_disabled=True),
        pod("classic", "10.1.0.4", sidecar_in_containers=True, service_account=None),
    )

    def at(ip: str) -> Address:
        return resolve(state, f"{ip}:80", SETTINGS).addrs[(ip, 80)]

    meshed = at("10.1.0.1")
    assert meshed.identity == "emoji.emojivoto.serviceaccount.identity.weft.cluster.local"
    assert meshed.h2
    assert meshed.labels == meshed_labels("meshed", sa="emoji")
    plain = at("10.1.0.2")
    assert (plain.identity, plain.h2) == (None, False)
    assert "control_plane_ns" not in dict(plain.labels)
    noid = at("10.1.0.3")
    assert (noid.identity, noid.h2) == (None, True)
    assert dict(noid.labels)["control_plane_ns"] == "weft"
    classic = at("10.1.0.4")
    assert classic.identity == "default.emojivoto.serviceaccount.identity.weft.cluster.local"
    assert dict(classic.labels)["serviceaccount"] == "default"


def test_a_meshed_pod_gets_no_h2_hint_on_its_opaque_ports() -> None:
    # Its proxy copies those ports' bytes as they come: HTTP/2 would reach the app as such.
    default = state_of(pod("web-1", "10.1.0.1"))
    assert not resolve(default, "10.1.0.1:3306", SETTINGS).addrs[("10.1.0.1", 3306)].h2
    assert resolve(default, "10.1.0.1:8080", SETTINGS).addrs[("10.1.0.1", 8080)].h2
    annotated = pod("web-2", "10.1.0.2")
    opaque = {
        "name": "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION",
        "value": "8080,9000-9001",
    }
    annotated["spec"]["initContainers"][1]["env"].append(opaque)
    state = state_of(annotated)
    for port, h2 in ((8080, False), (9001, False), (3306, True), (80, True)):
        assert resolve(state, f"10.1.0.2:{port}", SETTINGS).addrs[("10.1.0.2", port)].h2 is h2


def test_identity_follows_the_mesh_settings() -> None:
    settings = MeshSettings(control_namespace="linkerd", trust_domain="example.org")
    state = state_of(pod("web-1", "10.1.0.5"))
    got = resolve(state, "10.1.0.5:8080", settings).addrs[("10.1.0.5", 8080)]
    assert got.identity == "web.emojivoto.serviceaccount.identity.linkerd.example.org"
    assert dict(got.labels)["control_plane_ns"] == "linkerd"


def test_owner_labels() -> None:
    deployment_pod = pod("web-5d8f7c6b9-abcde", "10.1.0.5")
    assert owner_label(deployment_pod) == ("deployment", "web")
    job_pod = pod("migrate-x1", "10.1.0.6", owner=("Job", "migrate"), pod_hash=None)
    assert owner_label(job_pod) == ("k8s_job", "migrate")
    replica_set_pod = pod("web-x", "10.1.0.7", owner=("ReplicaSet", "web-5d8f7c6b9"))
    assert owner_label(replica_set_pod) == ("deployment", "web")
    bare_replica_set = pod("rs-x", "10.1.0.8", owner=("ReplicaSet", "rs"), pod_hash=None)
    assert owner_label(bare_replica_set) == ("replicaset", "rs")
    for kind, label in [("StatefulSet", "statefulset"), ("DaemonSet", "daemonset")]:
        assert owner_label(pod("p", None, owner=(kind, "x"))) == (label, "x")
    assert owner_label(pod("p", None, owner=None)) is None


def test_job_pod_labels() -> None:
    state = state_of(pod("migrate-x1", "10.1.0.6", owner=("Job", "migrate"), pod_hash=None))
    got = resolve(state, "10.1.0.6:80", SETTINGS).addrs[("10.1.0.6", 80)]
    assert got.labels == (
        ("control_plane_ns", "weft"),
        ("k8s_job", "migrate"),
        ("pod", "migrate-x1"),
        ("serviceaccount", "web"),
    )


# -- ClusterState -------------------------------------------------------------------------


def test_state_follows_modified_and_deleted() -> None:
    state = web_state()
    moved = pod("web-1", "10.1.0.50")
    state.apply("Pod", "MODIFIED", moved)
    assert "10.1.0.5" not in state.pod_by_ip
    assert state.pod_by_ip["10.1.0.50"] == (NS, "web-1")
    state.apply("Service", "MODIFIED", service(cluster_ip="10.96.0.31"))
    assert list(state.service_by_ip) == ["10.96.0.31"]
    state.apply("Service", "DELETED", service(cluster_ip="10.96.0.31"))
    assert state.services == {}
    assert state.service_by_ip == {}
    state.apply("Pod", "DELETED", moved)
    assert set(state.pod_by_ip) == {"10.1.0.6"}


def test_reused_pod_ip_stays_indexed() -> None:
    state = state_of(pod("old", "10.1.0.5"), pod("new", "10.1.0.5"))
    state.apply("Pod", "DELETED", pod("new", "10.1.0.5"))
    assert state.pod_by_ip["10.1.0.5"] == (NS, "old")


def test_headless_service_is_not_indexed() -> None:
    state = state_of(service(cluster_ip="None"))
    assert state.service_by_ip == {}


def test_replace_drops_objects_not_listed() -> None:
    state = web_state()
    state.replace("Pod", [pod("web-3", "10.1.0.7")])
    assert set(state.pods) == {(NS, "web-3")}
    assert set(state.pod_by_ip) == {"10.1.0.7"}


def test_other_kinds_are_ignored_and_bad_event_types_rejected() -> None:
    state = ClusterState()
    state.apply("ConfigMap", "ADDED", {"metadata": {"name": "x", "namespace": NS}})
    with pytest.raises(ValueError):
        state.apply("Pod", "BOOKMARK", pod("web-1", "10.1.0.5"))


# -- diff ---------------------------------------------------------------------------------

A = web_address("10.1.0.5", "web-1")
B = web_address("10.1.0.6", "web-2")
C = web_address("10.1.0.10", "web-3")


def service_set(*addrs: Address) -> AddressSet:
    return AddressSet(True, SET_LABELS, {(a.ip, a.port): a for a in addrs})


def test_diff_start_with_addresses_adds_them_all_in_ip_order() -> None:
    assert diff(None, service_set(C, B, A)) == [Add((A, B, C), SET_LABELS)]


def test_diff_start_empty() -> None:
    assert diff(None, service_set()) == [NoEndpoints(True)]
    assert diff(None, AddressSet(False, (), {})) == [NoEndpoints(False)]


def test_diff_add_and_remove() -> None:
    assert diff(service_set(A), service_set(A, B)) == [Add((B,), SET_LABELS)]
    assert diff(service_set(A, B), service_set(B)) == [Remove((("10.1.0.5", 8080),))]
    assert diff(service_set(A, B), service_set(B, C)) == [
        Remove((("10.1.0.5", 8080),)),
        Add((C,), SET_LABELS),
    ]


def test_diff_readds_a_changed_address() -> None:
    relabelled = Address(A.ip, A.port, (("pod", "web-1"),), None, False)
    assert diff(service_set(A, B), service_set(relabelled, B)) == [Add((relabelled,), SET_LABELS)]


def test_diff_readds_everything_when_set_labels_change() -> None:
    other = AddressSet(True, (("namespace", NS), ("service", "www")), dict(service_set(A).addrs))
    assert diff(service_set(A), other) == [Add((A,), other.labels)]


def test_diff_becoming_empty() -> None:
    assert diff(service_set(A, B), service_set()) == [
        Remove((("10.1.0.5", 8080), ("10.1.0.6", 8080))),
        NoEndpoints(True),
    ]


def test_diff_service_deleted() -> None:
    assert diff(service_set(A), AddressSet(False, (), {})) == [
        Remove((("10.1.0.5", 8080),)),
        NoEndpoints(False),
    ]
    assert diff(service_set(), AddressSet(False, (), {})) == [NoEndpoints(False)]


def test_diff_unknown_becomes_known_without_endpoints() -> None:
    assert diff(AddressSet(False, (), {}), service_set()) == [NoEndpoints(True)]


def test_diff_unchanged_sends_nothing() -> None:
    assert diff(service_set(A, B), service_set(A, B)) == []
    assert diff(service_set(), service_set()) == []
    assert diff(AddressSet(False, (), {}), AddressSet(False, (), {})) == []


def test_endpoint_changes_flow_through_resolve_and_diff() -> None:
    state = web_state()
    first = resolve(state, WEB, SETTINGS)
    state.apply("Endpoints", "MODIFIED", endpoints([address("10.1.0.6", "web-2")]))
    second = resolve(state, WEB, SETTINGS)
    assert diff(first, second) == [Remove((("10.1.0.5", 8080),))]
    state.apply("Pod", "DELETED", pod("web-1", "10.1.0.5"))
    assert diff(second, resolve(state, WEB, SETTINGS)) == []
    state.apply("Service", "DELETED", service())
    assert diff(second, resolve(state, WEB, SETTINGS)) == [
        Remove((("10.1.0.6", 8080),)),
        NoEndpoints(False),
    ]
