"""Per-object rules of the resource models: containers, probes, env, services, secrets, status."""

from __future__ import annotations

import pytest

from weft.resources import (
    ConfigMap,
    Container,
    EndpointAddress,
    Endpoints,
    EndpointSubset,
    ManifestError,
    ObjectMeta,
    ObjectReference,
    Pod,
    PodStatus,
    Probe,
    describe,
    parse_manifest_text,
)

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
    - name: web
      command: [./web]
      ports: [{name: http, containerPort: 8080}]
"""


def pod_with(container_extra: str = "", spec_extra: str = "") -> str:
    """The ``POD`` manifest with extra YAML lines in its container and its spec."""
    text = POD.replace("      ports:", container_extra + "      ports:")
    return text + spec_extra


def load_pod(text: str) -> Pod:
    """Load a single Pod manifest."""
    [pod] = parse_manifest_text(text, "pod.yaml")
    assert isinstance(pod, Pod)
    return pod


def error_of(text: str) -> str:
    """The error loading ``text`` raises, without the document prefix."""
    with pytest.raises(ManifestError) as caught:
        parse_manifest_text(text, "pod.yaml")
    return str(caught.value).split("): ", 1)[1]


def test_probe_defaults_match_kubernetes() -> None:
    pod = load_pod(pod_with("      livenessProbe: {tcpSocket: {port: 8080}}\n"))
    probe = pod.spec.containers[0].liveness_probe
    assert probe is not None and probe.tcp_socket is not None
    assert (
        probe.initial_delay_seconds,
        probe.period_seconds,
        probe.timeout_seconds,
        probe.success_threshold,
        probe.failure_threshold,
    ) == (0, 10, 1, 1, 3)


def test_http_probe_carries_scheme_host_and_headers() -> None:
    probe = Probe.model_validate(
        {
            "httpGet": {
                "path": "/healthz",
                "port": 8443,
                "scheme": "HTTPS",
                "host": "127.0.0.1",
                "httpHeaders": [{"name": "X-Probe", "value": "1"}],
            },
            "periodSeconds": 2,
        }
    )
    assert probe.http_get is not None and probe.http_get.http_headers is not None
    assert (probe.http_get.scheme, probe.http_get.http_headers[0].name) == ("HTTPS", "X-Probe")
    assert probe.period_seconds == 2


@pytest.mark.parametrize(
    ("container_extra", "expected"),
    [
        (
            "      readinessProbe: {periodSeconds: 5}\n",
            "spec.containers[0].readinessProbe: set exactly one of httpGet, tcpSocket or exec",
        ),
        (
            "      readinessProbe: {exec: {command: [/bin/true]}, tcpSocket: {port: 1}}\n",
            "spec.containers[0].readinessProbe: set exactly one of httpGet, tcpSocket or exec",
        ),
        (
            "      readinessProbe: {httpGet: {port: HTTP}}\n",
            'spec.containers[0].readinessProbe.httpGet.port: "HTTP" is not a valid port name',
        ),
        (
            "      readinessProbe: {httpGet: {port: 70000}}\n",
            "spec.containers[0].readinessProbe.httpGet.port: port 70000 is not between 1 and 65535",
        ),
        (
            "      livenessProbe: {exec: {command: [/bin/true]}, successThreshold: 2}\n",
            "spec.containers[0].livenessProbe.successThreshold: must be 1",
        ),
        (
            "      readinessProbe: {exec: {command: [/bin/true]}, periodSeconds: 0}\n",
            "spec.containers[0].readinessProbe.periodSeconds: Input should be greater than or "
            "equal to 1",
        ),
    ],
)
def test_invalid_probe_is_rejected(container_extra: str, expected: str) -> None:
    assert error_of(pod_with(container_extra)).startswith(expected)


def test_env_from_config_maps_secrets_and_pod_fields() -> None:
    env = """\
      env:
        - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
        - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
        - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token, optional: true}}}
