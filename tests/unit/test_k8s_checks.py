"""The Kubernetes checks' judgements over fixed data, and ``check -o json`` (golden)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import GoldenChecker
from weft.cli import check_results as results
from weft.cli.check_results import Report
from weft.identity.certs import load_certs_pem
from weft.k8s import check_results as k8s

PKI = Path(__file__).resolve().parents[1] / "fixtures" / "k8s-pki"
NOW = datetime(2027, 1, 1, tzinfo=UTC)

Obj = dict[str, Any]


def deployment(name: str, replicas: int, ready: int) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


def webhook(component: str, bundle_from: str) -> k8s.WebhookState:
    import base64

    cert = (PKI / f"{component}.crt").read_bytes()
    bundle = base64.b64encode((PKI / f"{bundle_from}-ca.crt").read_bytes()).decode()
    return k8s.WebhookState(component, f"weft-{component}", "weft", cert, bundle)


def meshed_pod(name: str, anchors: str) -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": "emojivoto",
            "annotations": {"linkerd.io/proxy-version": "0.1.0"},
        },
        "spec": {
            "initContainers": [
                {
                    "name": "linkerd-proxy",
                    "env": [{"name": "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS", "value": anchors}],
                }
            ],
            "containers": [{"name": "web"}],
        },
        "status": {
            "phase": "Running",
            "initContainerStatuses": [{"name": "linkerd-proxy", "ready": True}],
        },
    }


def report() -> Report:
    anchors_pem = (PKI / "ca.crt").read_text()
    anchors = load_certs_pem(anchors_pem.encode(), "anchors")
    issuer = load_certs_pem((PKI / "issuer.crt").read_bytes(), "issuer")
    pods = [meshed_pod("web-1", anchors_pem), meshed_pod("web-2", "other anchors")]
    sections: list[tuple[str, list[results.CheckResult]]] = [
        ("kubernetes-api", [k8s.client_ready(None), k8s.api_reachable(None)]),
        ("kubernetes-version", [k8s.minimum_version("v1.35.4")]),
        (
            "weft-config",
            [
                k8s.config_exists(None),
                k8s.objects_exist("ClusterRoles", {"weft-weft-identity"}, ["weft-weft-identity"]),
                k8s.objects_exist("CustomResourceDefinitions", {"serviceprofiles.linkerd.io"}, []),
            ],
        ),
        (
            "weft-existence",
            [
                k8s.deployments_ready(
                    [deployment("weft-identity", 1, 1), deployment("weft-destination", 0, 0)]
                ),
                k8s.no_unschedulable([]),
            ],
        ),
        ("weft-identity", results.identity_results(anchors, issuer, None, now=NOW)),
        (
            "weft-webhooks-and-apisvc-tls",
            [
                *k8s.webhook_results(webhook("proxy-injector", "proxy-injector"), NOW),
                *k8s.webhook_results(webhook("sp-validator", "proxy-injector"), NOW),
            ],
        ),
        (
            "weft-api",
            [k8s.self_check(["weft-destination cannot watch endpointslices.discovery.k8s.io"])],
        ),
        (
            "weft-data-plane",
            [k8s.anchors_match(pods, anchors_pem), results.proxy_versions(pods, "0.1.0")],
        ),
    ]
    out = Report()
    for name, found in sections:
        for result in found:
            out.add(name, result)
    return out


def test_check_json_matches_golden(golden: GoldenChecker) -> None:
    found = report()
    golden.check("check/kubernetes.json", json.dumps(found.to_json(), indent=2) + "\n")
    assert found.exit_code == 1


def test_minimum_version() -> None:
    assert not k8s.minimum_version("v1.29.0").failed
    assert k8s.minimum_version("v1.28.9").failed
    assert k8s.minimum_version("garbage").failed


def test_scaled_to_zero_and_unready_replicas_are_named() -> None:
    result = k8s.deployments_ready(
        [deployment("a", 0, 0), deployment("b", 2, 1), deployment("c", 1, 1)]
    )
    assert result.failed
    assert result.detail.splitlines() == ["* a is scaled to zero", "* b: 1/2 replicas ready"]
    assert k8s.deployments_ready([]).failed


def test_clock_skew_and_capabilities() -> None:
    assert not k8s.clock_skew(NOW, NOW + timedelta(minutes=4)).failed
    assert k8s.clock_skew(NOW, NOW + timedelta(minutes=6)).failed
    refused = k8s.capability("NET_ADMIN", 'pods "x" is forbidden: violates PodSecurity')
    assert refused.failed and refused.hint
    assert not k8s.capability("NET_RAW", None).failed


def test_webhook_certificate_expiring_soon_warns() -> None:
    state = webhook("proxy-injector", "proxy-injector")
    late = datetime(2027, 11, 1, tzinfo=UTC)
    statuses = [r.status for r in k8s.webhook_results(state, late)]
    assert statuses == ["ok", "ok", "warning"]
