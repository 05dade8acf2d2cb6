"""What ``Destination.GetProfile`` answers: ServiceProfiles and TrafficSplits as protobuf messages.

Everything here is pure: :func:`profile_for` reads a :class:`ClusterState` snapshot and
:func:`profile_message` converts the objects. The platform does not always validate what it
stores, so a malformed part of an object is skipped with a warning rather than raised.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from google.protobuf.duration_pb2 import Duration

from weft.api import destination_pb2 as pb
from weft.api import http_types_pb2
from weft.controller.destination.addresses import (
    ClusterState,
    Key,
    MeshSettings,
    Obj,
    parse_path,
)
from weft.proxy.config import context_namespace
from weft.resources.profiles import parse_go_duration, parse_quantity

log = logging.getLogger("weft.controller.destination")

DEFAULT_ROUTE_TIMEOUT = 10.0
DEFAULT_RETRY_RATIO = 0.2
DEFAULT_MIN_RETRIES_PER_SECOND = 10
DEFAULT_RETRY_TTL = 10.0
# A WeightedDst weight is a quantity's MilliValue() times 10 ("decimillis"): 1 -> 10000.
_DECIMILLIS_PER_MILLI = 10
_UINT32_MAX = 2**32 - 1
# Go durations are int64 nanoseconds.
_MAX_GO_DURATION = (2**63 - 1) / 1e9
_REGISTERED_METHODS = frozenset(http_types_pb2.HttpMethod.Registered.keys())

T = TypeVar("T")


class MalformedError(ValueError):
    """A part of a ServiceProfile or TrafficSplit that cannot be converted."""


# -- checked access to decoded JSON -------------------------------------------------------


def _object(value: Any, what: str) -> Obj:
    if not isinstance(value, dict):
        raise MalformedError(f"{what} must be an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedError(f"{what} must be a list")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedError(f"{what} must be a non-empty string")
    return value


def _uint32(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
        raise MalformedError(f"{what} must be an unsigned 32-bit integer")
    return value


def _set(fields: Obj, key: str) -> bool:
    """Whether ``key`` is set, as Go sees it: neither missing, null nor an empty string."""
    return fields.get(key) not in (None, "")


def duration(seconds: float) -> Duration:
    """``seconds`` as a protobuf Duration (to the nanosecond)."""
    whole, nanos = divmod(round(seconds * 1e9), 10**9)
    return Duration(seconds=whole, nanos=nanos)


def _go_duration(value: Any, what: str) -> Duration:
    if not isinstance(value, str):
        raise MalformedError(f"{what} must be a duration string")
    seconds = parse_go_duration(value)
    if not 0 <= seconds <= _MAX_GO_DURATION:
        raise MalformedError(f"{what} {value!r} is out of range")
    return duration(seconds)


# -- routes -------------------------------------------------------------------------------


def http_method(method: str) -> http_types_pb2.HttpMethod:
    """An HTTP method: one of the registered nine (case-sensitive), else unregistered."""
    if method in _REGISTERED_METHODS:
        return http_types_pb2.HttpMethod(registered=method)
    return http_types_pb2.HttpMethod(unregistered=method)


def request_match(spec: Any) -> pb.RequestMatch:
    """A ServiceProfile RequestMatch; an object with several fields set is ``all`` of them."""
    fields = _object(spec, "a request match")
    matches: list[pb.RequestMatch] = []
    if _set(fields, "all"):
        children = [request_match(m) for m in _list(fields["all"], "all")]
        matches.append(pb.RequestMatch(all=pb.RequestMatch.Seq(matches=children)))
    if _set(fields, "any"):
        children = [request_match(m) for m in _list(fields["any"], "any")]
        matches.append(pb.RequestMatch(any=pb.RequestMatch.Seq(matches=children)))
    if _set(fields, "not"):
        negated = pb.RequestMatch()
        getattr(negated, "not").CopyFrom(request_match(fields["not"]))
        matches.append(negated)
    if _set(fields, "pathRegex"):
        regex = _text(fields["pathRegex"], "pathRegex")
        matches.append(pb.RequestMatch(path=pb.PathMatch(regex=regex)))
    if _set(fields, "method"):
        matches.append(pb.RequestMatch(method=http_method(_text(fields["method"], "method"))))
    if not matches:
        raise MalformedError("a request match must have a field set")
    if len(matches) == 1:
        return matches[0]
    return pb.RequestMatch(all=pb.RequestMatch.Seq(matches=matches))


def status_range(spec: Any) -> pb.HttpStatusRange:
    """An inclusive status range; with one bound missing it is that single status."""
    fields = _object(spec, "a status range")
    low = _uint32(fields.get("min") or 0, "status.min")
    high = _uint32(fields.get("max") or 0, "status.max")
    if not low and not high:
        raise MalformedError("a status range must have min or max")
    low, high = low or high, high or low
    if high < low:
        raise MalformedError(f"status.max must not be less than min ({high} < {low})")
    return pb.HttpStatusRange(min=low, max=high)


def response_match(spec: Any) -> pb.ResponseMatch:
    """A ServiceProfile ResponseMatch; an object with several fields set is ``all`` of them."""
    fields = _object(spec, "a response match")
    matches: list[pb.ResponseMatch] = []
    if _set(fields, "all"):
        children = [response_match(m) for m in _list(fields["all"], "all")]
        matches.append(pb.ResponseMatch(all=pb.ResponseMatch.Seq(matches=children)))
    if _set(fields, "any"):
        children = [response_match(m) for m in _list(fields["any"], "any")]
        matches.append(pb.ResponseMatch(any=pb.ResponseMatch.Seq(matches=children)))
    if _set(fields, "not"):
        negated = pb.ResponseMatch()
        getattr(negated, "not").CopyFrom(response_match(fields["not"]))
        matches.append(negated)
    if _set(fields, "status"):
        matches.append(pb.ResponseMatch(status=status_range(fields["status"])))
    if not matches:
        raise MalformedError("a response match must have a field set")
    if len(matches) == 1:
        return matches[0]
    return pb.ResponseMatch(all=pb.ResponseMatch.Seq(matches=matches))


def response_class(spec: Any) -> pb.ResponseClass:
    """A response class: its condition and whether matching responses are failures."""
    fields = _object(spec, "a response class")
    is_failure = fields.get("isFailure") or False
    if not isinstance(is_failure, bool):
        raise MalformedError("isFailure must be a boolean")
    return pb.ResponseClass(
        condition=response_match(fields.get("condition")), is_failure=is_failure
    )


def route(spec: Any, where: str) -> pb.Route:
    """A route; malformed response classes are skipped and a bad timeout becomes the default."""
    fields = _object(spec, "a route")
    name = _text(fields.get("name"), "name")
    is_retryable = fields.get("isRetryable") or False
    if not isinstance(is_retryable, bool):
        raise MalformedError("isRetryable must be a boolean")
    message = pb.Route(
        condition=request_match(fields.get("condition")),
        metrics_labels={"route": name},
        is_retryable=is_retryable,
        timeout=duration(DEFAULT_ROUTE_TIMEOUT),
    )
    if _set(fields, "timeout"):
        try:
            message.timeout.CopyFrom(_go_duration(fields["timeout"], "timeout"))
        except ValueError as exc:
            log.warning("%s route %s: using the default timeout: %s", where, name, exc)
    classes = fields.get("responseClasses")
    message.response_classes.extend(
        _each(classes, "responseClasses", f"{where} route {name}", response_class)
    )
    return message


# -- budgets and weights ------------------------------------------------------------------


def default_retry_budget() -> pb.RetryBudget:
    """The budget of a profile that sets none: 20% extra, at least 10/s, over 10s."""
    return pb.RetryBudget(
        retry_ratio=DEFAULT_RETRY_RATIO,
        min_retries_per_second=DEFAULT_MIN_RETRIES_PER_SECOND,
        ttl=duration(DEFAULT_RETRY_TTL),
    )


def retry_budget(spec: Any) -> pb.RetryBudget:
    """A ServiceProfile's ``retryBudget``."""
    fields = _object(spec, "retryBudget")
    ratio = fields.get("retryRatio") or 0.0
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio < math.inf:
        raise MalformedError("retryRatio must be a non-negative number")
    return pb.RetryBudget(
        retry_ratio=ratio,
        min_retries_per_second=_uint32(
            fields.get("minRetriesPerSecond") or 0, "minRetriesPerSecond"
        ),
        ttl=_go_duration(fields.get("ttl"), "ttl"),
    )


