"""Prometheus's answers to instant queries, as samples, and how the API rounds them (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class AnswerError(ValueError):
    """An answer that is not an instant vector; ``str()`` is one line."""


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: its labels and its value (NaN and ±Inf included)."""

    labels: dict[str, str]
    value: float


def parse_vector(answer: Any) -> list[Sample]:
    """The samples in a successful ``/api/v1/query`` answer (``resultType`` vector)."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise AnswerError("the answer is not an instant vector")
    samples = []
    for entry in data.get("result") or []:
        try:
            labels = {str(k): str(v) for k, v in entry["metric"].items()}
            samples.append(Sample(labels, float(entry["value"][1])))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise AnswerError(f"a malformed sample: {entry!r:.200}") from None
    return samples


def count(value: float) -> int:
    """A counter increase as Linkerd reports it: rounded half away from zero, NaN as 0."""
    if not math.isfinite(value) or value <= 0:
        return 0
    return math.floor(value + 0.5)


def latency(value: float) -> float | None:
    """A latency quantile in ms, rounded as Linkerd rounds it; None when Prometheus has none
    (NaN: no requests in the window; +Inf: beyond the last bucket)."""
    if not math.isfinite(value):
        return None
    return float(math.floor(value + 0.5)) if value > 0 else 0.0
