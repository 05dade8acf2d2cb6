"""Shared pytest configuration: golden files, the anyio backend and the network fixtures."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from harness.mesh import Mesh, netns_skip_reason


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files under tests/golden/ instead of comparing against them",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = netns_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(node: pytest.Item) -> bool:
    return any(
        getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    """Run ``@pytest.mark.anyio`` tests on asyncio with uvloop."""
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """Whether ``--update-golden`` was given."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def golden(update_golden: bool) -> GoldenChecker:
    """Compare text with ``tests/golden/<name>`` (or rewrite it with ``--update-golden``)."""
    return GoldenChecker(Path(__file__).resolve().parent / "golden", update_golden)


class GoldenChecker:
    """Golden-file comparison."""

    def __init__(self, directory: Path, update: bool) -> None:
        self.directory = directory
        self.update = update

    def check(self, name: str, actual: str) -> None:
        """Assert ``actual`` equals the golden file ``name``."""
        path = self.directory / name
        if self.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual)
            return
        if not path.exists():
            pytest.fail(f"golden file {path} missing; run pytest with --update-golden")
        assert actual == path.read_text(), f"output differs from {path} (--update-golden)"


@pytest.fixture
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    """A fresh mesh for one test; process logs are printed if the test failed."""
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    m = Mesh(tmp_path / "mesh")
    try:
        yield m
    finally:
        if _failed(request.node):
            print(f"\n===== process logs of mesh {m.prefix} =====\n{m.logs()}")
        m.close()


@pytest.fixture(scope="module")
def module_mesh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    """A mesh shared by the tests of one module; logs are printed if any of them failed."""
    reason = netns_skip_reason()
    if reason:
        pytest.skip(reason)
    failed_before = request.session.testsfailed
    m = Mesh(tmp_path_factory.mktemp("mesh"))
    try:
        yield m
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\n===== process logs of mesh {m.prefix} =====\n{m.logs()}")
        m.close()
