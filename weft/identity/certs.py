"""Trust anchors, issuers and proxy leaf certificates: creating, checking and verifying them.

Everything is ECDSA P-256 with SHA-256 signatures, and every certificate carries the
extensions OpenSSL's strict mode (``VERIFY_X509_STRICT``) and WebPKI-style verifiers want:
critical basic constraints, key usage, and subject/authority key identifiers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

MAX_CN_LENGTH = 64
MAX_CHAIN_DEPTH = 8
CA_BACKDATE = timedelta(minutes=5)
_PEM_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"


class CertError(ValueError):
    """A certificate, key or CSR is unusable; the message is one human-readable line."""


class CsrError(CertError):
    """A certificate signing request breaks the identity service's rules."""


def _require_p256_key(key: ec.EllipticCurvePrivateKey) -> None:
    if not isinstance(key.curve, ec.SECP256R1):
        raise CertError(f"issuer key must be ECDSA P-256, not {key.curve.name}")


@dataclass(frozen=True)
class Issuer:
    """A CA certificate and key that sign leaves, plus any chain certs up to the anchor."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    intermediates: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        _require_p256_key(self.key)
        if not key_matches(self.cert, self.key):
            raise CertError(f"issuer key does not match certificate {_label(self.cert)}")

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """The issuer and its intermediates: what a leaf's holder presents after the leaf."""
        return (self.cert, *self.intermediates)


# -- small accessors ---------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def not_before(cert: x509.Certificate) -> datetime:
    """The start of the certificate's validity, as an aware UTC datetime."""
    return cert.not_valid_before_utc


def not_after(cert: x509.Certificate) -> datetime:
    """The end of the certificate's validity, as an aware UTC datetime."""
    return cert.not_valid_after_utc


def common_name(cert: x509.Certificate) -> str | None:
    """The subject's first common name, if it has one."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return _attr_text(attrs[0].value) if attrs else None


def dns_names(cert: x509.Certificate) -> list[str]:
    """The DNS names in the certificate's subject alternative name extension."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except ValueError as e:
        serial = f"{cert.serial_number:x}"
        raise CertError(
            f"certificate with serial {serial} has malformed extensions: {_line(e)}"
        ) from e
    return san.value.get_values_for_type(x509.DNSName)


def key_matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    """Whether ``key`` is the private half of the certificate's public key."""
    return _spki(cert.public_key()) == _spki(key.public_key())


def is_p256(key: object) -> bool:
    """Whether ``key`` is an ECDSA key on the P-256 curve (public or private)."""
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def _spki(key: object) -> bytes:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return b""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _attr_text(value: str | bytes) -> str:
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def describe(cert: x509.Certificate) -> str:
    """A short name for the certificate: its CN, else its first DNS name, else its serial."""
    cn = common_name(cert)
    if cn:
        return cn
    try:
        names = dns_names(cert)
    except CertError:
        names = []
    return names[0] if names else f"serial {cert.serial_number:x}"


def _q(text: str) -> str:
    return f'"{text}"'


def _label(cert: x509.Certificate) -> str:
    return _q(describe(cert))


