"""Trust material: generating, renewing, writing and reading the anchor and issuer files."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from weft.identity.certs import (
    CertError,
    certs_to_pem,
    check_csr,
    generate_issuer,
    issue_leaf,
    key_matches,
    key_to_pem,
    make_csr,
    new_key,
    not_after,
    verify_issuer,
    verify_leaf,
)
from weft.identity.names import identity_name
from weft.identity.trust import (
    TrustFiles,
    TrustMaterial,
    generate_trust,
    read_trust,
    renew_issuer,
    write_trust,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WEB = identity_name("web", "emojivoto", "weft", "cluster.local")


@pytest.fixture(scope="module")
def material() -> TrustMaterial:
    return generate_trust("weft", "cluster.local", now=NOW)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def without_anchor_key(material: TrustMaterial) -> TrustMaterial:
    return TrustMaterial(anchors=material.anchors, issuer=material.issuer, anchor_key=None)


def test_generated_trust_has_linkerd_names_and_lifetimes(material: TrustMaterial) -> None:
    (anchor,) = material.anchors
    assert anchor.subject.rfc4514_string() == "CN=root.weft.cluster.local"
    assert material.issuer.cert.subject.rfc4514_string() == "CN=identity.weft.cluster.local"
    assert not_after(anchor) == NOW + 3650 * DAY
    assert not_after(material.issuer.cert) == NOW + 365 * DAY
    assert material.anchor_key is not None and key_matches(anchor, material.anchor_key)
    verify_issuer(material.issuer.cert, material.anchors, now=NOW)
    assert material.anchors_pem() == certs_to_pem([anchor])


def test_the_generated_issuer_signs_verifiable_leaves(material: TrustMaterial) -> None:
    csr = check_csr(make_csr(new_key(), WEB), WEB)
    leaf = issue_leaf(
        material.issuer, csr, WEB, lifetime=DAY, clock_skew=timedelta(seconds=20), now=NOW
    )
    verify_leaf(leaf, material.issuer.chain, material.anchors, identity=WEB, now=NOW)


def test_write_then_read_round_trips(material: TrustMaterial, tmp_path: Path) -> None:
    files = write_trust(material, tmp_path / "trust")
    assert files == TrustFiles.in_dir(tmp_path / "trust")
    assert files.anchor_key == tmp_path / "trust" / "ca.key"
    assert sorted(p.name for p in (tmp_path / "trust").iterdir()) == [
        "ca.crt",
        "ca.key",
        "issuer.crt",
        "issuer.key",
    ]
    loaded = read_trust(files)
    assert loaded.anchors == material.anchors
    assert loaded.issuer.cert == material.issuer.cert
    assert loaded.issuer.intermediates == ()
    assert loaded.issuer.key.private_numbers() == material.issuer.key.private_numbers()
    assert loaded.anchor_key is not None and material.anchor_key is not None
    assert loaded.anchor_key.private_numbers() == material.anchor_key.private_numbers()


def test_keys_are_private_and_certificates_readable(
    material: TrustMaterial, tmp_path: Path
) -> None:
    files = write_trust(material, tmp_path)
    assert mode(files.issuer_key) == 0o600
    assert files.anchor_key is not None and mode(files.anchor_key) == 0o600
    assert mode(files.anchors) == 0o644
    assert mode(files.issuer_cert) == 0o644


def test_rewriting_replaces_files_and_leaves_no_temporaries(
    material: TrustMaterial, tmp_path: Path
) -> None:
    write_trust(material, tmp_path)
    renewed = renew_issuer(material, "weft", "cluster.local", lifetime=30 * DAY, now=NOW)
    files = write_trust(renewed, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ca.crt",
        "ca.key",
        "issuer.crt",
        "issuer.key",
    ]
    assert read_trust(files).issuer.cert == renewed.issuer.cert
    assert mode(files.issuer_key) == 0o600


def test_without_an_anchor_key_no_ca_key_is_written(
    material: TrustMaterial, tmp_path: Path
) -> None:
    files = write_trust(without_anchor_key(material), tmp_path)
    assert files.anchor_key is None
    assert not (tmp_path / "ca.key").exists()
    assert TrustFiles.in_dir(tmp_path).anchor_key is None
    assert read_trust(files).anchor_key is None


def test_renewing_the_issuer_keeps_the_anchors_and_changes_the_key(
    material: TrustMaterial,
) -> None:
    later = NOW + 300 * DAY
    renewed = renew_issuer(material, "weft", "cluster.local", lifetime=365 * DAY, now=later)
    assert renewed.anchors == material.anchors
    assert renewed.anchor_key is material.anchor_key
    assert renewed.issuer.cert != material.issuer.cert
    assert not key_matches(renewed.issuer.cert, material.issuer.key)
    assert not_after(renewed.issuer.cert) == later + 365 * DAY
    assert renewed.issuer.cert.subject == material.issuer.cert.subject
    verify_issuer(renewed.issuer.cert, renewed.anchors, now=later)


def test_renewing_without_the_anchor_key_is_refused(material: TrustMaterial) -> None:
    with pytest.raises(CertError, match="renew the issuer certificate yourself"):
        renew_issuer(without_anchor_key(material), "weft", "cluster.local", lifetime=DAY, now=NOW)


def test_renewing_with_a_foreign_anchor_key_is_refused(material: TrustMaterial) -> None:
    foreign = TrustMaterial(anchors=material.anchors, issuer=material.issuer, anchor_key=new_key())
    with pytest.raises(CertError, match="matches none of the trust anchors"):
        renew_issuer(foreign, "weft", "cluster.local", lifetime=DAY, now=NOW)


def test_a_mismatched_issuer_key_is_refused(material: TrustMaterial, tmp_path: Path) -> None:
    files = write_trust(material, tmp_path)
    files.issuer_key.write_bytes(key_to_pem(new_key()))
    with pytest.raises(CertError, match=r"issuer\.key: key does not match"):
        read_trust(files)


def test_an_issuer_from_another_anchor_is_refused(material: TrustMaterial, tmp_path: Path) -> None:
    files = write_trust(material, tmp_path)
    other = generate_trust("weft", "cluster.local", now=NOW)
    files.anchors.write_bytes(other.anchors_pem())
    with pytest.raises(CertError, match=r"issuer\.crt: .* not signed by any trust anchor"):
        read_trust(files)


def test_an_anchor_key_for_another_anchor_is_refused(
    material: TrustMaterial, tmp_path: Path
) -> None:
    files = write_trust(material, tmp_path)
    assert files.anchor_key is not None
    files.anchor_key.write_bytes(key_to_pem(new_key()))
    with pytest.raises(CertError, match=r"ca\.key: key matches none of the anchors"):
        read_trust(files)


def test_missing_and_broken_files_are_named(material: TrustMaterial, tmp_path: Path) -> None:
    files = write_trust(material, tmp_path)
    files.anchors.write_bytes(b"not pem")
    with pytest.raises(CertError, match=r"ca\.crt: no PEM certificate found"):
        read_trust(files)
    files.anchors.unlink()
    with pytest.raises(CertError, match=r"ca\.crt: cannot read"):
        read_trust(files)


def test_expired_material_still_loads(material: TrustMaterial, tmp_path: Path) -> None:
    anchor = material.anchors[0]
    assert material.anchor_key is not None
    issuer = generate_issuer(
        anchor, material.anchor_key, "identity.weft.cluster.local", lifetime=DAY, now=NOW
    )
    files = write_trust(
        TrustMaterial(anchors=material.anchors, issuer=issuer, anchor_key=None), tmp_path
    )
    loaded = read_trust(files)
    assert loaded.issuer.cert == issuer.cert
    with pytest.raises(CertError, match="expired"):
        verify_issuer(loaded.issuer.cert, loaded.anchors, now=NOW + 2 * DAY)


def test_an_issuer_file_may_carry_intermediates(material: TrustMaterial, tmp_path: Path) -> None:
    assert material.anchor_key is not None
    anchor = material.anchors[0]
    middle = generate_issuer(anchor, material.anchor_key, "middle.test", lifetime=DAY, now=NOW)
    # A CA signed by "middle" instead of the anchor; read_trust checks signatures only.
    lower = generate_issuer(middle.cert, middle.key, "identity.test", lifetime=DAY, now=NOW)
    files = write_trust(material, tmp_path)
    files.issuer_cert.write_bytes(certs_to_pem([lower.cert, middle.cert]))
    files.issuer_key.write_bytes(key_to_pem(lower.key))
    loaded = read_trust(files)
    assert loaded.issuer.cert == lower.cert
    assert loaded.issuer.intermediates == (middle.cert,)
    assert loaded.issuer.chain == (lower.cert, middle.cert)
