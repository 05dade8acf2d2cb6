"""Health checks on trust material and proxy certificates, worded like ``linkerd check``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import SignatureAlgorithmOID

from weft.identity.certs import (
    CertError,
    anchor_path,
    as_utc,
    describe,
    is_p256,
    not_after,
    not_before,
    verify_leaf,
)

DEFAULT_MIN_VALIDITY = timedelta(days=60)
_DAY_SECONDS = 86400.0


@dataclass(frozen=True)
class Finding:
    """One check's outcome: not ``ok`` fails; ``ok`` with ``warning`` passes with a warning."""

    name: str
    ok: bool
    warning: bool
    detail: str


def _pass(name: str, detail: str) -> Finding:
    return Finding(name=name, ok=True, warning=False, detail=detail)


def _warn(name: str, detail: str) -> Finding:
    return Finding(name=name, ok=True, warning=True, detail=detail)


def _fail(name: str, detail: str) -> Finding:
    return Finding(name=name, ok=False, warning=False, detail=detail)


def days_left(cert: x509.Certificate, now: datetime) -> float:
    """Days until the certificate expires (negative once it has)."""
    return (not_after(cert) - as_utc(now)).total_seconds() / _DAY_SECONDS


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _days_text(span: timedelta) -> str:
    days = span.total_seconds() / _DAY_SECONDS
    return str(int(days)) if days.is_integer() else f"{days:g}"


def _algorithm_problem(cert: x509.Certificate) -> str | None:
    if not is_p256(cert.public_key()):
        return f"{describe(cert)} must use an ECDSA P-256 key"
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return f"{describe(cert)} must be signed with ecdsa-with-SHA256"
    return None


def _window_problem(cert: x509.Certificate, now: datetime) -> str | None:
    if now < not_before(cert):
        return f"{describe(cert)} is not valid until {_stamp(not_before(cert))}"
    if now > not_after(cert):
        return f"{describe(cert)} expired at {_stamp(not_after(cert))}"
    return None


def _soon_problem(cert: x509.Certificate, now: datetime, min_validity: timedelta) -> str | None:
    if not_after(cert) - now >= min_validity:
        return None
    return (
        f"{describe(cert)} expires in {days_left(cert, now):.1f} days ({_stamp(not_after(cert))})"
    )


def _algorithms(name: str, certs: Sequence[x509.Certificate]) -> Finding:
    problems = [p for c in certs if (p := _algorithm_problem(c))]
    if problems:
        return _fail(name, "; ".join(problems))
    return _pass(name, "ECDSA P-256 keys, ecdsa-with-SHA256 signatures")


def _windows(name: str, certs: Sequence[x509.Certificate], now: datetime) -> Finding:
    problems = [p for c in certs if (p := _window_problem(c, now))]
    if problems:
        return _fail(name, "; ".join(problems))
    return _pass(name, f"valid at {_stamp(now)}")


def _remaining(
    name: str, certs: Sequence[x509.Certificate], now: datetime, min_validity: timedelta
) -> Finding:
    problems = [p for c in certs if (p := _soon_problem(c, now, min_validity))]
    if problems:
        return _warn(name, "; ".join(problems))
    soonest = min(days_left(c, now) for c in certs)
    return _pass(name, f"{soonest:.0f} days left")


def _issued_by(issuer_cert: x509.Certificate, anchors: Sequence[x509.Certificate]) -> Finding:
    name = "issuer cert is issued by the trust anchor"
    try:
        path = anchor_path(issuer_cert, (), anchors)
    except CertError as e:
        return _fail(name, str(e))
    return _pass(name, f"{describe(issuer_cert)} is signed by {describe(path[-1])}")


def check_trust(
    anchors: Sequence[x509.Certificate],
    issuer_cert: x509.Certificate,
    *,
    now: datetime,
    min_validity: timedelta = DEFAULT_MIN_VALIDITY,
) -> list[Finding]:
    """The control plane's certificate checks, in ``linkerd check`` order."""
    now = as_utc(now)
    days = _days_text(min_validity)
    anchor_names = (
        "trust anchors are using supported crypto algorithm",
        "trust anchors are within their validity period",
        f"trust anchors are valid for at least {days} days",
    )
    if anchors:
        anchor_findings = [
            _algorithms(anchor_names[0], anchors),
            _windows(anchor_names[1], anchors, now),
            _remaining(anchor_names[2], anchors, now, min_validity),
        ]
    else:
        anchor_findings = [_fail(name, "no trust anchors found") for name in anchor_names]
    issuer = [issuer_cert]
    return [
        *anchor_findings,
        _algorithms("issuer cert is using supported crypto algorithm", issuer),
        _windows("issuer cert is within its validity period", issuer, now),
        _remaining(f"issuer cert is valid for at least {days} days", issuer, now, min_validity),
        _issued_by(issuer_cert, anchors),
    ]


def check_leaf(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    now: datetime,
) -> Finding:
    """Whether a proxy's certificate chains to the trust anchors at ``now``."""
    name = "data plane proxy certificate chains to the trust anchors"
    try:
        verify_leaf(leaf, intermediates, anchors, identity=None, now=now)
    except CertError as e:
        return _fail(name, str(e))
    return _pass(name, f"{describe(leaf)} chains to the trust anchors")
