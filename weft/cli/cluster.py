"""``weft cluster``: the local runtime, shaped like kubectl (up/down, apply, get, logs, exec)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from weft.cli.cluster_table import table
from weft.local import lifecycle
from weft.local import port_forward as pf
from weft.local.api_client import ApiClient, ApiError
from weft.local.cluster_config import (
    DEFAULT_DOMAIN,
    DEFAULT_NAME,
    DEFAULT_POD_CIDR,
    DEFAULT_SERVICE_CIDR,
    ClusterConfig,
    ClusterConfigError,
    state_dir_for,
)
from weft.local.kinds import kind_of, plural
from weft.platform import PlatformError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    click.echo(f"weft cluster: {message}", err=True)
    sys.exit(1)


def friendly_errors(func: F) -> F:
    """Turn the runtime's errors into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (PlatformError, lifecycle.LifecycleError, ClusterConfigError, OSError) as exc:
            _fail(str(exc))

    return wrapper  # type: ignore[return-value]


class Ctx:
    """Which cluster the command is about."""

    def __init__(self, name: str, state_dir: str | None) -> None:
        self.name = name
        self.state_dir = state_dir_for(name, state_dir)

    def config(self) -> ClusterConfig:
        """The stored settings of the cluster."""
        return ClusterConfig.load(self.state_dir)

    def call(self, body: Callable[[ApiClient], Awaitable[T]]) -> T:
        """Run ``body`` with a client of the cluster's agent."""

        async def run() -> T:
            async with ApiClient(self.config().api_socket) as client:
                return await body(client)

        return asyncio.run(run())


pass_ctx = click.make_pass_decorator(Ctx)


@click.group()
@click.option(
    "--name",
    envvar="WEFT_CLUSTER",
    default=DEFAULT_NAME,
    show_default=True,
    help="Cluster name (prefix of everything the cluster creates).",
)
@click.option(
    "--state-dir",
    envvar="WEFT_STATE_DIR",
    default=None,
    help="State directory [default: /var/lib/weft/<name>].",
)
@click.pass_context
def cluster(ctx: click.Context, name: str, state_dir: str | None) -> None:
    """Run meshed workloads on this host: a single-node cluster of network namespaces."""
    ctx.obj = Ctx(name, state_dir)


@cluster.command()
@click.option("--pod-cidr", default=DEFAULT_POD_CIDR, show_default=True)
@click.option("--service-cidr", default=DEFAULT_SERVICE_CIDR, show_default=True)
@click.option("--cluster-domain", default=DEFAULT_DOMAIN, show_default=True)
@click.option("--restart-backoff", default=10.0, show_default=True, hidden=True, type=float)
@click.option(
    "--identity-issuance-lifetime",
    default="24h",
    show_default=True,
    help="How long proxy certificates are valid.",
)
@click.option(
    "--identity-issuer-lifetime",
    default="8760h",
    show_default=True,
    help="How long a generated issuer is valid (it renews itself at two thirds).",
)
@click.option(
    "--prometheus-scrape-interval",
    default="10s",
    show_default=True,
    help="How often Prometheus scrapes every proxy and component.",
)
@click.option(
    "--prometheus-retention",
    default="6h",
    show_default=True,
    help="How long Prometheus keeps samples.",
)
@pass_ctx
@friendly_errors
def up(
    c: Ctx,
    pod_cidr: str,
    service_cidr: str,
    cluster_domain: str,
    restart_backoff: float,
    identity_issuance_lifetime: str,
    identity_issuer_lifetime: str,
    prometheus_scrape_interval: str,
    prometheus_retention: str,
) -> None:
    """Create the node (bridge, DNS, service rules) and start its agent."""
    cfg = ClusterConfig(
        c.name,
        pod_cidr,
        service_cidr,
        cluster_domain,
        str(c.state_dir),
        identity_issuance_lifetime,
        identity_issuer_lifetime,
        prometheus_scrape_interval=prometheus_scrape_interval,
        prometheus_retention=prometheus_retention,
    )
    started = lifecycle.up(cfg, backoff_initial=restart_backoff)
    verb = "is up" if started else "was already up"
    click.echo(
        f"cluster {cfg.name} {verb}: pods {cfg.pod_cidr}, services {cfg.service_cidr}, "
        f"DNS {cfg.gateway.ip} ({cfg.cluster_domain}), node namespace {cfg.node_netns}"
    )


