"""The identity service's trust material (anchors, issuer, optional anchor key) on disk."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from weft.identity.certs import (
    CertError,
    Issuer,
    anchor_path,
    certs_to_pem,
    generate_anchor,
    generate_issuer,
    key_matches,
    key_to_pem,
    load_certs_pem,
    load_key_pem,
)
from weft.identity.names import anchor_name, issuer_name

ANCHORS_FILE = "ca.crt"
ANCHOR_KEY_FILE = "ca.key"
ISSUER_CERT_FILE = "issuer.crt"
ISSUER_KEY_FILE = "issuer.key"
CERT_MODE = 0o644
KEY_MODE = 0o600
DEFAULT_ANCHOR_LIFETIME = timedelta(days=3650)
DEFAULT_ISSUER_LIFETIME = timedelta(days=365)


@dataclass(frozen=True)
class TrustFiles:
    """Where the trust anchors, issuer certificate/key and (optionally) anchor key live."""

    anchors: Path
    issuer_cert: Path
    issuer_key: Path
    anchor_key: Path | None

    @classmethod
    def in_dir(cls, directory: Path) -> TrustFiles:
        """The default file names in ``directory``; the anchor key only if ``ca.key`` exists."""
        anchor_key = directory / ANCHOR_KEY_FILE
        return cls(
            anchors=directory / ANCHORS_FILE,
            issuer_cert=directory / ISSUER_CERT_FILE,
            issuer_key=directory / ISSUER_KEY_FILE,
            anchor_key=anchor_key if anchor_key.exists() else None,
        )


@dataclass
class TrustMaterial:
    """Trust anchors, the issuer signing leaves, and the anchor key if weft holds it."""

    anchors: list[x509.Certificate]
    issuer: Issuer
    anchor_key: ec.EllipticCurvePrivateKey | None

    def anchors_pem(self) -> bytes:
        """The trust anchors as concatenated PEM (the contents of ``ca.crt``)."""
        return certs_to_pem(self.anchors)


def generate_trust(
    control_namespace: str,
    trust_domain: str,
    *,
    anchor_lifetime: timedelta = DEFAULT_ANCHOR_LIFETIME,
    issuer_lifetime: timedelta = DEFAULT_ISSUER_LIFETIME,
    now: datetime,
) -> TrustMaterial:
    """A fresh trust anchor and issuer, keeping the anchor key so the issuer can be renewed."""
    anchor, anchor_key = generate_anchor(
        anchor_name(control_namespace, trust_domain), lifetime=anchor_lifetime, now=now
    )
    issuer = generate_issuer(
        anchor,
        anchor_key,
        issuer_name(control_namespace, trust_domain),
        lifetime=issuer_lifetime,
        now=now,
    )
    return TrustMaterial(anchors=[anchor], issuer=issuer, anchor_key=anchor_key)


def _anchor_for_key(
    anchors: list[x509.Certificate], key: ec.EllipticCurvePrivateKey
) -> x509.Certificate | None:
    return next((a for a in anchors if key_matches(a, key)), None)


def renew_issuer(
    material: TrustMaterial,
    control_namespace: str,
    trust_domain: str,
    *,
    lifetime: timedelta,
    now: datetime,
) -> TrustMaterial:
    """The same anchors with a new issuer (and new issuer key) signed by the anchor key."""
    if material.anchor_key is None:
        raise CertError(
            "the trust anchor's key is not available (issuer files were given); "
            "renew the issuer certificate yourself"
        )
    anchor = _anchor_for_key(material.anchors, material.anchor_key)
    if anchor is None:
        raise CertError("the anchor key matches none of the trust anchors")
    issuer = generate_issuer(
        anchor,
        material.anchor_key,
        issuer_name(control_namespace, trust_domain),
        lifetime=lifetime,
        now=now,
    )
    return TrustMaterial(
        anchors=list(material.anchors), issuer=issuer, anchor_key=material.anchor_key
    )


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_trust(material: TrustMaterial, directory: Path) -> TrustFiles:
    """Write the material under ``directory`` with the default names; keys are mode 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TrustFiles(
        anchors=directory / ANCHORS_FILE,
        issuer_cert=directory / ISSUER_CERT_FILE,
        issuer_key=directory / ISSUER_KEY_FILE,
        anchor_key=directory / ANCHOR_KEY_FILE if material.anchor_key is not None else None,
    )
    # Keys first: a reader that sees a new certificate also finds its key.
    if files.anchor_key is not None and material.anchor_key is not None:
        _write_atomically(files.anchor_key, key_to_pem(material.anchor_key), KEY_MODE)
    _write_atomically(files.issuer_key, key_to_pem(material.issuer.key), KEY_MODE)
    _write_atomically(files.anchors, material.anchors_pem(), CERT_MODE)
    _write_atomically(files.issuer_cert, certs_to_pem(material.issuer.chain), CERT_MODE)
    return files


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CertError(f"{path}: cannot read: {e.strerror or e}") from e


def read_trust(files: TrustFiles) -> TrustMaterial:
    """Load the trust files and check they fit together (keys match, issuer signed by an anchor).

    Expiry is not checked here: expired material still loads, and health checks report it.
    """
    anchors = load_certs_pem(_read(files.anchors), str(files.anchors))
    issuer_chain = load_certs_pem(_read(files.issuer_cert), str(files.issuer_cert))
    issuer_key = load_key_pem(_read(files.issuer_key), str(files.issuer_key))
    issuer_cert, *intermediates = issuer_chain
    if not key_matches(issuer_cert, issuer_key):
        raise CertError(
            f"{files.issuer_key}: key does not match the certificate in {files.issuer_cert}"
        )
    try:
        anchor_path(issuer_cert, intermediates, anchors)
    except CertError as e:
        raise CertError(f"{files.issuer_cert}: {e} in {files.anchors}") from e
    anchor_key = None
    if files.anchor_key is not None:
        anchor_key = load_key_pem(_read(files.anchor_key), str(files.anchor_key))
        if _anchor_for_key(anchors, anchor_key) is None:
            raise CertError(
                f"{files.anchor_key}: key matches none of the anchors in {files.anchors}"
            )
    issuer = Issuer(cert=issuer_cert, key=issuer_key, intermediates=tuple(intermediates))
    return TrustMaterial(anchors=anchors, issuer=issuer, anchor_key=anchor_key)
