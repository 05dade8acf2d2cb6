"""The sp-validator's decision for one ServiceProfile (pure): the validator ``weft cluster
apply`` and ``weft profile`` use."""

from __future__ import annotations

from weft.k8s.webhooks.admission import Review, Verdict
from weft.resources.profiles import validate_service_profile


def validate(review: Review) -> Verdict:
    """Refuse a ServiceProfile that Linkerd's sp-validator would refuse, naming every problem."""
    if review.kind != "ServiceProfile" or review.operation not in ("CREATE", "UPDATE"):
        return Verdict(True)
    errors = validate_service_profile(review.object)
    if not errors:
        return Verdict(True)
    name = (review.object.get("metadata") or {}).get("name", "")
    return Verdict(False, f'ServiceProfile "{name}" is invalid: ' + "; ".join(errors))
