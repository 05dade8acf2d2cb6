"""The proxy's compiled modules: built by the install, and refused when older than their sources."""

from __future__ import annotations

import importlib
import shutil
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
