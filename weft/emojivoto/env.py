"""Settings from environment variables, with one-line errors, for the four programs."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


class EnvError(Exception):
    """An environment variable with an unusable value; the message is the line to print."""


def setting(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T]) -> T:
    """``parse(env[name])``, or ``default`` if the variable is unset or empty.

    A ``ValueError`` from ``parse`` becomes an :class:`EnvError` naming the variable.
    """
    text = env.get(name, "")
    if not text:
        return default
    try:
        return parse(text)
    except ValueError as exc:
        raise EnvError(f"invalid {name}={text!r}: {exc}") from exc


def parse_port(text: str) -> int:
    """A TCP port number, 0-65535."""
    if not text.isdigit() or int(text) > 65535:
        raise ValueError("expected a port number (0-65535)")
    return int(text)


def parse_hostport(text: str) -> str:
    """``host:port`` (checked, returned unchanged)."""
    host, _, port = text.rpartition(":")
    if not host:
        raise ValueError("expected host:port")
    parse_port(port)
    return text


def parse_positive(text: str) -> float:
    """A finite number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number greater than 0") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError("expected a number greater than 0")
    return value
