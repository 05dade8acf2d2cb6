"""CPU time and resident memory of process trees, read from ``/proc``."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (an nginx master and its worker, say)."""
    pids = [pid]
    for parent in pids:  # grows while iterating: breadth-first
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                children = Path(f"/proc/{parent}/task/{task}/children").read_text()
                pids.extend(int(child) for child in children.split())
        except OSError:
            continue  # exited meanwhile
    return pids


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by the tree rooted at ``pid``."""
    ticks = 0
    for member in process_tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # fields[0] is field 3 (state)
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / _CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS summed over the tree rooted at ``pid``), in MiB."""
    kib = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                kib += int(line.split()[1])
    return kib / 1024


@dataclass
class Usage:
    """What one process tree used during a measurement."""

    cpu_s: float = 0.0
    max_rss_mb: float = 0.0


@contextmanager
def monitor(pids: Mapping[str, int], interval: float = 0.1) -> Iterator[dict[str, Usage]]:
    """Measure CPU time and peak RSS of each named tree over the ``with`` block."""
    usage = {name: Usage() for name in pids}
    start = {name: cpu_seconds(pid) for name, pid in pids.items()}
    done = threading.Event()

    def sample() -> None:
        while True:
            for name, pid in pids.items():
                usage[name].max_rss_mb = max(usage[name].max_rss_mb, rss_mb(pid))
            if done.wait(interval):
                return

    sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    sampler.start()
    try:
        yield usage
    finally:
        done.set()
        sampler.join()
        for name, pid in pids.items():
            usage[name].cpu_s = cpu_seconds(pid) - start[name]
