"""voting-svc's logic, free of I/O: the tally, when a vote fails, and its settings' formats."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

from weft.emojivoto.emoji import DOUGHNUT


class Tally:
    """Votes per shortcode, in memory."""

    def __init__(self) -> None:
        self._votes: Counter[str] = Counter()

    def vote(self, shortcode: str) -> None:
        """Count one vote for ``shortcode``."""
        self._votes[shortcode] += 1

    def results(self) -> list[tuple[str, int]]:
        """``(shortcode, votes)`` for every emoji voted for: most votes first, ties by shortcode."""
        return sorted(self._votes.items(), key=lambda item: (-item[1], item[0]))


def should_fail(shortcode: str, failure_rate: float, random: Callable[[], float]) -> bool:
    """Whether this vote fails: only doughnut votes do, with probability ``failure_rate``.

    ``random`` returns numbers in [0, 1), like :func:`random.random`; at rate 1 every doughnut
    vote fails, at rate 0 none does.
    """
    return shortcode == DOUGHNUT and random() < failure_rate


def parse_failure_rate(text: str) -> float:
    """``FAILURE_RATE``: a probability, 0.0 to 1.0."""
    try:
        rate = float(text)
    except ValueError:
        raise ValueError("expected a number from 0.0 to 1.0") from None
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise ValueError("expected a number from 0.0 to 1.0")
    return rate


# Go's time.ParseDuration units, in seconds ("µ" is U+00B5, "μ" U+03BC; Go takes both).
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_UNIT = "|".join(sorted(_UNITS, key=len, reverse=True))
_PART = rf"(\d+(?:\.\d*)?|\.\d+)({_UNIT})"
_DURATION = re.compile(rf"(?:{_PART})+")


def parse_duration(text: str) -> float:
    """A Go duration (``500ms``, ``1.5s``, ``1m30s``, ``0``) in seconds; no sign allowed."""
    if text == "0":
        return 0.0
    if not _DURATION.fullmatch(text):
        raise ValueError("expected a duration like 500ms, 1.5s or 1m30s")
    return sum(float(number) * _UNITS[unit] for number, unit in re.findall(_PART, text))