def _line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; naive datetimes are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(cn: str) -> x509.Name:
    if not 1 <= len(cn) <= MAX_CN_LENGTH:
        return x509.Name([])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_id(cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except (x509.ExtensionNotFound, ValueError):
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(_ca_public_key(cert))
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _ca_public_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertError(f"certificate {_label(cert)} does not have an ECDSA key")
    return key


# -- trust anchors and issuers -------------------------------------------------------------


def _ca_builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePublicKey, start: datetime, end: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


def _check_ca_name(common_name: str) -> None:
    if not 1 <= len(common_name) <= MAX_CN_LENGTH:
        raise CertError(
            f"CA common name must be 1 to {MAX_CN_LENGTH} characters: {_q(common_name)}"
        )


def generate_anchor(
    common_name: str, *, lifetime: timedelta, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed trust anchor (root CA) and its key, valid from ``now`` for ``lifetime``."""
    _check_ca_name(common_name)
    now = as_utc(now)
    key = new_key()
    public = key.public_key()
    cert = (
        _ca_builder(common_name, _name(common_name), public, now - CA_BACKDATE, now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def generate_issuer(
    anchor_cert: x509.Certificate,
    anchor_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    lifetime: timedelta,
    now: datetime,
) -> Issuer:
    """A new issuer (intermediate CA) signed by the anchor, expiring no later than the anchor."""
    _check_ca_name(common_name)
    _require_p256_key(anchor_key)
    if not key_matches(anchor_cert, anchor_key):
        raise CertError(f"anchor key does not match certificate {_label(anchor_cert)}")
    now = as_utc(now)
    end = min(now + lifetime, not_after(anchor_cert))
    start = now - CA_BACKDATE
    if end <= start:
        raise CertError(f"trust anchor {_label(anchor_cert)} expired at {_stamp(end)}")
    key = new_key()
    cert = (
        _ca_builder(common_name, anchor_cert.subject, key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_id(anchor_cert), critical=False)
        .sign(anchor_key, hashes.SHA256())
    )
    return Issuer(cert=cert, key=key)


# -- CSRs and leaves -----------------------------------------------------------------------


def make_csr(key: ec.EllipticCurvePrivateKey, identity: str) -> bytes:
    """A DER CSR naming ``identity`` as subject CN and sole DNS name, as a proxy sends it."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(identity))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(identity)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def check_csr(csr_der: bytes, identity: str) -> x509.CertificateSigningRequest:
    """Parse a proxy's DER CSR and check it asks for exactly ``identity``; raise CsrError if not."""
    try:
        csr = x509.load_der_x509_csr(csr_der)
    except ValueError as e:
        raise CsrError("CSR is not valid DER") from e
    _check_parsed_csr(csr, identity)
    return csr


def _check_parsed_csr(csr: x509.CertificateSigningRequest, identity: str) -> None:
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CsrError(f"CSR signature cannot be checked: {_line(e)}") from e
    if not signature_ok:
        raise CsrError("CSR signature is invalid")
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CsrError(f"CSR key cannot be read: {_line(e)}") from e
    if not is_p256(key):
        raise CsrError("CSR key must be ECDSA P-256")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    except ValueError as e:
        raise CsrError(f"CSR extensions are malformed: {_line(e)}") from e
    names = san.get_values_for_type(x509.DNSName)
    if len(names) != 1:
        raise CsrError(f"CSR must have exactly one DNS name, it has {len(names)}")
    if names[0] != identity:
        raise CsrError(f"CSR names {_q(names[0])} but {_q(identity)} was requested")
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        cn = _attr_text(attr.value)
        if cn and cn != identity:
            raise CsrError(f"CSR common name {_q(cn)} does not match {_q(identity)}")
    kinds = (x509.RFC822Name, x509.IPAddress, x509.UniformResourceIdentifier)
    if any(san.get_values_for_type(kind) for kind in kinds):
        raise CsrError("CSR must not have email, IP or URI names")


def _leaf_subject(csr: x509.CertificateSigningRequest, identity: str) -> x509.Name:
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        cn = _attr_text(attr.value)
        if cn:
            return _name(cn)
    return _name(identity)


def issue_leaf(
    issuer: Issuer,
    csr: x509.CertificateSigningRequest,
    identity: str,
    *,
    lifetime: timedelta,
    clock_skew: timedelta,
    now: datetime,
) -> x509.Certificate:
    """Sign a proxy certificate for ``identity`` with the CSR's key, clamped to the issuer."""
    _check_parsed_csr(csr, identity)
    if lifetime <= timedelta(0) or clock_skew < timedelta(0):
        raise CertError("leaf lifetime must be positive and clock skew not negative")
    now = as_utc(now)
    if now < not_before(issuer.cert):
        raise CertError(f"issuer certificate is not valid until {_stamp(not_before(issuer.cert))}")
    if now >= not_after(issuer.cert):
        raise CertError(f"issuer certificate expired at {_stamp(not_after(issuer.cert))}")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):  # pragma: no cover - checked above
        raise CsrError("CSR key must be ECDSA P-256")
    subject = _leaf_subject(csr, identity)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - clock_skew)
        .not_valid_after(min(now + lifetime, not_after(issuer.cert)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        # RFC 5280 4.2.1.6: with an empty subject the SAN must be critical.
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(identity)]),
            critical=len(subject) == 0,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_key_id(issuer.cert), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


