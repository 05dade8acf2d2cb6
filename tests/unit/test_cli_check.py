"""``weft check``/``weft identity``'s pure parts: results, rendering, and the certificate checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from weft.cli import check_results as r
from weft.cli.check import CheckEnv, run_checks
from weft.cli.check_results import Category
from weft.cli.cluster import Ctx
from weft.cli.identity import time_left, verdict
from weft.cli.pod_certs import (
    ProbeOutcome,
    Target,
    decode_outcomes,
    encode_outcome,
    mesh_settings,
    parse_probe_arg,
    pod_identity,
    target_for,
    unprobeable,
)
from weft.controller.destination.addresses import MeshSettings
from weft.identity.certs import check_csr, issue_leaf, make_csr, new_key
from weft.identity.health import Finding
from weft.identity.trust import TrustMaterial, generate_trust, renew_issuer
from weft.local.cluster_config import ClusterConfig

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WEB = "web.emojivoto.serviceaccount.identity.weft.cluster.local"
CROSS = "\u00d7"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def material() -> TrustMaterial:
    return generate_trust("weft", "cluster.local", now=NOW)


@pytest.fixture(scope="module")
def other() -> TrustMaterial:
    return generate_trust("weft", "cluster.local", now=NOW)


def leaf_of(material: TrustMaterial, *, now: datetime = NOW) -> x509.Certificate:
    csr = check_csr(make_csr(new_key(), WEB), WEB)
    return issue_leaf(
        material.issuer, csr, WEB, lifetime=DAY, clock_skew=timedelta(seconds=20), now=now
    )


# -- rendering ---------------------------------------------------------------------------


def test_a_passed_check_is_one_line_without_its_detail() -> None:
    assert r.render(r.passed("the node agent is reachable", "fine")) == [
        "√ the node agent is reachable"
    ]


def test_warnings_and_failures_show_their_detail_indented_line_by_line() -> None:
    assert r.render(r.warned("anchors", "expires in 3.0 days")) == [
        "‼ anchors",
        "    expires in 3.0 days",
    ]
    assert r.render(r.failed("proxies", "two pods:\n* a/b\n* c/d")) == [
        f"{CROSS} proxies",
        "    two pods:",
        "    * a/b",
        "    * c/d",
    ]


def test_findings_map_to_results() -> None:
    assert r.from_finding(Finding("a", True, False, "d")).status == "ok"
    assert r.from_finding(Finding("a", True, True, "d")).status == "warning"
    failed = r.from_finding(Finding("a", False, False, "d"))
    assert (failed.status, failed.detail, failed.fatal) == ("error", "d", False)


def test_the_report_heads_each_category_and_sums_up() -> None:
    report = r.Report()
    lines = report.add("first", r.passed("one"))
    lines += report.add("first", r.warned("two", "careful"))
    assert report.exit_code == 0
    assert report.finish() == ["", "Status check results are √"]
    lines += report.add("second", r.failed("three", "broken"))
    assert lines == [
        "first",
        "-----",
        "√ one",
        "‼ two",
        "    careful",
        "",
        "second",
        "------",
        f"{CROSS} three",
        "    broken",
    ]
    assert report.exit_code == 1
    assert not report.stopped
    assert report.finish() == ["", f"Status check results are {CROSS}"]


def test_only_a_failed_fatal_check_stops_the_run() -> None:
    report = r.Report()
    report.add("c", r.CheckResult("ok but fatal", "ok", fatal=True))
    assert not report.stopped
    report.add("c", r.agent_reachable("the cluster's node agent does not answer"))
    assert report.stopped


def test_run_checks_prints_as_it_goes_and_stops_after_a_fatal_failure() -> None:
    ran: list[str] = []

    async def first(env: CheckEnv) -> AsyncGenerator[r.CheckResult, None]:
        ran.append("first")
        yield r.passed("fine")
        yield r.failed("gone", "nobody answers", fatal=True)
        ran.append("after the fatal one")
        yield r.passed("never")

    async def second(env: CheckEnv) -> AsyncGenerator[r.CheckResult, None]:
        ran.append("second")
        yield r.passed("never either")

    out: list[str] = []
    env = CheckEnv(Ctx("weft", "/nonexistent"), wait=0)
    code = asyncio.run(run_checks(env, [Category("a", first), Category("b", second)], out.append))
    assert code == 1
    assert ran == ["first"]
    assert out == [
        "a",
        "-",
        "√ fine",
        f"{CROSS} gone",
        "    nobody answers",
        "",
        f"Status check results are {CROSS}",
    ]


# -- weft-local-cluster -------------------------------------------------------------------


def pod(name: str, *, ready: bool, phase: str = "Running", deleting: bool = False) -> Obj:
    meta: Obj = {"name": name, "namespace": "weft"}
    if deleting:
        meta["deletionTimestamp"] = "2030-06-01T12:00:00Z"
    status = "True" if ready else "False"
    return {
        "metadata": meta,
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": status}]},
    }


def test_the_control_plane_is_ready_when_every_live_pod_is() -> None:
    pods = [pod("weft-identity-a", ready=True), pod("old", ready=False, deleting=True)]
    assert r.control_plane_ready(pods, "weft", 1.0).status == "ok"


def test_unready_control_plane_pods_are_named() -> None:
    pods = [pod("weft-identity-a", ready=True), pod("weft-destination-b", ready=False)]
    result = r.control_plane_ready(pods, "weft", 60.2)
    assert result.failed and not result.fatal
    assert result.detail == (
        "not ready after 60s in namespace weft: weft-destination-b (Running, not ready)"
    )


def test_no_control_plane_pods_is_a_failure() -> None:
    result = r.control_plane_ready([], "weft", 5)
    assert result.failed and "no pods in namespace weft" in result.detail


# -- weft-identity ------------------------------------------------------------------------


def test_valid_trust_passes_every_identity_check(material: TrustMaterial) -> None:
    results = r.identity_results(material.anchors, list(material.issuer.chain), None, now=NOW)
    assert [x.description for x in results] == [
        "certificate config is valid",
        "trust anchors are using supported crypto algorithm",
        "trust anchors are within their validity period",
        "trust anchors are valid for at least 60 days",
        "issuer cert is using supported crypto algorithm",
        "issuer cert is within its validity period",
        "issuer cert is valid for at least 60 days",
        "issuer cert is issued by the trust anchor",
    ]
    assert {x.status for x in results} == {"ok"}


def test_another_anchor_fails_the_config_and_the_issuer_check_but_runs_the_rest(
    material: TrustMaterial, other: TrustMaterial
) -> None:
    problem = "issuer.crt: certificate is not signed by any trust anchor in ca.crt"
    results = r.identity_results(other.anchors, list(material.issuer.chain), problem, now=NOW)
    by_name = {x.description: x for x in results}
    assert by_name["certificate config is valid"].detail == problem
    assert not by_name["certificate config is valid"].fatal
    assert by_name["issuer cert is issued by the trust anchor"].failed
    assert by_name["trust anchors are within their validity period"].status == "ok"


def test_unreadable_trust_is_one_fatal_failure() -> None:
    results = r.identity_results([], [], "ca.crt: no PEM certificate found", now=NOW)
    assert results == [
        r.failed("certificate config is valid", "ca.crt: no PEM certificate found", fatal=True)
    ]


# -- weft-identity-data-plane -------------------------------------------------------------


def check_proxies(
    proxies: list[r.ProxyCert], material: TrustMaterial, *, now: datetime = NOW
) -> r.CheckResult:
    return r.data_plane_certificates(
        proxies, material.anchors, list(material.issuer.chain), now=now
    )


def test_proxies_whose_leaves_chain_to_the_anchors_pass(material: TrustMaterial) -> None:
    leaf = leaf_of(material)
    proxies = [
        r.ProxyCert("emojivoto/web-1", (leaf, material.issuer.cert)),
        r.ProxyCert("emojivoto/web-2", (leaf,)),  # only the leaf read: the issuer completes it
    ]
    result = check_proxies(proxies, material)
    assert result == r.passed("data plane proxies certificate match CA", "2 proxies checked")


def test_no_meshed_pods_passes(material: TrustMaterial) -> None:
    assert check_proxies([], material).status == "ok"


def test_leaves_of_another_trust_fail_and_are_listed(
    material: TrustMaterial, other: TrustMaterial
) -> None:
    stale = leaf_of(other)
    proxies = [
        r.ProxyCert("emojivoto/web-2", (stale, other.issuer.cert)),
        r.ProxyCert("emojivoto/web-1", (leaf_of(material),)),
        r.ProxyCert("emojivoto/vote-1", error="connection refused"),
    ]
    result = check_proxies(proxies, material)
    assert result.failed
    lines = result.detail.splitlines()
    assert lines[0].startswith("these pods' certificates do not chain to the trust anchors")
    assert lines[1].startswith("* emojivoto/web-2: certificate ")
    assert "web-1" not in result.detail
    assert lines[-2:] == [
        "could not read the certificate of:",
        "* emojivoto/vote-1: connection refused",
    ]


def test_an_expired_leaf_fails(material: TrustMaterial) -> None:
    leaf = leaf_of(material)
    result = check_proxies([r.ProxyCert("a/b", (leaf,))], material, now=NOW + 2 * DAY)
    assert result.failed and "expired" in result.detail


def test_unread_proxies_only_warn(material: TrustMaterial) -> None:
    result = check_proxies([r.ProxyCert("a/b", error="timed out")], material)
    assert result == r.warned(
        "data plane proxies certificate match CA",
        "could not read the certificate of:\n* a/b: timed out",
    )


def test_a_leaf_from_before_an_issuer_renewal_passes_with_its_presented_chain(
    material: TrustMaterial,
) -> None:
    leaf = leaf_of(material)
    renewed = renew_issuer(material, "weft", "cluster.local", lifetime=365 * DAY, now=NOW)
    presented = r.ProxyCert("a/b", (leaf, material.issuer.cert))
    assert check_proxies([presented], renewed).status == "ok"
    assert check_proxies([r.ProxyCert("a/b", (leaf,))], renewed).failed


# -- which pods are probed ----------------------------------------------------------------


def meshed_pod(*, env: list[Obj] | None = None, phase: str = "Running") -> Obj:
    proxy = {"name": "linkerd-proxy", "env": env or []}
    status: Obj = {"phase": phase}
    if phase == "Running":
        status["podIP"] = "10.244.0.7"
    return {
        "metadata": {"name": "web-1", "namespace": "emojivoto"},
        "spec": {"serviceAccountName": "web", "initContainers": [proxy], "containers": []},
        "status": status,
    }


SETTINGS = MeshSettings()


def test_a_running_meshed_pod_is_probed_on_its_inbound_port() -> None:
    env = [{"name": "LINKERD2_PROXY_INBOUND_LISTEN_ADDR", "value": "0.0.0.0:14143"}]
    target = target_for(meshed_pod(env=env), SETTINGS)
    assert target == Target("emojivoto", "web-1", "10.244.0.7", 14143, WEB)
    assert (target.ref, target.addr) == ("emojivoto/web-1", "10.244.0.7:14143")
    assert target_for(meshed_pod(), SETTINGS) == Target(
        "emojivoto", "web-1", "10.244.0.7", 4143, WEB
    )


@pytest.mark.parametrize(
    ("pod_obj", "reason"),
    [
        (
            {"metadata": {"name": "x", "namespace": "a"}, "spec": {"containers": []}},
            "is not meshed (it has no linkerd-proxy container)",
        ),
        (
            meshed_pod(env=[{"name": "LINKERD2_PROXY_IDENTITY_DISABLED", "value": "disabled"}]),
            "has identity disabled (LINKERD2_PROXY_IDENTITY_DISABLED is set)",
        ),
        (meshed_pod(phase="Pending"), "is not running (phase Pending)"),
    ],
)
def test_pods_that_cannot_be_probed_say_why(pod_obj: Obj, reason: str) -> None:
    assert unprobeable(pod_obj, SETTINGS) == reason
    assert target_for(pod_obj, SETTINGS) is None


def test_the_local_clusters_identities_use_the_weft_control_plane() -> None:
    settings = mesh_settings(ClusterConfig("t1", state_dir="/nonexistent"))
    assert pod_identity(meshed_pod(), settings) == WEB


def test_probe_outcomes_survive_their_json_lines(material: TrustMaterial) -> None:
    pem = material.anchors_pem().decode()
    outcomes = [
        ProbeOutcome("10.0.0.1:4143", WEB, (pem,), "unable to get local issuer certificate"),
        ProbeOutcome("10.0.0.2:4143", WEB, error="[Errno 111] Connection refused"),
    ]
    text = "noise\n" + "\n".join(encode_outcome(o) for o in outcomes) + "\n"
    decoded = decode_outcomes(text)
    assert decoded == outcomes
    assert decoded[0].chain() == tuple(material.anchors)
    assert decoded[1].chain() == ()


def test_probe_arguments_are_ip_port_identity() -> None:
    assert parse_probe_arg(f"10.0.0.1:4143={WEB}") == ("10.0.0.1", 4143, WEB)
    with pytest.raises(Exception, match="IP:PORT=IDENTITY"):
        parse_probe_arg("10.0.0.1=x")


# -- weft identity's pure parts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(days=364, hours=23, minutes=5), "364d 23h"),
        (timedelta(hours=23, minutes=59, seconds=30), "23h 59m"),
        (timedelta(minutes=4, seconds=10), "4m 10s"),
        (-timedelta(minutes=3), "expired 3m 0s ago"),
    ],
)
def test_time_left(left: timedelta, text: str) -> None:
    assert time_left(NOW + left, NOW) == text


def test_the_verdict_checks_the_chain_and_the_name(
    material: TrustMaterial, other: TrustMaterial
) -> None:
    leaf = leaf_of(material)
    issuer = list(material.issuer.chain)
    ok, line = verdict([leaf], issuer, material.anchors, WEB, NOW)
    assert ok and line.startswith(f"√ valid for {WEB}: chains to the trust anchors (")
    ok, line = verdict([leaf], issuer, other.anchors, WEB, NOW)
    assert not ok and line.startswith(f"{CROSS} not valid: ")
    ok, line = verdict([leaf], issuer, material.anchors, "other.name", NOW)
    assert not ok and '"other.name" was expected' in line


# -- -o json, weft-api and weft-data-plane ----------------------------------------------------


def test_the_json_report_is_linkerds_shape_with_hints() -> None:
    async def checks(env: CheckEnv) -> AsyncGenerator[r.CheckResult, None]:
        yield r.passed("fine")
        yield r.warned("meh", "soon")
        yield r.failed("broken", "it is", hint="fix it")

    out: list[str] = []
    env = CheckEnv(Ctx("weft", "/nonexistent"), wait=0)
    code = asyncio.run(run_checks(env, [Category("cat", checks)], out.append, "json"))
    assert code == 1
    assert len(out) == 1
    assert json.loads(out[0]) == {
        "success": False,
        "categories": [
            {
                "categoryName": "cat",
                "checks": [
                    {"description": "fine", "hint": "", "error": "", "result": "success"},
                    {"description": "meh", "hint": "", "error": "soon", "result": "warning"},
                    {
                        "description": "broken",
                        "hint": "fix it",
                        "error": "it is",
                        "result": "error",
                    },
                ],
            }
        ],
    }
    assert r.render(r.failed("broken", "it is", hint="fix it"))[-1] == "    hint: fix it"


def test_the_self_check_gives_one_result_per_subsystem() -> None:
    answer = {
        "results": [
            {
                "subsystem": "kubernetes",
                "checkDescription": "control plane can talk to Kubernetes",
                "status": "OK",
            },
            {
                "subsystem": "prometheus",
                "checkDescription": "control plane can talk to Prometheus",
                "status": "FAIL",
                "friendlyMessageToUser": "connection refused",
            },
        ]
    }
    got = r.self_check(answer, None)
    assert [(x.description, x.status) for x in got] == [
        ("[kubernetes] control plane can talk to Kubernetes", "ok"),
        ("[prometheus] control plane can talk to Prometheus", "error"),
    ]
    assert got[1].detail == "connection refused" and got[1].hint
    down = r.self_check(None, "the metrics API is not ready")
    assert [(x.description, x.status, x.detail) for x in down] == [
        (r.SELF_CHECK, "error", "the metrics API is not ready")
    ]


def meshed(name: str, *, ready: bool = True, version: str = "0.1.0", ns: str = "shop") -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": {"linkerd.io/proxy-version": version},
        },
        "spec": {"initContainers": [{"name": "linkerd-proxy"}], "containers": [{"name": "app"}]},
        "status": {
            "phase": "Running",
            "initContainerStatuses": [{"name": "linkerd-proxy", "ready": ready, "restartCount": 2}],
        },
    }


def test_proxies_must_all_be_ready_and_unready_ones_are_named() -> None:
    plain: Obj = {"metadata": {"name": "plain"}, "spec": {"containers": [{"name": "app"}]}}
    done = meshed("done", ready=False)
    done["status"]["phase"] = "Succeeded"
    assert r.proxies_ready([meshed("a"), plain, done], 1.0).status == "ok"
    result = r.proxies_ready([meshed("a"), meshed("b", ready=False)], 3.0)
    assert result.status == "error"
    assert "* shop/b (restarts: 2)" in result.detail
    assert r.proxies_ready([plain], 0).status == "error"


def test_every_meshed_proxy_must_be_scraped() -> None:
    pods = [meshed("a"), meshed("b")]
    assert r.proxy_metrics(pods, {("shop", "a"), ("shop", "b")}, 1).status == "ok"
    missing = r.proxy_metrics(pods, {("shop", "a")}, 1)
    assert missing.status == "error" and "* shop/b" in missing.detail


def test_proxy_versions_must_match_the_cli() -> None:
    assert r.proxy_versions([meshed("a")], "0.1.0").status == "ok"
    old = r.proxy_versions([meshed("a"), meshed("b", version="0.0.9")], "0.1.0")
    assert old.status == "error" and "* shop/b runs 0.0.9" in old.detail
