"""The Prometheus server's command line and environment (pure), for whichever runtime starts it.

Flags are those of Prometheus 2.42 (Debian's ``/usr/bin/prometheus``): retention is bounded by
time (6 h, like Linkerd's) and by size, a query may load a bounded number of samples, and
``GOMEMLIMIT`` makes the Go runtime collect before the container's memory runs out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from weft.viz.durations import parse_duration

PROMETHEUS_BINARY = "/usr/bin/prometheus"

# --storage.tsdb.retention.size: a unit is required (powers of two).
_SIZE = re.compile(r"^[0-9]+(B|KB|MB|GB|TB|PB|EB)$")
# GOMEMLIMIT: bytes, optionally with a binary unit.
_MEMORY = re.compile(r"^[0-9]+(B|KiB|MiB|GiB|TiB)?$")


class LaunchError(ValueError):
    """A value Prometheus would refuse at start; ``str()`` is one line."""


@dataclass(frozen=True)
class PrometheusLaunch:
    """Where Prometheus keeps its files and how far it may grow."""

    config_file: Path
    data_dir: Path
    listen: str = "0.0.0.0:9090"
    retention_time: str = "6h"
    retention_size: str = "512MB"
    # At ~16 bytes a sample, 5 M samples keep one query's memory near 80 MB.
    max_samples: int = 5_000_000
    memory_limit: str = "256MiB"
    binary: str = PROMETHEUS_BINARY

    def check(self) -> None:
        """Raise :class:`LaunchError` for a value Prometheus would refuse."""
        try:
            parse_duration(self.retention_time, "retention time")
        except ValueError as exc:
            raise LaunchError(str(exc)) from None
        if not _SIZE.match(self.retention_size):
            raise LaunchError(
                f'retention size "{self.retention_size}": expected a number and a unit, e.g. 512MB'
            )
        if not _MEMORY.match(self.memory_limit):
            raise LaunchError(f'memory limit "{self.memory_limit}": expected bytes or e.g. 256MiB')
        if self.max_samples <= 0:
            raise LaunchError(f"max samples must be positive, got {self.max_samples}")
        _, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
            raise LaunchError(f'listen address "{self.listen}": expected host:port')

    def command(self) -> list[str]:
        """The command line."""
        self.check()
        return [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--storage.tsdb.retention.time={self.retention_time}",
            f"--storage.tsdb.retention.size={self.retention_size}",
            f"--web.listen-address={self.listen}",
            f"--query.max-samples={self.max_samples}",
        ]

    def env(self) -> dict[str, str]:
        """The environment variables to add to the container's."""
        self.check()
        return {"GOMEMLIMIT": self.memory_limit}