def weight(quantity: Any) -> int:
    """A Kubernetes quantity as a WeightedDst weight, ``MilliValue() * 10``: 1 → 10000."""
    if isinstance(quantity, bool) or not isinstance(quantity, str | int | float):
        raise MalformedError(f"weight {quantity!r} is not a quantity")
    try:
        value = parse_quantity(quantity)
    except OverflowError as exc:
        raise MalformedError(f"weight {quantity!r} is out of range") from exc
    if not 0 <= value <= _UINT32_MAX:
        raise MalformedError(f"weight {quantity!r} is out of range")
    # MilliValue() rounds up; round first so that float noise (0.1 * 1000) is not rounded up.
    decimillis = math.ceil(round(value * 1000, 6)) * _DECIMILLIS_PER_MILLI
    if decimillis > _UINT32_MAX:
        raise MalformedError(f"weight {quantity!r} is out of range")
    return decimillis


def dst_override(spec: Any) -> pb.WeightedDst:
    """One of a ServiceProfile's ``dstOverrides``: its authority as given, weighted."""
    fields = _object(spec, "a dstOverride")
    authority = _text(fields.get("authority"), "authority")
    return pb.WeightedDst(authority=authority, weight=weight(fields.get("weight")))


def split_overrides(split: Obj, port: int, cluster_domain: str) -> list[pb.WeightedDst]:
    """A TrafficSplit's backends as authorities ``<svc>.<ns>.svc.<domain>.:<port>``."""
    namespace = str(_object(split.get("metadata"), "metadata").get("namespace") or "default")
    backends = _list(_object(split.get("spec"), "spec").get("backends"), "spec.backends")
    domain = cluster_domain.strip(".")

    def backend(item: Any) -> pb.WeightedDst:
        fields = _object(item, "a backend")
        service = _text(fields.get("service"), "service")
        authority = f"{service}.{namespace}.svc.{domain}.:{port}"
        return pb.WeightedDst(authority=authority, weight=weight(fields.get("weight")))

    return _each(backends, "spec.backends", _describe("TrafficSplit", split), backend)


