"""Loading manifests into resource models, and the checks across the objects of one apply."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from weft.resources import (
    KINDS,
    ConfigMap,
    Deployment,
    ManifestError,
    Namespace,
    Pod,
    Resource,
    Service,
    check_apply,
    describe,
    load_manifests,
    parse_manifest_text,
)

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, version: v1}
    spec:
      containers:
        - name: web
          image: ghcr.io/example/web:1.0
          command: [python3, -m, http.server, "8080"]
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef: {fieldPath: metadata.name}
            - name: GREETING
              value: hello
          ports:
            - name: http
              containerPort: 8080
          readinessProbe:
            httpGet: {path: /ready, port: http}
"""

WEB_SVC = """\
apiVersion: v1
kind: Service
metadata:
  name: web-svc
spec:
  selector: {app: web}
  ports:
    - name: http
      port: 80
      targetPort: http
"""

CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
"""


def docs(*parts: str) -> str:
    """A multi-document YAML stream."""
    return "---\n".join(parts)


def load(text: str, default_namespace: str | None = None) -> list[Resource]:
    """Parse ``text`` as the manifest file ``app.yaml``."""
    return parse_manifest_text(text, "app.yaml", default_namespace)


def error_of(text: str) -> str:
    """The one-line error loading ``text`` raises."""
    with pytest.raises(ManifestError) as caught:
        load(text)
    return str(caught.value)


# Loading


def test_multi_document_yaml_loads_every_object_in_order() -> None:
    resources = load(docs(WEB, WEB_SVC, CONFIG))
    assert [(r.kind, r.metadata.name) for r in resources] == [
        ("Deployment", "web"),
        ("Service", "web-svc"),
        ("ConfigMap", "web-config"),
    ]
    assert [describe(r) for r in resources] == [
        "app.yaml: document 1 (Deployment web)",
        "app.yaml: document 2 (Service web-svc)",
        "app.yaml: document 3 (ConfigMap web-config)",
    ]
    deployment = resources[0]
    assert isinstance(deployment, Deployment)
    assert deployment.spec.replicas == 2
    assert deployment.spec.template.spec.containers[0].ports[0].container_port == 8080


def test_empty_documents_are_skipped_but_keep_their_number() -> None:
    resources = load(f"---\n{CONFIG}---\n---\n{WEB_SVC}---\n")
    assert [describe(r) for r in resources] == [
        "app.yaml: document 1 (ConfigMap web-config)",
        "app.yaml: document 3 (Service web-svc)",
    ]


def test_list_kind_expands_its_items() -> None:
    text = """\
