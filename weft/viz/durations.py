"""Prometheus durations (``10s``, ``1m``, ``1h30m``): the metrics API's time windows and the
durations in prometheus.yml and Prometheus's flags (pure)."""

from __future__ import annotations

import re

# Prometheus's duration syntax (prometheus/common model.ParseDuration): units largest first,
# each at most once, integers only.
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


class DurationError(ValueError):
    """Text that is not a positive Prometheus duration; ``str()`` is one line."""


def parse_duration(text: str, what: str = "duration") -> float:
    """The seconds in a positive Prometheus duration such as ``10s``, ``1m`` or ``1h30m``."""
    match = _DURATION.match(text)
    if not text or match is None:
        raise DurationError(f'{what} "{text}" is not a Prometheus duration (e.g. 10s, 1m, 1h30m)')
    seconds = sum(
        int(amount) * unit
        for amount, unit in zip(match.groups(), _UNIT_SECONDS, strict=True)
        if amount
    )
    if seconds <= 0:
        raise DurationError(f'{what} "{text}" must be longer than zero')
    return seconds
