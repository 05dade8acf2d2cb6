"""Core (``v1``) kinds: Namespace, ServiceAccount, ConfigMap, Secret, Service, Endpoints and Pod."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from weft.resources.errors import field_error
from weft.resources.meta import (
    DnsLabel,
    DnsSubdomain,
    KubeModel,
    KubeObject,
    Labels,
    PortName,
    PortNumber,
    PortRef,
    TemplateMeta,
)

Protocol = Literal["TCP", "UDP"]

_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_POD_FIELDS = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    }
)
_POD_MAP_FIELD = re.compile(r"metadata\.(labels|annotations)\['[^']+'\]")


def _check_ip(value: str) -> str:
    """Return ``value`` if it is an IPv4 or IPv6 address, else raise ``ValueError``."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f'"{value}" is not an IP address') from None
    return value


def _check_data_keys(data: dict[str, str]) -> dict[str, str]:
    """Validate ConfigMap/Secret keys (letters, digits, "-", "_" and ".")."""
    for key in data:
        if len(key) > 253 or not _DATA_KEY.fullmatch(key):
            raise ValueError(f'invalid key "{key}": use letters, digits, "-", "_" or "."')
    return data


def _check_base64(data: dict[str, str]) -> dict[str, str]:
    """Validate that every value is base64."""
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError(f'the value of "{key}" is not valid base64') from None
    return data


class Namespace(KubeObject):
    """A namespace (cluster-scoped)."""

    API_VERSIONS = ("v1",)
    NAMESPACED = False
    NAME_FORMAT = "label"

    api_version: str = "v1"
    kind: Literal["Namespace"] = "Namespace"
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class ServiceAccount(KubeObject):
    """A service account; the local runtime uses its name as the workload identity."""

    API_VERSIONS = ("v1",)

    api_version: str = "v1"
    kind: Literal["ServiceAccount"] = "ServiceAccount"
    secrets: list[dict[str, Any]] | None = None
    image_pull_secrets: list[dict[str, Any]] | None = None
    automount_service_account_token: bool | None = None


