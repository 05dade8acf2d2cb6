"""The admission webhooks' decisions over AdmissionReviews (pure)."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import pytest

from weft.inject.config import InjectConfig
from weft.k8s.webhooks.admission import ReviewError, Verdict, parse_review, response
from weft.k8s.webhooks.injector import mutate, owner_of
from weft.k8s.webhooks.validator import validate

Obj = dict[str, Any]
CONFIG = InjectConfig(weft_version="0.1.0", proxy_version="0.1.0")


def review(
    obj: Obj, kind: str = "Pod", operation: str = "CREATE", namespace: str = "shop"
) -> bytes:
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "operation": operation,
                "namespace": namespace,
                "object": obj,
            },
        }
    ).encode()


def replica_pod(annotations: Obj | None = None) -> Obj:
    meta: Obj = {
        "generateName": "web-7d9f-",
        "labels": {"app": "web", "pod-template-hash": "7d9f"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9f", "controller": True}],
    }
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "web"}]},
    }


def test_reviews_are_parsed_and_answered() -> None:
    parsed = parse_review(review(replica_pod()))
    assert (parsed.uid, parsed.kind, parsed.operation, parsed.namespace) == (
        "u-1",
        "Pod",
        "CREATE",
        "shop",
    )
    answer = response("u-1", Verdict(False, "nope"))
    assert answer["response"] == {
        "uid": "u-1",
        "allowed": False,
        "status": {"code": 400, "message": "nope", "reason": "BadRequest"},
    }
    for bad in (
        b"{",
        b'{"kind": "Pod"}',
        b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}',
    ):
        with pytest.raises(ReviewError):
            parse_review(bad)


def test_a_pod_of_an_annotated_namespace_gets_a_patch_that_injects_it() -> None:
    pod = replica_pod()
    verdict = mutate(parse_review(review(pod)), {"linkerd.io/inject": "enabled"}, CONFIG)
    assert verdict.allowed and verdict.patch
    patched = jsonpatch.apply_patch(pod, verdict.patch)
    assert [c["name"] for c in patched["spec"]["initContainers"]] == [
        "linkerd-init",
        "linkerd-proxy",
    ]
    assert patched["metadata"]["labels"]["linkerd.io/proxy-deployment"] == "web"
    encoded = response("u-1", verdict)["response"]
    assert encoded["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(encoded["patch"])) == verdict.patch


def test_pods_that_opt_out_or_are_not_annotated_pass_unchanged() -> None:
    disabled = replica_pod({"linkerd.io/inject": "disabled"})
    assert mutate(
        parse_review(review(disabled)), {"linkerd.io/inject": "enabled"}, CONFIG
    ) == Verdict(True)
    assert mutate(parse_review(review(replica_pod())), {}, CONFIG) == Verdict(True)
    control = replica_pod({"linkerd.io/inject": "enabled"})
    control["metadata"]["labels"]["weft.io/control-plane-component"] = "identity"
    assert mutate(parse_review(review(control)), {}, CONFIG) == Verdict(True)


def test_a_bad_annotation_admits_the_pod_with_a_warning() -> None:
    pod = replica_pod({"linkerd.io/inject": "enabled", "config.linkerd.io/proxy-uid": "root"})
    verdict = mutate(parse_review(review(pod)), {}, CONFIG)
    assert verdict.allowed and not verdict.patch
    assert "config.linkerd.io/proxy-uid" in verdict.warnings[0]


def test_owners() -> None:
    assert owner_of(replica_pod()) == ("Deployment", "web")
    job_pod = {
        "metadata": {
            "name": "j-x",
            "ownerReferences": [{"kind": "Job", "name": "j", "controller": True}],
        }
    }
    assert owner_of(job_pod) == ("Job", "j")
    assert owner_of({"metadata": {"name": "bare"}}) == ("Pod", "bare")


def test_the_validator_refuses_with_every_problem() -> None:
    profile = {
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": "web.shop.svc.cluster.local", "namespace": "shop"},
        "spec": {"routes": [{"name": "r", "condition": {}, "timeout": "soon"}]},
    }
    verdict = validate(parse_review(review(profile, kind="ServiceProfile")))
    assert not verdict.allowed
    assert verdict.message == (
        'ServiceProfile "web.shop.svc.cluster.local" is invalid: '
        'spec.routes[0].timeout: invalid duration "soon"; '
        "spec.routes[0].condition: a request match must have a field set"
    )
    profile["spec"] = {"routes": [{"name": "r", "condition": {"method": "GET"}}]}
    assert validate(parse_review(review(profile, kind="ServiceProfile"))).allowed
