"""Fixtures for the tests against a real Kubernetes control plane (see tests/k8s/cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.k8s.cluster import KubeCluster, skip_reason


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = skip_reason()
    if reason is None:
        return
    for item in items:
        if "k8s" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """One Kubernetes control plane for the whole session; logs are printed if a test failed."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    cluster = KubeCluster(tmp_path_factory.mktemp("kube"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
