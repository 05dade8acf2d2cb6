"""Text that goes into PromQL and Prometheus regexes, escaped (pure)."""

from __future__ import annotations

import re

# RE2's metacharacters (Go's regexp.QuoteMeta escapes exactly these).
_META = re.compile(r"([\\.+*?()|\[\]{}^$])")
# What a double-quoted PromQL string cannot hold as it is.
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote_meta(text: str) -> str:
    """``text`` as an RE2 pattern matching exactly it: ``web.x`` → ``web\\.x``."""
    return _META.sub(r"\\\1", text)


def string_literal(value: str) -> str:
    """``value`` as a double-quoted PromQL string: quotes, backslashes and control
    characters escaped."""
    out = []
    for char in value:
        escaped = _STRING_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
