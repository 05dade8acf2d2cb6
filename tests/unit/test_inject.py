"""The proxy injector: decisions, the injected pod template (golden files) and uninjection."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from click.testing import CliRunner

from weft.cli.proxy_init import proxy_init
from weft.inject import (
    InjectConfig,
    InjectError,
    decide,
    inject_pod_template,
    uninject_pod_template,
)
from weft.inject.annotations import SUPPORTED_CONFIG_ANNOTATIONS
from weft.local.proxy_init import ProxyInitConfig, render
from weft.proxy.config import ProxyConfig

if TYPE_CHECKING:
    from tests.conftest import GoldenChecker

CONFIG = InjectConfig(weft_version="0.1.0", proxy_version="0.1.0")
ENABLED = {"linkerd.io/inject": "enabled"}


def web_template(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The pod template of emojivoto's ``web`` Deployment."""
    return {
        "metadata": {
            "labels": {"app": "web-svc", "version": "v11"},
            **({"annotations": dict(annotations)} if annotations is not None else {}),
        },
        "spec": {
            "serviceAccountName": "web",
            "containers": [
                {
                    "name": "web-svc",
                    "image": "docker.l5d.io/buoyantio/emojivoto-web:v11",
                    "env": [
                        {"name": "WEB_PORT", "value": "8080"},
                        {"name": "EMOJISVC_HOST", "value": "emoji-svc.emojivoto:8080"},
                        {"name": "VOTINGSVC_HOST", "value": "voting-svc.emojivoto:8080"},
                        {"name": "INDEX_BUNDLE", "value": "dist/index_bundle.js"},
                    ],
                    "ports": [{"name": "http", "containerPort": 8080}],
                }
            ],
        },
    }


def inject(
    template: dict[str, Any],
    namespace_annotations: dict[str, str] | None = None,
    config: InjectConfig = CONFIG,
) -> dict[str, Any]:
    return inject_pod_template(
        template,
        namespace_annotations=namespace_annotations or {},
        owner_kind="Deployment",
        owner_name="web",
        config=config,
        namespace="emojivoto",
    )


