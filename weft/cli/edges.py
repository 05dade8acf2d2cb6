"""``weft edges``: which resources of a type talk to which, and whether mTLS secured it, from
the metrics API, as ``linkerd edges`` shows it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from weft.cli import viz_client
from weft.cli.edges_output import NO_EDGES, parse_edges, render_json, render_table
from weft.cli.pod_certs import cluster_options
from weft.cli.viz_format import InputError
from weft.viz.resources import DEPLOYMENT, JOB, POD, canonical_type, plural

# Edges connect workloads: what has proxies of its own.
EDGE_TYPES = (DEPLOYMENT, JOB, POD)


def edges_request(resources: Sequence[str], namespace: str, all_namespaces: bool) -> dict[str, Any]:
    """Check a command line (one resource type) and build its Edges request; raises
    :class:`InputError` or :class:`~weft.viz.resources.ResourceError`."""
    if len(resources) != 1:
        raise InputError("edges takes one resource type, e.g. deploy or po")
    if "/" in resources[0]:
        raise InputError(f"edges takes a resource type (e.g. deploy), not {resources[0]}")
    kind = canonical_type(resources[0])
    if kind not in EDGE_TYPES:
        shown = ", ".join(plural(k) for k in EDGE_TYPES)
        raise InputError(f"edges connect {shown}, not {resources[0]}")
    selected = {"namespace": "" if all_namespaces else namespace, "type": kind}
    return {"selector": {"resource": selected}}


@click.command()
@click.argument("resources", nargs=-1)
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace (ignores -n).")
@viz_client.output_option
@cluster_options
def edges(
    resources: tuple[str, ...],
    namespace: str,
    all_namespaces: bool,
    output: str,
    cluster_name: str,
    state_dir: str | None,
) -> None:
    """Connections between resources of a TYPE (deploy, job, po) and their identities."""
    body = viz_client.checked("edges", lambda: edges_request(resources, namespace, all_namespaces))

    async def show(client: viz_client.VizClient) -> None:
        found = parse_edges(await client.metrics("Edges", body))
        if output == "json":
            click.echo(render_json(found))
        elif not found:
            click.echo(NO_EDGES, err=True)
        else:
            click.echo(render_table(found, output == "wide"))

    viz_client.run("edges", cluster_name, state_dir, show)
