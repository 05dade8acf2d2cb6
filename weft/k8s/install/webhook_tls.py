"""Serving certificates for the admission webhooks and the ``caBundle`` the API server trusts
them with (pure, given the clock).

Each webhook gets its own CA (whose key is thrown away once the leaf is signed) and a leaf for
``<service>.<namespace>.svc``, the name the API server verifies when it calls the Service.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from weft.identity.certs import CertError, certs_to_pem, key_to_pem, load_certs_pem, new_key

LIFETIME = timedelta(days=365)
BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True)
class WebhookTls:
    """A webhook's serving certificate, key and CA, as PEM."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes

    def ca_bundle(self) -> str:
        """The base64 ``caBundle`` of a webhook configuration."""
        return base64.b64encode(self.ca_pem).decode()


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may verify for a Service-based webhook."""
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def generate(service: str, namespace: str, now: datetime) -> WebhookTls:
    """A new CA and a serving leaf for ``service`` in ``namespace``."""
    ca_key = new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{service}.{namespace}.ca")])
    start, end = now - BACKDATE, now + LIFETIME
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = new_key()
    names = service_dns_names(service, namespace)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return WebhookTls(certs_to_pem([leaf]), key_to_pem(key), certs_to_pem([ca]))


def check_serving(
    cert_pem: bytes, ca_bundle: str, service: str, namespace: str, now: datetime
) -> str | None:
    """Why ``cert_pem`` would not be accepted by an API server trusting ``ca_bundle`` for the
    Service, or None if it would."""
    try:
        leaf = load_certs_pem(cert_pem, "the webhook's certificate")[0]
        cas = load_certs_pem(base64.b64decode(ca_bundle or ""), "the caBundle")
    except (CertError, ValueError) as exc:
        return str(exc)
    if now < leaf.not_valid_before_utc or now > leaf.not_valid_after_utc:
        return f"the certificate is not valid now (valid until {leaf.not_valid_after_utc:%F})"
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    wanted = service_dns_names(service, namespace)[0]
    if wanted not in dns:
        return f"the certificate does not name {wanted} (it names {', '.join(dns) or 'nothing'})"
    for ca in cas:
        if ca.subject != leaf.issuer:
            continue
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return None
    return "the caBundle does not hold the CA that signed the webhook's certificate"