# -- whole profiles -----------------------------------------------------------------------


def _describe(kind: str, obj: Obj) -> str:
    """``<kind> <namespace>/<name>`` for log lines, whatever shape ``obj`` has."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return f"{kind} {meta.get('namespace') or 'default'}/{meta.get('name') or '?'}"


def _each(items: Any, what: str, where: str, convert: Callable[[Any], T]) -> list[T]:
    """``convert`` of each item of the list ``items``, skipping (with a warning) those that fail."""
    if items is None:
        return []
    if not isinstance(items, list):
        log.warning("%s: ignoring %s: must be a list", where, what)
        return []
    converted: list[T] = []
    for i, item in enumerate(items):
        try:
            converted.append(convert(item))
        except (ValueError, TypeError) as exc:
            log.warning("%s: skipping %s[%d]: %s", where, what, i, exc)
    return converted


def _add_profile(message: pb.DestinationProfile, profile: Obj) -> None:
    """Put a ServiceProfile's routes, retry budget and overrides into ``message``."""
    where = _describe("ServiceProfile", profile)
    spec = profile.get("spec")
    if not isinstance(spec, dict):
        log.warning("%s: ignoring it: spec must be an object", where)
        return
    message.routes.extend(_each(spec.get("routes"), "routes", where, partial(route, where=where)))
    if spec.get("retryBudget") is not None:
        try:
            message.retry_budget.CopyFrom(retry_budget(spec["retryBudget"]))
        except (ValueError, TypeError) as exc:
            log.warning("%s: using the default retry budget: %s", where, exc)
    message.dst_overrides.extend(
        _each(spec.get("dstOverrides"), "dstOverrides", where, dst_override)
    )


def profile_message(
    profile_obj: Obj | None, split_obj: Obj | None, fqn: str, port: int, cluster_domain: str
) -> pb.DestinationProfile:
    """The profile of service ``fqn`` at ``port``, from its ServiceProfile and TrafficSplit.

    Without a ServiceProfile: no routes and the default retry budget. The backends of a
    TrafficSplit (whose apex is this service) replace the ServiceProfile's ``dstOverrides``.
    """
    message = pb.DestinationProfile(fully_qualified_name=fqn, retry_budget=default_retry_budget())
    if profile_obj is not None:
        _add_profile(message, profile_obj)
    if split_obj is not None:
        try:
            overrides = split_overrides(split_obj, port, cluster_domain)
        except (ValueError, TypeError) as exc:
            log.warning("%s: ignoring it: %s", _describe("TrafficSplit", split_obj), exc)
        else:
            del message.dst_overrides[:]
            message.dst_overrides.extend(overrides)
    return message


# -- answering GetProfile -----------------------------------------------------------------


def service_key(state: ClusterState, path: str, settings: MeshSettings) -> tuple[Key, int] | None:
    """The (namespace, name) of the Service ``path`` names, by name or cluster IP, and the port."""
    target = parse_path(path, settings)
    key: Key | None = None
    if target.kind == "service":
        key = (target.namespace, target.name)
    elif target.kind == "ip":
        key = state.service_by_ip.get(target.ip)
    if key is None or key not in state.services:
        return None
    return key, target.port


def profile_for(
    state: ClusterState, path: str, context_token: str, settings: MeshSettings
) -> pb.DestinationProfile:
    """What ``GetProfile`` sends for ``path`` in ``state`` (a default profile if not a Service).

    The ServiceProfile named ``<svc>.<ns>.svc.<domain>`` in the client's namespace (from the
    context token) takes precedence over the one in the Service's namespace.
    """
    domain = settings.cluster_domain.strip(".")
    found = service_key(state, path, settings)
    if found is None:
        return profile_message(None, None, "", 0, domain)
    (namespace, name), port = found
    fqn = f"{name}.{namespace}.svc.{domain}"
    client_namespace = context_namespace(context_token)
    profile = state.profiles.get((client_namespace, fqn)) if client_namespace else None
    if profile is None:
        profile = state.profiles.get((namespace, fqn))
    split = state.traffic_split(namespace, name)
    return profile_message(profile, split, fqn, port, domain)
