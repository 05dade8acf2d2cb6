"""Options of the commands that talk to a Kubernetes cluster, and their client."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from weft.k8s.client import KubeClient, default_kubeconfig

F = TypeVar("F", bound=Callable[..., None])


def kube_options(func: F) -> F:
    """``--kubeconfig`` (default ``$KUBECONFIG``, else ``~/.kube/config``) and ``--context``."""
    func = click.option("--context", default=None, help="The kubeconfig context to use.")(func)
    return click.option(
        "--kubeconfig",
        default=None,
        help="Path to the kubeconfig file [default: $KUBECONFIG, else ~/.kube/config, else the "
        "in-cluster service account].",
    )(func)


def namespace_option(func: F) -> F:
    """``-L/--namespace``: the control plane's namespace."""
    return click.option(
        "-L",
        "--namespace",
        default="weft",
        show_default=True,
        help="The namespace of the control plane.",
    )(func)


async def connect(kubeconfig: str | None, context: str | None) -> KubeClient:
    """A client for the cluster the options name."""
    return await KubeClient.connect(kubeconfig or default_kubeconfig(), context)
