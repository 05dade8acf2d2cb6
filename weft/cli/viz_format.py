"""What the output of ``weft stat/routes/edges/top`` shares (pure): time windows, Linkerd's
number formats and aligned columns.

Columns are laid out as Linkerd's tables are: at least three spaces between columns, names
left-aligned and figures right-aligned, no trailing blanks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

LEFT = "<"
RIGHT = ">"
GAP = 3
NO_VALUE = "-"

# A Prometheus duration: units from years down to milliseconds, each at most once, in order.
_WINDOW = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNIT_SECONDS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)


class InputError(ValueError):
    """An option the user gave cannot be used; ``str()`` is one line."""


class AnswerError(ValueError):
    """An API answer does not have the shape the design specifies; ``str()`` is one line."""


def window_seconds(window: str) -> float:
    """Seconds in a Prometheus duration (``10s``, ``1m``, ``1h30m``); raises :class:`InputError`."""
    match = _WINDOW.match(window)
    if not window or match is None:
        raise InputError(f'invalid time window "{window}": use a duration such as 10s, 1m or 1h')
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNIT_SECONDS, strict=True) if n)
    if seconds <= 0:
        raise InputError(f'invalid time window "{window}": it must be longer than zero')
    return seconds


def success_rate(successes: int, failures: int) -> float | None:
    """successes / requests, or None without requests."""
    total = successes + failures
    return successes / total if total else None


def percent(rate: float | None) -> str:
    """``99.50%`` (Linkerd's ``%.2f%%``), or ``-``."""
    return NO_VALUE if rate is None else f"{rate * 100:.2f}%"


def per_second(rate: float) -> str:
    """``1.5rps``."""
    return f"{rate:.1f}rps"


def millis(latency: float | None) -> str:
    """``12ms`` (whole milliseconds, as Linkerd's integer latencies), or ``-``."""
    return NO_VALUE if latency is None else f"{int(latency)}ms"


def bytes_per_second(rate: float) -> str:
    """``120.5B/s``."""
    return f"{rate:.1f}B/s"


def whole_ms(latency: float | None) -> int | None:
    """A latency as Linkerd's JSON gives it: whole milliseconds, or None."""
    return None if latency is None else int(latency)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str]) -> list[str]:
    """Lines of aligned columns; ``align`` holds :data:`LEFT` or :data:`RIGHT` per column."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.ljust(width) if side == LEFT else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        lines.append((" " * GAP).join(cells).rstrip())
    return lines


# -- reading the metrics API's JSON (protobuf's JSON mapping: 64-bit integers may be strings,
# -- zero values may be left out) ---------------------------------------------------------


def count(data: dict[str, Any], key: str) -> int:
    """An integer field; absent means zero. Raises :class:`AnswerError`."""
    value = data.get(key) or 0
    try:
        return round(float(value))
    except (TypeError, ValueError):
        raise AnswerError(f"{key} is not a number: {value!r}") from None


def optional_float(data: dict[str, Any], key: str) -> float | None:
    """A number field that may be null or absent (a NaN quantile). Raises :class:`AnswerError`."""
    value = data.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnswerError(f"{key} is not a number: {value!r}") from None
    return None if math.isnan(number) else number


def obj(data: Any, what: str) -> dict[str, Any]:
    """``data`` if it is an object; raises :class:`AnswerError` naming ``what``."""
    if not isinstance(data, dict):
        raise AnswerError(f"{what} is not an object")
    return data


def objects(data: Any, what: str) -> list[dict[str, Any]]:
    """``data`` if it is a list of objects (absent: empty); raises :class:`AnswerError`."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise AnswerError(f"{what} is not a list")
    return [obj(item, what) for item in data]


def text(data: dict[str, Any], key: str) -> str:
    """A string field; absent means empty."""
    value = data.get(key) or ""
    if not isinstance(value, str):
        raise AnswerError(f"{key} is not a string: {value!r}")
    return value
