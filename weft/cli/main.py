"""The ``weft`` command.

Subcommands are imported only when they run: the sidecar (``weft proxy``) must not pay, in
start-up time and memory, for the CLI's cluster client, certificate checks and the like.
"""

from __future__ import annotations

import importlib

import click

# name -> (module, attribute)
COMMANDS = {
    "check": ("weft.cli.check", "check"),
    "cluster": ("weft.cli.cluster", "cluster"),
    "controller": ("weft.cli.controller", "controller"),
    "dashboard": ("weft.cli.dashboard", "dashboard"),
    "demo": ("weft.cli.demo", "demo"),
    "edges": ("weft.cli.edges", "edges"),
    "identity": ("weft.cli.identity", "identity"),
    "inject": ("weft.cli.inject", "inject"),
    "install": ("weft.cli.install", "install"),
    "profile": ("weft.cli.profile", "profile"),
    "proxy": ("weft.cli.proxy", "proxy"),
    "proxy-init": ("weft.cli.proxy_init", "proxy_init"),
    "routes": ("weft.cli.routes", "routes"),
    "stat": ("weft.cli.stat", "stat"),
    "tap": ("weft.cli.tap", "tap"),
    "top": ("weft.cli.top", "top"),
    "uninject": ("weft.cli.uninject", "uninject"),
    "uninstall": ("weft.cli.uninstall", "uninstall"),
    "upgrade": ("weft.cli.upgrade", "upgrade"),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        command = getattr(importlib.import_module(spec[0]), spec[1])
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="weft")
def cli() -> None:
    """weft: a service mesh that speaks Linkerd's contracts."""
