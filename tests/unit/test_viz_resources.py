"""Resource arguments as ``weft stat`` and the metrics API take them (pure)."""

from __future__ import annotations

import pytest

from weft.viz.resources import (
    Resource,
    ResourceError,
    canonical_type,
    dst_label,
    label,
    parse_targets,
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("deploy", "deployment"),
        ("Deployments", "deployment"),
        ("po", "pod"),
        ("ns", "namespace"),
        ("au", "authority"),
        ("ts", "trafficsplit"),
        ("svc", "service"),
        ("jobs", "job"),
        ("all", "all"),
    ],
)
def test_linkerds_type_names_are_accepted(name: str, kind: str) -> None:
    assert canonical_type(name) == kind


def test_an_unknown_type_names_the_accepted_ones() -> None:
    with pytest.raises(ResourceError, match=r'unknown resource type "statefulsetz": one of .*pods'):
        canonical_type("statefulsetz")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["deploy"], [Resource("deployment", "", "emojivoto")]),
        (["deploy/web"], [Resource("deployment", "web", "emojivoto")]),
        (
            ["deploy", "web", "emoji"],
            [
                Resource("deployment", "web", "emojivoto"),
                Resource("deployment", "emoji", "emojivoto"),
            ],
        ),
        (
            ["deploy/web", "po/x"],
            [Resource("deployment", "web", "emojivoto"), Resource("pod", "x", "emojivoto")],
        ),
        (["ns/shop"], [Resource("namespace", "shop", "shop")]),
    ],
)
def test_command_lines_name_resources_in_linkerds_forms(
    args: list[str], expected: list[Resource]
) -> None:
    assert parse_targets(args, "emojivoto") == expected


@pytest.mark.parametrize("args", [[], ["deploy/"], ["deploy/a/b"], ["deploy", "web/x"], ["nope/x"]])
def test_malformed_arguments_are_one_line_errors(args: list[str]) -> None:
    with pytest.raises(ResourceError) as info:
        parse_targets(args)
    assert "\n" not in str(info.value)


def test_jobs_are_measured_by_k8s_job_as_in_linkerds_relabelling() -> None:
    assert label("job") == "k8s_job"
    assert dst_label("job") == "dst_k8s_job"
    assert dst_label("deployment") == "dst_deployment"


def test_a_resource_round_trips_through_json_and_bad_json_is_refused() -> None:
    r = Resource("deployment", "web", "emojivoto")
    assert Resource.from_json(r.to_json()) == r
    assert str(r) == "deployment/web"
    assert Resource.from_json({"type": "deploy"}) == Resource("deployment")
    bad_bodies: list[object] = [[], {"type": 3}, {"name": "x"}]
    for bad in bad_bodies:
        with pytest.raises(ResourceError):
            Resource.from_json(bad, "toResource")
