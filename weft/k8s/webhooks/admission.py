"""AdmissionReview v1 in and out (pure): what the API server sends a webhook and what it wants
back."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
API_VERSION = "admission.k8s.io/v1"


class ReviewError(ValueError):
    """A body that is not an AdmissionReview v1 request."""


@dataclass(frozen=True)
class Review:
    """The parts of an AdmissionReview request a webhook uses."""

    uid: str
    kind: str
    operation: str
    namespace: str
    object: Obj
    dry_run: bool = False


@dataclass(frozen=True)
class Verdict:
    """A webhook's answer: allowed or refused (with a message), and an optional JSONPatch."""

    allowed: bool
    message: str = ""
    patch: list[Obj] = field(default_factory=list)
    warnings: tuple[str, ...] = ()


def parse_review(body: bytes) -> Review:
    """The request inside an AdmissionReview; :class:`ReviewError` says what is wrong."""
    try:
        review = json.loads(body)
    except ValueError as exc:
        raise ReviewError(f"the body is not JSON: {exc}") from None
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        raise ReviewError("the body is not an AdmissionReview")
    if review.get("apiVersion") != API_VERSION:
        raise ReviewError(f"only {API_VERSION} AdmissionReviews are served")
    request = review.get("request")
    if not isinstance(request, dict) or not request.get("uid"):
        raise ReviewError("the AdmissionReview has no request with a uid")
    obj = request.get("object")
    if not isinstance(obj, dict):
        raise ReviewError("the AdmissionReview request has no object")
    kind = request.get("kind") or {}
    return Review(
        uid=str(request["uid"]),
        kind=str(kind.get("kind", "")) if isinstance(kind, dict) else "",
        operation=str(request.get("operation", "")),
        namespace=str(request.get("namespace") or ""),
        object=obj,
        dry_run=bool(request.get("dryRun")),
    )


def response(uid: str, verdict: Verdict) -> Obj:
    """The AdmissionReview to send back for ``verdict``."""
    answer: Obj = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        answer["status"] = {"code": 400, "message": verdict.message, "reason": "BadRequest"}
    if verdict.patch:
        answer["patchType"] = "JSONPatch"
        answer["patch"] = base64.b64encode(json.dumps(verdict.patch).encode()).decode()
    if verdict.warnings:
        answer["warnings"] = list(verdict.warnings)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": answer}
