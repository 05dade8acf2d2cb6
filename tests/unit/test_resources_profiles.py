"""ServiceProfile validation (Linkerd's sp-validator rules), TrafficSplit, durations, quantities."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from weft.resources import (
    ManifestError,
    ObjectMeta,
    ServiceProfile,
    ServiceProfileSpec,
    TrafficSplit,
    parse_go_duration,
    parse_manifest_text,
    parse_quantity,
    validate_service_profile,
)

EMOJIVOTO_PROFILE = r"""
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: web-svc.emojivoto.svc.cluster.local
  namespace: emojivoto
spec:
  routes:
    - name: GET /api/list
      condition:
        method: GET
        pathRegex: /api/list
    - name: POST /emojivoto.v1.EmojiService/ListAll
      condition:
        method: POST
        pathRegex: /emojivoto\.v1\.EmojiService/ListAll
      isRetryable: true
      timeout: 250ms
      responseClasses:
        - condition:
            status: {min: 500, max: 599}
          isFailure: true
  retryBudget:
    retryRatio: 0.2
    minRetriesPerSecond: 10
    ttl: 10s
"""

Profile = dict[str, Any]


def profile() -> Profile:
    """A fresh copy of the valid emojivoto profile as plain data."""
    data: Profile = yaml.safe_load(EMOJIVOTO_PROFILE)
    return data


def route(data: Profile, index: int) -> dict[str, Any]:
    """``spec.routes[index]`` of ``data``."""
    routes: list[dict[str, Any]] = data["spec"]["routes"]
    return routes[index]


def test_valid_emojivoto_profile_passes_validation() -> None:
    assert validate_service_profile(profile()) == []


def test_valid_profile_loads_into_the_model() -> None:
    [loaded] = parse_manifest_text(EMOJIVOTO_PROFILE, "sp.yaml")
    assert isinstance(loaded, ServiceProfile)
    assert loaded.metadata.namespace == "emojivoto"
    listing, list_all = loaded.spec.routes
    assert (listing.name, listing.condition.method, listing.is_retryable) == (
        "GET /api/list",
        "GET",
        False,
    )
    assert list_all.condition.path_regex == r"/emojivoto\.v1\.EmojiService/ListAll"
    assert list_all.timeout is not None and parse_go_duration(list_all.timeout) == 0.25
    status = list_all.response_classes[0].condition.status
    assert status is not None and (status.min, status.max) == (500, 599)
    budget = loaded.spec.retry_budget
    assert budget is not None
    assert (budget.retry_ratio, budget.min_retries_per_second, budget.ttl) == (0.2, 10, "10s")


def test_dumped_profile_is_itself_a_valid_profile() -> None:
    [loaded] = parse_manifest_text(EMOJIVOTO_PROFILE, "sp.yaml")
    dumped = loaded.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert validate_service_profile(dumped) == []
    assert dumped["spec"]["routes"][0]["condition"] == {"method": "GET", "pathRegex": "/api/list"}


def test_v1alpha1_is_accepted_and_other_api_versions_are_not() -> None:
    [loaded] = parse_manifest_text(EMOJIVOTO_PROFILE.replace("v1alpha2", "v1alpha1"), "sp.yaml")
    assert loaded.api_version == "linkerd.io/v1alpha1"
    with pytest.raises(
        ManifestError, match=r"expected linkerd\.io/v1alpha2 or linkerd\.io/v1alpha1"
    ):
        parse_manifest_text(EMOJIVOTO_PROFILE.replace("v1alpha2", "v1beta1"), "sp.yaml")


def _set(path: str, value: Any) -> Callable[[Profile], None]:
    """A mutation that sets the field at the dotted ``path`` (numbers index lists)."""

    def mutate(data: Profile) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value

    return mutate


def _delete(path: str) -> Callable[[Profile], None]:
    """A mutation that removes the field at the dotted ``path``."""

    def mutate(data: Profile) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        del target[last]

    return mutate


INVALID_PROFILES = [
    pytest.param(
        _set("spec.opaquePorts", [8080]),
        "spec.opaquePorts: unknown field",
        id="unknown-spec-field",
    ),
    pytest.param(
        _set("spec.routes.0.condition.methd", "GET"),
        "spec.routes[0].condition.methd: unknown field",
        id="unknown-nested-field",
    ),
    pytest.param(
        _set("spec.routes.1.isRetryable", "yes"),
        "spec.routes[1].isRetryable: must be a boolean",
        id="wrong-type",
    ),
    pytest.param(
        _set("metadata.name", "Web_Svc"),
        'metadata.name: "Web_Svc" is not a DNS-1123 subdomain',
        id="name-not-dns-1123",
    ),
    pytest.param(
        _set("spec.routes", []),
        "spec.routes: a service profile must have at least one route",
        id="no-routes",
    ),
    pytest.param(
        _delete("spec"),
        "spec.routes: a service profile must have at least one route",
        id="no-spec",
    ),
    pytest.param(
        _delete("spec.routes.0.name"),
        "spec.routes[0].name: a route must have a name",
        id="route-without-name",
    ),
    pytest.param(
        _set("spec.routes.1.timeout", "10 seconds"),
        'spec.routes[1].timeout: invalid duration "10 seconds"',
        id="unparsable-timeout",
    ),
    pytest.param(
        _delete("spec.routes.0.condition"),
        "spec.routes[0].condition: a route must have a condition",
        id="route-without-condition",
    ),
    pytest.param(
        _set("spec.routes.1.condition", {}),
        "spec.routes[1].condition: a request match must have a field set",
        id="empty-request-match",
    ),
    pytest.param(
        _set("spec.routes.0.condition", {"method": "", "pathRegex": ""}),
        "spec.routes[0].condition: a request match must have a field set",
        id="request-match-with-empty-strings",
    ),
    pytest.param(
        _set("spec.routes.0.condition", {"all": [{"method": "GET"}, {}]}),
        "spec.routes[0].condition.all[1]: a request match must have a field set",
        id="empty-request-match-in-all",
    ),
    pytest.param(
        _set("spec.routes.0.condition", {"any": [{"not": {}}]}),
        "spec.routes[0].condition.any[0].not: a request match must have a field set",
        id="empty-request-match-in-any-not",
    ),
    pytest.param(
        _set("spec.routes.0.condition.pathRegex", "/api/(list"),
        'spec.routes[0].condition.pathRegex: invalid regular expression "/api/(list": '
        "missing ), unterminated subpattern at position 5",
        id="bad-path-regex",
    ),
    pytest.param(
        _delete("spec.routes.1.responseClasses.0.condition"),
        "spec.routes[1].responseClasses[0].condition: a response class must have a condition",
        id="response-class-without-condition",
    ),
    pytest.param(
        _set("spec.routes.1.responseClasses.0.condition", {}),
        "spec.routes[1].responseClasses[0].condition: a response match must have a field set",
        id="empty-response-match",
    ),
    pytest.param(
        _set("spec.routes.1.responseClasses.0.condition", {"any": [{"status": {"min": 500}}, {}]}),
        "spec.routes[1].responseClasses[0].condition.any[1]: "
        "a response match must have a field set",
        id="empty-response-match-in-any",
    ),
    pytest.param(
        _set("spec.routes.1.responseClasses.0.condition.status.min", 99),
        "spec.routes[1].responseClasses[0].condition.status.min: must be between 100 and 599",
        id="status-min-below-100",
    ),
    pytest.param(
        _set("spec.routes.1.responseClasses.0.condition.status.max", 600),
        "spec.routes[1].responseClasses[0].condition.status.max: must be between 100 and 599",
        id="status-max-above-599",
    ),
    pytest.param(
        _set("spec.routes.1.responseClasses.0.condition.status", {"min": 500, "max": 404}),
        "spec.routes[1].responseClasses[0].condition.status.max: "
        "must not be less than min (404 < 500)",
        id="status-max-below-min",
    ),
    pytest.param(
        _set("spec.retryBudget.retryRatio", -0.1),
        "spec.retryBudget.retryRatio: must not be negative",
        id="negative-retry-ratio",
    ),
    pytest.param(
        _delete("spec.retryBudget.ttl"),
        "spec.retryBudget.ttl: a retry budget must have a ttl",
        id="retry-budget-without-ttl",
    ),
    pytest.param(
        _set("spec.retryBudget.ttl", "10"),
        'spec.retryBudget.ttl: invalid duration "10"',
        id="unparsable-ttl",
    ),
    pytest.param(
        _set("spec.retryBudget.minRetriesPerSecond", -1),
        "spec.retryBudget.minRetriesPerSecond: must be an unsigned 32-bit integer",
        id="negative-min-retries",
    ),
    pytest.param(
        _set("spec.dstOverrides", [{"authority": "web-v2", "weight": "lots"}]),
        "spec.dstOverrides[0].weight: must be a quantity",
        id="bad-dst-override-weight",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), INVALID_PROFILES)
def test_invalid_profile_fails_validation_naming_the_field(
    mutate: Callable[[Profile], None], expected: str
) -> None:
    data = profile()
    mutate(data)
    errors = validate_service_profile(data)
    assert len(errors) == 1
    assert errors[0].startswith(expected)


@pytest.mark.parametrize(("mutate", "expected"), INVALID_PROFILES)
def test_applying_an_invalid_profile_fails_with_the_validator_message(
    mutate: Callable[[Profile], None], expected: str
) -> None:
    data = profile()
    mutate(data)
    name = data["metadata"]["name"]
    with pytest.raises(ManifestError) as caught:
        parse_manifest_text(yaml.safe_dump(data), "sp.yaml")
    assert str(caught.value).startswith(f"sp.yaml: document 1 (ServiceProfile {name}): {expected}")


def test_every_problem_is_reported_on_one_line() -> None:
    data = profile()
    route(data, 0)["condition"] = {}
    route(data, 1)["timeout"] = "soon"
    errors = validate_service_profile(data)
    assert errors == [
        "spec.routes[0].condition: a request match must have a field set",
        'spec.routes[1].timeout: invalid duration "soon"',
    ]
    with pytest.raises(ManifestError) as caught:
        parse_manifest_text(yaml.safe_dump(data), "sp.yaml")
    assert str(caught.value).endswith("; ".join(errors))
    assert "\n" not in str(caught.value)


def test_validation_does_not_modify_its_input() -> None:
    data = profile()
    route(data, 0)["condition"] = {}
    before = copy.deepcopy(data)
    validate_service_profile(data)
    assert data == before


def test_profile_built_from_models_is_validated_too() -> None:
    meta = ObjectMeta(name="web-svc.emojivoto.svc.cluster.local")
    with pytest.raises(ValidationError, match="at least one route"):
        ServiceProfile(metadata=meta, spec=ServiceProfileSpec(routes=[]))


# TrafficSplit

TRAFFIC_SPLIT = """\
apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: web-split}
spec:
  service: web-svc
  backends:
    - {service: web-v1, weight: 900m}
    - {service: web-v2, weight: 100m}
