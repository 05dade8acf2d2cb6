"""Trust and proxy certificate health checks, as ``weft check`` reports them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from weft.identity.certs import (
    check_csr,
    generate_anchor,
    issue_leaf,
    make_csr,
    new_key,
)
from weft.identity.health import Finding, check_leaf, check_trust, days_left
from weft.identity.trust import TrustMaterial, generate_trust

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WEB = "web.emojivoto.serviceaccount.identity.weft.cluster.local"
NAMES = [
    "trust anchors are using supported crypto algorithm",
    "trust anchors are within their validity period",
    "trust anchors are valid for at least 60 days",
    "issuer cert is using supported crypto algorithm",
    "issuer cert is within its validity period",
    "issuer cert is valid for at least 60 days",
    "issuer cert is issued by the trust anchor",
]


@pytest.fixture(scope="module")
def material() -> TrustMaterial:
    return generate_trust("weft", "cluster.local", now=NOW)


def by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.name: f for f in findings}


def passed(finding: Finding) -> bool:
    return finding.ok and not finding.warning


def leaf_of(material: TrustMaterial) -> x509.Certificate:
    csr = check_csr(make_csr(new_key(), WEB), WEB)
    return issue_leaf(
        material.issuer, csr, WEB, lifetime=DAY, clock_skew=timedelta(seconds=20), now=NOW
    )


def self_signed(
    key: ec.EllipticCurvePrivateKey, algorithm: hashes.SHA256 | hashes.SHA384
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd.root")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 1000 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, algorithm)
    )


def test_fresh_material_passes_every_check_in_order(material: TrustMaterial) -> None:
    findings = check_trust(material.anchors, material.issuer.cert, now=NOW)
    assert [f.name for f in findings] == NAMES
    assert all(passed(f) for f in findings), findings
    assert all(f.detail for f in findings)


def test_an_issuer_close_to_expiry_warns(material: TrustMaterial) -> None:
    findings = by_name(check_trust(material.anchors, material.issuer.cert, now=NOW + 310 * DAY))
    soon = findings["issuer cert is valid for at least 60 days"]
    assert soon.ok and soon.warning
    assert "identity.weft.cluster.local" in soon.detail and "55.0 days" in soon.detail
    others = [f for name, f in findings.items() if name != soon.name]
    assert all(passed(f) for f in others)


def test_an_expired_issuer_fails_its_validity_check(material: TrustMaterial) -> None:
    findings = by_name(check_trust(material.anchors, material.issuer.cert, now=NOW + 400 * DAY))
    validity = findings["issuer cert is within its validity period"]
    assert not validity.ok and "expired at" in validity.detail
    assert findings["issuer cert is valid for at least 60 days"].warning
    assert passed(findings["issuer cert is issued by the trust anchor"])
    assert passed(findings["trust anchors are within their validity period"])


def test_an_issuer_not_yet_valid_fails_its_validity_check(material: TrustMaterial) -> None:
    findings = by_name(check_trust(material.anchors, material.issuer.cert, now=NOW - DAY))
    validity = findings["issuer cert is within its validity period"]
    assert not validity.ok and "not valid until" in validity.detail
    assert not findings["trust anchors are within their validity period"].ok


def test_anchors_close_to_expiry_warn_naming_the_anchor(material: TrustMaterial) -> None:
    findings = by_name(check_trust(material.anchors, material.issuer.cert, now=NOW + 3630 * DAY))
    soon = findings["trust anchors are valid for at least 60 days"]
    assert soon.ok and soon.warning
    assert "root.weft.cluster.local" in soon.detail and "20.0 days" in soon.detail
    assert passed(findings["trust anchors are within their validity period"])


def test_expired_anchors_fail_their_validity_check(material: TrustMaterial) -> None:
    findings = by_name(check_trust(material.anchors, material.issuer.cert, now=NOW + 3651 * DAY))
    validity = findings["trust anchors are within their validity period"]
    assert not validity.ok and "root.weft.cluster.local expired at" in validity.detail


def test_an_issuer_from_another_anchor_fails(material: TrustMaterial) -> None:
    other = generate_trust("weft", "cluster.local", now=NOW)
    findings = check_trust(material.anchors, other.issuer.cert, now=NOW)
    issued = by_name(findings)["issuer cert is issued by the trust anchor"]
    assert not issued.ok and "not signed by any trust anchor" in issued.detail
    assert all(passed(f) for f in findings if f is not issued)
    assert passed(check_trust([*material.anchors, *other.anchors], other.issuer.cert, now=NOW)[-1])


def test_unsupported_algorithms_fail(material: TrustMaterial) -> None:
    p384 = self_signed(ec.generate_private_key(ec.SECP384R1()), hashes.SHA256())
    sha384 = self_signed(new_key(), hashes.SHA384())
    for anchor, problem in ((p384, "ECDSA P-256 key"), (sha384, "ecdsa-with-SHA256")):
        findings = by_name(check_trust([anchor], material.issuer.cert, now=NOW))
        algorithm = findings["trust anchors are using supported crypto algorithm"]
        assert not algorithm.ok and "odd.root" in algorithm.detail and problem in algorithm.detail
        assert passed(findings["issuer cert is using supported crypto algorithm"])
    findings = by_name(check_trust(material.anchors, p384, now=NOW))
    assert not findings["issuer cert is using supported crypto algorithm"].ok


def test_no_anchors_fail_every_anchor_check(material: TrustMaterial) -> None:
    findings = check_trust([], material.issuer.cert, now=NOW)
    assert [f.name for f in findings] == NAMES
    assert [f.ok for f in findings] == [False, False, False, True, True, True, False]


def test_the_minimum_validity_is_configurable(material: TrustMaterial) -> None:
    findings = check_trust(
        material.anchors, material.issuer.cert, now=NOW, min_validity=timedelta(days=400)
    )
    assert findings[2].name == "trust anchors are valid for at least 400 days"
    assert passed(findings[2])
    assert findings[5].name == "issuer cert is valid for at least 400 days"
    assert findings[5].warning


def test_days_left(material: TrustMaterial) -> None:
    assert days_left(material.issuer.cert, NOW) == 365
    assert days_left(material.issuer.cert, NOW + 365.5 * DAY) == -0.5


def test_a_proxy_certificate_chains_to_the_anchors(material: TrustMaterial) -> None:
    leaf = leaf_of(material)
    finding = check_leaf(leaf, material.issuer.chain, material.anchors, now=NOW)
    assert finding.name == "data plane proxy certificate chains to the trust anchors"
    assert passed(finding) and WEB in finding.detail


def test_an_expired_or_foreign_proxy_certificate_fails(material: TrustMaterial) -> None:
    leaf = leaf_of(material)
    expired = check_leaf(leaf, material.issuer.chain, material.anchors, now=NOW + 2 * DAY)
    assert not expired.ok and "expired at" in expired.detail
    anchor, _ = generate_anchor("root.weft.cluster.local", lifetime=DAY, now=NOW)
    foreign = check_leaf(leaf, material.issuer.chain, [anchor], now=NOW)
    assert not foreign.ok and "does not chain to a trust anchor" in foreign.detail
