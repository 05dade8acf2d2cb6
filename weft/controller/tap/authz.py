"""Who may tap (pure): a bearer token the platform reviews, and a list of allowed users.

Tapping shows request paths and, with ``extract``, headers, so like Linkerd's tap API it needs an
authorized caller. The platform says who a token belongs to (TokenReview); the controller allows
the users it was given (by default the local cluster's admin and the dashboard's service account).
"""

from __future__ import annotations

from collections.abc import Collection

DEFAULT_AUTHORIZED = ("weft:admin", "system:serviceaccount:weft:weft-web")


class Unauthorized(Exception):
    """The caller may not tap; ``status`` is 401 (who are you?) or 403 (not you)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; raises :class:`Unauthorized`."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(401, "tap needs an Authorization: Bearer <token> header")
    return token.strip()


def check_user(username: str, allowed: Collection[str]) -> None:
    """Raise :class:`Unauthorized` (403) unless ``username`` may tap."""
    if username not in allowed:
        raise Unauthorized(403, f"{username} is not authorized to tap")


def parse_users(text: str) -> tuple[str, ...]:
    """``--authorized-users`` (comma-separated) as a tuple, blanks dropped."""
    return tuple(u.strip() for u in text.split(",") if u.strip())