"""


def test_traffic_split_loads_with_quantity_weights() -> None:
    [split] = parse_manifest_text(TRAFFIC_SPLIT, "ts.yaml")
    assert isinstance(split, TrafficSplit)
    assert split.spec.service == "web-svc"
    weights = [parse_quantity(b.weight) for b in split.spec.backends]
    assert weights == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("weight: 100m", "weight: -1", "spec.backends[1].weight: must not be negative"),
        ("weight: 100m", "weight: heavy", "spec.backends[1].weight: 'heavy' is not a Kubernetes"),
        ("  service: web-svc\n", "", "spec.service: Field required"),
        ("{service: web-v2, ", "{", "spec.backends[1].service: Field required"),
        ("weight: 100m", "weight: 1, port: 80", "spec.backends[1].port: unknown field"),
    ],
)
def test_invalid_traffic_split_is_rejected(old: str, new: str, expected: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest_text(TRAFFIC_SPLIT.replace(old, new), "ts.yaml")
    assert str(caught.value).startswith(f"ts.yaml: document 1 (TrafficSplit web-split): {expected}")


def test_traffic_split_needs_a_backend() -> None:
    text = TRAFFIC_SPLIT.split("  backends:")[0] + "  backends: []\n"
    with pytest.raises(ManifestError, match=r"spec\.backends: List should have at least 1 item"):
        parse_manifest_text(text, "ts.yaml")


# Durations and quantities


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("1h2m3.5s", 3723.5),
        ("300us", 0.0003),
        ("300µs", 0.0003),
        ("20ns", 2e-8),
        (".5s", 0.5),
        ("0", 0.0),
        ("-2s", -2.0),
        ("+2s", 2.0),
    ],
)
def test_go_duration_parses_to_seconds(text: str, seconds: float) -> None:
    assert math.isclose(parse_go_duration(text), seconds)


@pytest.mark.parametrize(
    "text", ["", "10", "s", "1 s", "1d", "1.2.3s", "--1s", "1s ", "\u0661s", "."]
)
def test_malformed_go_duration_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500m", 0.5),
        ("1", 1.0),
        ("100", 100.0),
        (100, 100.0),
        (0.25, 0.25),
        ("1.5", 1.5),
        ("1k", 1000.0),
        ("2M", 2e6),
        ("1Ki", 1024.0),
        ("1Mi", 1048576.0),
        ("1e3", 1000.0),
        ("1E", 1e18),
        ("-1", -1.0),
        ("10u", 1e-5),
    ],
)
def test_quantity_parses_to_a_number(value: str | float, expected: float) -> None:
    assert math.isclose(parse_quantity(value), expected)


@pytest.mark.parametrize("value", ["", "m", "abc", "1 m", "1x", "1e", "1KI", "1.2.3", True])
def test_malformed_quantity_is_rejected(value: str | float) -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(value)
