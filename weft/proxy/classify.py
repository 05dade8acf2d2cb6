"""Response classification as linkerd2-proxy's default classifier does it (pure functions)."""

from __future__ import annotations

SUCCESS = "success"
FAILURE = "failure"


def is_grpc(content_type: bytes | str | None) -> bool:
    """Whether a ``content-type`` value names gRPC (``application/grpc``, ``+proto`` ...)."""
    if content_type is None:
        return False
    if isinstance(content_type, bytes):
        return content_type[:16].lower() == b"application/grpc"
    return content_type[:16].lower() == "application/grpc"


def classify(status_code: int, grpc_status: int | None = None, error: str | None = None) -> str:
    """``failure`` for a stream error, a non-zero grpc-status, or (without one) an HTTP 5xx."""
    if error is not None:
        return FAILURE
    if grpc_status is not None:
        return SUCCESS if grpc_status == 0 else FAILURE
    return FAILURE if status_code >= 500 else SUCCESS