@cluster.command()
@click.option("--grace", default=30.0, show_default=True, help="Seconds pods get to stop.")
@pass_ctx
@friendly_errors
def down(c: Ctx, grace: float) -> None:
    """Stop every pod and remove everything the cluster created (safe to repeat)."""
    try:
        cfg = c.config()
    except ClusterConfigError:
        cfg = ClusterConfig(c.name, state_dir=str(c.state_dir))
    errors = lifecycle.down(cfg, grace=grace)
    if errors:
        _fail("could not remove everything: " + "; ".join(errors))
    click.echo(f"cluster {cfg.name} removed")


def _read_sources(files: tuple[str, ...]) -> list[dict[str, str]]:
    sources = []
    for item in files:
        if item == "-":
            sources.append({"name": "<stdin>", "text": sys.stdin.read()})
            continue
        path = Path(item)
        if path.is_dir():
            paths = sorted(
                p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
            )
        elif path.exists():
            paths = [path]
        else:
            raise click.UsageError(f"{item}: no such file or directory")
        sources.extend({"name": str(p), "text": p.read_text()} for p in paths)
    return sources


@cluster.command()
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="File, directory or - for stdin (repeatable).",
)
@click.option("-n", "--namespace", default=None, help="Namespace for objects that name none.")
@pass_ctx
@friendly_errors
def apply(c: Ctx, files: tuple[str, ...], namespace: str | None) -> None:
    """Create or update objects from Kubernetes YAML; all of it or nothing."""
    body = {"sources": _read_sources(files), "namespace": namespace}
    result = c.call(lambda client: client.post_json("/v1/apply", body))
    for line in result["results"]:
        click.echo(line)


@cluster.command()
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "files", multiple=True)
@click.option("-n", "--namespace", default=None)
@pass_ctx
@friendly_errors
def delete(c: Ctx, args: tuple[str, ...], files: tuple[str, ...], namespace: str | None) -> None:
    """Delete objects named in files (-f) or as KIND NAME..."""
    refs = []
    if args:
        kind = _kind(args[0])
        if len(args) < 2:
            raise click.UsageError("give KIND NAME... or -f FILE")
        refs = [{"kind": kind, "namespace": namespace or "default", "name": n} for n in args[1:]]
    if not refs and not files:
        raise click.UsageError("give KIND NAME... or -f FILE")
    body = {"refs": refs, "sources": _read_sources(files), "namespace": namespace}
    result = c.call(lambda client: client.post_json("/v1/delete", body))
    for line in result["results"]:
        click.echo(line)


def _kind(name: str) -> str:
    try:
        return kind_of(name)
    except KeyError:
        raise click.UsageError(f'the server doesn\'t have a resource type "{name}"') from None


@cluster.command()
@click.argument("resource")
@click.argument("names", nargs=-1)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option(
    "-o", "--output", type=click.Choice(["table", "yaml", "json", "name"]), default="table"
)
@pass_ctx
@friendly_errors
def get(
    c: Ctx, resource: str, names: tuple[str, ...], namespace: str, all_namespaces: bool, output: str
) -> None:
    """List objects of a kind (pods, svc, deploy, ep, ns, sp, ts, ...; or a list: pods,svc)."""
    kinds = [_kind(r) for r in resource.split(",") if r]
    if len(kinds) > 1:
        if names:
            raise click.UsageError("names cannot be given with several resource types")
        for i, kind in enumerate(kinds):
            if i:
                click.echo()
            _get(c, kind, (), namespace, all_namespaces, output)
        return
    _get(c, kinds[0], names, namespace, all_namespaces, output)


def _get(
    c: Ctx, kind: str, names: tuple[str, ...], namespace: str, all_namespaces: bool, output: str
) -> None:
    ns = None if all_namespaces else namespace
    items: list[dict[str, Any]] = c.call(lambda client: client.list(kind, ns))
    if names:
        missing = [n for n in names if n not in {o["metadata"]["name"] for o in items}]
        if missing:
            _fail(f'{plural(kind)} "{missing[0]}" not found')
        items = [o for o in items if o["metadata"]["name"] in names]
    if output == "json":
        doc = items[0] if len(names) == 1 else {"apiVersion": "v1", "kind": "List", "items": items}
        click.echo(json.dumps(doc, indent=2))
    elif output == "yaml":
        doc = items[0] if len(names) == 1 else {"apiVersion": "v1", "kind": "List", "items": items}
        click.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)
    elif output == "name":
        for obj in items:
            click.echo(f"{kind.lower()}/{obj['metadata']['name']}")
    elif not items:
        where = "" if all_namespaces or kind == "Namespace" else f" in {namespace} namespace"
        click.echo(f"No resources found{where}.", err=True)
    else:
        click.echo(table(kind, items, all_namespaces=all_namespaces))


