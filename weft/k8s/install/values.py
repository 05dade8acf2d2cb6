"""What ``weft install`` is configured with; recorded in the ``weft-config`` ConfigMap so that
``weft upgrade`` renders the same control plane again (pure)."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from weft.inject.config import installed_version
from weft.resources.profiles import parse_quantity

HA_REPLICAS = 3
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ValuesError(ValueError):
    """An install value that cannot be used."""


@dataclass(frozen=True)
class InstallValues:
    """The control plane's settings; every field is a flag of ``weft install``."""

    namespace: str = "weft"
    trust_domain: str = "cluster.local"
    cluster_domain: str = "cluster.local"
    image: str = "weft"
    version: str = field(default_factory=installed_version)
    image_pull_policy: str = "IfNotPresent"
    controller_replicas: int = 1
    ha: bool = False
    controller_log_level: str = "info"
    identity_issuance_lifetime: str = "24h"
    identity_clock_skew_allowance: str = "20s"
    webhook_failure_policy: str = "Ignore"
    proxy_uid: int = 2102
    proxy_gid: int = 2102
    proxy_log_level: str = "warn,weft=info"
    inbound_port: int = 4143
    outbound_port: int = 4140
    admin_port: int = 4191
    control_port: int = 4190
    proxy_cpu_request: str = ""
    proxy_cpu_limit: str = ""
    proxy_memory_request: str = ""
    proxy_memory_limit: str = ""
    prometheus_image: str = "prom/prometheus:v2.53.0"
    prometheus_scrape_interval: str = "10s"
    prometheus_retention: str = "6h"
    # Who may tap (token review user names); "" means the dashboard's service account.
    tap_authorized_users: str = ""

    @property
    def replicas(self) -> int:
        """Replicas of each control-plane Deployment (``--ha`` raises the default to 3)."""
        return max(self.controller_replicas, HA_REPLICAS) if self.ha else self.controller_replicas

    @property
    def image_ref(self) -> str:
        """``image:version``."""
        return f"{self.image}:{self.version}"

    def proxy_resources(self) -> dict[str, dict[str, str]]:
        """The proxy container's ``resources`` (empty when no flag set any)."""
        out: dict[str, dict[str, str]] = {}
        for bound, cpu, memory in (
            ("requests", self.proxy_cpu_request, self.proxy_memory_request),
            ("limits", self.proxy_cpu_limit, self.proxy_memory_limit),
        ):
            section = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
            if section:
                out[bound] = section
        return out

    def check(self) -> InstallValues:
        """``self`` if every value is usable; else :class:`ValuesError` naming the first bad one."""
        if not _NAME.match(self.namespace) or len(self.namespace) > 63:
            raise ValuesError(f"namespace {self.namespace!r} is not a DNS-1123 label")
        for name in ("trust_domain", "cluster_domain"):
            value = getattr(self, name)
            if not _DOMAIN.match(value) or len(value) > 253:
                raise ValuesError(f"{name.replace('_', '-')} {value!r} is not a DNS name")
        if self.controller_replicas < 1:
            raise ValuesError("controller-replicas must be at least 1")
        if self.image_pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise ValuesError(
                f"image-pull-policy {self.image_pull_policy!r}: expected Always, IfNotPresent "
                "or Never"
            )
        if self.webhook_failure_policy not in ("Ignore", "Fail"):
            raise ValuesError(
                f"webhook-failure-policy {self.webhook_failure_policy!r}: expected Ignore or Fail"
            )
        ports = (self.inbound_port, self.outbound_port, self.admin_port, self.control_port)
        if any(not 1 <= p <= 65535 for p in ports) or len(set(ports)) != 4:
            raise ValuesError(f"proxy ports must be distinct numbers 1-65535, got {ports}")
        for kind in ("cpu", "memory"):
            request = getattr(self, f"proxy_{kind}_request")
            limit = getattr(self, f"proxy_{kind}_limit")
            amounts = []
            for what, text in (("request", request), ("limit", limit)):
                if not text:
                    continue
                try:
                    amounts.append(parse_quantity(text))
                except ValueError:
                    raise ValuesError(f"proxy-{kind}-{what} {text!r} is not a quantity") from None
            if len(amounts) == 2 and amounts[1] < amounts[0]:
                raise ValuesError(
                    f"proxy-{kind}-limit {limit} must not be less than proxy-{kind}-request "
                    f"{request}"
                )
        return self

    def to_json(self) -> str:
        """The values as JSON (the ``values`` key of the ``weft-config`` ConfigMap)."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> InstallValues:
        """Values recorded by :meth:`to_json`; unknown keys (from another version) are ignored."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValuesError(f"recorded install values are not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValuesError("recorded install values are not a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        kept: dict[str, Any] = {k: v for k, v in data.items() if k in known}
        return cls(**kept)

    def replace(self, **changes: Any) -> InstallValues:
        """A copy with ``changes`` (only those not None)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
