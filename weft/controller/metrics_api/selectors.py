"""Kubernetes label selectors (``app=web,tier!=db,env in (a,b),!canary``), parsed and matched
(pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_KEY = r"[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?"
_EXISTS = re.compile(rf"^(?P<neg>!?)\s*(?P<key>{_KEY})$")
_EQUALITY = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})$")
_SET = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


class SelectorError(ValueError):
    """A label selector that cannot be parsed; ``str()`` is one line."""


@dataclass(frozen=True)
class Requirement:
    """One requirement: ``op`` is ``=`` (value in ``values``), ``!=`` (absent or not in
    ``values``), ``exists`` or ``!`` (absent); ``in``/``notin`` parse to ``=``/``!=``."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with ``labels`` meets the requirement."""
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "=":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


Selector = tuple[Requirement, ...]


def parse_selector(text: str) -> Selector:
    """The requirements of ``text`` (empty text selects everything)."""
    if not text.strip():
        return ()
    return tuple(_requirement(part.strip(), text) for part in _split(text))


def matches(selector: Selector, labels: Mapping[str, str] | None) -> bool:
    """Whether ``labels`` meet every requirement of ``selector``."""
    found = labels or {}
    return all(requirement.matches(found) for requirement in selector)


def _split(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _requirement(part: str, text: str) -> Requirement:
    if match := _EQUALITY.match(part):
        op = "!=" if match["op"] == "!=" else "="
        return Requirement(match["key"], op, frozenset([match["value"]]))
    if match := _SET.match(part):
        values = [v.strip() for v in match["values"].split(",")]
        if all(_VALUE_ONLY.match(v) for v in values):
            op = "=" if match["op"] == "in" else "!="
            return Requirement(match["key"], op, frozenset(values))
    elif match := _EXISTS.match(part):
        return Requirement(match["key"], "!" if match["neg"] else "exists")
    raise SelectorError(f'invalid label selector "{text}": cannot parse "{part}"')
