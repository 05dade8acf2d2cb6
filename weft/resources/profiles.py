"""ServiceProfile validation (the rules of Linkerd's sp-validator), Go durations and quantities."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from weft.resources.meta import ObjectMeta, check_dns_subdomain

_DURATION = re.compile(r"([-+]?)((?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+)")
_DURATION_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:[eE]([+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?"
)
_QUANTITY_SUFFIXES = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration such as ``"1m30s"`` or ``"250ms"``; ``ValueError`` if invalid."""
    match = _DURATION.fullmatch(text)
    if match is None:
        if re.fullmatch(r"[-+]?0", text):
            return 0.0
        raise ValueError(f'invalid duration "{text}"')
    seconds = sum(
        float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(match[2])
    )
    return -seconds if match[1] == "-" else seconds


def parse_quantity(value: str | float) -> float:
    """The value of a Kubernetes quantity such as ``"500m"``, ``"1"`` or ``"2Ki"``."""
    if isinstance(value, bool):
        raise ValueError(f"invalid quantity {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"invalid quantity {value!r}")
        return float(value)
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise ValueError(f'invalid quantity "{value}"')
    number, exponent, suffix = match.groups()
    if exponent is not None:
        return float(number) * 10.0 ** int(exponent)
    return float(number) * _QUANTITY_SUFFIXES.get(suffix or "", 1.0)


def _is_quantity(value: Any) -> bool:
    """Whether ``value`` parses as a quantity."""
    try:
        parse_quantity(value)
    except (ValueError, TypeError):
        return False
    return True


_UINT32 = "an unsigned 32-bit integer"
_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "a string": lambda v: isinstance(v, str),
    "a boolean": lambda v: isinstance(v, bool),
    "a number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    _UINT32: lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32,
    "an object": lambda v: isinstance(v, dict),
    "a list": lambda v: isinstance(v, list),
    "a quantity": _is_quantity,
}
_PROFILE = {
    "apiVersion": "a string",
    "kind": "a string",
    "metadata": "an object",
    "spec": "an object",
}
_SPEC = {"routes": "a list", "retryBudget": "an object", "dstOverrides": "a list"}
_ROUTE = {
    "name": "a string",
    "condition": "an object",
    "responseClasses": "a list",
    "isRetryable": "a boolean",
    "timeout": "a string",
}
_REQUEST_MATCH = {
    "all": "a list",
    "any": "a list",
    "not": "an object",
    "pathRegex": "a string",
    "method": "a string",
}
_RESPONSE_CLASS = {"condition": "an object", "isFailure": "a boolean"}
_RESPONSE_MATCH = {"all": "a list", "any": "a list", "not": "an object", "status": "an object"}
_RANGE = {"min": _UINT32, "max": _UINT32}
_RETRY_BUDGET = {"retryRatio": "a number", "minRetriesPerSecond": _UINT32, "ttl": "a string"}
_DST_OVERRIDE = {"authority": "a string", "weight": "a quantity"}


def _fields(
    value: Any, path: str, schema: Mapping[str, str], errors: list[str]
) -> dict[str, Any] | None:
    """The non-null fields of the object at ``path``, or None after recording its problems."""
    if not isinstance(value, dict):
        errors.append(f"{path}: must be an object")
        return None
    fields: dict[str, Any] = {}
    valid = True
    for key, item in value.items():
        expected = schema.get(key)
        where = f"{path}.{key}" if path else key
        if expected is None:
            errors.append(f"{where}: unknown field")
            valid = False
        elif item is not None and not _TYPE_CHECKS[expected](item):
            errors.append(f"{where}: must be {expected}")
            valid = False
        elif item is not None:
            fields[key] = item
    return fields if valid else None


def _check_duration(value: str, path: str, errors: list[str]) -> None:
    """Record an error unless ``value`` is a Go duration."""
    try:
        parse_go_duration(value)
    except ValueError as exc:
        errors.append(f"{path}: {exc}")


def _check_request_match(value: Any, path: str, errors: list[str]) -> None:
    """Check a RequestMatch and, recursively, the matches inside it."""
    match = _fields(value, path, _REQUEST_MATCH, errors)
    if match is None:
        return
    if not any(item != "" for item in match.values()):
        errors.append(f"{path}: a request match must have a field set")
    for key in ("all", "any"):
        for i, child in enumerate(match.get(key, [])):
            _check_request_match(child, f"{path}.{key}[{i}]", errors)
    if "not" in match:
        _check_request_match(match["not"], f"{path}.not", errors)
    if match.get("pathRegex"):
        try:
            re.compile(match["pathRegex"])
        except re.error as exc:
            errors.append(
                f'{path}.pathRegex: invalid regular expression "{match["pathRegex"]}": {exc}'
            )