class ConfigMap(KubeObject):
    """Configuration data as string key/value pairs."""

    API_VERSIONS = ("v1",)

    api_version: str = "v1"
    kind: Literal["ConfigMap"] = "ConfigMap"
    data: dict[str, str] = Field(default_factory=dict)
    binary_data: dict[str, str] | None = None
    immutable: bool | None = None

    @field_validator("data")
    @classmethod
    def _data_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_data_keys(value)

    @field_validator("binary_data")
    @classmethod
    def _binary_data(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return value if value is None else _check_base64(_check_data_keys(value))

    @model_validator(mode="after")
    def _distinct_keys(self) -> Self:
        for key in self.binary_data or {}:
            if key in self.data:
                raise field_error(f"binaryData.{key}", "duplicates a key of data")
        return self


class Secret(KubeObject):
    """Secret data: base64 values in ``data``, plain ones in ``stringData``."""

    API_VERSIONS = ("v1",)

    api_version: str = "v1"
    kind: Literal["Secret"] = "Secret"
    type: str = "Opaque"
    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] | None = None
    immutable: bool | None = None

    @field_validator("data")
    @classmethod
    def _data(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_base64(_check_data_keys(value))

    @field_validator("string_data")
    @classmethod
    def _string_data(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return value if value is None else _check_data_keys(value)


class ServicePort(KubeModel):
    """One port of a Service; ``targetPort`` defaults to ``port``."""

    name: DnsLabel | None = None
    port: PortNumber
    target_port: PortRef
    protocol: Protocol = "TCP"
    app_protocol: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_target_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("targetPort", data.get("target_port")) is None:
            return {**data, "targetPort": data.get("port")}
        return data


class ServiceSpec(KubeModel):
    """The spec of a ClusterIP Service with a selector."""

    type: Literal["ClusterIP"] | None = None
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    ports: list[ServicePort] = Field(min_length=1)
    selector: Labels = Field(default_factory=dict, validate_default=True)
    session_affinity: str | None = None
    internal_traffic_policy: str | None = None
    ip_families: list[str] | None = None
    ip_family_policy: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _cluster_ip_type(cls, value: Any) -> Any:
        if value not in (None, "ClusterIP"):
            raise ValueError(
                f'"{value}": only ClusterIP services are supported by the local runtime'
            )
        return value

    @field_validator("cluster_ip")
    @classmethod
    def _not_headless(cls, value: str | None) -> str | None:
        if value == "None":
            raise ValueError(
                "headless services (clusterIP: None) are not supported by the local runtime"
            )
        return _check_ip(value) if value else None

    @field_validator("selector")
    @classmethod
    def _has_selector(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("a Service needs a selector")
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> Self:
        names: set[str] = set()
        numbers: set[tuple[int, str]] = set()
        for i, port in enumerate(self.ports):
            if port.name is None and len(self.ports) > 1:
                raise field_error(f"ports[{i}].name", "required when a Service has several ports")
            if port.name is not None and port.name in names:
                raise field_error(f"ports[{i}].name", f'duplicate port name "{port.name}"')
            if (port.port, port.protocol) in numbers:
                raise field_error(f"ports[{i}].port", f"duplicate port {port.port}/{port.protocol}")
            names.add(port.name or "")
            numbers.add((port.port, port.protocol))
        return self


class Service(KubeObject):
    """A Service: a stable name and ClusterIP in front of the pods its selector matches."""

    API_VERSIONS = ("v1",)
    NAME_FORMAT = "dns1035"

    api_version: str = "v1"
    kind: Literal["Service"] = "Service"
    spec: ServiceSpec
    status: dict[str, Any] | None = None


class ObjectReference(KubeModel):
    """A reference to another object, as in an endpoint address's ``targetRef``."""

    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    api_version: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class EndpointAddress(KubeModel):
    """One address of an Endpoints subset."""

    ip: str
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        return _check_ip(value)


class EndpointPort(KubeModel):
    """One port of an Endpoints subset."""

    name: str | None = None
    port: PortNumber
    protocol: Protocol = "TCP"
    app_protocol: str | None = None


class EndpointSubset(KubeModel):
    """Addresses that share a set of ports."""

    addresses: list[EndpointAddress] = Field(default_factory=list)
    not_ready_addresses: list[EndpointAddress] = Field(default_factory=list)
    ports: list[EndpointPort] = Field(default_factory=list)


class Endpoints(KubeObject):
    """The endpoints of a Service, as maintained by the runtime."""

    API_VERSIONS = ("v1",)

    api_version: str = "v1"
    kind: Literal["Endpoints"] = "Endpoints"
    subsets: list[EndpointSubset] = Field(default_factory=list)


class ObjectFieldSelector(KubeModel):
    """A pod field exposed to a container, e.g. ``metadata.name`` or ``status.podIP``."""

    field_path: str
    api_version: str | None = None

    @field_validator("field_path")
    @classmethod
    def _supported(cls, value: str) -> str:
        if value not in _POD_FIELDS and not _POD_MAP_FIELD.fullmatch(value):
            supported = ", ".join(sorted(_POD_FIELDS))
            raise ValueError(
                f'unsupported fieldPath "{value}" (supported: {supported}, '
                "metadata.labels['<key>'], metadata.annotations['<key>'])"
            )
        return value


class KeySelector(KubeModel):
    """A key of a ConfigMap or Secret."""

    name: DnsSubdomain
    key: str
    optional: bool | None = None


class EnvVarSource(KubeModel):
    """Where an environment variable's value comes from; exactly one field is set."""

    field_ref: ObjectFieldSelector | None = None
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [self.field_ref, self.config_map_key_ref, self.secret_key_ref]
        if sum(source is not None for source in chosen) != 1:
            raise ValueError("set exactly one of fieldRef, configMapKeyRef or secretKeyRef")
        return self


class EnvVar(KubeModel):
    """An environment variable of a container."""

    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(f'"{value}" is not a valid environment variable name')
        return value

    @model_validator(mode="after")
    def _not_both(self) -> Self:
        if self.value is not None and self.value_from is not None:
            raise ValueError("set value or valueFrom, not both")
        return self


class ContainerPort(KubeModel):
    """A port a container listens on."""

    name: PortName | None = None
    container_port: PortNumber
    protocol: Protocol = "TCP"


class HTTPHeader(KubeModel):
    """A header sent by an HTTP probe."""

    name: str
    value: str


class HTTPGetAction(KubeModel):
    """An HTTP GET probe."""

    path: str | None = None
    port: PortRef
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(KubeModel):
    """A TCP connect probe."""

    port: PortRef
    host: str | None = None


class ExecAction(KubeModel):
    """A probe that runs a command in the container."""

    command: list[str] = Field(min_length=1)


class Probe(KubeModel):
    """A readiness, liveness or startup probe; exactly one handler is set."""

    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    initial_delay_seconds: int = Field(default=0, ge=0)
    period_seconds: int = Field(default=10, ge=1)
    timeout_seconds: int = Field(default=1, ge=1)
    success_threshold: int = Field(default=1, ge=1)
    failure_threshold: int = Field(default=3, ge=1)
    termination_grace_period_seconds: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_handler(self) -> Self:
        if sum(h is not None for h in (self.http_get, self.tcp_socket, self.exec)) != 1:
            raise ValueError("set exactly one of httpGet, tcpSocket or exec")
        return self


class SecurityContext(KubeModel):
    """A pod or container security context; the user and group are honoured, the rest is kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    run_as_non_root: bool | None = None


class Container(KubeModel):
    """A container; ``image`` and resource settings are accepted but not used locally."""

    name: DnsLabel
    image: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: list[EnvVar] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    restart_policy: Literal["Always"] | None = None
    security_context: SecurityContext | None = None
    resources: dict[str, Any] | None = None
    lifecycle: dict[str, Any] | None = None
    volume_mounts: list[Any] | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        for field, probe in (
            ("livenessProbe", self.liveness_probe),
            ("startupProbe", self.startup_probe),
        ):
            if probe is not None and probe.success_threshold != 1:
                raise field_error(f"{field}.successThreshold", "must be 1")
        names: set[str] = set()
        for i, port in enumerate(self.ports):
            if port.name is not None and port.name in names:
                raise field_error(f"ports[{i}].name", f'duplicate port name "{port.name}"')
            names.add(port.name or "")
        return self


class PodSpec(KubeModel):
    """The spec of a pod; scheduling and volume settings are accepted but not used locally."""

    containers: list[Container] = Field(min_length=1)
    init_containers: list[Container] = Field(default_factory=list)
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    service_account_name: DnsSubdomain | None = None
    service_account: str | None = None
    automount_service_account_token: bool | None = None
    hostname: DnsLabel | None = None
    subdomain: DnsLabel | None = None
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    security_context: SecurityContext | None = None
    dns_policy: str | None = None
    dns_config: dict[str, Any] | None = None
    enable_service_links: bool | None = None
    node_selector: dict[str, str] | None = None
    node_name: str | None = None
    tolerations: list[Any] | None = None
    affinity: dict[str, Any] | None = None
    topology_spread_constraints: list[Any] | None = None
    volumes: list[Any] | None = None
    scheduler_name: str | None = None
    priority_class_name: str | None = None
    priority: int | None = None
    preemption_policy: str | None = None
    runtime_class_name: str | None = None
    image_pull_secrets: list[Any] | None = None

    @model_validator(mode="after")
    def _check_containers(self) -> Self:
        names: set[str] = set()
        groups = (("initContainers", self.init_containers), ("containers", self.containers))
        for group, containers in groups:
            for i, container in enumerate(containers):
                if container.name in names:
                    raise field_error(
                        f"{group}[{i}].name", f'duplicate container name "{container.name}"'
                    )
                names.add(container.name)
                if group == "containers" and container.restart_policy is not None:
                    raise field_error(
                        f"{group}[{i}].restartPolicy",
                        "only init containers (native sidecars) may set restartPolicy",
                    )
                if group == "initContainers" and container.restart_policy is None:
                    _no_probes(container, f"{group}[{i}]")
        return self


def _no_probes(container: Container, path: str) -> None:
    """Raise unless ``container`` (a plain init container) has no probes."""
    probes = {
        "readinessProbe": container.readiness_probe,
        "livenessProbe": container.liveness_probe,
        "startupProbe": container.startup_probe,
    }
    for field, probe in probes.items():
        if probe is not None:
            raise field_error(
                f"{path}.{field}", "only allowed on init containers with restartPolicy Always"
            )


class PodTemplateSpec(KubeModel):
    """The pod template of a workload."""

    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: PodSpec


class ContainerStateRunning(KubeModel):
    """A running container."""

    started_at: str | None = None


class ContainerStateWaiting(KubeModel):
    """A container waiting to start."""

    reason: str | None = None
    message: str | None = None


class ContainerStateTerminated(KubeModel):
    """A container that has exited."""

    exit_code: int
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    container_id: str | None = Field(default=None, alias="containerID")


class ContainerState(KubeModel):
    """A container's state; at most one field is set."""

    running: ContainerStateRunning | None = None
    waiting: ContainerStateWaiting | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(KubeModel):
    """The observed status of one container."""

    name: str
    ready: bool = False
    restart_count: int = 0
    state: ContainerState | None = None
    last_state: ContainerState | None = None
    started: bool | None = None
    image: str | None = None
    image_id: str | None = Field(default=None, alias="imageID")
    container_id: str | None = Field(default=None, alias="containerID")


class PodCondition(KubeModel):
    """A pod condition such as ``Ready``."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    last_probe_time: str | None = None
    last_transition_time: str | None = None


class PodIP(KubeModel):
    """One IP address of a pod or host."""

    ip: str


class PodStatus(KubeModel):
    """The observed status of a pod."""

    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"] | None = None
    conditions: list[PodCondition] = Field(default_factory=list)
    container_statuses: list[ContainerStatus] = Field(default_factory=list)
    init_container_statuses: list[ContainerStatus] = Field(default_factory=list)
    pod_ip: str | None = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] | None = Field(default=None, alias="podIPs")
    host_ip: str | None = Field(default=None, alias="hostIP")
    host_ips: list[PodIP] | None = Field(default=None, alias="hostIPs")
    start_time: str | None = None
    qos_class: str | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def ready(self) -> bool:
        """Whether the pod's ``Ready`` condition is ``True``."""
        return any(c.type == "Ready" and c.status == "True" for c in self.conditions)


class Pod(KubeObject):
    """A pod: one or more containers sharing a network namespace."""

    API_VERSIONS = ("v1",)

    api_version: str = "v1"
    kind: Literal["Pod"] = "Pod"
    spec: PodSpec
    status: PodStatus | None = None
