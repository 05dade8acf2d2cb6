"""Identity names, CSR checks, leaf issuing and chain verification (ours, OpenSSL's and ssl's)."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from weft.identity.certs import (
    CertError,
    CsrError,
    Issuer,
    certs_to_pem,
    check_csr,
    dns_names,
    generate_anchor,
    generate_issuer,
    issue_leaf,
    key_to_pem,
    load_certs_pem,
    load_key_pem,
    make_csr,
    new_key,
    not_after,
    not_before,
    verify_issuer,
    verify_leaf,
)
from weft.identity.names import (
    anchor_name,
    identity_for_username,
    identity_name,
    issuer_name,
)

NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)
LEAF_LIFETIME = timedelta(hours=24)
SKEW = timedelta(seconds=20)
WEB = "web.emojivoto.serviceaccount.identity.weft.cluster.local"
EMOJI = "emoji.emojivoto.serviceaccount.identity.weft.cluster.local"
E = TypeVar("E", bound=x509.ExtensionType)


@dataclass(frozen=True)
class Pki:
    anchor: x509.Certificate
    anchor_key: ec.EllipticCurvePrivateKey
    issuer: Issuer


def make_pki(name: str = "root.weft.cluster.local", issuer_days: int = 365) -> Pki:
    anchor, anchor_key = generate_anchor(name, lifetime=3650 * DAY, now=NOW)
    issuer = generate_issuer(
        anchor, anchor_key, "identity.weft.cluster.local", lifetime=issuer_days * DAY, now=NOW
    )
    return Pki(anchor=anchor, anchor_key=anchor_key, issuer=issuer)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def leaf_for(
    issuer: Issuer, identity: str, *, now: datetime = NOW
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    csr = check_csr(make_csr(key, identity), identity)
    leaf = issue_leaf(issuer, csr, identity, lifetime=LEAF_LIFETIME, clock_skew=SKEW, now=now)
    return leaf, key


def build_csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    cn: str | None,
    names: list[x509.GeneralName] | None,
) -> bytes:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


POD_IP = x509.IPAddress(ipaddress.ip_address("10.0.0.1"))


def ext(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


# -- names ---------------------------------------------------------------------------------


def test_identity_names_follow_linkerds_layout() -> None:
    assert identity_name("web", "emojivoto", "weft", "cluster.local") == WEB
    assert issuer_name("weft", "cluster.local") == "identity.weft.cluster.local"
    assert anchor_name("weft", "cluster.local") == "root.weft.cluster.local"


def test_a_service_account_username_maps_to_its_identity() -> None:
    username = "system:serviceaccount:emojivoto:web"
    assert identity_for_username(username, "weft", "cluster.local") == WEB


@pytest.mark.parametrize(
    "username",
    [
        "system:serviceaccount:emojivoto",
        "system:serviceaccount:emojivoto:web:extra",
        "system:serviceaccount::web",
        "system:serviceaccount:emojivoto:",
        "system:serviceaccounts:emojivoto:web",
        "system:node:worker-1",
        "admin",
        "system:serviceaccount:Emoji:web",
        "system:serviceaccount:a.b:web",
    ],
)
def test_other_usernames_have_no_identity(username: str) -> None:
    assert identity_for_username(username, "weft", "cluster.local") is None


# -- anchors and issuers -------------------------------------------------------------------


def test_the_anchor_is_a_self_signed_ca(pki: Pki) -> None:
    anchor = pki.anchor
    assert anchor.subject == anchor.issuer
    assert anchor.subject.rfc4514_string() == "CN=root.weft.cluster.local"
    assert anchor.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    constraints = ext(anchor, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ext(anchor, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = ext(anchor, x509.SubjectKeyIdentifier).value
    assert ext(anchor, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert not_after(anchor) - not_before(anchor) >= 3650 * DAY
    assert not_after(anchor).tzinfo is not None
    anchor.verify_directly_issued_by(anchor)


def test_the_issuer_is_a_pathlen_zero_ca_signed_by_the_anchor(pki: Pki) -> None:
    cert = pki.issuer.cert
    assert cert.subject.rfc4514_string() == "CN=identity.weft.cluster.local"
    assert cert.issuer == pki.anchor.subject
    constraints = ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    anchor_ski = ext(pki.anchor, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == anchor_ski
    assert ext(cert, x509.SubjectKeyIdentifier).value.digest != anchor_ski
    assert isinstance(pki.issuer.key.curve, ec.SECP256R1)
    assert pki.issuer.chain == (cert,)
    cert.verify_directly_issued_by(pki.anchor)
    verify_issuer(cert, [pki.anchor], now=NOW)


def test_the_issuer_never_outlives_the_anchor() -> None:
    anchor, key = generate_anchor("root.test", lifetime=10 * DAY, now=NOW)
    issuer = generate_issuer(anchor, key, "identity.test", lifetime=365 * DAY, now=NOW)
    assert not_after(issuer.cert) == not_after(anchor)


def test_an_issuer_needs_the_anchors_key(pki: Pki) -> None:
    with pytest.raises(CertError, match="anchor key does not match"):
        generate_issuer(pki.anchor, new_key(), "identity.test", lifetime=DAY, now=NOW)


def test_an_issuer_key_must_match_its_certificate(pki: Pki) -> None:
    with pytest.raises(CertError, match="issuer key does not match"):
        Issuer(cert=pki.issuer.cert, key=new_key())


def test_verify_issuer_rejects_other_anchors_expiry_and_non_cas(pki: Pki) -> None:
    other = make_pki("root.other.test")
    with pytest.raises(CertError, match="not signed by any trust anchor"):
        verify_issuer(pki.issuer.cert, [other.anchor], now=NOW)
    verify_issuer(pki.issuer.cert, [other.anchor, pki.anchor], now=NOW)
    with pytest.raises(CertError, match=r"issuer certificate .* expired at"):
        verify_issuer(pki.issuer.cert, [pki.anchor], now=NOW + 400 * DAY)
    leaf, _ = leaf_for(pki.issuer, WEB)
    with pytest.raises(CertError, match="is not a CA"):
        verify_issuer(leaf, [pki.anchor], now=NOW)


# -- leaves ----------------------------------------------------------------------------------


def test_a_leaf_carries_exactly_what_linkerd_issues(pki: Pki) -> None:
    leaf, key = leaf_for(pki.issuer, WEB)
    assert leaf.subject.rfc4514_string() == f"CN={WEB}"
    assert leaf.issuer == pki.issuer.cert.subject
    assert dns_names(leaf) == [WEB]
    san = ext(leaf, x509.SubjectAlternativeName)
    assert len(san.value) == 1 and not san.critical
    constraints = ext(leaf, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = ext(leaf, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    eku = ext(leaf, x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    issuer_ski = ext(pki.issuer.cert, x509.SubjectKeyIdentifier).value.digest
    assert ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == issuer_ski
    assert ext(leaf, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        key.public_key()
    )
    assert not_before(leaf) == NOW - SKEW
    assert not_after(leaf) == NOW + LEAF_LIFETIME
    assert leaf.public_key() == key.public_key()
    verify_leaf(leaf, pki.issuer.chain, [pki.anchor], identity=WEB, now=NOW)
    verify_leaf(leaf, pki.issuer.chain, [pki.anchor], identity=None, now=NOW)


def test_serial_numbers_are_random(pki: Pki) -> None:
    serials = {leaf_for(pki.issuer, WEB)[0].serial_number for _ in range(5)}
    assert len(serials) == 5


def test_a_csr_without_a_subject_gets_the_identity_as_cn(pki: Pki) -> None:
    csr = check_csr(build_csr(new_key(), None, [x509.DNSName(WEB)]), WEB)
    leaf = issue_leaf(pki.issuer, csr, WEB, lifetime=LEAF_LIFETIME, clock_skew=SKEW, now=NOW)
    assert leaf.subject.rfc4514_string() == f"CN={WEB}"


def test_an_identity_too_long_for_a_cn_gets_an_empty_subject_and_critical_san(pki: Pki) -> None:
    identity = identity_name("a-rather-long-service-account-name", "shop", "weft", "cluster.local")
    assert len(identity) > 64
    leaf, _ = leaf_for(pki.issuer, identity)
    assert len(leaf.subject) == 0
    assert ext(leaf, x509.SubjectAlternativeName).critical
    verify_leaf(leaf, pki.issuer.chain, [pki.anchor], identity=identity, now=NOW)


def test_a_leaf_never_outlives_its_issuer(pki: Pki) -> None:
    hour = timedelta(hours=1)
    issuer = generate_issuer(pki.anchor, pki.anchor_key, "identity.test", lifetime=hour, now=NOW)
    leaf, _ = leaf_for(issuer, WEB)
    assert not_after(leaf) == not_after(issuer.cert) == NOW + hour
    verify_leaf(leaf, issuer.chain, [pki.anchor], identity=WEB, now=NOW)


def test_an_expired_issuer_issues_nothing(pki: Pki) -> None:
    with pytest.raises(CertError, match="issuer certificate expired at"):
        leaf_for(pki.issuer, WEB, now=NOW + 366 * DAY)


def test_a_leaf_lifetime_must_be_positive(pki: Pki) -> None:
    csr = check_csr(make_csr(new_key(), WEB), WEB)
    with pytest.raises(CertError, match="lifetime must be positive"):
        issue_leaf(pki.issuer, csr, WEB, lifetime=timedelta(0), clock_skew=SKEW, now=NOW)


def test_issue_leaf_rechecks_the_csr(pki: Pki) -> None:
    csr = check_csr(make_csr(new_key(), WEB), WEB)
    with pytest.raises(CsrError, match="was requested"):
        issue_leaf(pki.issuer, csr, EMOJI, lifetime=LEAF_LIFETIME, clock_skew=SKEW, now=NOW)


# -- CSR rules -------------------------------------------------------------------------------


def tampered(der: bytes) -> bytes:
    return der[:-1] + bytes([der[-1] ^ 0x01])


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: make_csr(new_key(), EMOJI), f'CSR names "{EMOJI}" but "{WEB}" was requested'),
        (
            lambda: build_csr(new_key(), WEB, [x509.DNSName(WEB), x509.DNSName(EMOJI)]),
            "CSR must have exactly one DNS name, it has 2",
        ),
        (lambda: build_csr(new_key(), WEB, None), "CSR must have exactly one DNS name, it has 0"),
        (
            lambda: build_csr(
                new_key(),
                WEB,
                [x509.DNSName(WEB), x509.UniformResourceIdentifier("spiffe://cluster.local/x")],
            ),
            "CSR must not have email, IP or URI names",
        ),
        (
            lambda: build_csr(
                new_key(),
                WEB,
                [x509.DNSName(WEB), POD_IP],
            ),
            "CSR must not have email, IP or URI names",
        ),
        (
            lambda: build_csr(new_key(), WEB, [x509.DNSName(WEB), x509.RFC822Name("a@b.example")]),
            "CSR must not have email, IP or URI names",
        ),
        (
            lambda: build_csr(new_key(), EMOJI, [x509.DNSName(WEB)]),
            f'CSR common name "{EMOJI}" does not match "{WEB}"',
        ),
        (
            lambda: build_csr(
                rsa.generate_private_key(public_exponent=65537, key_size=2048),
                WEB,
                [x509.DNSName(WEB)],
            ),
            "CSR key must be ECDSA P-256",
        ),
        (
            lambda: build_csr(ec.generate_private_key(ec.SECP384R1()), WEB, [x509.DNSName(WEB)]),
            "CSR key must be ECDSA P-256",
        ),
        (lambda: b"not a certificate signing request", "CSR is not valid DER"),
        (lambda: b"", "CSR is not valid DER"),
        (lambda: tampered(make_csr(new_key(), WEB)), "CSR signature is invalid"),
    ],
    ids=[
        "other-identity",
        "two-dns-names",
        "no-san",
        "uri-san",
        "ip-san",
        "email-san",
        "cn-mismatch",
        "rsa-key",
        "p384-key",
        "garbage",
        "empty",
        "tampered-signature",
    ],
)
def test_bad_csrs_are_rejected_with_a_reason(make: Callable[[], bytes], reason: str) -> None:
    der = make()
    with pytest.raises(CsrError) as info:
        check_csr(der, WEB)
    assert str(info.value) == reason
    assert isinstance(info.value, CertError)


def test_a_proxys_csr_passes(pki: Pki) -> None:
    key = new_key()
    csr = check_csr(make_csr(key, WEB), WEB)
    assert csr.public_key() == key.public_key()
    assert csr.subject.rfc4514_string() == f"CN={WEB}"


# -- verify_leaf -----------------------------------------------------------------------------


def test_a_leaf_from_another_anchor_does_not_verify(pki: Pki) -> None:
    other = make_pki()  # same names, different keys
    leaf, _ = leaf_for(other.issuer, WEB)
    with pytest.raises(CertError, match="does not chain to a trust anchor"):
        verify_leaf(leaf, other.issuer.chain, [pki.anchor], identity=WEB, now=NOW)
    with pytest.raises(CertError, match="does not chain to a trust anchor"):
        verify_leaf(leaf, pki.issuer.chain, [pki.anchor], identity=None, now=NOW)
    verify_leaf(leaf, other.issuer.chain, [pki.anchor, other.anchor], identity=WEB, now=NOW)


def test_a_leaf_without_its_issuer_does_not_verify(pki: Pki) -> None:
    leaf, _ = leaf_for(pki.issuer, WEB)
    with pytest.raises(CertError, match="does not chain to a trust anchor"):
        verify_leaf(leaf, [], [pki.anchor], identity=WEB, now=NOW)


def test_an_expired_or_future_leaf_does_not_verify(pki: Pki) -> None:
    leaf, _ = leaf_for(pki.issuer, WEB)
    later = not_after(leaf) + timedelta(seconds=1)
    with pytest.raises(CertError, match=f'certificate "{WEB}" expired at'):
        verify_leaf(leaf, pki.issuer.chain, [pki.anchor], identity=WEB, now=later)
    earlier = not_before(leaf) - timedelta(seconds=1)
    with pytest.raises(CertError, match="is not valid until"):
        verify_leaf(leaf, pki.issuer.chain, [pki.anchor], identity=WEB, now=earlier)
    within_skew = NOW - timedelta(seconds=10)
    verify_leaf(leaf, pki.issuer.chain, [pki.anchor], identity=WEB, now=within_skew)


def test_a_leaf_for_another_identity_does_not_verify(pki: Pki) -> None:
    leaf, _ = leaf_for(pki.issuer, WEB)
    with pytest.raises(CertError, match=f'certificate names "{WEB}" but "{EMOJI}" was expected'):
        verify_leaf(leaf, pki.issuer.chain, [pki.anchor], identity=EMOJI, now=NOW)


def test_verify_leaf_needs_anchors(pki: Pki) -> None:
    leaf, _ = leaf_for(pki.issuer, WEB)
    with pytest.raises(CertError, match="no trust anchors"):
        verify_leaf(leaf, pki.issuer.chain, [], identity=WEB, now=NOW)


def test_a_ca_certificate_is_not_a_leaf(pki: Pki) -> None:
    with pytest.raises(CertError, match="does not chain to a trust anchor"):
        verify_leaf(pki.issuer.cert, [], [pki.anchor], identity=None, now=NOW)


# -- PEM -------------------------------------------------------------------------------------


def test_pem_round_trips(pki: Pki) -> None:
    pem = certs_to_pem([pki.issuer.cert, pki.anchor])
    assert load_certs_pem(pem, "chain") == [pki.issuer.cert, pki.anchor]
    key_pem = key_to_pem(pki.issuer.key)
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = load_key_pem(key_pem, "issuer.key")
    assert loaded.private_numbers() == pki.issuer.key.private_numbers()


def test_pem_certificate_errors_name_the_source() -> None:
    with pytest.raises(CertError, match=r"^ca.crt: no PEM certificate found$"):
        load_certs_pem(b"hello", "ca.crt")
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(CertError, match=r"^ca.crt: cannot parse certificate"):
        load_certs_pem(broken, "ca.crt")


def test_only_unencrypted_p256_keys_load() -> None:
    with pytest.raises(CertError, match=r"^issuer.key: no PEM private key found$"):
        load_key_pem(b"nothing here", "issuer.key")
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CertError, match="must be ECDSA P-256"):
        load_key_pem(rsa_pem, "issuer.key")
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(CertError, match="must be ECDSA P-256"):
        load_key_pem(p384, "issuer.key")
    encrypted = new_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(CertError, match="encrypted"):
        load_key_pem(encrypted, "issuer.key")
    garbled = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(CertError, match="cannot parse private key"):
        load_key_pem(garbled, "issuer.key")


def test_dns_names_of_a_certificate_without_a_san_is_empty(pki: Pki) -> None:
    assert dns_names(pki.anchor) == []


# -- OpenSSL agrees ------------------------------------------------------------------------


def write_pki_files(tmp_path: Path, pki: Pki, identity: str) -> tuple[Path, Path, Path]:
    leaf, key = leaf_for(pki.issuer, identity)
    tmp_path.mkdir(exist_ok=True)
    chain = tmp_path / f"{identity}.crt"
    chain.write_bytes(certs_to_pem([leaf, *pki.issuer.chain]))
    key_file = tmp_path / f"{identity}.key"
    key_file.write_bytes(key_to_pem(key))
    anchors = tmp_path / "ca.crt"
    anchors.write_bytes(certs_to_pem([pki.anchor]))
    return chain, key_file, anchors


def strict_context(purpose: int, chain: Path, key: Path, anchors: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.load_cert_chain(chain, key)
    ctx.load_verify_locations(cafile=anchors)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def pump(client: ssl.SSLObject, server: ssl.SSLObject, bios: list[ssl.MemoryBIO]) -> None:
    client_in, client_out, server_in, server_out = bios
    client_done = server_done = False
    for _ in range(20):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        client_in.write(server_out.read())
        if client_done and server_done:
            return
    raise AssertionError("TLS handshake did not finish")


def connect(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, server_hostname: str
) -> tuple[ssl.SSLObject, ssl.SSLObject, list[ssl.MemoryBIO]]:
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = client_ctx.wrap_bio(bios[0], bios[1], server_hostname=server_hostname)
    server = server_ctx.wrap_bio(bios[2], bios[3], server_side=True)
    pump(client, server, bios)
    return client, server, bios


def test_python_ssl_in_strict_mode_accepts_the_chain_for_mutual_tls(
    pki: Pki, tmp_path: Path
) -> None:
    server_chain, server_key, anchors = write_pki_files(tmp_path, pki, WEB)
    client_chain, client_key, _ = write_pki_files(tmp_path, pki, EMOJI)
    server_ctx = strict_context(ssl.PROTOCOL_TLS_SERVER, server_chain, server_key, anchors)
    client_ctx = strict_context(ssl.PROTOCOL_TLS_CLIENT, client_chain, client_key, anchors)
    assert client_ctx.check_hostname
    client, server, bios = connect(client_ctx, server_ctx, WEB)
    client.write(b"ping")
    bios[2].write(bios[1].read())
    assert server.read(4) == b"ping"
    peer = server.getpeercert()
    assert peer is not None and ("DNS", EMOJI) in peer["subjectAltName"]
    served = client.getpeercert()
    assert served is not None and ("DNS", WEB) in served["subjectAltName"]


def test_python_ssl_rejects_the_wrong_identity(pki: Pki, tmp_path: Path) -> None:
    server_chain, server_key, anchors = write_pki_files(tmp_path, pki, WEB)
    client_chain, client_key, _ = write_pki_files(tmp_path, pki, EMOJI)
    server_ctx = strict_context(ssl.PROTOCOL_TLS_SERVER, server_chain, server_key, anchors)
    client_ctx = strict_context(ssl.PROTOCOL_TLS_CLIENT, client_chain, client_key, anchors)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        connect(client_ctx, server_ctx, EMOJI)


def test_python_ssl_rejects_another_anchors_leaf(pki: Pki, tmp_path: Path) -> None:
    other = make_pki()
    server_chain, server_key, _ = write_pki_files(tmp_path / "other", other, WEB)
    client_chain, client_key, anchors = write_pki_files(tmp_path, pki, EMOJI)
    server_ctx = strict_context(ssl.PROTOCOL_TLS_SERVER, server_chain, server_key, anchors)
    client_ctx = strict_context(ssl.PROTOCOL_TLS_CLIENT, client_chain, client_key, anchors)
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(client_ctx, server_ctx, WEB)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_openssl_verify_accepts_the_chain_strictly(pki: Pki, tmp_path: Path, purpose: str) -> None:
    leaf, _ = leaf_for(pki.issuer, WEB)
    (tmp_path / "ca.crt").write_bytes(certs_to_pem([pki.anchor]))
    (tmp_path / "issuer.crt").write_bytes(certs_to_pem(pki.issuer.chain))
    (tmp_path / "leaf.crt").write_bytes(certs_to_pem([leaf]))
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "issuer.crt",
            "leaf.crt",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "leaf.crt: OK"
