"""The certificate authority behind ``Identity/Certify``: the trust material, the leaves it
signs, renewal of a generated issuer before it expires, and warnings about expiring anchors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from weft.identity import certs, health, trust

log = logging.getLogger("weft.controller.identity")

# A generated issuer is renewed once this share of its lifetime has passed.
RENEW_AT = 2 / 3
ANCHOR_WARNING = timedelta(days=60)


@dataclass(frozen=True)
class AuthorityConfig:
    """Names and lifetimes of what the authority issues."""

    control_namespace: str = "weft"
    trust_domain: str = "cluster.local"
    leaf_lifetime: timedelta = timedelta(hours=24)
    clock_skew: timedelta = timedelta(seconds=20)
    issuer_lifetime: timedelta = timedelta(days=365)


class Authority:
    """Signs leaves with the current issuer; renews the issuer when it holds the anchor key.

    ``directory`` holds generated material (``ca.crt``, ``ca.key``, ``issuer.crt``,
    ``issuer.key``) and receives renewed issuers, so restarts keep the same trust.
    """

    def __init__(
        self,
        material: trust.TrustMaterial,
        config: AuthorityConfig,
        directory: Path | None = None,
    ) -> None:
        self.material = material
        self.config = config
        self.directory = directory

    @classmethod
    def from_files(cls, files: trust.TrustFiles, config: AuthorityConfig) -> Authority:
        """Material given by the user (no anchor key: the issuer is theirs to renew)."""
        return cls(trust.read_trust(files), config)

    @classmethod
    def in_directory(cls, directory: Path, config: AuthorityConfig, now: datetime) -> Authority:
        """Material kept in ``directory``, generated there first if it holds none."""
        files = trust.TrustFiles.in_dir(directory)
        if files.anchors.exists():
            material = trust.read_trust(files)
        else:
            material = trust.generate_trust(
                config.control_namespace,
                config.trust_domain,
                issuer_lifetime=config.issuer_lifetime,
                now=now,
            )
            directory.mkdir(parents=True, exist_ok=True)
            trust.write_trust(material, directory)
            log.info("generated a trust anchor and issuer in %s", directory)
        return cls(material, config, directory)

    @property
    def issuer(self) -> certs.Issuer:
        """The issuer signing leaves now."""
        return self.material.issuer

    def certify(
        self, csr: x509.CertificateSigningRequest, identity: str, now: datetime
    ) -> x509.Certificate:
        """A leaf for ``identity`` (the CSR already checked to name exactly it)."""
        return certs.issue_leaf(
            self.issuer,
            csr,
            identity,
            lifetime=self.config.leaf_lifetime,
            clock_skew=self.config.clock_skew,
            now=now,
        )

    def renewal_due(self, now: datetime) -> datetime | None:
        """When the issuer should be renewed, or None if this authority cannot renew it.

        A renewed issuer cannot outlive the anchor, so once the issuer already expires with
        the anchor there is nothing to renew (the anchor's own expiry is warned about).
        """
        anchor_key = self.material.anchor_key
        if anchor_key is None:
            return None
        cert = self.issuer.cert
        # CA certificates are back-dated for clock differences: count from when it was issued.
        start = certs.not_before(cert) + certs.CA_BACKDATE
        end = certs.not_after(cert)
        anchor_ends = [
            certs.not_after(a) for a in self.material.anchors if certs.key_matches(a, anchor_key)
        ]
        if not anchor_ends or max(anchor_ends) <= end:
            return None
        return start + (end - start) * RENEW_AT

    def maybe_renew(self, now: datetime) -> bool:
        """Renew the issuer if it is due (persisting it); True when it was renewed."""
        due = self.renewal_due(now)
        if due is None or now < due:
            return False
        renewed = trust.renew_issuer(
            self.material,
            self.config.control_namespace,
            self.config.trust_domain,
            lifetime=self.config.issuer_lifetime,
            now=now,
        )
        if self.directory is not None:
            trust.write_trust(renewed, self.directory)
        self.material = renewed
        log.info(
            "renewed the identity issuer; the new one is valid until %s",
            certs.not_after(renewed.issuer.cert).isoformat(timespec="seconds"),
        )
        return True

    def warnings(self, now: datetime) -> list[str]:
        """One line per anchor or issuer problem worth shouting about (expiry ahead)."""
        lines = []
        for finding in health.check_trust(
            self.material.anchors, self.issuer.cert, now=now, min_validity=ANCHOR_WARNING
        ):
            if not finding.ok or finding.warning:
                lines.append(f"{finding.name}: {finding.detail}")
        if self.material.anchor_key is not None:
            # A generated issuer renews itself; its remaining days are not a problem.
            lines = [line for line in lines if not line.startswith("issuer cert is valid for")]
        return lines