apiVersion: v1
kind: List
metadata: {resourceVersion: ""}
items:
  - {apiVersion: v1, kind: Namespace, metadata: {name: shop}}
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: cfg, namespace: shop}
"""
    resources = load(text)
    assert [type(r) for r in resources] == [Namespace, ConfigMap]
    assert describe(resources[1]) == "app.yaml: document 1, items[1] (ConfigMap cfg)"


def test_directory_loads_yaml_yml_and_json_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b-web.yaml").write_text(WEB)
    (tmp_path / "c-svc.yml").write_text(WEB_SVC)
    (tmp_path / "a-config.json").write_text(
        '{\n\t"apiVersion": "v1", "kind": "ConfigMap",\n\t"metadata": {"name": "from-json"}\n}'
    )
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "skipped.yaml").write_text(CONFIG)
    resources = load_manifests([str(tmp_path)])
    assert [r.metadata.name for r in resources] == ["from-json", "web", "web-svc"]
    assert (
        describe(resources[0]) == f"{tmp_path / 'a-config.json'}: document 1 (ConfigMap from-json)"
    )


def test_dash_reads_manifests_from_stdin(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(WEB)
    resources = load_manifests([str(tmp_path / "web.yaml"), "-"], stdin=io.StringIO(WEB_SVC))
    assert [describe(r) for r in resources] == [
        f"{tmp_path / 'web.yaml'}: document 1 (Deployment web)",
        "<stdin>: document 1 (Service web-svc)",
    ]


def test_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ManifestError, match=r"nope\.yaml: No such file or directory"):
        load_manifests([str(missing)])


def test_kinds_registry_maps_each_kind_to_its_model() -> None:
    assert KINDS["Deployment"] is Deployment
    assert KINDS["Service"] is Service
    assert set(KINDS) == {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Service",
        "Endpoints",
        "Pod",
        "Deployment",
        "Job",
        "ServiceProfile",
        "TrafficSplit",
    }


# Namespaces


def test_namespaced_objects_default_to_the_default_namespace() -> None:
    [service] = load(WEB_SVC)
    assert service.metadata.namespace == "default"


def test_default_namespace_argument_fills_in_missing_namespaces() -> None:
    [service, config] = load(
        docs(WEB_SVC, CONFIG.replace("web-config", "c\n  namespace: shop")), "shop"
    )
    assert (service.metadata.namespace, config.metadata.namespace) == ("shop", "shop")


def test_namespace_conflicting_with_the_requested_one_is_rejected() -> None:
    text = WEB_SVC.replace("name: web-svc", "name: web-svc\n  namespace: other")
    with pytest.raises(ManifestError) as caught:
        load(text, "shop")
    assert str(caught.value) == (
        'app.yaml: document 1 (Service web-svc): metadata.namespace: "other" does not match '
        'the requested namespace "shop"'
    )


def test_namespace_kind_is_cluster_scoped() -> None:
    [namespace] = load("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "other")
    assert namespace.metadata.namespace is None
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, namespace: x}\n"
    assert error_of(text) == (
        "app.yaml: document 1 (Namespace shop): metadata.namespace: not allowed on kind Namespace"
    )


# What a manifest carries


def test_env_value_from_field_ref_uses_snake_case_attributes_and_camel_case_json() -> None:
    [deployment] = load(WEB)
    assert isinstance(deployment, Deployment)
    env = deployment.spec.template.spec.containers[0].env
    assert env[0].value_from is not None and env[0].value_from.field_ref is not None
    assert env[0].value_from.field_ref.field_path == "metadata.name"
    assert env[1].value == "hello"
    dumped = deployment.model_dump(by_alias=True, exclude_none=True, mode="json")
    container = dumped["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "GREETING", "value": "hello"},
    ]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/ready",
        "port": "http",
        "scheme": "HTTP",
    }


def test_fields_the_local_runtime_ignores_are_accepted_and_round_trip() -> None:
    text = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  uid: 1f0c5a34-0000-4000-8000-000000000000
  resourceVersion: "4711"
  generation: 3
  creationTimestamp: 2024-05-01T12:00:00Z
  ownerReferences: [{apiVersion: v1, kind: Thing, name: owner, uid: x}]
  annotations: {deployment.kubernetes.io/revision: "3"}
spec:
  replicas: 1
  revisionHistoryLimit: 10
  progressDeadlineSeconds: 600
  minReadySeconds: 0
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%, maxUnavailable: 25%}}
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      creationTimestamp: null
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 30
      dnsPolicy: ClusterFirst
      hostname: web
      nodeSelector: {kubernetes.io/os: linux}
      tolerations: [{key: k, operator: Exists}]
      affinity: {nodeAffinity: {}}
      volumes: [{name: tmp, emptyDir: {}}]
      securityContext: {runAsUser: 1000, fsGroup: 2000}
      containers:
        - name: web
          image: web:1
          imagePullPolicy: Always
          resources: {limits: {cpu: 100m}}
          securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false}
          terminationMessagePath: /dev/termination-log
          terminationMessagePolicy: File
          volumeMounts: [{name: tmp, mountPath: /tmp}]
status:
  replicas: 1
  readyReplicas: 1
  updatedReplicas: 1
"""
    [deployment] = load(text)
    assert isinstance(deployment, Deployment)
    assert deployment.metadata.creation_timestamp == "2024-05-01T12:00:00Z"
    pod_spec = deployment.spec.template.spec
    assert pod_spec.security_context is not None and pod_spec.security_context.run_as_user == 1000
    assert deployment.status is not None and deployment.status.ready_replicas == 1
    dumped = deployment.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["spec"]["template"]["spec"]["securityContext"] == {
        "runAsUser": 1000,
        "fsGroup": 2000,
    }
    assert Deployment.model_validate(dumped).model_dump() == deployment.model_dump()


def test_named_target_port_is_kept_and_a_missing_target_port_defaults_to_the_port() -> None:
    text = WEB_SVC + "    - name: admin\n      port: 9990\n"
    [service] = load(text)
    assert isinstance(service, Service)
    assert [p.target_port for p in service.spec.ports] == ["http", 9990]


