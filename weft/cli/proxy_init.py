"""``weft proxy-init``: install Linkerd's iptables redirect (proxy-init's flags)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from typing import IO, Any

import click

from weft.local import proxy_init as rules_mod
from weft.local.netns import NetnsError, check_netns_name
from weft.ports import normalise_ports

# Largest uid/gid (2**32 - 1 means "no id").
_MAX_ID = 2**32 - 2


class ProxyInitFailed(click.ClickException):
    """A problem reported as one ``weft proxy-init: ...`` line on stderr (exit status 1)."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one-line message."""
        click.echo(f"weft proxy-init: {self.format_message()}", err=True, file=file)


def _number(option: str, text: str, low: int, high: int) -> int:
    value = text.strip()
    if not value.isdigit() or not low <= int(value) <= high:
        raise ProxyInitFailed(f"invalid {option} {text!r} (expected {low}-{high})")
    return int(value)


def _ports(option: str, specs: Sequence[str]) -> tuple[str, ...]:
    try:
        return normalise_ports(specs)
    except ValueError as exc:
        raise ProxyInitFailed(f"{option}: {exc}") from None


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


@click.command("proxy-init")
@click.option("-p", "--incoming-proxy-port", default="4143", metavar="PORT", help="Inbound port.")
@click.option("-o", "--outgoing-proxy-port", default="4140", metavar="PORT", help="Outbound port.")
@click.option("-u", "--proxy-uid", metavar="UID", help="The proxy's user (not redirected).")
@click.option("--proxy-gid", metavar="GID", help="The proxy's group (not redirected).")
@click.option(
    "-r",
    "--ports-to-redirect",
    multiple=True,
    metavar="PORTS",
    help="Inbound ports to redirect (default: all).",
)
@click.option("--inbound-ports-to-ignore", multiple=True, metavar="PORTS", help="Bypass the proxy.")
@click.option(
    "--outbound-ports-to-ignore", multiple=True, metavar="PORTS", help="Bypass the proxy."
)
@click.option("--simulate", is_flag=True, help="Print the rules instead of applying them.")
@click.option("--netns", metavar="NAME", help="Named network namespace (default: the current one).")
@click.option("--timestamp", type=int, hidden=True, help="Unix time in the rule comments.")
def proxy_init(
    incoming_proxy_port: str,
    outgoing_proxy_port: str,
    proxy_uid: str | None,
    proxy_gid: str | None,
    ports_to_redirect: tuple[str, ...],
    inbound_ports_to_ignore: tuple[str, ...],
    outbound_ports_to_ignore: tuple[str, ...],
    simulate: bool,
    netns: str | None,
    timestamp: int | None,
) -> None:
    """Redirect the pod's TCP traffic through the proxy (nat table, PROXY_INIT_* chains).

    Port options take ports and ranges (8000-8010), repeated or comma-separated. The rules are
    printed in iptables-restore form; re-running replaces them.
    """
    incoming = _number("--incoming-proxy-port", incoming_proxy_port, 1, 65535)
    outgoing = _number("--outgoing-proxy-port", outgoing_proxy_port, 1, 65535)
    uid = None if proxy_uid is None else _number("--proxy-uid", proxy_uid, 0, _MAX_ID)
    gid = None if proxy_gid is None else _number("--proxy-gid", proxy_gid, 0, _MAX_ID)
    if uid is None and gid is None:
        raise ProxyInitFailed("--proxy-uid or --proxy-gid is required (the proxy's traffic loops)")
    try:
        if netns is not None:
            check_netns_name(netns)
        config = rules_mod.ProxyInitConfig(
            incoming_proxy_port=incoming,
            outgoing_proxy_port=outgoing,
            proxy_uid=uid,
            proxy_gid=gid,
            ports_to_redirect=_ports("--ports-to-redirect", ports_to_redirect),
            inbound_ports_to_ignore=_ports("--inbound-ports-to-ignore", inbound_ports_to_ignore),
            outbound_ports_to_ignore=_ports("--outbound-ports-to-ignore", outbound_ports_to_ignore),
        )
        rules = rules_mod.render(config, int(time.time()) if timestamp is None else timestamp)
    except ValueError as exc:
        raise ProxyInitFailed(str(exc)) from None
    if not simulate:
        try:
            rules_mod.apply(netns, rules)
        except (NetnsError, OSError, subprocess.SubprocessError) as exc:
            raise ProxyInitFailed(f"cannot apply the rules: {_one_line(str(exc))}") from None
    click.echo(rules, nl=False)