"""
    [app, ip, greeting, token] = load_pod(pod_with(env)).spec.containers[0].env
    assert app.value_from is not None and app.value_from.field_ref is not None
    assert app.value_from.field_ref.field_path == "metadata.labels['app']"
    assert ip.value_from is not None and ip.value_from.field_ref is not None
    assert ip.value_from.field_ref.field_path == "status.podIP"
    assert greeting.value_from is not None and greeting.value_from.config_map_key_ref is not None
    assert greeting.value_from.config_map_key_ref.key == "greeting"
    assert token.value_from is not None and token.value_from.secret_key_ref is not None
    assert token.value_from.secret_key_ref.optional is True


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            "{name: X, value: a, valueFrom: {fieldRef: {fieldPath: metadata.name}}}",
            "spec.containers[0].env[0]: set value or valueFrom, not both",
        ),
        (
            "{name: X, valueFrom: {}}",
            "spec.containers[0].env[0].valueFrom: set exactly one of fieldRef, configMapKeyRef "
            "or secretKeyRef",
        ),
        (
            "{name: X, valueFrom: {fieldRef: {fieldPath: spec.containers}}}",
            'spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: unsupported fieldPath "spec.',
        ),
        ("{name: 1X, value: a}", 'spec.containers[0].env[0].name: "1X" is not a valid'),
        ("{name: X, value: 1}", "spec.containers[0].env[0].value: Input should be a valid string"),
    ],
)
def test_invalid_env_var_is_rejected(env: str, expected: str) -> None:
    assert error_of(pod_with(f"      env: [{env}]\n")).startswith(expected)


def test_init_container_with_restart_policy_always_is_a_native_sidecar() -> None:
    sidecar = """\
  initContainers:
    - name: proxy
      restartPolicy: Always
      readinessProbe: {httpGet: {path: /ready, port: 4191}}
    - name: setup
      command: [./setup]
"""
    pod = load_pod(pod_with(spec_extra=sidecar))
    assert [c.restart_policy for c in pod.spec.init_containers] == ["Always", None]


@pytest.mark.parametrize(
    ("container_extra", "spec_extra", "expected"),
    [
        (
            "",
            "  initContainers: [{name: web}]\n",
            'spec.containers[0].name: duplicate container name "web"',
        ),
        (
            "      restartPolicy: Always\n",
            "",
            "spec.containers[0].restartPolicy: only init containers (native sidecars) may set",
        ),
        (
            "",
            "  initContainers: [{name: setup, restartPolicy: Never}]\n",
            "spec.initContainers[0].restartPolicy: Input should be 'Always'",
        ),
        (
            "",
            "  initContainers: [{name: setup, startupProbe: {exec: {command: [/bin/true]}}}]\n",
            "spec.initContainers[0].startupProbe: only allowed on init containers with "
            "restartPolicy Always",
        ),
        (
            "      ports: [{name: http, containerPort: 8080}, {name: http, containerPort: 9090}]\n",
            "",
            'spec.containers[0].ports[1].name: duplicate port name "http"',
        ),
        ("", "  restartPolicy: Sometimes\n", "spec.restartPolicy: Input should be 'Always'"),
        ("", "  hostNetwork: true\n", "spec.hostNetwork: unknown field"),
    ],
)
def test_invalid_containers_are_rejected(
    container_extra: str, spec_extra: str, expected: str
) -> None:
    text = pod_with(container_extra, spec_extra)
    if "containerPort: 9090" in container_extra:
        text = text.replace("      ports: [{name: http, containerPort: 8080}]\n", "")
    assert error_of(text).startswith(expected)


def test_container_built_in_python_uses_snake_case_names() -> None:
    container = Container(name="web", command=["./web"], working_dir="/srv")
    assert container.model_dump(by_alias=True, exclude_none=True) == {
        "name": "web",
        "command": ["./web"],
        "workingDir": "/srv",
        "env": [],
        "ports": [],
    }


def test_security_context_keeps_fields_it_does_not_model() -> None:
    extra = (
        "      securityContext: {runAsUser: 1000, runAsGroup: 3000, capabilities: {drop: [ALL]}}\n"
    )
    context = load_pod(pod_with(extra)).spec.containers[0].security_context
    assert context is not None and (context.run_as_user, context.run_as_group) == (1000, 3000)
    assert context.model_dump(by_alias=True, exclude_none=True) == {
        "runAsUser": 1000,
        "runAsGroup": 3000,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("labels: {app: web}", "labels: {app: 'web server'}", "metadata.labels: invalid value"),
        ("labels: {app: web}", "labels: {example.com/app: web}", None),
        ("labels: {app: web}", "labels: {Example.com/app: web}", "metadata.labels: invalid key"),
        ("name: web", "name: web.v1", None),
        ("name: web", "name: -web", 'metadata.name: "-web" is not a DNS-1123 subdomain'),
        ("  labels:", "  namespace: Shop\n  labels:", 'metadata.namespace: "Shop" is not a DNS'),
        ("    - name: web", "    - name: web.v1", 'spec.containers[0].name: "web.v1" is not a'),
    ],
)
def test_names_and_labels_follow_kubernetes_rules(old: str, new: str, expected: str | None) -> None:
    text = POD.replace(old, new, 1)
    if expected is None:
        load_pod(text)
    else:
        assert error_of(text).startswith(expected)


def test_service_takes_an_explicit_cluster_ip_and_rejects_a_malformed_one() -> None:
    service = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: ClusterIP
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports: [{port: 80, protocol: UDP}]
"""
    [loaded] = parse_manifest_text(service, "svc.yaml")
    dumped = loaded.model_dump(by_alias=True, exclude_none=True)
    assert dumped["spec"]["clusterIP"] == "10.96.0.10"
    assert dumped["spec"]["ports"] == [{"port": 80, "targetPort": 80, "protocol": "UDP"}]
    assert error_of(service.replace("10.96.0.10", "10.96.0")).startswith(
        'spec.clusterIP: "10.96.0" is not an IP address'
    )
    assert error_of(service.replace("name: web", "name: 1web")).startswith(
        'metadata.name: "1web" is not a DNS-1035 label'
    )


