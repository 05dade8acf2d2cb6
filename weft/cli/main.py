"""The ``weft`` command."""

from __future__ import annotations

import click

from weft.cli.check import check
from weft.cli.cluster import cluster
from weft.cli.controller import controller
from weft.cli.identity import identity
from weft.cli.proxy import proxy
from weft.cli.proxy_init import proxy_init


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="weft")
def cli() -> None:
    """weft: a service mesh that speaks Linkerd's contracts."""


cli.add_command(proxy)
cli.add_command(cluster)
cli.add_command(proxy_init)
cli.add_command(controller)
cli.add_command(check)
cli.add_command(identity)
