"""``weft uninject``: remove what ``weft inject`` (or the webhook) added to manifests."""

from __future__ import annotations

import click

from weft.cli.inject import dump, read, report
from weft.inject.workloads import Outcome, each_object, uninject_object


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
def uninject(files: tuple[str, ...], output: str) -> None:
    """Remove the proxy, its init container, volumes and annotations from the workloads in
    FILES (files, directories or - for stdin)."""
    outcomes: list[Outcome] = []
    out = [each_object(doc, uninject_object, outcomes) for doc in read("uninject", files)]
    click.echo(dump(out, output), nl=False)
    report(outcomes)
