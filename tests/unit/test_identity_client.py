"""The pure parts of a workload's identity client: refresh timing, TLS contexts, and the checks
on what the identity service sends back (OpenSSL's, through an in-memory handshake)."""

from __future__ import annotations

import os
import ssl
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from weft.identity import certs, trust
from weft.identity.client import (
    CertifyError,
    LocalIdentity,
    TrustAnchorsError,
    refresh_delay,
    tls_contexts,
)
from weft.identity.config import IdentityConfig
from weft.identity.keygen import split_output
from weft.identity.names import identity_name

NOW = datetime.now(UTC)
WEB = identity_name("web", "emojivoto", "weft", "cluster.local")
VOTING = identity_name("voting", "emojivoto", "weft", "cluster.local")


def config(anchors_pem: bytes = b"", **tuning: float) -> IdentityConfig:
    return IdentityConfig(
        local_name=WEB,
        trust_anchors_pem=anchors_pem,
        token_file="/nonexistent/token",
        svc_addr=("127.0.0.1", 8080),
        svc_name=identity_name("weft-identity", "weft", "weft", "cluster.local"),
        **tuning,
    )


@pytest.fixture(scope="module")
def material() -> trust.TrustMaterial:
    return trust.generate_trust("weft", "cluster.local", now=NOW - timedelta(days=1))


@pytest.fixture(scope="module")
def other_material() -> trust.TrustMaterial:
    return trust.generate_trust("weft", "cluster.local", now=NOW - timedelta(days=1))


def leaf_for(
    material: trust.TrustMaterial, key: ec.EllipticCurvePrivateKey, name: str = WEB
) -> x509.Certificate:
    csr = certs.check_csr(certs.make_csr(key, name), name)
    return certs.issue_leaf(
        material.issuer,
        csr,
        name,
        lifetime=timedelta(hours=24),
        clock_skew=timedelta(seconds=20),
        now=datetime.now(UTC),
    )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def ders(chain: tuple[x509.Certificate, ...]) -> list[bytes]:
    return [der(c) for c in chain]


# -- refresh_delay ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (1000.0, 700.0),
        (24 * 3600.0, 0.7 * 24 * 3600),
        (100.0, 70.0),
        # Never sooner than min_refresh ...
        (10.0, 10.0),
        (0.0, 10.0),
        (-60.0, 10.0),
        # ... nor later than max_refresh.
        (200_000.0, 86400.0),
    ],
)
def test_refresh_delay_is_70_percent_of_what_is_left_within_bounds(
    left: float, expected: float
) -> None:
    now = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    delay = refresh_delay(now, now + timedelta(seconds=left), config())
    assert delay == pytest.approx(expected)


def test_refresh_delay_uses_the_configured_bounds() -> None:
    now = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    cfg = config(min_refresh=1.0, max_refresh=30.0)
    assert refresh_delay(now, now + timedelta(seconds=10), cfg) == pytest.approx(7.0)
    assert refresh_delay(now, now + timedelta(seconds=1), cfg) == pytest.approx(1.0)
    assert refresh_delay(now, now + timedelta(hours=1), cfg) == pytest.approx(30.0)


# -- tls_contexts -----------------------------------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_tls_contexts_are_tls13_with_the_right_verification(material: trust.TrustMaterial) -> None:
    key = certs.new_key()
    leaf = leaf_for(material, key)
    chain_pem = certs.certs_to_pem([leaf, *material.issuer.chain])
    fds = open_fds()
    server, client = tls_contexts(chain_pem, certs.key_to_pem(key), material.anchors_pem())
    # The in-memory key file is closed again.
    assert open_fds() == fds

    for ctx in (server, client):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_flags & ssl.VERIFY_X509_STRICT
        # The anchors, and nothing else, are trusted.
        (ca,) = ctx.get_ca_certs()
        subject: Any = ca["subject"]
        assert dict(rdn[0] for rdn in subject) == {"commonName": "root.weft.cluster.local"}
    # Unmeshed clients have no certificate; a meshed client always checks the server's name.
    assert server.verify_mode == ssl.CERT_OPTIONAL
    assert not server.check_hostname
    assert client.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname


def test_tls_contexts_reject_a_key_that_does_not_match(material: trust.TrustMaterial) -> None:
    leaf = leaf_for(material, certs.new_key())
    chain_pem = certs.certs_to_pem([leaf, *material.issuer.chain])
    fds = open_fds()
    with pytest.raises(ssl.SSLError):
        tls_contexts(chain_pem, certs.key_to_pem(certs.new_key()), material.anchors_pem())
    assert open_fds() == fds


# -- checking Certify responses --------------------------------------------------------------


def identity_trusting(material: trust.TrustMaterial) -> LocalIdentity:
    key = certs.new_key()
    pair = (certs.key_to_pem(key), certs.make_csr(key, WEB))
    return LocalIdentity(config(material.anchors_pem()), key=pair)


def key_of(identity: LocalIdentity) -> ec.EllipticCurvePrivateKey:
    return certs.load_key_pem(identity.key_pem, "key")


def test_a_good_response_becomes_credentials(material: trust.TrustMaterial) -> None:
    identity = identity_trusting(material)
    csr = certs.check_csr(identity.csr, WEB)
    assert csr.public_key() == key_of(identity).public_key()
    leaf = leaf_for(material, key_of(identity))
    creds = identity._credentials(der(leaf), ders(material.issuer.chain))
    assert creds.leaf_der == der(leaf)
    assert creds.expiry == certs.not_after(leaf)
    assert certs.load_certs_pem(creds.chain_pem, "chain") == [leaf, *material.issuer.chain]
    assert creds.server.verify_mode == ssl.CERT_OPTIONAL
    assert creds.client.verify_mode == ssl.CERT_REQUIRED
    # Towards the control plane: gRPC (h2), the service's name checked, the certificate shown.
    assert creds.control.verify_mode == ssl.CERT_REQUIRED
    assert creds.control.check_hostname


