"""``weft install``'s manifests (golden files, from fixed trust material), their validity
against Kubernetes' own schemas (kubernetes-validate) and the ServiceProfile CRD schema
(jsonschema), the install values, and the webhook certificate checks."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.conftest import GoldenChecker
from weft.k8s.install.crds import service_profile_schema
from weft.k8s.install.render import Secrets, expected_names, render, to_json, to_yaml
from weft.k8s.install.values import InstallValues, ValuesError
from weft.k8s.install.webhook_tls import WebhookTls, check_serving, generate
from weft.resources.profiles import validate_service_profile

PKI = Path(__file__).resolve().parents[1] / "fixtures" / "k8s-pki"
NOW = datetime(2027, 1, 1, tzinfo=UTC)
K8S_SCHEMA_VERSION = "1.35.0"

Obj = dict[str, Any]


def fixed_secrets() -> Secrets:
    def tls(component: str) -> WebhookTls:
        return WebhookTls(
            (PKI / f"{component}.crt").read_bytes(),
            (PKI / f"{component}.key").read_bytes(),
            (PKI / f"{component}-ca.crt").read_bytes(),
        )

    return Secrets(
        anchors_pem=(PKI / "ca.crt").read_bytes(),
        issuer_cert_pem=(PKI / "issuer.crt").read_bytes(),
        issuer_key_pem=(PKI / "issuer.key").read_bytes(),
        webhooks={"proxy-injector": tls("proxy-injector"), "sp-validator": tls("sp-validator")},
    )


VALUES = InstallValues(version="0.1.0")


def test_install_yaml_matches_golden(golden: GoldenChecker) -> None:
    golden.check("install/default.yaml", to_yaml(render(VALUES, fixed_secrets())))


def test_install_ha_json_matches_golden(golden: GoldenChecker) -> None:
    values = VALUES.replace(ha=True, proxy_cpu_request="100m", proxy_memory_limit="250Mi")
    golden.check("install/ha.json", to_json(render(values, fixed_secrets())))


@pytest.mark.parametrize("ha", [False, True])
def test_every_object_validates_against_the_kubernetes_schemas(ha: bool) -> None:
    for obj in render(VALUES.replace(ha=ha), fixed_secrets()):
        kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)


def test_rendered_names_are_what_check_expects() -> None:
    objects = render(VALUES, fixed_secrets())
    by_kind: dict[str, set[str]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
    for kind, names in expected_names(VALUES).items():
        assert by_kind.get(kind, set()) == names, kind


def test_least_privilege_rbac() -> None:
    roles = {
        o["metadata"]["name"]: o["rules"]
        for o in render(VALUES, fixed_secrets())
        if o["kind"] == "ClusterRole"
    }
    assert roles["weft-weft-identity"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ]
    assert roles["weft-weft-proxy-injector"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}
    ]
    assert "weft-weft-sp-validator" not in roles  # it reads nothing from the API
    assert roles["weft-weft-prometheus"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    for rules in roles.values():
        for rule in rules:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            assert not {"update", "patch", "delete"} & set(rule["verbs"])


PROFILES = [
    {"routes": [{"name": "a", "condition": {"method": "GET"}}]},
    {
        "routes": [
            {
                "name": "nested",
                "condition": {"all": [{"any": [{"not": {"pathRegex": "/x"}}]}]},
                "responseClasses": [
                    {"condition": {"status": {"min": 500, "max": 599}}, "isFailure": True}
                ],
                "timeout": "300ms",
                "isRetryable": True,
            }
        ],
        "retryBudget": {"retryRatio": 0.2, "minRetriesPerSecond": 10, "ttl": "10s"},
        "dstOverrides": [{"authority": "web.ns.svc.cluster.local.:80", "weight": "500m"}],
    },
]


@pytest.mark.parametrize("spec", PROFILES)
def test_the_crd_schema_accepts_what_the_validator_accepts(spec: Obj) -> None:
    profile = {
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": "web.ns.svc.cluster.local", "namespace": "ns"},
        "spec": spec,
    }
    assert validate_service_profile(profile) == []
    jsonschema.validate(profile, service_profile_schema())


def test_the_crd_schema_refuses_a_status_out_of_range() -> None:
    spec = {
        "routes": [
            {
                "name": "a",
                "condition": {"method": "GET"},
                "responseClasses": [{"condition": {"status": {"min": 99}}}],
            }
        ]
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": spec}, service_profile_schema())


def test_values_round_trip_and_refuse_bad_input() -> None:
    values = VALUES.replace(controller_replicas=2, proxy_cpu_limit="1")
    assert InstallValues.from_json(values.to_json()) == values
    assert (
        InstallValues.from_json(json.dumps({"namespace": "x", "from_the_future": 1})).namespace
        == "x"
    )
    assert InstallValues(ha=True).replicas == 3
    for bad, message in (
        ({"namespace": "Not_A_Label"}, "DNS-1123"),
        ({"inbound_port": 4140}, "distinct"),
        ({"proxy_memory_request": "1Gi", "proxy_memory_limit": "1Mi"}, "must not be less"),
        ({"proxy_cpu_request": "lots"}, "not a quantity"),
        ({"webhook_failure_policy": "Maybe"}, "Ignore or Fail"),
    ):
        with pytest.raises(ValuesError, match=message):
            VALUES.replace(**bad).check()


def test_webhook_certificates_are_checked_against_the_ca_bundle() -> None:
    now = datetime.now(UTC)
    tls = generate("weft-proxy-injector", "weft", now)
    assert check_serving(tls.cert_pem, tls.ca_bundle(), "weft-proxy-injector", "weft", now) is None
    other = generate("weft-proxy-injector", "weft", now)
    wrong = check_serving(tls.cert_pem, other.ca_bundle(), "weft-proxy-injector", "weft", now)
    assert wrong == "the caBundle does not hold the CA that signed the webhook's certificate"
    named = check_serving(tls.cert_pem, tls.ca_bundle(), "weft-sp-validator", "weft", now)
    assert named is not None and "does not name weft-sp-validator.weft.svc" in named
    late = check_serving(
        tls.cert_pem, tls.ca_bundle(), "weft-proxy-injector", "weft", now + timedelta(days=400)
    )
    assert late is not None and "not valid now" in late
    assert base64.b64decode(tls.ca_bundle()) == tls.ca_pem


def test_yaml_output_is_plain_documents() -> None:
    text = to_yaml(render(VALUES, fixed_secrets()))
    assert "&id" not in text and "*id" not in text
    docs = list(yaml.safe_load_all(text))
    assert docs == render(VALUES, fixed_secrets())


def test_prometheus_runs_its_own_image_with_kubernetes_discovery_and_one_replica() -> None:
    objects = render(VALUES.replace(ha=True), fixed_secrets())
    (deployment,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "weft-prometheus"
    ]
    assert deployment["spec"]["replicas"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "prom/prometheus:v2.53.0"
    assert container["command"][0] == "/bin/prometheus"
    assert {"name": "GOMEMLIMIT", "value": "256MiB"} in container["env"]
    (config,) = [o for o in objects if o["metadata"]["name"] == "weft-prometheus-config"]
    jobs = yaml.safe_load(config["data"]["prometheus.yml"])["scrape_configs"]
    assert [j["job_name"] for j in jobs] == ["prometheus", "weft-controller", "weft-proxy"]
    assert jobs[2]["kubernetes_sd_configs"] == [{"role": "pod"}]
    others = [o for o in objects if o["kind"] == "Deployment" and o is not deployment]
    assert all(o["spec"]["replicas"] == 3 for o in others)
