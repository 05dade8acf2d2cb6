"""Where a workload gets its certificate (kept free of heavy imports: the proxy reads it at
start even when identity is disabled)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IdentityConfig:
    """Where a workload gets its certificate, and what it is called."""

    local_name: str
    trust_anchors_pem: bytes
    token_file: str
    svc_addr: tuple[str, int]
    svc_name: str
    min_refresh: float = 10.0
    max_refresh: float = 86400.0
    certify_timeout: float = 5.0
    backoff_min: float = 0.1
    backoff_max: float = 5.0
