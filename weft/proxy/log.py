"""Structured logging configured by a ``LINKERD2_PROXY_LOG``-style filter."""

from __future__ import annotations

import json
import logging
import sys
import time

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}
# Targets in a Linkerd filter that mean "the proxy itself".
_PROXY_TARGETS = ("weft", "linkerd", "linkerd2_proxy")


class LogFilterError(ValueError):
    """A log filter that cannot be parsed."""


def parse_filter(text: str) -> tuple[int, dict[str, int]]:
    """Parse ``warn,linkerd=info,weft.proxy.http1=debug`` into a default and per-target levels."""
    default = logging.WARNING
    targets: dict[str, int] = {}
    for directive in text.split(","):
        directive = directive.strip()
        if not directive:
            continue
        target, sep, level = directive.rpartition("=")
        level_num = _LEVELS.get(level.strip().lower())
        if level_num is None or (sep and not target.strip()):
            raise LogFilterError(f"invalid log directive {directive!r}")
        if sep:
            targets[target.strip()] = level_num
        else:
            default = level_num
    return default, targets


class _Formatter(logging.Formatter):
    """One line per event: plain ``ts LEVEL target: message`` or a JSON object."""

    def __init__(self, json_format: bool) -> None:
        super().__init__()
        self.json_format = json_format

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ts = f"{ts}.{int(record.msecs):03d}Z"
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if self.json_format:
            return json.dumps(
                {
                    "timestamp": ts,
                    "level": record.levelname,
                    "target": record.name,
                    "message": message,
                }
            )
        return f"{ts} {record.levelname:>5} {record.name}: {message}"


class LogControl:
    """Applies a filter to Python's loggers and remembers it for ``/proxy-log-level``."""

    def __init__(self, text: str, json_format: bool = False) -> None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter(json_format))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        self.current = ""
        self._touched: list[str] = []
        self.set(text)

    def set(self, text: str) -> None:
        """Apply ``text``; raises :class:`LogFilterError` and changes nothing when invalid."""
        default, targets = parse_filter(text)
        for name in self._touched:
            logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger().setLevel(default)
        self._touched = []
        for target, level in targets.items():
            names = ("weft",) if target in _PROXY_TARGETS else (target,)
            for name in names:
                logging.getLogger(name).setLevel(level)
                self._touched.append(name)
        self.current = text
