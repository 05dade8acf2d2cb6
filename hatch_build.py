"""Hatchling build hook: generate Python code for the .proto files with grpcio-tools, and
compile the proxy's request path to C with mypyc.

The protos are Linkerd's proxy API (``weft/api/*.proto``) and the emojivoto demo's services
(``weft/emojivoto/*.proto``).

The generated modules (``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py``) are not committed; every
build and editable install makes them from the .proto files with the pinned grpcio-tools.

The compiled modules (``weft/proxy/native.py`` lists them) are built in place, next to their
sources, so an editable install runs them too; a build whose sources match the stamp of the last
one skips the compiler (about a minute on two cores).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# Packages under weft/ whose .proto files are compiled; imports come out as ``from weft.<dir> ...``.
PROTO_DIRS = ("api", "emojivoto")
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


class WeftBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Runs protoc (bundled with grpcio-tools) and mypyc before the package is built."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        generate_protos(root, build_data)
        if self.target_name == "wheel":  # editable installs too; an sdist ships the sources
            compile_native(root, build_data)


def generate_protos(root: Path, build_data: dict[str, Any]) -> None:
    """Write the ``_pb2`` modules next to their .proto files."""
    from grpc_tools import protoc

    protos = sorted(
        str(p.relative_to(root)) for d in PROTO_DIRS for p in (root / "weft" / d).glob("*.proto")
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


def compile_native(root: Path, build_data: dict[str, Any]) -> None:
    """Build the modules ``weft/proxy/native.py`` lists as extension modules next to their
    sources, unless the last build's stamp says they were built from these sources."""
    import mypy.version

    native = _load_native(root)
    # The sources' digest (what `import weft.proxy` checks), then what else made the libraries.
    toolchain = f"mypy {mypy.version.__version__} {sys.implementation.cache_tag}"
    expected = f"{native.source_digest(root)}\n{toolchain}\n"
    stamp = root / native.STAMP
    built = native.built_libraries(root)
    fresh = stamp.exists() and stamp.read_text() == expected
    if not (fresh and len(built) == len(native.MODULES) + 1):
        for library in built:
            library.unlink()
        stamp.unlink(missing_ok=True)
        _mypyc(root, native)
        stamp.write_text(expected)
    build_data["pure_python"] = False
    build_data["infer_tag"] = True
    build_data["artifacts"].extend(
        str(p.relative_to(root)) for p in (*native.built_libraries(root), stamp)
    )


def _load_native(root: Path) -> ModuleType:
    """``weft/proxy/native.py``, loaded by path (``weft`` is not importable while it builds)."""
    spec = importlib.util.spec_from_file_location("weft_native", root / "weft/proxy/native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mypyc(root: Path, native: ModuleType) -> None:
    """Compile with mypyc and the C compiler, writing the libraries into the source tree."""
    from mypyc.build import mypycify
    from setuptools import Distribution

    with tempfile.TemporaryDirectory(prefix="weft-mypyc-") as work:
        # Third-party packages are typed as Any here whether or not the target environment
        # has them yet (CI's mypy run checks them with their types), so every build compiles
        # the same code: no compiled class may have a base class from one of them.
        options = [
            "--config-file=",
            "--no-site-packages",
            "--ignore-missing-imports",
            "--follow-imports=silent",
            f"--cache-dir={work}/cache",
        ]
        extensions = mypycify(
            [*options, *(str(root / m) for m in native.MODULES)],
            opt_level="3",
            group_name=native.GROUP,
            target_dir=f"{work}/c",
        )
        distribution = Distribution({"name": "weft", "ext_modules": extensions})
        command = distribution.get_command_obj("build_ext")
        command.inplace = True
        command.build_temp = f"{work}/temp"
        command.parallel = 2
        command.ensure_finalized()
        command.run()