def test_deployment_pods_must_restart_always_and_be_selected() -> None:
    deployment = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      restartPolicy: Never
      containers: [{name: web}]
"""
    assert error_of(deployment) == (
        "spec.template.spec.restartPolicy: a Deployment's pods must use Always"
    )
    assert error_of(deployment.replace("{app: web}}", "{}}", 1)) == (
        "spec.selector.matchLabels: a Deployment needs a non-empty selector"
    )


def test_secret_and_config_map_data_are_checked() -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {token: aGVsbG8=}\n"
    [loaded] = parse_manifest_text(secret, "s.yaml")
    assert loaded.model_dump()["type"] == "Opaque"
    assert error_of(secret.replace("aGVsbG8=", "hello!")) == (
        'data: the value of "token" is not valid base64'
    )
    config = ConfigMap.model_validate(
        {"metadata": {"name": "c"}, "data": {"a.txt": "x"}, "binaryData": {"b.bin": "AA=="}}
    )
    assert config.binary_data == {"b.bin": "AA=="}
    with pytest.raises(ValueError, match=r"binaryData\.a\.txt: duplicates a key of data"):
        ConfigMap.model_validate(
            {"metadata": {"name": "c"}, "data": {"a.txt": "x"}, "binaryData": {"a.txt": "AA=="}}
        )


def test_pod_status_reports_readiness_and_container_states() -> None:
    status = PodStatus.model_validate(
        {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "startTime": "2024-05-01T12:00:00Z",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "web",
                    "ready": True,
                    "restartCount": 2,
                    "state": {"running": {"startedAt": "2024-05-01T12:00:01Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                }
            ],
        }
    )
    assert status.ready and status.pod_ip == "10.0.0.7"
    web = status.container_statuses[0]
    assert web.restart_count == 2 and web.state is not None and web.state.running is not None
    assert web.last_state is not None and web.last_state.terminated is not None
    assert web.last_state.terminated.exit_code == 137
    assert not PodStatus.model_validate(
        {"conditions": [{"type": "Ready", "status": "False"}]}
    ).ready


def test_endpoints_built_by_the_runtime_dump_with_kubernetes_names() -> None:
    endpoints = Endpoints(
        metadata=ObjectMeta(name="web-svc", namespace="default"),
        subsets=[
            EndpointSubset(
                addresses=[
                    EndpointAddress(
                        ip="10.0.0.7",
                        target_ref=ObjectReference(kind="Pod", name="web-1", namespace="default"),
                    )
                ],
                not_ready_addresses=[EndpointAddress(ip="10.0.0.8")],
            )
        ],
    )
    assert describe(endpoints) == "Endpoints web-svc"
    dumped = endpoints.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["apiVersion"] == "v1" and dumped["kind"] == "Endpoints"
    assert dumped["subsets"] == [
        {
            "addresses": [
                {
                    "ip": "10.0.0.7",
                    "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"},
                }
            ],
            "notReadyAddresses": [{"ip": "10.0.0.8"}],
            "ports": [],
        }
    ]
