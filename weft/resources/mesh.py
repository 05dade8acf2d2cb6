"""Mesh kinds: Linkerd's ServiceProfile and SMI's TrafficSplit."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainValidator, field_validator, model_validator

from weft.resources.meta import Dns1035Label, KubeModel, KubeObject
from weft.resources.profiles import parse_quantity, validate_service_profile


def _check_quantity(value: Any) -> str | int | float:
    """A Kubernetes quantity as written: a string such as ``"500m"`` or a number."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            parse_quantity(value)
        except ValueError:
            pass
        else:
            return value
    raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 1, 500m)")


Quantity = Annotated[str | int | float, PlainValidator(_check_quantity)]


class RequestMatch(KubeModel):
    """A predicate on requests; the fields that are set must all hold."""

    all: list[RequestMatch] | None = None
    any: list[RequestMatch] | None = None
    not_: RequestMatch | None = Field(default=None, alias="not")
    path_regex: str | None = None
    method: str | None = None


class Range(KubeModel):
    """An inclusive HTTP status range; 0 leaves a bound open."""

    min: int = Field(default=0, ge=0)
    max: int = Field(default=0, ge=0)


class ResponseMatch(KubeModel):
    """A predicate on responses; the fields that are set must all hold."""

    all: list[ResponseMatch] | None = None
    any: list[ResponseMatch] | None = None
    not_: ResponseMatch | None = Field(default=None, alias="not")
    status: Range | None = None


class ResponseClass(KubeModel):
    """Responses matching ``condition`` are failures when ``is_failure``."""

    condition: ResponseMatch
    is_failure: bool = False


class RouteSpec(KubeModel):
    """A named route: a request condition plus retry, timeout and response classification."""

    name: str
    condition: RequestMatch
    response_classes: list[ResponseClass] = Field(default_factory=list)
    is_retryable: bool = False
    timeout: str | None = None


class RetryBudget(KubeModel):
    """How many retries a client may add on top of its original requests."""

    retry_ratio: float = 0.0
    min_retries_per_second: int = Field(default=0, ge=0)
    ttl: str


class WeightedDst(KubeModel):
    """A destination authority with a relative weight, for traffic shifting."""

    authority: str
    weight: Quantity


class ServiceProfileSpec(KubeModel):
    """The routes, retry budget and destination overrides of a ServiceProfile."""

    routes: list[RouteSpec]
    retry_budget: RetryBudget | None = None
    dst_overrides: list[WeightedDst] = Field(default_factory=list)


def _plain(value: Any) -> Any:
    """``value`` with every model inside it replaced by its camelCase JSON form."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class ServiceProfile(KubeObject):
    """A Linkerd ServiceProfile, validated with the rules of Linkerd's sp-validator."""

    API_VERSIONS = ("linkerd.io/v1alpha2", "linkerd.io/v1alpha1")

    api_version: str = "linkerd.io/v1alpha2"
    kind: Literal["ServiceProfile"] = "ServiceProfile"
    spec: ServiceProfileSpec

    @model_validator(mode="before")
    @classmethod
    def _validate_profile(cls, data: Any) -> Any:
        if isinstance(data, dict):
            aliases = {name: str(field.alias) for name, field in cls.model_fields.items()}
            manifest = {aliases.get(key) or key: _plain(item) for key, item in data.items()}
            errors = validate_service_profile(manifest)
            if errors:
                raise ValueError("; ".join(errors))
        return data


class TrafficSplitBackend(KubeModel):
    """A backend Service of a TrafficSplit and its weight."""

    service: Dns1035Label
    weight: Quantity

    @field_validator("weight")
    @classmethod
    def _not_negative(cls, value: str | int | float) -> str | int | float:
        if parse_quantity(value) < 0:
            raise ValueError("must not be negative")
        return value


class TrafficSplitSpec(KubeModel):
    """The apex Service of a TrafficSplit and its weighted backends."""

    service: Dns1035Label
    backends: list[TrafficSplitBackend] = Field(min_length=1)


class TrafficSplit(KubeObject):
    """An SMI TrafficSplit (``split.smi-spec.io/v1alpha1``)."""

    API_VERSIONS = ("split.smi-spec.io/v1alpha1",)

    api_version: str = "split.smi-spec.io/v1alpha1"
    kind: Literal["TrafficSplit"] = "TrafficSplit"
    spec: TrafficSplitSpec