@cluster.command()
@click.argument("resource")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@pass_ctx
@friendly_errors
def describe(c: Ctx, resource: str, name: str, namespace: str) -> None:
    """Show one object in full, with its status."""
    kind = _kind(resource)
    items = c.call(lambda client: client.list(kind, namespace, name))
    click.echo(yaml.safe_dump(items[0], sort_keys=False), nl=False)


@cluster.command()
@click.argument("pod")
@click.option("-c", "--container", default="")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", type=int, default=None)
@pass_ctx
@friendly_errors
def logs(c: Ctx, pod: str, container: str, namespace: str, follow: bool, tail: int | None) -> None:
    """Print a container's output."""
    params = {
        "namespace": namespace,
        "pod": pod,
        "container": container,
        "follow": "1" if follow else "0",
    }
    if tail is not None:
        params["tail"] = str(tail)

    async def body(client: ApiClient) -> None:
        async for chunk in client.stream("/v1/logs", **params):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()

    c.call(body)


@cluster.command(context_settings={"ignore_unknown_options": True})
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-n", "--namespace", default="default", show_default=True)
@pass_ctx
@friendly_errors
def exec(c: Ctx, pod: str, command: tuple[str, ...], namespace: str) -> None:
    """Run a command inside a pod's network namespace (``exec POD -- CMD...``)."""
    items = c.call(lambda client: client.list("Pod", namespace, pod))
    netns = c.config().pod_netns(items[0]["metadata"]["uid"])
    os.execvp("ip", ["ip", "netns", "exec", netns, *command])


@cluster.command("port-forward")
@click.argument("target")
@click.argument("ports", nargs=-1, required=True)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True, help="Local address.")
@pass_ctx
@friendly_errors
def port_forward(c: Ctx, target: str, ports: tuple[str, ...], namespace: str, address: str) -> None:
    """Forward local ports to a service or pod: ``svc/NAME|pod/NAME [LOCAL:]REMOTE...``.

    ``8080:80`` forwards local port 8080 to remote port 80 (a number or a port name), ``:80``
    picks a free local port. Runs until interrupted (or until ``down``).
    """
    try:
        kind, name = pf.parse_target(target)
        specs = [pf.parse_port_spec(p) for p in ports]
        obj = _forward_target(c, kind, namespace, name)
        remotes = [pf.resolve_target(obj, kind, remote) for _, remote in specs]
        listeners = [
            (_listen(address, port if local is None else local, remote), ip, port)
            for (local, remote), (ip, port) in zip(specs, remotes, strict=True)
        ]
    except pf.PortForwardError as exc:
        _fail(str(exc))
    argv = pf.relay_argv(c.config(), [(s.fileno(), ip, port) for s, ip, port in listeners])
    for sock, _, port in listeners:
        click.echo(f"Forwarding from {pf.host_port(*sock.getsockname()[:2])} -> {port}")
        os.set_inheritable(sock.fileno(), True)
    sys.stdout.flush()
    # The relay replaces this process: signals to the command reach it directly.
    os.execvp(argv[0], argv)


def _forward_target(c: Ctx, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """The Service or Pod to forward to; a missing one is a :class:`pf.PortForwardError`."""
    missing = pf.PortForwardError(f'{plural(kind)} "{name}" not found in namespace "{namespace}"')
    try:
        items: list[dict[str, Any]] = c.call(lambda client: client.list(kind, namespace, name))
    except ApiError as exc:
        if exc.status != 404:
            raise
        raise missing from None
    if not items:
        raise missing
    return items[0]


def _listen(address: str, port: int, remote: str) -> socket.socket:
    """:func:`pf.bind`, suggesting another local port when ``port`` is taken."""
    try:
        return pf.bind(address, port)
    except pf.PortInUseError as exc:
        other = port + 1 if port < 65535 else port - 1
        raise pf.PortForwardError(
            f"{exc}: pick another local port (e.g. {other}:{remote})"
        ) from exc


@cluster.command(hidden=True)
@click.option("--state-dir", required=True, type=click.Path(path_type=Path))
@click.option("--backoff", default=10.0, type=float)
def agent(state_dir: Path, backoff: float) -> None:
    """Run the node agent (started by ``up`` inside the node namespace)."""
    from weft.local.agent import main

    sys.exit(main(state_dir, backoff))
