"""``weft uninstall``: print the installed control plane's objects, for
``weft uninstall | kubectl delete -f -``."""

from __future__ import annotations

import asyncio
import sys

import click

from weft.cli.install import output_option
from weft.cli.kube_options import connect, kube_options, namespace_option
from weft.k8s.client import KubeError
from weft.k8s.install.installed import installed_objects
from weft.k8s.install.render import to_json, to_yaml


@click.command()
@namespace_option
@kube_options
@output_option
def uninstall(namespace: str, kubeconfig: str | None, context: str | None, output: str) -> None:
    """Print what to delete to remove weft (webhooks, namespace, RBAC, CRDs).

    Deleting the CRDs deletes every ServiceProfile and TrafficSplit too.
    """

    async def find() -> list[dict[str, object]]:
        client = await connect(kubeconfig, context)
        try:
            return await installed_objects(client, namespace)
        finally:
            await client.close()

    try:
        objects = asyncio.run(find())
    except KubeError as exc:
        click.echo(f"weft uninstall: {exc}", err=True)
        sys.exit(1)
    if not objects:
        click.echo(
            f"weft uninstall: no weft control plane found for namespace {namespace}", err=True
        )
        sys.exit(1)
    click.echo(to_yaml(objects) if output == "yaml" else to_json(objects), nl=False)