def test_pod_kind_loads_with_its_labels() -> None:
    text = """\
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  restartPolicy: Never
  containers: [{name: curl, command: [curl, http://web-svc]}]
"""
    [pod] = load(text)
    assert isinstance(pod, Pod)
    assert pod.metadata.labels == {"app": "client"}
    assert pod.spec.restart_policy == "Never"


# Errors name the document and the field


def test_malformed_yaml_names_the_document_and_line() -> None:
    text = docs(WEB_SVC, CONFIG, "kind: ConfigMap\ndata: {a: b: c}\nmetadata: {name: x}\n")
    assert WEB_SVC.count("\n") + CONFIG.count("\n") + 2 == 18
    assert error_of(text) == (
        "app.yaml: document 3: invalid YAML: expected ',' or '}', but got ':' (line 20)"
    )


def test_unknown_kind_is_rejected_naming_the_document() -> None:
    assert error_of(WEB.replace("kind: Deployment", "kind: Deploymnt")) == (
        'app.yaml: document 1: unknown kind "Deploymnt" (apiVersion apps/v1)'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            WEB.replace("kind: Deployment\n", ""),
            'app.yaml: document 1: missing "kind"',
            id="kind",
        ),
        pytest.param(
            WEB.replace("apiVersion: apps/v1\n", ""),
            'app.yaml: document 1 (Deployment web): missing "apiVersion"',
            id="apiVersion",
        ),
        pytest.param(
            WEB.replace("  name: web\n  labels", "  labels"),
            "app.yaml: document 1 (Deployment): metadata.name: Field required",
            id="name",
        ),
        pytest.param(
            "- just\n- a list\n",
            "app.yaml: document 1: expected an object with apiVersion and kind",
            id="not-an-object",
        ),
    ],
)
def test_missing_identity_fields_are_rejected(text: str, expected: str) -> None:
    assert error_of(text) == expected


def test_api_version_must_match_the_kind() -> None:
    assert error_of(WEB.replace("apps/v1", "v1")) == (
        'app.yaml: document 1 (Deployment web): apiVersion: "v1" is not valid for kind '
        "Deployment (expected apps/v1)"
    )


def test_misspelt_field_is_rejected_as_unknown() -> None:
    assert error_of(WEB.replace("replicas: 2", "replica: 2")) == (
        "app.yaml: document 1 (Deployment web): spec.replica: unknown field"
    )


def test_wrong_type_names_the_camel_case_field_path() -> None:
    message = error_of(docs(CONFIG, WEB.replace("containerPort: 8080", "containerPort: eighty")))
    assert message.startswith(
        "app.yaml: document 2 (Deployment web): "
        "spec.template.spec.containers[0].ports[0].containerPort: Input should be a valid integer"
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "  selector: {app: web}\n",
            "",
            "spec.selector: a Service needs a selector",
            id="no-selector",
        ),
        pytest.param(
            "spec:\n",
            "spec:\n  type: NodePort\n",
            'spec.type: "NodePort": only ClusterIP services are supported by the local runtime',
            id="node-port",
        ),
        pytest.param(
            "spec:\n",
            "spec:\n  clusterIP: None\n",
            "spec.clusterIP: headless services (clusterIP: None) are not supported by the "
            "local runtime",
            id="headless",
        ),
        pytest.param(
            "      targetPort: http\n",
            "      targetPort: http\n    - port: 81\n",
            "spec.ports[1].name: required when a Service has several ports",
            id="unnamed-second-port",
        ),
        pytest.param(
            "name: web-svc",
            "name: Web_svc",
            'metadata.name: "Web_svc" is not a DNS-1123 subdomain',
            id="bad-name",
        ),
    ],
)
def test_invalid_service_is_rejected(old: str, new: str, expected: str) -> None:
    header, _, detail = error_of(WEB_SVC.replace(old, new)).partition("): ")
    assert header.startswith("app.yaml: document 1 (Service ")
    assert detail.startswith(expected)


def test_deployment_selector_must_match_the_template_labels() -> None:
    text = WEB.replace("matchLabels: {app: web}", "matchLabels: {app: api}")
    assert error_of(text) == (
        "app.yaml: document 1 (Deployment web): spec.template.metadata.labels: "
        "do not match spec.selector (app=api)"
    )


def test_match_expressions_are_rejected_as_not_supported() -> None:
    text = WEB.replace(
        "matchLabels: {app: web}",
        "matchLabels: {app: web}\n    matchExpressions: [{key: tier, operator: Exists}]",
    )
    assert error_of(text) == (
        "app.yaml: document 1 (Deployment web): spec.selector.matchExpressions: "
        "matchExpressions is not supported by the local runtime; use matchLabels"
    )


