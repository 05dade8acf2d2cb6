"""The ``weft`` command."""

from __future__ import annotations

import click

from weft.cli.proxy import proxy


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="weft")
def cli() -> None:
    """weft: a service mesh that speaks Linkerd's contracts."""


cli.add_command(proxy)
