"""weft's proxy: the data plane each meshed pod runs (see docs/architecture.md)."""

from pathlib import Path

from weft.proxy.native import check_fresh

check_fresh(Path(__file__).resolve().parents[2])
