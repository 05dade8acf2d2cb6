"""Hatchling build hook: generate Python code for the .proto files with grpcio-tools.

The protos are Linkerd's proxy API (``weft/api/*.proto``) and the emojivoto demo's services
(``weft/emojivoto/*.proto``).

The generated modules (``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py``) are not committed; every
build and editable install makes them from the .proto files with the pinned grpcio-tools.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# Packages under weft/ whose .proto files are compiled; imports come out as ``from weft.<dir> ...``.
PROTO_DIRS = ("api", "emojivoto")
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


class ProtoBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Runs protoc (bundled with grpcio-tools) before the package is built."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        from grpc_tools import protoc

        root = Path(self.root)
        protos = sorted(
            str(p.relative_to(root))
            for d in PROTO_DIRS
            for p in (root / "weft" / d).glob("*.proto")
        )
        include = importlib.resources.files("grpc_tools") / "_proto"
        args = [
            "protoc",
            f"-I{root}",
            f"-I{include}",
            f"--python_out={root}",
            f"--pyi_out={root}",
            f"--grpc_python_out={root}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {', '.join(protos)}")
        build_data["artifacts"].extend(f"/weft/{d}/*{g}" for d in PROTO_DIRS for g in GENERATED)