def test_job_runs_one_completion_with_a_non_always_restart_policy() -> None:
    job = """\
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, command: [./migrate]}]
"""
    [loaded] = load(job)
    assert loaded.model_dump(by_alias=True, exclude_none=True)["spec"]["backoffLimit"] == 6
    assert error_of(job.replace("  template:", "  completions: 3\n  template:")) == (
        "app.yaml: document 1 (Job migrate): spec.completions: "
        "only completions: 1 is supported by the local runtime"
    )
    assert error_of(job.replace("      restartPolicy: Never\n", "")) == (
        "app.yaml: document 1 (Job migrate): spec.template.spec.restartPolicy: "
        "a Job needs OnFailure or Never"
    )


def test_loading_is_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(docs(WEB, WEB_SVC, CONFIG.replace("\ndata:", "\ndatta:")))
    with pytest.raises(ManifestError, match=r"document 3 \(ConfigMap web-config\): datta"):
        load_manifests([str(tmp_path / "app.yaml")])
    (tmp_path / "app.yaml").write_text(docs(WEB, WEB_SVC))
    (tmp_path / "bad.yaml").write_text("kind: [")
    with pytest.raises(ManifestError, match=r"bad\.yaml: document 1: invalid YAML"):
        load_manifests([str(tmp_path / "app.yaml"), str(tmp_path / "bad.yaml")])


# Checks across one apply


def test_named_target_port_resolves_against_the_selected_pods() -> None:
    check_apply(load(docs(WEB, WEB_SVC)))


def test_unknown_named_target_port_is_rejected() -> None:
    resources = load(docs(WEB, WEB_SVC.replace("targetPort: http", "targetPort: metrics")))
    with pytest.raises(ManifestError) as caught:
        check_apply(resources)
    assert str(caught.value) == (
        "app.yaml: document 2 (Service web-svc): spec.ports[0].targetPort: "
        'no container port named "metrics" in pods selected by app=web'
    )


def test_named_target_port_resolves_against_existing_workloads() -> None:
    existing = parse_manifest_text(WEB, "cluster")
    check_apply(load(WEB_SVC), existing)
    bad = load(WEB_SVC.replace("targetPort: http", "targetPort: grpc"))
    with pytest.raises(ManifestError, match='no container port named "grpc"'):
        check_apply(bad, existing)


def test_service_selecting_no_workload_yet_is_accepted() -> None:
    service = WEB_SVC.replace("{app: web}", "{app: later}").replace(
        "targetPort: http", "targetPort: x"
    )
    check_apply(load(docs(WEB, service)))


def test_workload_in_another_namespace_does_not_resolve_a_named_port() -> None:
    other = WEB.replace("name: web\n", "name: web\n  namespace: shop\n", 1)
    other = other.replace("name: http", "name: admin")
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
    check_apply(load(docs(namespace, other, WEB_SVC)))


def test_duplicate_objects_in_one_apply_are_rejected() -> None:
    with pytest.raises(ManifestError) as caught:
        check_apply(load(docs(WEB_SVC, CONFIG, WEB_SVC)))
    assert str(caught.value) == (
        "app.yaml: document 3 (Service web-svc): defined twice "
        "(also app.yaml: document 1 (Service web-svc))"
    )


def test_same_name_in_different_kinds_or_namespaces_is_not_a_duplicate() -> None:
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
    in_shop = CONFIG.replace("name: web-config", "name: web-config\n  namespace: shop")
    secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: web-config}\nstringData: {a: b}\n"
    check_apply(load(docs(namespace, CONFIG, in_shop, secret)))


def test_object_in_an_unknown_namespace_is_rejected() -> None:
    text = CONFIG.replace("name: web-config", "name: web-config\n  namespace: shop")
    with pytest.raises(ManifestError) as caught:
        check_apply(load(text))
    assert str(caught.value) == (
        'app.yaml: document 1 (ConfigMap web-config): namespace "shop" not found'
    )


def test_namespace_applied_together_existing_or_builtin_is_found() -> None:
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
    in_shop = CONFIG.replace("name: web-config", "name: web-config\n  namespace: shop")
    check_apply(load(docs(in_shop, namespace)))
    check_apply(load(in_shop), existing=load(namespace))
    check_apply(load(in_shop.replace("namespace: shop", "namespace: weft")))
