"""``weft stat``: golden metrics per resource (success rate, request rate, latency percentiles,
TCP connections) from the metrics API, as ``linkerd stat`` shows them.

By default a resource is measured where it serves (its inbound proxies). ``--to X`` shows the
selected resources' requests to X, measured by their own outbound proxies; ``--from X`` shows
requests from X to the selected resources, measured by X's proxies. Services have no proxy of
their own, so a service is measured only by its callers: as a target with ``--from``, or as
``--to``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from weft.cli import viz_client
from weft.cli.pod_certs import cluster_options
from weft.cli.stat_output import NO_TRAFFIC, parse_rows, render_json, render_table, shown
from weft.cli.viz_format import InputError, window_seconds
from weft.viz.resources import (
    ALL,
    AUTHORITY,
    DEPLOYMENT,
    JOB,
    NAMESPACE,
    POD,
    SERVICE,
    Resource,
    parse_target,
    parse_targets,
)

# What can send requests, so what ``--from`` may name.
_SOURCES = (NAMESPACE, DEPLOYMENT, JOB, POD)


@dataclass(frozen=True)
class StatQuery:
    """The StatSummary requests for one command line (one per resource argument)."""

    requests: list[dict[str, Any]]
    window: float


def _peer(option: str, text: str, namespace: str) -> Resource:
    resource = parse_target(text, namespace)
    if resource.type == ALL:
        raise InputError(f"{option} takes one resource type, not all")
    return resource


def stat_query(
    resources: Sequence[str],
    namespace: str,
    all_namespaces: bool = False,
    window: str = "1m",
    to: str | None = None,
    to_namespace: str | None = None,
    from_: str | None = None,
    from_namespace: str | None = None,
    selector: str = "",
) -> StatQuery:
    """Check a command line as ``linkerd stat`` does and build its requests; raises
    :class:`InputError` or :class:`~weft.viz.resources.ResourceError`."""
    seconds = window_seconds(window)
    if to and from_:
        raise InputError("--to and --from are mutually exclusive")
    if to_namespace and not to:
        raise InputError("--to-namespace needs --to")
    if from_namespace and not from_:
        raise InputError("--from-namespace needs --from")
    targets = parse_targets(resources, "" if all_namespaces else namespace)
    to_resource = _peer("--to", to, to_namespace or namespace) if to else None
    from_resource = _peer("--from", from_, from_namespace or namespace) if from_ else None
    if from_resource is not None and from_resource.type not in _SOURCES:
        raise InputError(
            f"--from {from_}: only namespaces, deployments, jobs and pods send requests"
        )
    requests = []
    for target in targets:
        if target.type == NAMESPACE and not target.name:
            target = Resource(NAMESPACE)  # every namespace, whatever -n says
        elif target.name and all_namespaces and target.type != NAMESPACE:
            raise InputError(f"{target} names one object: give its namespace with -n, not -A")
        if target.type == AUTHORITY and from_resource is not None:
            raise InputError("authorities cannot be combined with --from")
        if target.type == SERVICE and from_resource is None:
            raise InputError("a service is measured by its callers: use it with --from, or as --to")
        body: dict[str, Any] = {
            "selector": {"resource": target.to_json(), "labelSelector": selector},
            "timeWindow": window,
            "skipStats": False,
            "tcpStats": True,
        }
        if to_resource is not None:
            body["toResource"] = to_resource.to_json()
        if from_resource is not None:
            body["fromResource"] = from_resource.to_json()
        requests.append(body)
    return StatQuery(requests, seconds)


@click.command()
@click.argument("resources", nargs=-1)
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace (ignores -n).")
@click.option("-t", "--time-window", default="1m", show_default=True, help="Window of the figures.")
@click.option("--to", "to", metavar="RESOURCE", help="Only requests to this resource.")
@click.option("--to-namespace", metavar="NS", help="Namespace of --to [default: -n].")
@click.option("--from", "from_", metavar="RESOURCE", help="Only requests from this resource.")
@click.option("--from-namespace", metavar="NS", help="Namespace of --from [default: -n].")
@click.option("-l", "--selector", default="", help="Label selector (app=web,tier!=db).")
@viz_client.output_option
@cluster_options
def stat(
    resources: tuple[str, ...],
    namespace: str,
    all_namespaces: bool,
    time_window: str,
    to: str | None,
    to_namespace: str | None,
    from_: str | None,
    from_namespace: str | None,
    selector: str,
    output: str,
    cluster_name: str,
    state_dir: str | None,
) -> None:
    """Golden metrics of RESOURCES (deploy, deploy/web, po, ns/emojivoto, svc, au, ts, all)."""
    query = viz_client.checked(
        "stat",
        lambda: stat_query(
            resources,
            namespace,
            all_namespaces,
            time_window,
            to,
            to_namespace,
            from_,
            from_namespace,
            selector,
        ),
    )

    async def show(client: viz_client.VizClient) -> None:
        answers = await asyncio.gather(
            *(client.metrics("StatSummary", body) for body in query.requests)
        )
        rows = shown(row for answer in answers for row in parse_rows(answer))
        if output == "json":
            click.echo(render_json(rows, query.window))
        elif not rows:
            click.echo(NO_TRAFFIC, err=True)
        else:
            click.echo(render_table(rows, query.window, output == "wide", all_namespaces))

    viz_client.run("stat", cluster_name, state_dir, show)
