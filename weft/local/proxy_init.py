"""The ``nat`` rules Linkerd's proxy-init installs in a pod, rendered for ``iptables-restore``.

:func:`render` is pure: it turns a :class:`ProxyInitConfig` and a timestamp into the restore
input. :func:`apply` loads it into a named network namespace, or the current one when the name is
``None`` (after removing an earlier copy, so re-runs are idempotent), and :func:`remove` deletes
exactly those chains and the jumps to them.

Inbound: ``PREROUTING -> PROXY_INIT_REDIRECT``, which returns for ignored ports and redirects
TCP to the inbound proxy port. Outbound: ``OUTPUT -> PROXY_INIT_OUTPUT``, which sends the proxy's
own traffic to its pod address back through inbound, exempts the proxy's UID/GID and loopback
and ignored ports, and redirects all other TCP to the outbound proxy port.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from weft.local import netns as netns_mod
from weft.ports import PortSpec, normalise_ports

REDIRECT_CHAIN = "PROXY_INIT_REDIRECT"
OUTPUT_CHAIN = "PROXY_INIT_OUTPUT"
CHAINS = (REDIRECT_CHAIN, OUTPUT_CHAIN)
COMMENT_PREFIX = "proxy-init"

# The proxy's control (tap) and admin ports are never redirected inbound.
ALWAYS_IGNORED_INBOUND: tuple[str, ...] = ("4190", "4191")

# iptables' multiport match takes at most 15 ports, a range counting as two.
_MULTIPORT_SLOTS = 15
_RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9,:-]*$")


@dataclass(frozen=True)
class ProxyInitConfig:
    """proxy-init's flags: proxy ports, the proxy's identity, and which ports to (not) redirect.

    ``proxy_uid``/``proxy_gid``: traffic owned by either is exempt from the outbound redirect (at
    least one is required). ``ports_to_redirect`` empty means every inbound TCP port. Port
    entries are ints or strings (``"8080"``, ``"8000-8010"``, ``"25,587"``).
    """

    incoming_proxy_port: int = 4143
    outgoing_proxy_port: int = 4140
    proxy_uid: int | None = None
    proxy_gid: int | None = None
    ports_to_redirect: Sequence[PortSpec] = ()
    inbound_ports_to_ignore: Sequence[PortSpec] = ()
    outbound_ports_to_ignore: Sequence[PortSpec] = ()

    def __post_init__(self) -> None:
        for name in ("incoming_proxy_port", "outgoing_proxy_port"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ValueError(f"{name} out of range: {port}")
        if self.proxy_uid is None and self.proxy_gid is None:
            raise ValueError("proxy_uid or proxy_gid is required (the proxy's own traffic loops)")
        for ident in (self.proxy_uid, self.proxy_gid):
            if ident is not None and ident < 0:
                raise ValueError(f"invalid proxy uid/gid {ident}")
        # Validate the port lists eagerly so a bad config fails at construction.
        normalise_ports(self.ports_to_redirect)
        normalise_ports(self.inbound_ports_to_ignore)
        normalise_ports(self.outbound_ports_to_ignore)

    def ignored_inbound(self) -> tuple[str, ...]:
        """4190, 4191 and the user's inbound ports to ignore."""
        return normalise_ports((*ALWAYS_IGNORED_INBOUND, *self.inbound_ports_to_ignore))

    def owner_matches(self) -> list[tuple[str, str]]:
        """``(rule-name, owner-match)`` for the proxy's UID and/or GID."""
        out: list[tuple[str, str]] = []
        if self.proxy_uid is not None:
            out.append(("user-id", f"-m owner --uid-owner {self.proxy_uid}"))
        if self.proxy_gid is not None:
            out.append(("group-id", f"-m owner --gid-owner {self.proxy_gid}"))
        return out


def _slots(port: str) -> int:
    return 2 if ":" in port else 1


def _port_groups(ports: Sequence[str]) -> list[list[str]]:
    """Split ports into groups that fit one multiport match."""
    groups: list[list[str]] = []
    used = _MULTIPORT_SLOTS
    for port in ports:
        if used + _slots(port) > _MULTIPORT_SLOTS:
            groups.append([])
            used = 0
        groups[-1].append(port)
        used += _slots(port)
    return groups


def _dport_match(ports: Sequence[str]) -> str:
    if len(ports) == 1:
        return f"-p tcp --dport {ports[0]}"
    return f"-p tcp -m multiport --dports {','.join(ports)}"


def _comment(name: str, timestamp: int) -> str:
    if not _RULE_NAME.match(name):
        raise ValueError(f"invalid rule name {name!r}")
    return f"-m comment --comment {COMMENT_PREFIX}/{name}/{timestamp}"