def test_a_leaf_for_another_key_is_rejected(material: trust.TrustMaterial) -> None:
    identity = identity_trusting(material)
    # Right name, right issuer, but not our key: we could not use it.
    leaf = leaf_for(material, certs.new_key())
    with pytest.raises(CertifyError, match="for another key"):
        identity._credentials(der(leaf), ders(material.issuer.chain))


def test_a_leaf_from_another_anchor_is_rejected(
    material: trust.TrustMaterial, other_material: trust.TrustMaterial
) -> None:
    identity = identity_trusting(material)
    leaf = leaf_for(other_material, key_of(identity))
    with pytest.raises(CertifyError, match="cannot trust"):
        identity._credentials(der(leaf), ders(other_material.issuer.chain))
    # Nor does sending our own issuer alongside make it chain.
    with pytest.raises(CertifyError, match="cannot trust"):
        identity._credentials(
            der(leaf), ders((*other_material.issuer.chain, *material.issuer.chain))
        )


def test_a_leaf_for_another_identity_is_rejected(material: trust.TrustMaterial) -> None:
    identity = identity_trusting(material)
    leaf = leaf_for(material, key_of(identity), name=VOTING)
    with pytest.raises(CertifyError, match="cannot trust") as info:
        identity._credentials(der(leaf), ders(material.issuer.chain))
    assert "Hostname mismatch" in str(info.value) and WEB in str(info.value)


def custom_leaf(
    material: trust.TrustMaterial,
    key: ec.EllipticCurvePrivateKey,
    names: list[str],
    usages: list[x509.ObjectIdentifier],
) -> x509.Certificate:
    """A leaf from ``material``'s issuer with these DNS names and extended key usages."""
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(material.issuer.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=1))
        .not_valid_after(NOW + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(material.issuer.key.public_key()),
            critical=False,
        )
    )
    return builder.sign(material.issuer.key, hashes.SHA256())


BOTH_USAGES = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_leaf_with_more_names_than_ours_is_rejected(material: trust.TrustMaterial) -> None:
    identity = identity_trusting(material)
    leaf = custom_leaf(material, key_of(identity), [WEB, VOTING], BOTH_USAGES)
    with pytest.raises(CertifyError, match="cannot trust") as info:
        identity._credentials(der(leaf), ders(material.issuer.chain))
    assert VOTING in str(info.value)


@pytest.mark.parametrize(
    "usage", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)
def test_a_leaf_must_serve_and_be_a_client(
    material: trust.TrustMaterial, usage: x509.ObjectIdentifier
) -> None:
    identity = identity_trusting(material)
    chain = ders(material.issuer.chain)
    leaf = custom_leaf(material, key_of(identity), [WEB], [usage])
    with pytest.raises(CertifyError, match="cannot trust: unsuitable certificate purpose"):
        identity._credentials(der(leaf), chain)
    # The same leaf with both usages is fine.
    both = custom_leaf(material, key_of(identity), [WEB], BOTH_USAGES)
    assert identity._credentials(der(both), chain).leaf_der == der(both)


def test_an_expired_leaf_is_rejected(material: trust.TrustMaterial) -> None:
    identity = identity_trusting(material)
    csr = certs.check_csr(identity.csr, WEB)
    leaf = certs.issue_leaf(
        material.issuer,
        csr,
        WEB,
        lifetime=timedelta(hours=1),
        clock_skew=timedelta(seconds=20),
        now=NOW - timedelta(hours=2),
    )
    with pytest.raises(CertifyError, match="cannot trust: certificate has expired"):
        identity._credentials(der(leaf), ders(material.issuer.chain))


def test_a_leaf_without_its_issuer_is_rejected(material: trust.TrustMaterial) -> None:
    identity = identity_trusting(material)
    leaf = leaf_for(material, key_of(identity))
    with pytest.raises(CertifyError, match="cannot trust"):
        identity._credentials(der(leaf), [])


def test_unreadable_certificates_are_rejected(material: trust.TrustMaterial) -> None:
    identity = identity_trusting(material)
    leaf = leaf_for(material, key_of(identity))
    for leaf_der, intermediates in (
        (b"not DER", ders(material.issuer.chain)),
        (der(leaf), [b"\x30\x00"]),
    ):
        with pytest.raises(CertifyError, match="unreadable certificate"):
            identity._credentials(leaf_der, intermediates)


@pytest.mark.parametrize(
    "anchors", [b"", b"hello", b"-----BEGIN CERTIFICATE-----\nAAAA\n", "é".encode()]
)
def test_unusable_trust_anchors_are_refused_at_once(anchors: bytes) -> None:
    with pytest.raises(TrustAnchorsError, match="LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS"):
        LocalIdentity(config(anchors))


def test_the_child_process_output_is_checked() -> None:
    key = b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"
    good = len(key).to_bytes(4, "big") + key + b"\x30\x00"
    assert split_output(good) == (key, b"\x30\x00")
    for bad in (b"", b"\x00\x00", good[:-2], len(key).to_bytes(4, "big") + b"x" * len(key) + b"c"):
        with pytest.raises(ValueError):
            split_output(bad)