def container(result: dict[str, Any], name: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [
        c for c in result["spec"]["initContainers"] if c["name"] == name
    ]
    assert len(matches) == 1
    return matches[0]


def env_of(result: dict[str, Any]) -> dict[str, str]:
    """The proxy's plain-valued environment."""
    entries = container(result, "linkerd-proxy")["env"]
    return {e["name"]: e["value"] for e in entries if "value" in e}


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


def test_web_deployment_matches_golden(golden: GoldenChecker) -> None:
    golden.check("inject/web.yaml", dump(inject(web_template(ENABLED))))


def test_annotated_pod_matches_golden(golden: GoldenChecker) -> None:
    template = web_template(
        {
            "config.linkerd.io/skip-inbound-ports": "3306,9000-9010",
            "config.linkerd.io/skip-outbound-ports": "443",
            "config.linkerd.io/opaque-ports": "4222, 6379",
            "config.linkerd.io/proxy-log-level": "warn,weft=debug",
            "config.linkerd.io/proxy-log-format": "JSON",
            "config.linkerd.io/proxy-uid": "3000",
            "config.linkerd.io/proxy-inbound-connect-timeout": "300ms",
            "config.linkerd.io/proxy-outbound-connect-timeout": "2s",
            "config.linkerd.io/shutdown-grace-period": "30s",
            "config.linkerd.io/proxy-admin-shutdown": "enabled",
            "config.linkerd.io/proxy-await": "disabled",
            "config.linkerd.io/disable-identity": "false",
            "config.linkerd.io/proxy-cpu-request": "100m",
            "config.linkerd.io/proxy-memory-limit": "64Mi",
            "config.linkerd.io/image-pull-policy": "Always",
            "config.linkerd.io/init-image": "registry.example/weft-init",
            "config.linkerd.io/disable-tap": "true",
        }
    )
    template["spec"]["initContainers"] = [{"name": "migrate", "image": "web:v11"}]
    template["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    namespace = {"linkerd.io/inject": "ingress", "config.linkerd.io/proxy-gid": "3001"}
    config = InjectConfig(weft_version="0.1.0", proxy_version="0.1.0", extra_env={"EXTRA": "1"})
    golden.check("inject/annotated.yaml", dump(inject(template, namespace, config)))


def test_native_sidecar_layout() -> None:
    template = web_template(ENABLED)
    template["spec"]["initContainers"] = [{"name": "migrate", "image": "web:v11"}]
    spec = inject(template)["spec"]
    names = [c["name"] for c in spec["initContainers"]]
    assert names == ["linkerd-init", "linkerd-proxy", "migrate"]
    assert [c["name"] for c in spec["containers"]] == ["web-svc"]
    proxy = spec["initContainers"][1]
    assert proxy["restartPolicy"] == "Always"
    assert proxy["startupProbe"]["httpGet"] == {"path": "/ready", "port": 4191}
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 4191}
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/live", "port": 4191}
    assert "restartPolicy" not in spec["initContainers"][0]


def test_metadata_written_by_the_injector() -> None:
    metadata = inject(web_template(), {"linkerd.io/inject": "enabled"})["metadata"]
    assert metadata["annotations"] == {
        "linkerd.io/inject": "enabled",
        "linkerd.io/created-by": "weft/0.1.0",
        "linkerd.io/proxy-version": "0.1.0",
        "linkerd.io/identity-mode": "disabled",
    }
    assert metadata["labels"] == {
        "app": "web-svc",
        "version": "v11",
        "linkerd.io/control-plane-ns": "weft",
        "linkerd.io/proxy-deployment": "web",
        "linkerd.io/workload-ns": "emojivoto",
    }


def test_identity_variables_are_rendered() -> None:
    result = inject(web_template(ENABLED))
    env = container(result, "linkerd-proxy")["env"]
    refs = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in env if "valueFrom" in e}
    assert refs == {
        "_pod_ns": "metadata.namespace",
        "_pod_name": "metadata.name",
        "_pod_sa": "spec.serviceAccountName",
    }
    values = env_of(result)
    suffix = "serviceaccount.identity.$(_l5d_ns).$(_l5d_trustdomain)"
    assert values["LINKERD2_PROXY_IDENTITY_LOCAL_NAME"] == f"$(_pod_sa).$(_pod_ns).{suffix}"
    assert values["LINKERD2_PROXY_IDENTITY_SVC_NAME"] == f"weft-identity.$(_l5d_ns).{suffix}"
    assert values["LINKERD2_PROXY_DESTINATION_SVC_NAME"] == f"weft-destination.$(_l5d_ns).{suffix}"
    assert values["LINKERD2_PROXY_TAP_SVC_NAME"] == f"weft-tap.$(_l5d_ns).{suffix}"
    assert "LINKERD2_PROXY_TAP_DISABLED" not in values
    assert values["LINKERD2_PROXY_IDENTITY_DISABLED"] == "disabled"
    # Kubernetes expands $(VAR) only from variables defined earlier in the list.
    order = [e["name"] for e in env]
    assert order.index("_l5d_trustdomain") < order.index("LINKERD2_PROXY_IDENTITY_LOCAL_NAME")
    assert values["LINKERD2_PROXY_DESTINATION_CONTEXT"] == "ns:$(_pod_ns)"
    assert order.index("_pod_ns") < order.index("LINKERD2_PROXY_DESTINATION_CONTEXT")


def test_identity_enabled_mounts_the_end_entity_volume() -> None:
    config = InjectConfig(weft_version="0.1.0", proxy_version="0.1.0", identity_disabled=False)
    result = inject(web_template(ENABLED), config=config)
    assert "LINKERD2_PROXY_IDENTITY_DISABLED" not in env_of(result)
    assert result["metadata"]["annotations"]["linkerd.io/identity-mode"] == "default"
    assert result["spec"]["volumes"] == [
        {"name": "linkerd-identity-end-entity", "emptyDir": {"medium": "Memory"}}
    ]
    mounts = container(result, "linkerd-proxy")["volumeMounts"]
    assert mounts == [
        {"name": "linkerd-identity-end-entity", "mountPath": "/var/run/linkerd/identity/end-entity"}
    ]


