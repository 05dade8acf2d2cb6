"""``weft tap``: live requests of a resource's proxies, streamed by the tap controller, in
``linkerd tap``'s line format (or ``-o wide``, ``-o json``). Runs until Ctrl-C or until the
controller ends the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from weft.cli import viz_client
from weft.cli.pod_certs import cluster_options
from weft.cli.tap_output import event_json, event_line
from weft.cli.viz_format import InputError
from weft.viz.resources import parse_target, parse_targets
from weft.viz.tap_events import TapEventError, parse_event
from weft.viz.tap_query import DEFAULT_MAX_RPS, TapQuery

F = TypeVar("F", bound=Callable[..., Any])


def tap_options(func: F) -> F:
    """The target's namespace, Linkerd's tap filters and the cluster options (tap and top)."""
    options = [
        click.option("-n", "--namespace", default="default", show_default=True, help="Namespace."),
        click.option("--to", "to", metavar="RESOURCE", help="Only requests to this resource."),
        click.option("--to-namespace", metavar="NS", help="Namespace of --to [default: -n]."),
        click.option("--method", default="", help="Only requests with this HTTP method."),
        click.option("--path", default="", help="Only requests whose path starts so."),
        click.option("--authority", default="", help="Only requests for this authority."),
        click.option("--scheme", default="", help="Only requests with this scheme (http)."),
        click.option(
            "--max-rps",
            type=float,
            default=DEFAULT_MAX_RPS,
            show_default=True,
            help="Requests per second to show at most (shared by the pods).",
        ),
    ]
    func = cluster_options(func)
    for option in reversed(options):
        func = option(func)
    return func


def tap_query(
    resources: Sequence[str],
    namespace: str,
    to: str | None = None,
    to_namespace: str | None = None,
    method: str = "",
    path: str = "",
    authority: str = "",
    scheme: str = "",
    max_rps: float = DEFAULT_MAX_RPS,
    extract: bool = False,
) -> TapQuery:
    """Check a command line and build its tap request; raises :class:`InputError` or
    :class:`~weft.viz.resources.ResourceError`."""
    targets = parse_targets(resources, namespace)
    if len(targets) != 1:
        raise InputError("tap one resource, e.g. deploy/web or ns/emojivoto")
    if to_namespace and not to:
        raise InputError("--to-namespace needs --to")
    return TapQuery(
        target=targets[0],
        to=parse_target(to, to_namespace or namespace) if to else None,
        method=method,
        path=path,
        authority=authority,
        scheme=scheme,
        max_rps=max_rps,
        extract=extract,
    )


@click.command()
@click.argument("resources", nargs=-1)
@tap_options
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "wide", "json"]),
    default="table",
    show_default=True,
    help="table: one line per event; wide: with the peers' resources; json: objects.",
)
def tap(
    resources: tuple[str, ...],
    namespace: str,
    to: str | None,
    to_namespace: str | None,
    method: str,
    path: str,
    authority: str,
    scheme: str,
    max_rps: float,
    output: str,
    cluster_name: str,
    state_dir: str | None,
) -> None:
    """Stream the requests of a RESOURCE's proxies (deploy/web, po/x, ns/emojivoto)."""
    query = viz_client.checked(
        "tap",
        lambda: tap_query(
            resources,
            namespace,
            to,
            to_namespace,
            method,
            path,
            authority,
            scheme,
            max_rps,
            extract=output == "json",
        ),
    )
    wide_kind = query.target.type if output == "wide" else None

    async def stream(client: viz_client.VizClient) -> None:
        async for data in client.tap(query.url_path(), query.body()):
            try:
                event = parse_event(data)
            except TapEventError as exc:
                click.echo(f"weft tap: skipped an event: {exc}", err=True)
                continue
            if output == "json":
                click.echo(json.dumps(event_json(event), indent=2))
            else:
                click.echo(event_line(event, wide_kind))

    viz_client.run("tap", cluster_name, state_dir, stream, interrupted_status=0)
