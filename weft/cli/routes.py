"""``weft routes``: per-route figures of the routes ServiceProfiles define, from the metrics API,
as ``linkerd routes`` shows them.

weft's proxies record route metrics on the client side only, so the routes of a resource's
services are as their meshed callers measured them; ``--to X`` shows the resource's own
requests to X's services, per route.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from weft.cli import viz_client
from weft.cli.pod_certs import cluster_options
from weft.cli.routes_output import NO_TRAFFIC, parse_tables, render_json, render_table
from weft.cli.viz_format import InputError, window_seconds
from weft.viz.resources import ALL, AUTHORITY, TRAFFIC_SPLIT, parse_target, parse_targets


@dataclass(frozen=True)
class RoutesQuery:
    """The TopRoutes request of a command line."""

    body: dict[str, Any]
    window: float


def routes_query(
    resources: Sequence[str],
    namespace: str,
    window: str = "1m",
    to: str | None = None,
    to_namespace: str | None = None,
) -> RoutesQuery:
    """Check a command line and build its request; raises :class:`InputError` or
    :class:`~weft.viz.resources.ResourceError`."""
    seconds = window_seconds(window)
    targets = parse_targets(resources, namespace)
    if len(targets) != 1:
        raise InputError("routes takes one resource, e.g. deploy/web or svc/web-svc")
    target = targets[0]
    if target.type in (ALL, AUTHORITY, TRAFFIC_SPLIT):
        raise InputError(
            "routes are shown for namespaces, deployments, jobs, pods and services, "
            f"not {target.type}"
        )
    if to_namespace and not to:
        raise InputError("--to-namespace needs --to")
    body: dict[str, Any] = {"selector": {"resource": target.to_json()}, "timeWindow": window}
    if to:
        to_resource = parse_target(to, to_namespace or namespace)
        if to_resource.type == ALL:
            raise InputError("--to takes one resource type, not all")
        body["toResource"] = to_resource.to_json()
    return RoutesQuery(body, seconds)


@click.command()
@click.argument("resources", nargs=-1)
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")
@click.option("-t", "--time-window", default="1m", show_default=True, help="Window of the figures.")
@click.option("--to", "to", metavar="RESOURCE", help="Only the resource's requests to this one.")
@click.option("--to-namespace", metavar="NS", help="Namespace of --to [default: -n].")
@viz_client.output_option
@cluster_options
def routes(
    resources: tuple[str, ...],
    namespace: str,
    time_window: str,
    to: str | None,
    to_namespace: str | None,
    output: str,
    cluster_name: str,
    state_dir: str | None,
) -> None:
    """Per-route figures of a RESOURCE's services (deploy/web, svc/web-svc, ...)."""
    query = viz_client.checked(
        "routes", lambda: routes_query(resources, namespace, time_window, to, to_namespace)
    )

    async def show(client: viz_client.VizClient) -> None:
        tables = parse_tables(await client.metrics("TopRoutes", query.body))
        if output == "json":
            click.echo(render_json(tables, query.window))
        elif not any(t.rows for t in tables):
            click.echo(NO_TRAFFIC, err=True)
        else:
            click.echo(render_table([t for t in tables if t.rows], query.window, output == "wide"))

    viz_client.run("routes", cluster_name, state_dir, show)