def test_rendered_env_is_accepted_by_the_proxy() -> None:
    template = web_template(
        {
            **ENABLED,
            "config.linkerd.io/opaque-ports": "4222,5000-5002",
            "config.linkerd.io/proxy-inbound-connect-timeout": "250ms",
            "config.linkerd.io/proxy-outbound-connect-timeout": "3s",
            "config.linkerd.io/shutdown-grace-period": "5s",
            "config.linkerd.io/proxy-admin-shutdown": "enabled",
            "config.linkerd.io/inbound-port": "14143",
        }
    )
    proxy = ProxyConfig.from_env(env_of(inject(template)))
    assert proxy.identity_disabled
    assert proxy.inbound.listen == ("0.0.0.0", 14143)
    assert proxy.outbound.listen == ("127.0.0.1", 4140)
    assert proxy.admin_listen == ("0.0.0.0", 4191)
    assert proxy.control_listen == ("0.0.0.0", 4190)
    assert proxy.inbound.opaque_ports == {4222, 5000, 5001, 5002}
    assert proxy.inbound.connect_timeout == 0.25
    assert proxy.outbound.connect_timeout == 3.0
    assert proxy.shutdown_grace_period == 5.0
    assert proxy.shutdown_endpoint_enabled
    assert proxy.destination_addr == ("weft-destination.weft.svc.cluster.local", 8086)
    assert proxy.log_filter == "warn,weft=info"
    assert proxy.tap_svc_name.startswith("weft-tap.") and not proxy.tap_disabled


def test_disable_tap_annotation() -> None:
    values = env_of(inject(web_template({**ENABLED, "config.linkerd.io/disable-tap": "true"})))
    assert values["LINKERD2_PROXY_TAP_DISABLED"] == "true"
    assert ProxyConfig.from_env(values).tap_disabled
    values = env_of(inject(web_template({**ENABLED, "config.linkerd.io/disable-tap": "false"})))
    assert "LINKERD2_PROXY_TAP_DISABLED" not in values
    namespace = {**ENABLED, "config.linkerd.io/disable-tap": "true"}
    assert env_of(inject(web_template(), namespace))["LINKERD2_PROXY_TAP_DISABLED"] == "true"


def test_opaque_ports_only_when_annotated() -> None:
    key = "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"
    assert key not in env_of(inject(web_template(ENABLED)))
    annotated = web_template({**ENABLED, "config.linkerd.io/opaque-ports": "3306, 8000:8002"})
    assert env_of(inject(annotated))[key] == "3306,8000-8002"


def proxy_init_args(result: dict[str, Any]) -> list[str]:
    command = container(result, "linkerd-init")["command"]
    assert command[:2] == ["weft", "proxy-init"]
    return list(command[2:])


def test_skip_ports_flow_into_proxy_init_flags() -> None:
    template = web_template(
        {
            **ENABLED,
            "config.linkerd.io/skip-inbound-ports": "3306, 9000-9010",
            "config.linkerd.io/skip-outbound-ports": "443,6379",
        }
    )
    args = proxy_init_args(inject(template))
    assert args == [
        *("--incoming-proxy-port", "4143"),
        *("--outgoing-proxy-port", "4140"),
        *("--proxy-uid", "2102"),
        *("--proxy-gid", "2102"),
        *("--inbound-ports-to-ignore", "4190,4191,3306,9000-9010"),
        *("--outbound-ports-to-ignore", "443,6379"),
    ]
    # The flags are weft proxy-init's: they render the same rules as the equivalent config.
    result = CliRunner().invoke(proxy_init, [*args, "--simulate", "--timestamp", "7"])
    assert result.exit_code == 0, result.output
    expected = ProxyInitConfig(
        proxy_uid=2102,
        proxy_gid=2102,
        inbound_ports_to_ignore=["3306", "9000-9010"],
        outbound_ports_to_ignore=[443, 6379],
    )
    assert result.stdout == render(expected, 7)


def test_default_proxy_init_flags_have_no_outbound_ignores() -> None:
    args = proxy_init_args(inject(web_template(ENABLED)))
    assert "--outbound-ports-to-ignore" not in args
    assert args[args.index("--inbound-ports-to-ignore") + 1] == "4190,4191"


def test_proxy_uid_annotation_sets_both_containers() -> None:
    template = web_template({**ENABLED, "config.linkerd.io/proxy-uid": "3000"})
    result = inject(template)
    assert container(result, "linkerd-proxy")["securityContext"]["runAsUser"] == 3000
    args = proxy_init_args(result)
    assert args[args.index("--proxy-uid") + 1] == "3000"


