"""The proxy's compiled modules: built by the install, and refused when older than their sources."""

from __future__ import annotations

import ast
import builtins
import importlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from weft.proxy import native

ROOT = Path(__file__).resolve().parents[2]


def test_the_request_path_runs_compiled() -> None:
    """The test command installs weft, which compiles every listed module; the tests (and the
    proxies they start) then run the compiled code, not the source."""
    for path in native.MODULES:
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert module.__file__ is not None and module.__file__.endswith(".so"), path


def _tree(tmp_path: Path) -> Path:
    """A copy of the listed sources, with a stand-in library and the stamp of a build."""
    for name in native.MODULES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "weft/proxy/http1.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    (tmp_path / native.STAMP).write_text(native.source_digest(tmp_path) + "\nmypy 0 cpython-311\n")
    return tmp_path


def test_a_build_from_these_sources_is_accepted(tmp_path: Path) -> None:
    native.check_fresh(_tree(tmp_path))


def test_an_edited_source_refuses_the_old_build(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    source = root / "weft/proxy/dispatch.py"
    source.write_text(source.read_text() + "\n# edited\n")
    with pytest.raises(ImportError, match=r"older than their sources: run `pip install -e \.`"):
        native.check_fresh(root)


def test_libraries_without_a_stamp_are_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / native.STAMP).unlink()
    with pytest.raises(ImportError, match="older than their sources"):
        native.check_fresh(root)


def test_a_tree_without_libraries_runs_its_sources(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    for library in native.built_libraries(root):
        library.unlink()
    (root / "weft/proxy/dispatch.py").write_text("# anything\n")
    native.check_fresh(root)


def _base_roots(tree: ast.Module) -> Iterator[tuple[str, str, int]]:
    """(class, the module or name its base's first part comes from, line) for every base."""
    origins: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            origins.update({a.asname or a.name: node.module for a in node.names})
        elif isinstance(node, ast.Import):
            origins.update({a.asname or a.name: a.name for a in node.names})
        elif isinstance(node, ast.ClassDef):
            origins[node.name] = "weft"
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                first = ast.unparse(base).split("[")[0].split(".")[0]
                yield node.name, origins.get(first, first), node.lineno


def test_compiled_classes_have_no_third_party_base() -> None:
    """The build types third-party packages as Any (they may not be installed yet when weft
    is), and a compiled class on an Any base is broken at run time, so bases come only from
    weft, the standard library or builtins."""
    wrong = []
    for path in native.MODULES:
        for cls, origin, line in _base_roots(ast.parse((ROOT / path).read_text())):
            package = origin.split(".")[0]
            allowed = package == "weft" or package in sys.stdlib_module_names
            if not (allowed or hasattr(builtins, origin)):
                wrong.append(f"{path}:{line} {cls} ({origin})")
    assert not wrong
