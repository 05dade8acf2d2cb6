"""``python -m weft``."""

from weft.cli.main import cli

cli()
