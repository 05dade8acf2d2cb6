"""The identity service's certificate authority: issuer renewal, persistence and warnings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from weft.controller.identity.authority import Authority, AuthorityConfig
from weft.identity import certs, trust
from weft.identity.names import identity_name

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
WEB = identity_name("web", "emojivoto", "weft", "cluster.local")
ANCHOR_CN = "root.weft.cluster.local"
ISSUER_CN = "identity.weft.cluster.local"


def leaf_from(authority: Authority, now: datetime) -> x509.Certificate:
    csr = certs.check_csr(certs.make_csr(certs.new_key(), WEB), WEB)
    return authority.certify(csr, WEB, now)


def given_files(material: trust.TrustMaterial, directory: Path) -> trust.TrustFiles:
    """``material`` written to ``directory`` as a user would give it: no anchor key."""
    files = trust.write_trust(material, directory)
    return trust.TrustFiles(
        anchors=files.anchors,
        issuer_cert=files.issuer_cert,
        issuer_key=files.issuer_key,
        anchor_key=None,
    )


# -- renewal ------------------------------------------------------------------------------


def test_generated_issuer_is_due_for_renewal_at_two_thirds_of_its_life(tmp_path: Path) -> None:
    authority = Authority.in_directory(tmp_path, AuthorityConfig(), NOW)
    issuer = authority.issuer.cert
    start, end = certs.not_before(issuer), certs.not_after(issuer)
    assert end - start == 365 * DAY + certs.CA_BACKDATE
    due = authority.renewal_due(NOW)
    assert due is not None
    # Two thirds of the lifetime it was issued for; the back-dating does not count.
    assert due - NOW == timedelta(days=243, hours=8)


def test_a_short_lived_issuer_is_not_due_at_once(tmp_path: Path) -> None:
    config = AuthorityConfig(issuer_lifetime=timedelta(seconds=75))
    authority = Authority.in_directory(tmp_path, config, NOW)
    assert authority.renewal_due(NOW) == NOW + timedelta(seconds=50)
    assert not authority.maybe_renew(NOW + timedelta(seconds=49))
    assert authority.maybe_renew(NOW + timedelta(seconds=50))
    assert authority.renewal_due(NOW + timedelta(seconds=50)) == NOW + timedelta(seconds=100)


def test_given_material_is_never_due_for_renewal(tmp_path: Path) -> None:
    files = given_files(trust.generate_trust("weft", "cluster.local", now=NOW), tmp_path)
    authority = Authority.from_files(files, AuthorityConfig())
    assert authority.material.anchor_key is None
    later = NOW + 400 * DAY
    assert authority.renewal_due(later) is None
    before = authority.issuer
    assert authority.maybe_renew(later) is False
    assert authority.issuer is before


def test_maybe_renew_renews_only_once_due(tmp_path: Path) -> None:
    authority = Authority.in_directory(tmp_path, AuthorityConfig(), NOW)
    old = authority.issuer
    (anchor,) = authority.material.anchors
    due = authority.renewal_due(NOW)
    assert due is not None

    assert authority.maybe_renew(due - SECOND) is False
    assert authority.issuer is old

    assert authority.maybe_renew(due) is True
    new = authority.issuer
    assert new.cert != old.cert
    assert certs.key_to_pem(new.key) != certs.key_to_pem(old.key)
    assert certs.common_name(new.cert) == ISSUER_CN
    assert certs.anchor_path(new.cert, (), [anchor]) == [new.cert, anchor]
    certs.verify_issuer(new.cert, [anchor], now=due)
    # Certificate times have whole seconds.
    assert certs.not_after(new.cert) == due.replace(microsecond=0) + 365 * DAY
    assert authority.material.anchors == [anchor]

    # The renewed issuer was persisted next to the same anchor and anchor key.
    on_disk = trust.read_trust(trust.TrustFiles.in_dir(tmp_path))
    assert on_disk.anchors == [anchor]
    assert on_disk.issuer.cert == new.cert
    assert certs.key_matches(on_disk.issuer.cert, new.key)
    assert on_disk.anchor_key is not None and certs.key_matches(anchor, on_disk.anchor_key)

    # Leaves now come from the new issuer and verify against the (unchanged) anchors.
    leaf = leaf_from(authority, due + SECOND)
    assert leaf.issuer == new.cert.subject
    leaf.verify_directly_issued_by(new.cert)
    certs.verify_leaf(leaf, new.chain, [anchor], identity=WEB, now=due + SECOND)

    # The next renewal is two thirds into the new issuer's life.
    next_due = authority.renewal_due(due)
    assert next_due is not None and next_due > due
    assert authority.maybe_renew(due + SECOND) is False


def test_renewed_issuer_survives_a_restart(tmp_path: Path) -> None:
    authority = Authority.in_directory(tmp_path, AuthorityConfig(), NOW)
    due = authority.renewal_due(NOW)
    assert due is not None and authority.maybe_renew(due)
    again = Authority.in_directory(tmp_path, AuthorityConfig(), due + DAY)
    assert again.material.anchors == authority.material.anchors
    assert again.issuer.cert == authority.issuer.cert
    assert again.renewal_due(due) == authority.renewal_due(due)


def test_an_issuer_expiring_with_the_anchor_is_not_renewed() -> None:
    # Renewing could not extend it: a new issuer is clamped to the anchor's expiry too.
    material = trust.generate_trust("weft", "cluster.local", anchor_lifetime=90 * DAY, now=NOW)
    authority = Authority(material, AuthorityConfig())
    assert certs.not_after(authority.issuer.cert) == certs.not_after(material.anchors[0])
    assert authority.renewal_due(NOW) is None
    before = authority.issuer
    for later in (NOW + 80 * DAY, NOW + 90 * DAY, NOW + 91 * DAY):
        # Not even once the anchor has expired (a new issuer can no longer be signed).
        assert authority.maybe_renew(later) is False
        assert authority.issuer is before


def test_renewal_close_to_the_anchors_expiry_stops_at_the_anchor() -> None:
    material = trust.generate_trust(
        "weft", "cluster.local", anchor_lifetime=300 * DAY, issuer_lifetime=200 * DAY, now=NOW
    )
    authority = Authority(material, AuthorityConfig(issuer_lifetime=200 * DAY))
    anchor_end = certs.not_after(material.anchors[0])
    due = authority.renewal_due(NOW)
    assert due is not None
    assert authority.maybe_renew(due) is True
    # The renewed issuer lives as long as the anchor; renewing it again would gain nothing.
    assert certs.not_after(authority.issuer.cert) == anchor_end
    assert authority.renewal_due(due) is None
    assert authority.maybe_renew(anchor_end - DAY) is False


# -- persistence ----------------------------------------------------------------------------


def test_in_directory_generates_once_and_then_reuses(tmp_path: Path) -> None:
    first = Authority.in_directory(tmp_path / "trust", AuthorityConfig(), NOW)
    assert (tmp_path / "trust" / trust.ANCHOR_KEY_FILE).exists()
    (anchor,) = first.material.anchors
    assert certs.common_name(anchor) == ANCHOR_CN
    second = Authority.in_directory(tmp_path / "trust", AuthorityConfig(), NOW + 30 * DAY)
    assert second.material.anchors == [anchor]
    assert second.issuer.cert == first.issuer.cert
    assert second.material.anchor_key is not None
    assert certs.key_matches(anchor, second.material.anchor_key)
    assert second.directory == tmp_path / "trust"
    # A leaf from one verifies against the anchors the other loaded.
    certs.verify_leaf(
        leaf_from(second, NOW + DAY),
        second.issuer.chain,
        first.material.anchors,
        identity=WEB,
        now=NOW + DAY,
    )


def test_in_directory_uses_the_configured_names_and_lifetimes(tmp_path: Path) -> None:
    config = AuthorityConfig(
        control_namespace="mesh", trust_domain="example.org", issuer_lifetime=30 * DAY
    )
    authority = Authority.in_directory(tmp_path, config, NOW)
    assert certs.common_name(authority.material.anchors[0]) == "root.mesh.example.org"
    assert certs.common_name(authority.issuer.cert) == "identity.mesh.example.org"
    assert certs.not_after(authority.issuer.cert) == NOW + 30 * DAY


# -- warnings -------------------------------------------------------------------------------


def test_fresh_material_has_no_warnings(tmp_path: Path) -> None:
    assert (
        Authority.in_directory(tmp_path / "generated", AuthorityConfig(), NOW).warnings(NOW) == []
    )
    files = given_files(trust.generate_trust("weft", "cluster.local", now=NOW), tmp_path / "given")
    assert Authority.from_files(files, AuthorityConfig()).warnings(NOW) == []


@pytest.mark.parametrize(("days_left", "warned"), [(61, False), (59, True), (1, True)])
def test_warns_about_an_anchor_expiring_within_60_days(days_left: int, warned: bool) -> None:
    # A 90-day anchor: the issuer, clamped to the anchor, expires with it, but a generated
    # issuer renews itself, so only the anchor is worth a warning.
    material = trust.generate_trust("weft", "cluster.local", anchor_lifetime=90 * DAY, now=NOW)
    authority = Authority(material, AuthorityConfig())
    (anchor,) = material.anchors
    assert certs.not_after(material.issuer.cert) == certs.not_after(anchor)
    now = certs.not_after(anchor) - days_left * DAY
    lines = authority.warnings(now)
    if not warned:
        assert lines == []
        return
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("trust anchors are valid for at least 60 days: ")
    assert ANCHOR_CN in line
    assert f"expires in {days_left:.1f} days" in line


def test_warns_about_a_given_issuer_expiring_within_60_days(tmp_path: Path) -> None:
    material = trust.generate_trust("weft", "cluster.local", issuer_lifetime=90 * DAY, now=NOW)
    authority = Authority.from_files(given_files(material, tmp_path), AuthorityConfig())
    assert authority.warnings(NOW + 29 * DAY) == []
    (line,) = authority.warnings(NOW + 40 * DAY)
    assert line.startswith("issuer cert is valid for at least 60 days: ")
    assert ISSUER_CN in line
    assert "expires in 50.0 days" in line


def test_generated_issuer_close_to_expiry_is_not_a_warning(tmp_path: Path) -> None:
    # It renews itself; the same issuer given as files would be the user's problem.
    authority = Authority.in_directory(tmp_path, AuthorityConfig(issuer_lifetime=90 * DAY), NOW)
    assert authority.warnings(NOW + 40 * DAY) == []


def test_expired_given_issuer_is_a_warning(tmp_path: Path) -> None:
    material = trust.generate_trust("weft", "cluster.local", issuer_lifetime=10 * DAY, now=NOW)
    authority = Authority.from_files(given_files(material, tmp_path), AuthorityConfig())
    lines = authority.warnings(NOW + 11 * DAY)
    assert any(
        line.startswith("issuer cert is within its validity period: ") and "expired" in line
        for line in lines
    ), lines
