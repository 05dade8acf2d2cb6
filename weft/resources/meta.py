"""Object metadata, label selectors, name rules and the base classes of every resource model."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from weft.resources.errors import field_error

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


class KubeModel(BaseModel):
    """Base of every model: camelCase aliases, snake_case attributes, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def check_dns_label(value: str) -> str:
    """Return ``value`` if it is a DNS-1123 label, else raise ``ValueError``."""
    if len(value) > 63 or not _DNS1123_LABEL.fullmatch(value):
        raise ValueError(
            f'"{value}" is not a DNS-1123 label (at most 63 lowercase letters, digits and "-", '
            "starting and ending with a letter or digit)"
        )
    return value


def check_dns_subdomain(value: str) -> str:
    """Return ``value`` if it is a DNS-1123 subdomain, else raise ``ValueError``."""
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise ValueError(
            f'"{value}" is not a DNS-1123 subdomain (at most 253 characters: dot-separated '
            'lowercase letters, digits and "-", each part starting and ending with a letter '
            "or digit)"
        )
    return value


def check_dns1035_label(value: str) -> str:
    """Return ``value`` if it is a DNS-1035 label (a DNS-1123 label starting with a letter)."""
    if len(value) > 63 or not _DNS1035_LABEL.fullmatch(value):
        raise ValueError(
            f'"{value}" is not a DNS-1035 label (at most 63 lowercase letters, digits and "-", '
            "starting with a letter and ending with a letter or digit)"
        )
    return value


def check_port_name(value: str) -> str:
    """Return ``value`` if it is a port name (an IANA service name), else raise ``ValueError``."""
    if (
        len(value) > 15
        or not _PORT_NAME.fullmatch(value)
        or "--" in value
        or not any(c.isalpha() for c in value)
    ):
        raise ValueError(
            f'"{value}" is not a valid port name (at most 15 lowercase letters, digits and '
            'single "-", with at least one letter)'
        )
    return value


def _check_port_ref(value: Any) -> int | str:
    """A port given by number (1-65535) or by name, as in ``targetPort`` or a probe's ``port``."""
    if isinstance(value, str):
        return check_port_name(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 65535:
            raise ValueError(f"port {value} is not between 1 and 65535")
        return value
    raise ValueError("Input should be a port number or a port name")


def _check_key(key: str) -> None:
    """Raise ``ValueError`` unless ``key`` is a Kubernetes qualified name (``[prefix/]name``)."""
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(f'invalid key "{key}": the prefix must be a DNS-1123 subdomain')
    if len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        raise ValueError(
            f'invalid key "{key}": the name must be at most 63 letters, digits, "-", "_" or ".", '
            "starting and ending with a letter or digit"
        )


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Validate label keys and values as Kubernetes does."""
    for key, value in labels.items():
        _check_key(key)
        if value and (len(value) > 63 or not _QUALIFIED_NAME.fullmatch(value)):
            raise ValueError(
                f'invalid value "{value}" for label "{key}": at most 63 letters, digits, "-", '
                '"_" or ".", starting and ending with a letter or digit'
            )
    return labels


def _check_annotations(annotations: dict[str, str]) -> dict[str, str]:
    """Validate annotation keys as Kubernetes does (values are free-form)."""
    for key in annotations:
        _check_key(key)
    return annotations


DnsLabel = Annotated[str, AfterValidator(check_dns_label)]
DnsSubdomain = Annotated[str, AfterValidator(check_dns_subdomain)]
Dns1035Label = Annotated[str, AfterValidator(check_dns1035_label)]
PortName = Annotated[str, AfterValidator(check_port_name)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
PortRef = Annotated[int | str, PlainValidator(_check_port_ref)]
Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]
Annotations = Annotated[dict[str, str], AfterValidator(_check_annotations)]


class ObjectMeta(KubeModel):
    """The ``metadata`` of a top-level object."""

    name: DnsSubdomain
    generate_name: str | None = None
    namespace: DnsLabel | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    owner_references: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[Any] | None = None


class TemplateMeta(KubeModel):
    """The ``metadata`` of a pod template, where the name is optional."""

    name: DnsSubdomain | None = None
    generate_name: str | None = None
    namespace: DnsLabel | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Annotations = Field(default_factory=dict)
    creation_timestamp: str | None = None


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` carry every key/value pair of an equality ``selector``."""
    return all(labels.get(key) == value for key, value in selector.items())


def format_selector(selector: Mapping[str, str]) -> str:
    """An equality selector as ``kubectl`` prints it: ``app=web,tier=front``."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))


class LabelSelector(KubeModel):
    """A label selector; only ``matchLabels`` is supported."""

    match_labels: Labels = Field(default_factory=dict)
    match_expressions: list[Any] | None = None

    @field_validator("match_expressions")
    @classmethod
    def _no_expressions(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError(
                "matchExpressions is not supported by the local runtime; use matchLabels"
            )
        return value

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this selector."""
        return selector_matches(self.match_labels, labels)


NameFormat = Literal["subdomain", "label", "dns1035"]
_NAME_CHECKS: dict[NameFormat, Callable[[str], str]] = {
    "subdomain": check_dns_subdomain,
    "label": check_dns_label,
    "dns1035": check_dns1035_label,
}


class KubeObject(KubeModel):
    """Base of every top-level kind: apiVersion, kind, metadata and where it was loaded from."""

    API_VERSIONS: ClassVar[tuple[str, ...]]
    NAMESPACED: ClassVar[bool] = True
    NAME_FORMAT: ClassVar[NameFormat] = "subdomain"

    api_version: str
    kind: str
    metadata: ObjectMeta
    _source: str = PrivateAttr(default="")

    @field_validator("api_version")
    @classmethod
    def _known_api_version(cls, value: str) -> str:
        if value not in cls.API_VERSIONS:
            expected = " or ".join(cls.API_VERSIONS)
            raise ValueError(
                f'"{value}" is not valid for kind {cls.__name__} (expected {expected})'
            )
        return value

    @model_validator(mode="after")
    def _check_metadata(self) -> Self:
        try:
            _NAME_CHECKS[self.NAME_FORMAT](self.metadata.name)
        except ValueError as exc:
            raise field_error("metadata.name", str(exc)) from None
        if not self.NAMESPACED and self.metadata.namespace is not None:
            raise field_error("metadata.namespace", f"not allowed on kind {self.kind}")
        return self


def describe(resource: KubeObject) -> str:
    """``"<source>: document N (Kind name)"``, or ``"Kind name"`` if not loaded from text."""
    what = f"{resource.kind} {resource.metadata.name}"
    return f"{resource._source} ({what})" if resource._source else what