def rule_lines(config: ProxyInitConfig, timestamp: int) -> list[str]:
    """The ``-A`` lines of the nat table, in order."""
    if timestamp < 0:
        raise ValueError("timestamp must be a non-negative unix time")
    lines: list[str] = []

    def add(chain: str, match: str, name: str, target: str) -> None:
        parts = [f"-A {chain}", match, _comment(name, timestamp), f"-j {target}"]
        lines.append(" ".join(p for p in parts if p))

    # Inbound.
    for group in _port_groups(config.ignored_inbound()):
        add(REDIRECT_CHAIN, _dport_match(group), f"ignore-port-{','.join(group)}", "RETURN")
    to_inbound = f"REDIRECT --to-ports {config.incoming_proxy_port}"
    redirect = normalise_ports(config.ports_to_redirect)
    if redirect:
        for group in _port_groups(redirect):
            add(REDIRECT_CHAIN, _dport_match(group), f"redirect-port-{','.join(group)}", to_inbound)
    else:
        add(REDIRECT_CHAIN, "-p tcp", "redirect-all-incoming-to-proxy-port", to_inbound)
    add("PREROUTING", "", "install-proxy-init-prerouting", REDIRECT_CHAIN)

    # Outbound.
    owners = config.owner_matches()
    for kind, owner in owners:
        add(
            OUTPUT_CHAIN,
            f"-o lo ! -d 127.0.0.1/32 {owner}",
            f"redirect-non-loopback-local-traffic-{kind}",
            REDIRECT_CHAIN,
        )
    for kind, owner in owners:
        add(OUTPUT_CHAIN, owner, f"ignore-proxy-{kind}", "RETURN")
    add(OUTPUT_CHAIN, "-o lo", "ignore-loopback", "RETURN")
    for group in _port_groups(normalise_ports(config.outbound_ports_to_ignore)):
        add(OUTPUT_CHAIN, _dport_match(group), f"ignore-port-{','.join(group)}", "RETURN")
    to_outbound = f"REDIRECT --to-ports {config.outgoing_proxy_port}"
    add(OUTPUT_CHAIN, "-p tcp", "redirect-all-outgoing-to-proxy-port", to_outbound)
    add("OUTPUT", "", "install-proxy-init-output", OUTPUT_CHAIN)
    return lines


def render(config: ProxyInitConfig, timestamp: int) -> str:
    """The complete ``iptables-restore --noflush`` input (nat table) for ``config``."""
    body = [f":{chain} - [0:0]" for chain in CHAINS]
    body += rule_lines(config, timestamp)
    return "*nat\n" + "\n".join(body) + "\nCOMMIT\n"


def render_removal(saved_nat: str) -> str:
    """The restore input that undoes :func:`render`, given ``iptables-save -t nat`` output.

    Deletes every jump from ``PREROUTING``/``OUTPUT`` into our chains, then flushes and deletes
    the chains. Returns ``""`` when there is nothing to remove.
    """
    deletes: list[str] = []
    present: set[str] = set()
    for line in saved_nat.splitlines():
        line = line.strip()
        if line.startswith(":"):
            chain = line[1:].split()[0]
            if chain in CHAINS:
                present.add(chain)
        elif line.startswith("-A "):
            words = line.split()
            if len(words) < 3 or words[1] in CHAINS:
                continue
            if any(words[i] == "-j" and words[i + 1] in CHAINS for i in range(len(words) - 1)):
                deletes.append("-D " + line[3:])
    if not deletes and not present:
        return ""
    ordered = [chain for chain in CHAINS if chain in present]
    body = deletes + [f"-F {c}" for c in ordered] + [f"-X {c}" for c in ordered]
    return "*nat\n" + "\n".join(body) + "\nCOMMIT\n"


def remove(netns: str | None) -> bool:
    """Delete our chains and the jumps to them in ``netns`` (``None``: the current namespace).

    Returns whether anything was there.
    """
    removal = render_removal(netns_mod.iptables_save(netns, "-t", "nat"))
    if not removal:
        return False
    netns_mod.iptables_restore(netns, removal)
    return True


def apply(netns: str | None, rules: str) -> None:
    """Load ``rules`` into ``netns`` (``None``: the current one), replacing an earlier copy."""
    remove(netns)
    netns_mod.iptables_restore(netns, rules)


def install(netns: str | None, config: ProxyInitConfig, timestamp: int | None = None) -> str:
    """Render ``config`` (at ``timestamp``, default now) and apply it; returns the rules."""
    rules = render(config, int(time.time()) if timestamp is None else timestamp)
    apply(netns, rules)
    return rules