def _check_response_match(value: Any, path: str, errors: list[str]) -> None:
    """Check a ResponseMatch and, recursively, the matches inside it."""
    match = _fields(value, path, _RESPONSE_MATCH, errors)
    if match is None:
        return
    if not match:
        errors.append(f"{path}: a response match must have a field set")
    for key in ("all", "any"):
        for i, child in enumerate(match.get(key, [])):
            _check_response_match(child, f"{path}.{key}[{i}]", errors)
    if "not" in match:
        _check_response_match(match["not"], f"{path}.not", errors)
    status = _fields(match.get("status", {}), f"{path}.status", _RANGE, errors)
    if status is None:
        return
    low, high = status.get("min", 0), status.get("max", 0)
    for key, bound in (("min", low), ("max", high)):
        if bound and not 100 <= bound <= 599:
            errors.append(f"{path}.status.{key}: must be between 100 and 599")
    if low and high and high < low:
        errors.append(f"{path}.status.max: must not be less than min ({high} < {low})")


def _check_route(value: Any, path: str, errors: list[str]) -> None:
    """Check one route: name, timeout, condition and response classes."""
    route = _fields(value, path, _ROUTE, errors)
    if route is None:
        return
    if not route.get("name"):
        errors.append(f"{path}.name: a route must have a name")
    if route.get("timeout"):
        _check_duration(route["timeout"], f"{path}.timeout", errors)
    if "condition" in route:
        _check_request_match(route["condition"], f"{path}.condition", errors)
    else:
        errors.append(f"{path}.condition: a route must have a condition")
    for i, item in enumerate(route.get("responseClasses", [])):
        class_path = f"{path}.responseClasses[{i}]"
        response_class = _fields(item, class_path, _RESPONSE_CLASS, errors)
        if response_class is None:
            continue
        if "condition" in response_class:
            _check_response_match(response_class["condition"], f"{class_path}.condition", errors)
        else:
            errors.append(f"{class_path}.condition: a response class must have a condition")


def _check_retry_budget(value: Any, errors: list[str]) -> None:
    """Check ``spec.retryBudget``."""
    budget = _fields(value, "spec.retryBudget", _RETRY_BUDGET, errors)
    if budget is None:
        return
    if budget.get("retryRatio", 0) < 0:
        errors.append("spec.retryBudget.retryRatio: must not be negative")
    if budget.get("ttl"):
        _check_duration(budget["ttl"], "spec.retryBudget.ttl", errors)
    else:
        errors.append("spec.retryBudget.ttl: a retry budget must have a ttl")


def validate_service_profile(obj: dict[str, Any]) -> list[str]:
    """Errors (``"<field path>: <problem>"``) that make a ServiceProfile invalid; empty if valid."""
    if not isinstance(obj, dict):
        return ["a ServiceProfile must be an object"]
    errors: list[str] = []
    top = _fields(obj, "", _PROFILE, errors)
    if top is None:
        return errors
    metadata = top.get("metadata", {})
    known = {field.alias for field in ObjectMeta.model_fields.values()}
    errors.extend(f"metadata.{key}: unknown field" for key in metadata if key not in known)
    name = metadata.get("name", "")
    if not isinstance(name, str):
        errors.append("metadata.name: must be a string")
    else:
        try:
            check_dns_subdomain(name)
        except ValueError as exc:
            errors.append(f"metadata.name: {exc}")
    spec = _fields(top.get("spec", {}), "spec", _SPEC, errors)
    if spec is None:
        return errors
    routes = spec.get("routes", [])
    if not routes:
        errors.append("spec.routes: a service profile must have at least one route")
    for i, route in enumerate(routes):
        _check_route(route, f"spec.routes[{i}]", errors)
    if "retryBudget" in spec:
        _check_retry_budget(spec["retryBudget"], errors)
    for i, override in enumerate(spec.get("dstOverrides", [])):
        _fields(override, f"spec.dstOverrides[{i}]", _DST_OVERRIDE, errors)
    return errors