def test_proxy_await_disabled_drops_the_startup_probe() -> None:
    template = web_template({**ENABLED, "config.linkerd.io/proxy-await": "disabled"})
    assert "startupProbe" not in container(inject(template), "linkerd-proxy")


def test_pod_config_annotations_override_the_namespace() -> None:
    namespace = {
        **ENABLED,
        "config.linkerd.io/proxy-log-level": "debug",
        "config.linkerd.io/skip-outbound-ports": "25",
    }
    template = web_template({"config.linkerd.io/proxy-log-level": "info"})
    result = inject(template, namespace)
    assert env_of(result)["LINKERD2_PROXY_LOG"] == "info"
    args = proxy_init_args(result)
    assert args[args.index("--outbound-ports-to-ignore") + 1] == "25"


def test_extra_env_appends_and_replaces() -> None:
    config = InjectConfig(
        weft_version="0.1.0",
        proxy_version="0.1.0",
        extra_env={"LINKERD2_PROXY_LOG": "debug", "LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD": "1s"},
    )
    env = container(inject(web_template(ENABLED), config=config), "linkerd-proxy")["env"]
    names = [e["name"] for e in env]
    assert names.count("LINKERD2_PROXY_LOG") == 1
    assert env[0] == {"name": "LINKERD2_PROXY_LOG", "value": "debug"}
    assert env[-1] == {"name": "LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD", "value": "1s"}


@pytest.mark.parametrize(
    ("pod", "namespace", "expected"),
    [
        (ENABLED, {}, (True, "pod annotated linkerd.io/inject=enabled")),
        ({}, ENABLED, (True, "namespace emojivoto annotated linkerd.io/inject=enabled")),
        (
            {"linkerd.io/inject": "disabled"},
            ENABLED,
            (False, "pod annotated linkerd.io/inject=disabled"),
        ),
        (
            {},
            {"linkerd.io/inject": "disabled"},
            (False, "namespace emojivoto annotated linkerd.io/inject=disabled"),
        ),
        ({"linkerd.io/inject": "ingress"}, {}, (True, "pod annotated linkerd.io/inject=ingress")),
        (
            {},
            {},
            (False, "linkerd.io/inject is set on neither the pod nor its namespace emojivoto"),
        ),
    ],
)
def test_decide(pod: dict[str, str], namespace: dict[str, str], expected: tuple[bool, str]) -> None:
    assert decide(pod, namespace, namespace="emojivoto") == expected


def test_decide_refuses_injected_and_host_network_pods() -> None:
    injected = inject(web_template(ENABLED))
    assert decide(ENABLED, {}, spec=injected["spec"]) == (
        False,
        "pod already has a linkerd-init container",
    )
    spec = {"hostNetwork": True, "containers": [{"name": "x"}]}
    assert decide(ENABLED, {}, spec=spec) == (False, "pod uses the host network")


def test_pod_disabled_overrides_namespace_enabled() -> None:
    template = web_template({"linkerd.io/inject": "disabled"})
    assert inject(template, ENABLED) == template


def test_unannotated_pod_is_left_alone() -> None:
    template = web_template()
    assert inject(template) == template


def test_ingress_mode() -> None:
    result = inject(web_template({"linkerd.io/inject": "ingress"}))
    assert env_of(result)["LINKERD2_PROXY_INGRESS_MODE"] == "true"
    assert result["metadata"]["annotations"]["linkerd.io/inject"] == "ingress"
    assert "LINKERD2_PROXY_INGRESS_MODE" not in env_of(inject(web_template(ENABLED)))


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        ("linkerd.io/inject", "yes"),
        ("config.linkerd.io/proxy-uid", "abc"),
        ("config.linkerd.io/proxy-uid", "0"),
        ("config.linkerd.io/proxy-gid", "-5"),
        ("config.linkerd.io/inbound-port", "70000"),
        ("config.linkerd.io/skip-inbound-ports", "3306,99999"),
        ("config.linkerd.io/skip-outbound-ports", "http"),
        ("config.linkerd.io/opaque-ports", "10-5"),
        ("config.linkerd.io/proxy-log-level", "warn,weft=loud"),
        ("config.linkerd.io/proxy-log-level", " "),
        ("config.linkerd.io/proxy-log-format", "xml"),
        ("config.linkerd.io/proxy-inbound-connect-timeout", "soon"),
        ("config.linkerd.io/proxy-outbound-connect-timeout", "1y"),
        ("config.linkerd.io/shutdown-grace-period", ""),
        ("config.linkerd.io/proxy-await", "maybe"),
        ("config.linkerd.io/proxy-admin-shutdown", "yes"),
        ("config.linkerd.io/disable-identity", "sometimes"),
        ("config.linkerd.io/disable-tap", "yes"),
        ("config.linkerd.io/proxy-version", ""),
    ],
)
def test_bad_annotation_is_rejected_by_name(annotation: str, value: str) -> None:
    template = web_template({**ENABLED, annotation: value})
    with pytest.raises(InjectError) as info:
        inject(template)
    message = str(info.value)
    assert message.startswith(f"pod annotation {annotation}: "), message
    assert "\n" not in message


