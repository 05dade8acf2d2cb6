"""``weft inject`` / ``uninject`` over whole objects: idempotence and reversibility as
properties over generated workloads, and what is skipped and why."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from weft.inject.config import InjectConfig
from weft.inject.workloads import Outcome, each_object, inject_object, uninject_object

Obj = dict[str, Any]
CONFIG = InjectConfig(
    weft_version="0.1.0",
    proxy_version="0.1.0",
    identity_disabled=False,
    trust_anchors_pem="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    identity_token_audience="identity.l5d.io",
)

names = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9]", fullmatch=True)
label_values = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)
ports = st.integers(min_value=1, max_value=65535).filter(
    lambda p: p not in (4140, 4143, 4190, 4191)
)
config_annotations = st.dictionaries(
    st.sampled_from(
        [
            "config.linkerd.io/proxy-log-level",
            "config.linkerd.io/skip-inbound-ports",
            "config.linkerd.io/proxy-cpu-request",
            "config.linkerd.io/disable-tap",
            "config.linkerd.io/opaque-ports",
        ]
    ),
    st.just("x"),
).map(
    lambda found: {
        key: {
            "config.linkerd.io/proxy-log-level": "warn,weft=debug",
            "config.linkerd.io/skip-inbound-ports": "3306",
            "config.linkerd.io/proxy-cpu-request": "100m",
            "config.linkerd.io/disable-tap": "true",
            "config.linkerd.io/opaque-ports": "4222",
        }[key]
        for key in found
    }
)


@st.composite
def containers(draw: st.DrawFn) -> list[Obj]:
    count = draw(st.integers(min_value=1, max_value=3))
    chosen = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    out = []
    for name in chosen:
        container: Obj = {"name": name, "image": f"{name}:v1"}
        if draw(st.booleans()):
            container["ports"] = [{"containerPort": draw(ports)}]
        if draw(st.booleans()):
            container["env"] = [{"name": "MODE", "value": draw(label_values)}]
        out.append(container)
    return out


@st.composite
def templates(draw: st.DrawFn) -> Obj:
    meta: Obj = {"labels": {"app": draw(label_values)}}
    annotations = draw(config_annotations)
    if draw(st.booleans()):
        annotations["team"] = draw(label_values)
    if annotations:
        meta["annotations"] = annotations
    spec: Obj = {"containers": draw(containers())}
    if draw(st.booleans()):
        spec["volumes"] = [{"name": "data", "emptyDir": {}}]
    if draw(st.booleans()):
        spec["initContainers"] = [{"name": "migrate", "image": "migrate:v1"}]
    return {"metadata": meta, "spec": spec}


@st.composite
def workloads(draw: st.DrawFn) -> Obj:
    kind = draw(
        st.sampled_from(["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"])
    )
    name = draw(names)
    template = draw(templates())
    meta = {"name": name, "namespace": draw(names)}
    if kind == "Pod":
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**meta, **template["metadata"]},
            "spec": template["spec"],
        }
    if kind == "CronJob":
        spec: Obj = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    else:
        spec = {"selector": {"matchLabels": template["metadata"]["labels"]}, "template": template}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def injected(obj: Obj, manual: bool) -> Obj:
    out, outcome = inject_object(obj, CONFIG, {}, manual=manual)
    assert outcome.action == "injected", outcome
    return out


@settings(max_examples=150, deadline=None)
@given(workloads(), st.booleans())
def test_injecting_twice_equals_injecting_once(obj: Obj, manual: bool) -> None:
    once = injected(obj, manual)
    assert injected(once, manual) == once


@settings(max_examples=150, deadline=None)
@given(workloads())
def test_uninject_gives_back_what_manual_injection_was_given(obj: Obj) -> None:
    original = copy.deepcopy(obj)
    out = injected(obj, True)
    assert out != original
    back, outcome = uninject_object(out)
    assert outcome.action == "uninjected"
    assert back == original
    assert obj == original  # the input was not modified


@settings(max_examples=100, deadline=None)
@given(workloads())
def test_manual_injection_adds_both_containers_and_the_token_volume(obj: Obj) -> None:
    out = injected(obj, True)
    template = (
        out
        if out["kind"] == "Pod"
        else (
            out["spec"]["jobTemplate"]["spec"]["template"]
            if out["kind"] == "CronJob"
            else out["spec"]["template"]
        )
    )
    init = [c["name"] for c in template["spec"]["initContainers"]]
    assert init[:2] == ["linkerd-init", "linkerd-proxy"]
    volumes = [v["name"] for v in template["spec"]["volumes"]]
    assert {"linkerd-identity-end-entity", "linkerd-identity-token"} <= set(volumes)


def test_non_workloads_and_host_network_pods_are_skipped_with_a_reason() -> None:
    outcomes: list[Outcome] = []
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    host = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "h"},
        "spec": {"hostNetwork": True, "containers": [{"name": "c"}]},
    }
    listed = {"apiVersion": "v1", "kind": "List", "items": [service, host]}
    out = each_object(listed, lambda o: inject_object(o, CONFIG, {}, manual=True), outcomes)
    assert out == listed
    assert [o.line() for o in outcomes] == [
        'service "web" skipped (not a workload)',
        'pod "h" skipped (pod uses the host network)',
    ]


def test_a_bad_annotation_skips_with_its_name_and_unsupported_ones_warn() -> None:
    pod: Obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"config.linkerd.io/proxy-cpu-limit": "lots"}},
        "spec": {"containers": [{"name": "c"}]},
    }
    _, outcome = inject_object(pod, CONFIG, {}, manual=False)
    assert outcome.action == "skipped"
    assert "config.linkerd.io/proxy-cpu-limit" in outcome.reason
    pod["metadata"]["annotations"] = {"config.linkerd.io/trace-collector": "x:55678"}
    _, outcome = inject_object(pod, CONFIG, {}, manual=False)
    assert outcome.warnings == (
        "config.linkerd.io/trace-collector is not supported by weft and was ignored",
    )
