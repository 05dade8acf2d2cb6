"""``weft demo``: emojivoto, meshed, on a local cluster; ``weft demo down`` removes it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import click

from weft.cli.pod_certs import cluster_options
from weft.local.cluster_config import DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR, state_dir_for


def _run(body: Callable[[], int]) -> None:
    from weft.demo.runner import DemoError
    from weft.demo.ui import Ui

    try:
        sys.exit(body())
    except DemoError as exc:
        Ui().error(str(exc))
        sys.exit(1)


@click.group(invoke_without_command=True)
@cluster_options
@click.option(
    "--port",
    default=8080,
    show_default=True,
    help="Host port for the emojivoto page (0: any free port, shown when it is up).",
)
@click.option("--address", default="127.0.0.1", show_default=True, help="Host address for it.")
@click.option(
    "--dashboard-port",
    type=click.IntRange(0, 65535),
    default=50750,
    show_default=True,
    help="Host port for the weft dashboard (0: any free port).",
)
@click.option("--no-inject", is_flag=True, help="Deploy emojivoto without the mesh.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds to wait for the cluster, the pods and traffic.",
)
@click.option("--pod-cidr", default=DEFAULT_POD_CIDR, show_default=True)
@click.option("--service-cidr", default=DEFAULT_SERVICE_CIDR, show_default=True)
@click.pass_context
def demo(
    ctx: click.Context,
    cluster_name: str,
    state_dir: str | None,
    port: int,
    address: str,
    dashboard_port: int,
    no_inject: bool,
    timeout: float,
    pod_cidr: str,
    service_cidr: str,
) -> None:
    """Run emojivoto on this host, meshed by weft, until Ctrl-C.

    Checks the host, starts a local cluster with its control plane, deploys emojivoto with
    every pod injected, waits for the proxies and for traffic, and serves the app's page on
    http://127.0.0.1:8080. Ctrl-C or `weft demo down` removes everything.
    """
    if ctx.invoked_subcommand is not None:
        return
    from weft.demo.runner import DemoOptions, run
    from weft.demo.ui import Ui

    options = DemoOptions(
        name=cluster_name,
        state_dir=state_dir_for(cluster_name, state_dir),
        pod_cidr=pod_cidr,
        service_cidr=service_cidr,
        address=address,
        port=port,
        dashboard_port=dashboard_port,
        inject=not no_inject,
        timeout=timeout,
    )
    _run(lambda: asyncio.run(run(options, Ui())))


@demo.command()
@cluster_options
def down(cluster_name: str, state_dir: str | None) -> None:
    """Stop the demo and remove its cluster (nothing is left behind; safe to repeat)."""
    from weft.demo.runner import DemoOptions
    from weft.demo.runner import down as remove
    from weft.demo.ui import Ui

    options = DemoOptions(name=cluster_name, state_dir=state_dir_for(cluster_name, state_dir))
    _run(lambda: remove(options, Ui()))
