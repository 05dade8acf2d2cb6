"""The proxy modules compiled to C with mypyc, and the check that they match their sources.

The modules on the request path are compiled by the package's own build (``hatch_build.py``,
run by ``pip install``) into extension modules next to their ``.py`` files, which Python then
imports instead of the source. A compiled module that is older than its source would run code
that is no longer in the tree, so importing ``weft.proxy`` refuses that (:func:`check_fresh`).
This module stays plain Python: the build loads it by path, before ``weft`` is importable.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# Relative to the directory that holds ``weft/``: everything a request runs through, and the
# proxy's control-plane client connection (a FrameReader, so it subclasses a compiled class).
MODULES = (
    "weft/grpc_client/h2.py",
    "weft/proxy/balance.py",
    "weft/proxy/classify.py",
    "weft/proxy/context.py",
    "weft/proxy/deadlines.py",
    "weft/proxy/destination.py",
    "weft/proxy/dispatch.py",
    "weft/proxy/downgrade.py",
    "weft/proxy/h1head.py",
    "weft/proxy/h2/connection.py",
    "weft/proxy/h2/frames.py",
    "weft/proxy/h2/heads.py",
    "weft/proxy/h2/hpack_codec.py",
    "weft/proxy/h2/pool.py",
    "weft/proxy/http1.py",
    "weft/proxy/http2.py",
    "weft/proxy/metrics.py",
    "weft/proxy/orig_proto.py",
    "weft/proxy/profiles.py",
    "weft/proxy/routing.py",
    "weft/proxy/tls_transport.py",
    "weft/proxy/upgrade.py",
)
GROUP = "weft.proxy.native"  # the shared library is weft/proxy/native__mypyc.<abi>.so
STAMP = "weft/proxy/native.stamp"  # first line: the digest of the sources they were built from


def source_digest(root: Path) -> str:
    """A digest of the compiled modules' names and sources under ``root``."""
    digest = hashlib.sha256()
    for name in MODULES:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def built_libraries(root: Path) -> list[Path]:
    """The extension modules under ``root`` in the directories of :data:`MODULES` (a build
    leaves one per module and the group's shared library, and nothing else puts any there)."""
    directories = sorted({(root / name).parent for name in MODULES})
    return [library for directory in directories for library in directory.glob("*.so")]


def check_fresh(root: Path) -> None:
    """Raise ImportError if compiled modules under ``root`` were built from other sources."""
    if not built_libraries(root):
        return  # a plain-Python tree: nothing can be stale
    stamp = root / STAMP
    built = stamp.read_text().split("\n", 1)[0] if stamp.exists() else "(no stamp)"
    if built != source_digest(root):
        raise ImportError(
            "weft's compiled proxy modules are older than their sources: "
            f"run `pip install -e .` (or scripts/setup) in {root} to rebuild them"
        )
