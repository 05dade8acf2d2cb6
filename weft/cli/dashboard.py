"""``weft dashboard``: the dashboard on a host port, as ``linkerd dashboard`` does it.

Like ``weft cluster port-forward -n weft svc/weft-web 50750:8084``: the port is bound here on
the host, and a relay in the cluster's node namespace (:mod:`weft.local.port_forward`) carries
connections to the ``weft-web`` Service. The command prints the URL, opens a browser when one
is available, and stays in the foreground until Ctrl-C, when it stops the relay and exits 0.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any, NoReturn

import click

from weft.cli.pod_certs import cluster_options
from weft.local import control_plane
from weft.local import port_forward as pf
from weft.local.api_client import ApiClient, ApiError
from weft.local.cluster_config import ClusterConfig, ClusterConfigError, state_dir_for
from weft.platform import PlatformError
from weft.web import manifest

DEFAULT_PORT = 50750  # linkerd dashboard's
POLL = 0.5
Obj = dict[str, Any]


class DashboardError(Exception):
    """Why the dashboard cannot be shown; ``str()`` is one line."""


class Stopped(Exception):
    """SIGINT or SIGTERM arrived."""


def _fail(message: str) -> NoReturn:
    click.echo(f"weft dashboard: {message}", err=True)
    sys.exit(1)


def parse_wait(text: str) -> float:
    """``--wait``: a duration such as ``5m``, ``30s`` or ``0s``, in seconds."""
    from weft.proxy.config import ConfigError, parse_duration

    try:
        return parse_duration("--wait", text if text[-1:].isalpha() else f"{text}s")
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("--wait: "), param_hint="--wait") from None


def ready_addresses(endpoints: Sequence[Obj]) -> int:
    """How many ready addresses an Endpoints object list has."""
    return sum(
        len(subset.get("addresses") or []) for ep in endpoints for subset in ep.get("subsets") or []
    )


def browser_command(url: str, env: Mapping[str, str]) -> list[str] | None:
    """How to open ``url`` here: ``$BROWSER`` (its first entry; ``%s`` is the URL), else
    ``xdg-open`` when a display is set; None when there is no way."""
    chosen = env.get("BROWSER", "").split(os.pathsep)[0].strip()
    if chosen:
        argv = shlex.split(chosen)
        if any("%s" in arg for arg in argv):
            return [arg.replace("%s", url) for arg in argv]
        return [*argv, url]
    if (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")) and shutil.which("xdg-open"):
        return ["xdg-open", url]
    return None


def open_browser(url: str) -> str:
    """Start a browser on ``url`` (detached); returns what happened, in one line."""
    argv = browser_command(url, os.environ)
    if argv is None:
        return "no browser available here (no $BROWSER, no display): open the URL yourself"
    try:
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        return f"could not start {argv[0]} ({exc.strerror or exc}): open the URL yourself"
    return "Opening the dashboard in the default browser"


async def _wait_ready(cfg: ClusterConfig, wait: float) -> Obj:
    """The ``weft-web`` Service once it has a ready endpoint (within ``wait`` seconds)."""
    deadline = time.monotonic() + wait
    told = False
    async with ApiClient(cfg.api_socket) as client:
        while True:
            try:
                services = await client.list("Service", control_plane.NAMESPACE, manifest.NAME)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                services = []
            if not services:
                raise DashboardError(
                    f"cluster {cfg.name} has no dashboard (service "
                    f"{control_plane.NAMESPACE}/{manifest.NAME}): is its control plane up to date?"
                )
            endpoints = await client.list("Endpoints", control_plane.NAMESPACE, manifest.NAME)
            if ready_addresses(endpoints):
                return services[0]
            if time.monotonic() >= deadline:
                raise DashboardError(
                    f"{manifest.NAME} is not ready"
                    + (f" after waiting {wait:.0f}s" if wait else "")
                    + f": see `weft cluster get pods -n {control_plane.NAMESPACE}` and "
                    f"`weft cluster logs -n {control_plane.NAMESPACE} <pod>`"
                )
            if not told:
                click.echo(f"Waiting for {manifest.NAME} to become ready...", err=True)
                told = True
            await asyncio.sleep(POLL)  # polling interval of a bounded wait


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise Stopped


@click.command()
@cluster_options
@click.option(
    "-p", "--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
    help="The local port for the dashboard (0: any free port).",
)  # fmt: skip
@click.option("--address", default="localhost", show_default=True, help="The local address.")
@click.option(
    "--show",
    type=click.Choice(["browser", "url"]),
    default="browser",
    show_default=True,
    help="Open the dashboard in a browser, or only print its URL.",
)
@click.option(
    "--wait",
    default="5m",
    show_default=True,
    help="How long to wait for the dashboard to become ready.",
)
def dashboard(
    cluster_name: str, state_dir: str | None, port: int, address: str, show: str, wait: str
) -> None:
    """Open the dashboard: forward a local port to it, print the URL, open a browser; Ctrl-C
    stops it."""
    waiting = parse_wait(wait)
    try:
        cfg = ClusterConfig.load(state_dir_for(cluster_name, state_dir))
        service = asyncio.run(_wait_ready(cfg, waiting))
        ip, remote = pf.resolve_target(service, "Service", str(manifest.PORT))
        listener = pf.bind(address, port)
    except pf.PortInUseError as exc:
        _fail(f"{exc}: pick another port with --port")
    except (DashboardError, ClusterConfigError, PlatformError, pf.PortForwardError) as exc:
        _fail(str(exc))
    url = f"http://{pf.host_port(address, listener.getsockname()[1])}"
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    relay: subprocess.Popen[bytes] | None = None
    try:
        with listener:
            argv = pf.relay_argv(cfg, [(listener.fileno(), ip, remote)])
            relay = subprocess.Popen(argv, pass_fds=(listener.fileno(),))
        click.echo(f"weft dashboard available at:\n{url}")
        if show == "browser":
            click.echo(open_browser(url))
        click.echo("Press Ctrl-C to stop.")
        status = relay.wait()
        _fail(f"the port-forward to {manifest.NAME} stopped (exit status {status})")
    except Stopped:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if relay is not None and relay.poll() is None:
            relay.terminate()
            try:
                relay.wait(10)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait()