# -- verification --------------------------------------------------------------------------


def _signed_by(cert: x509.Certificate, signer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(signer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def anchor_path(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
) -> list[x509.Certificate]:
    """The signature path from ``cert`` through ``intermediates`` to an anchor; no time checks."""
    if not anchors:
        raise CertError("no trust anchors given")
    path = [cert]
    current = cert
    unused = list(intermediates)
    while len(path) <= MAX_CHAIN_DEPTH:
        if current in anchors:
            return path
        anchor = next((a for a in anchors if _signed_by(current, a)), None)
        if anchor is not None:
            return [*path, anchor]
        step = next((c for c in unused if _signed_by(current, c)), None)
        if step is None:
            break
        unused.remove(step)
        path.append(step)
        current = step
    raise CertError(f"certificate {_label(cert)} is not signed by any trust anchor")


def _check_window(cert: x509.Certificate, now: datetime, what: str) -> None:
    if now < not_before(cert):
        raise CertError(f"{what} {_label(cert)} is not valid until {_stamp(not_before(cert))}")
    if now > not_after(cert):
        raise CertError(f"{what} {_label(cert)} expired at {_stamp(not_after(cert))}")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except (x509.ExtensionNotFound, ValueError):
        return False
    return constraints.value.ca


def verify_issuer(
    issuer_cert: x509.Certificate, anchors: Sequence[x509.Certificate], *, now: datetime
) -> None:
    """Check the issuer is a CA signed by one of the anchors and valid at ``now``."""
    now = as_utc(now)
    if not _is_ca(issuer_cert):
        raise CertError(f"issuer certificate {_label(issuer_cert)} is not a CA")
    path = anchor_path(issuer_cert, (), anchors)
    _check_window(issuer_cert, now, "issuer certificate")
    _check_window(path[-1], now, "trust anchor")


def verify_leaf(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    identity: str | None,
    now: datetime,
) -> None:
    """Check a proxy certificate chains to an anchor at ``now`` (and names ``identity``)."""
    now = as_utc(now)
    if not anchors:
        raise CertError("no trust anchors given")
    _check_window(leaf, now, "certificate")
    builder = PolicyBuilder().store(Store(list(anchors))).time(now)
    try:
        builder.build_client_verifier().verify(leaf, list(intermediates))
    except VerificationError as e:
        raise CertError(
            f"certificate {_label(leaf)} does not chain to a trust anchor: {_line(e)}"
        ) from e
    if identity is None:
        return
    names = dns_names(leaf)
    if names != [identity]:
        shown = ", ".join(_q(n) for n in names) or "no DNS name"
        raise CertError(f"certificate names {shown} but {_q(identity)} was expected")
    try:
        server = builder.build_server_verifier(x509.DNSName(identity))
    except ValueError as e:
        raise CertError(f"identity {_q(identity)} is not a valid DNS name") from e
    try:
        server.verify(leaf, list(intermediates))
    except VerificationError as e:
        raise CertError(
            f"certificate {_label(leaf)} is not valid for serving {_q(identity)}: {_line(e)}"
        ) from e


# -- PEM -------------------------------------------------------------------------------------


def certs_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """Concatenated PEM encodings of ``certs``."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def load_certs_pem(data: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate in PEM ``data``; ``what`` names the source in errors."""
    if _PEM_CERT_MARKER not in data:
        raise CertError(f"{what}: no PEM certificate found")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CertError(f"{what}: cannot parse certificate: {_line(e)}") from e


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key_pem(data: bytes, what: str) -> ec.EllipticCurvePrivateKey:
    """An unencrypted ECDSA P-256 private key from PEM ``data``; ``what`` names the source."""
    if b"PRIVATE KEY-----" not in data:
        raise CertError(f"{what}: no PEM private key found")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as e:
        raise CertError(f"{what}: private key is encrypted; weft needs it unencrypted") from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CertError(f"{what}: cannot parse private key: {_line(e)}") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not is_p256(key):
        raise CertError(f"{what}: private key must be ECDSA P-256")
    return key
