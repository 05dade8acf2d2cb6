"""``weft upgrade``: print the control plane again from the installed config, keeping its
identity material, with the flags given applied (``| kubectl apply -f -``)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

import click

from weft.cli.install import apply_flags, emit, output_option, value_options
from weft.cli.kube_options import connect, kube_options, namespace_option
from weft.k8s.client import KubeError
from weft.k8s.install.installed import read_install
from weft.k8s.install.render import Secrets
from weft.k8s.install.values import InstallValues


@click.command()
@namespace_option
@kube_options
@value_options
@output_option
def upgrade(
    namespace: str, kubeconfig: str | None, context: str | None, output: str, **flags: Any
) -> None:
    """Re-render the installed control plane with this CLI (and any flags given).

    The trust anchors and issuer are the installed ones; the image version becomes this CLI's
    unless --image-version says otherwise.
    """

    async def read() -> tuple[InstallValues, Secrets]:
        client = await connect(kubeconfig, context)
        try:
            return await read_install(client, namespace, datetime.now(UTC))
        finally:
            await client.close()

    try:
        recorded, secrets = asyncio.run(read())
    except KubeError as exc:
        click.echo(f"weft upgrade: {exc}", err=True)
        sys.exit(1)
    current = InstallValues()
    values = apply_flags(recorded.replace(version=current.version), flags)
    emit(values, secrets, output)