def test_bad_namespace_annotation_names_the_namespace() -> None:
    namespace = {**ENABLED, "config.linkerd.io/proxy-log-format": "xml"}
    with pytest.raises(InjectError, match=r"^namespace annotation config.linkerd.io/proxy-log"):
        inject(web_template(), namespace)


def test_non_string_annotation_value_is_rejected() -> None:
    template = web_template(ENABLED)
    template["metadata"]["annotations"]["config.linkerd.io/skip-inbound-ports"] = 3306
    with pytest.raises(InjectError, match=r"skip-inbound-ports: value 3306 is not a string"):
        inject(template)


def test_colliding_proxy_ports_are_rejected() -> None:
    template = web_template({**ENABLED, "config.linkerd.io/admin-port": "4143"})
    with pytest.raises(InjectError, match="ports must differ"):
        inject(template)


def test_template_without_containers_is_rejected() -> None:
    with pytest.raises(InjectError, match=r"no spec\.containers"):
        inject({"metadata": {"annotations": ENABLED}, "spec": {}})


def test_input_is_not_mutated() -> None:
    template = web_template({**ENABLED, "config.linkerd.io/skip-inbound-ports": "3306"})
    template["spec"]["initContainers"] = [{"name": "migrate", "image": "web:v11"}]
    before = copy.deepcopy(template)
    result = inject(template, ENABLED)
    assert template == before
    result["spec"]["containers"][0]["env"].clear()
    result["metadata"]["labels"].clear()
    assert template == before


def test_injecting_twice_is_a_no_op() -> None:
    once = inject(web_template(ENABLED))
    assert inject(once) == once


@pytest.mark.parametrize("identity_disabled", [True, False])
def test_round_trip_with_uninject(identity_disabled: bool) -> None:
    config = InjectConfig(
        weft_version="0.1.0", proxy_version="0.1.0", identity_disabled=identity_disabled
    )
    template = web_template({"config.linkerd.io/skip-inbound-ports": "3306"})
    template["spec"]["initContainers"] = [{"name": "migrate", "image": "web:v11"}]
    template["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    injected = inject(template, ENABLED, config)
    assert injected != template
    assert uninject_pod_template(injected) == template


def test_uninject_removes_the_inject_annotation() -> None:
    template = web_template()
    injected = inject(web_template(ENABLED))
    assert uninject_pod_template(injected) == template
    assert uninject_pod_template(template) == template


def test_supported_annotations() -> None:
    assert set(SUPPORTED_CONFIG_ANNOTATIONS) == {
        f"config.linkerd.io/{name}"
        for name in (
            "inbound-port",
            "outbound-port",
            "admin-port",
            "control-port",
            "proxy-uid",
            "proxy-gid",
            "proxy-image",
            "proxy-version",
            "proxy-log-level",
            "proxy-log-format",
            "disable-identity",
            "disable-tap",
            "proxy-await",
            "proxy-admin-shutdown",
            "skip-inbound-ports",
            "skip-outbound-ports",
            "opaque-ports",
            "proxy-inbound-connect-timeout",
            "proxy-outbound-connect-timeout",
            "shutdown-grace-period",
            "image-pull-policy",
            "init-image",
            "init-image-version",
            "enable-external-profiles",
            "proxy-cpu-request",
            "proxy-cpu-limit",
            "proxy-memory-request",
            "proxy-memory-limit",
            "proxy-ephemeral-storage-request",
            "proxy-ephemeral-storage-limit",
        )
    }
