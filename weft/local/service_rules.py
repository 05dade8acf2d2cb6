"""Service cluster IPs as iptables rules in the node namespace, like kube-proxy's iptables mode.

:func:`render` is pure: it turns :class:`ServicePortRule` values into ``iptables-restore
--noflush`` input that replaces every ``WEFT-`` chain of the ``nat`` and ``filter`` tables at once.

nat: ``PREROUTING``/``OUTPUT -> WEFT-SERVICES``, which matches a cluster IP and port and jumps to
the service port's ``WEFT-SVC-<hash>``; that picks an endpoint at random (``statistic``) and jumps
to its ``WEFT-SEP-<hash>``, which marks hairpin traffic (an endpoint reaching itself) for
masquerading and DNATs to the endpoint. ``POSTROUTING -> WEFT-POSTROUTING`` masquerades marked
packets. filter: ``INPUT``/``FORWARD``/``OUTPUT -> WEFT-SERVICES`` rejects new connections to
service ports without endpoints, so clients see "connection refused" at once.

The jumps from the built-in chains are added by :func:`render_jumps` only where ``iptables-save``
shows none, so :func:`apply` may run any number of times.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from weft.local import netns as netns_mod

PREFIX = "WEFT-"
SERVICES_CHAIN = "WEFT-SERVICES"
POSTROUTING_CHAIN = "WEFT-POSTROUTING"
MARK_MASQ_CHAIN = "WEFT-MARK-MASQ"
SVC_PREFIX = "WEFT-SVC-"
SEP_PREFIX = "WEFT-SEP-"
TABLES = ("nat", "filter")
MASQ_MARK = "0x4000/0x4000"
PROTOCOLS = ("TCP", "UDP")

_PORTALS = '-m comment --comment "weft service portals"'
# (table, built-in chain, match, target): the jumps into our chains, inserted first.
JUMPS: tuple[tuple[str, str, str, str], ...] = (
    ("nat", "PREROUTING", _PORTALS, SERVICES_CHAIN),
    ("nat", "OUTPUT", _PORTALS, SERVICES_CHAIN),
    ("nat", "POSTROUTING", '-m comment --comment "weft postrouting rules"', POSTROUTING_CHAIN),
    ("filter", "INPUT", f"-m conntrack --ctstate NEW {_PORTALS}", SERVICES_CHAIN),
    ("filter", "FORWARD", f"-m conntrack --ctstate NEW {_PORTALS}", SERVICES_CHAIN),
    ("filter", "OUTPUT", f"-m conntrack --ctstate NEW {_PORTALS}", SERVICES_CHAIN),
)

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# The statistic match stores the probability as a fraction of 2**31 and prints 11 digits.
_STATISTIC_SCALE = 0x80000000


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")


def _check_ipv4(ip: str) -> None:
    if str(ipaddress.IPv4Address(ip)) != ip:
        raise ValueError(f"not a canonical IPv4 address: {ip!r}")


@dataclass(frozen=True)
class ServiceEndpoint:
    """One backend of a service port: a pod address and its target port."""

    ip: str
    port: int

    def __post_init__(self) -> None:
        _check_ipv4(self.ip)
        _check_port(self.port)


@dataclass(frozen=True)
class ServicePortRule:
    """One port of a service: its cluster IP and port, and the endpoints behind it."""

    namespace: str
    service: str
    port_name: str
    protocol: str
    cluster_ip: str
    port: int
    endpoints: tuple[ServiceEndpoint, ...] = ()

    def __post_init__(self) -> None:
        for what in ("namespace", "service"):
            if not _NAME.match(getattr(self, what)):
                raise ValueError(f"invalid {what} {getattr(self, what)!r}")
        if self.port_name and not _NAME.match(self.port_name):
            raise ValueError(f"invalid port name {self.port_name!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be TCP or UDP, not {self.protocol!r}")
        _check_ipv4(self.cluster_ip)
        _check_port(self.port)

    @property
    def display(self) -> str:
        """``namespace/service:port_name`` (without ``:`` for an unnamed port)."""
        name = f"{self.namespace}/{self.service}"
        return f"{name}:{self.port_name}" if self.port_name else name

    @property
    def key(self) -> str:
        """The identity hashed into chain names: ``namespace/service:port_name:protocol``."""
        return f"{self.namespace}/{self.service}:{self.port_name}:{self.protocol}"

    def svc_chain(self) -> str:
        """The ``WEFT-SVC-`` chain that spreads this port's connections over its endpoints."""
        return SVC_PREFIX + chain_hash(self.key)

    def sep_chain(self, endpoint: ServiceEndpoint) -> str:
        """The ``WEFT-SEP-`` chain that DNATs this port's connections to ``endpoint``."""
        return SEP_PREFIX + chain_hash(f"{self.key}:{endpoint.ip}:{endpoint.port}")


def chain_hash(key: str) -> str:
    """The first 16 characters of base32(sha256(``key``)), as kube-proxy names its chains."""
    return base64.b32encode(hashlib.sha256(key.encode()).digest()).decode()[:16]


def probability(remaining: int) -> str:
    """``1/remaining`` as ``iptables-save`` prints it back (``0.33333333349`` for 3)."""
    if remaining < 1:
        raise ValueError("need at least one remaining endpoint")
    fixed = math.floor(_STATISTIC_SCALE / remaining + 0.5)
    return f"{fixed / _STATISTIC_SCALE:.11f}"


def _sorted_rules(rules: Sequence[ServicePortRule]) -> list[ServicePortRule]:
    seen: set[str] = set()
    for rule in rules:
        if rule.key in seen:
            raise ValueError(f"duplicate service port {rule.key}")
        seen.add(rule.key)
    return sorted(rules, key=lambda r: r.key)


def _sorted_endpoints(rule: ServicePortRule) -> list[ServiceEndpoint]:
    return sorted(set(rule.endpoints), key=lambda e: (ipaddress.IPv4Address(e.ip), e.port))


def _nat_lines(rule: ServicePortRule) -> tuple[list[str], list[str]]:
    """The chains of one service port and their rules (``WEFT-SERVICES`` entry first)."""
    proto = rule.protocol.lower()
    svc = rule.svc_chain()
    lines = [
        f"-A {SERVICES_CHAIN} -d {rule.cluster_ip}/32 -p {proto} -m {proto} --dport {rule.port}"
        f' -m comment --comment "{rule.display} cluster IP" -j {svc}'
    ]
    chains = [svc]
    endpoints = _sorted_endpoints(rule)
    for i, endpoint in enumerate(endpoints):
        sep = rule.sep_chain(endpoint)
        chains.append(sep)
        remaining = len(endpoints) - i
        spread = f" -m statistic --mode random --probability {probability(remaining)}"
        comment = f'-m comment --comment "{rule.display} -> {endpoint.ip}:{endpoint.port}"'
        lines.append(f"-A {svc} {comment}{spread if remaining > 1 else ''} -j {sep}")
    for endpoint in endpoints:
        sep = rule.sep_chain(endpoint)
        comment = f'-m comment --comment "{rule.display}"'
        lines.append(f"-A {sep} -s {endpoint.ip}/32 {comment} -j {MARK_MASQ_CHAIN}")
        lines.append(
            f"-A {sep} -p {proto} -m {proto} {comment}"
            f" -j DNAT --to-destination {endpoint.ip}:{endpoint.port}"
        )
    return chains, lines


def _reject_line(rule: ServicePortRule) -> str:
    proto = rule.protocol.lower()
    return (
        f"-A {SERVICES_CHAIN} -d {rule.cluster_ip}/32 -p {proto} -m {proto} --dport {rule.port}"
        f' -m comment --comment "{rule.display} has no endpoints"'
        " -j REJECT --reject-with icmp-port-unreachable"
    )


def render(rules: Sequence[ServicePortRule], *, existing_chains: Collection[str] = ()) -> str:
    """The ``iptables-restore --noflush`` input replacing every ``WEFT-`` rule with ``rules``.

    ``WEFT-SVC-``/``WEFT-SEP-`` chains in ``existing_chains`` that ``rules`` no longer need are
    flushed and deleted. The jumps from built-in chains are not included (see
    :func:`render_jumps`).
    """
    chains = [SERVICES_CHAIN, POSTROUTING_CHAIN, MARK_MASQ_CHAIN]
    nat = [
        f"-A {POSTROUTING_CHAIN} -m mark ! --mark {MASQ_MARK} -j RETURN",
        f"-A {POSTROUTING_CHAIN} -j MARK --set-xmark 0x4000/0x0",
        f"-A {POSTROUTING_CHAIN} -j MASQUERADE",
        f"-A {MARK_MASQ_CHAIN} -j MARK --set-xmark {MASQ_MARK}",
    ]
    rejects: list[str] = []
    for rule in _sorted_rules(rules):
        if not rule.endpoints:
            rejects.append(_reject_line(rule))
            continue
        rule_chains, lines = _nat_lines(rule)
        chains += rule_chains
        nat += lines
    stale = sorted(
        c for c in set(existing_chains) - set(chains) if c.startswith((SVC_PREFIX, SEP_PREFIX))
    )
    out = ["*nat"]
    out += [f":{chain} - [0:0]" for chain in (*chains, *stale)]
    out += nat
    out += [f"-X {chain}" for chain in stale]
    out += ["COMMIT", "*filter", f":{SERVICES_CHAIN} - [0:0]", *rejects, "COMMIT"]
    return "\n".join(out) + "\n"


def _parse_save(saved: str) -> dict[str, tuple[set[str], list[str]]]:
    """Per table of ``iptables-save`` output: its chain names and its ``-A`` lines."""
    tables: dict[str, tuple[set[str], list[str]]] = {}
    current: tuple[set[str], list[str]] | None = None
    for raw in saved.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            current = tables.setdefault(line[1:], (set(), []))
        elif current is None:
            continue
        elif line.startswith(":"):
            current[0].add(line[1:].split()[0])
        elif line.startswith("-A "):
            current[1].append(line)
    return tables


def _target(line: str) -> str:
    """The ``-j`` target of a saved rule (the last ``-j``: comments come before it), or ``""``."""
    _, jump, after = line.rpartition(" -j ")
    return after.split()[0] if jump and after.split() else ""


def weft_chains(saved: str) -> dict[str, set[str]]:
    """The ``WEFT-`` chains per table (``nat``, ``filter``) in ``iptables-save`` output."""
    parsed = _parse_save(saved)
    empty: tuple[set[str], list[str]] = (set(), [])
    return {
        table: {c for c in parsed.get(table, empty)[0] if c.startswith(PREFIX)} for table in TABLES
    }


def render_jumps(saved: str) -> str:
    """Restore input inserting the :data:`JUMPS` that ``iptables-save`` output lacks, or ``""``."""
    parsed = _parse_save(saved)
    sections: list[str] = []
    for table in TABLES:
        lines = parsed.get(table, (set(), []))[1]
        present = {(line.split()[1], _target(line)) for line in lines}
        inserts = [
            f"-I {chain} {match} -j {target}"
            for tbl, chain, match, target in JUMPS
            if tbl == table and (chain, target) not in present
        ]
        if inserts:
            sections += [f"*{table}", *inserts, "COMMIT"]
    return "\n".join(sections) + "\n" if sections else ""


def render_removal(saved: str) -> str:
    """Restore input deleting every ``WEFT-`` chain and every jump to one, or ``""``."""
    parsed = _parse_save(saved)
    sections: list[str] = []
    for table in TABLES:
        if table not in parsed:
            continue
        chains, lines = parsed[table]
        ours = sorted(c for c in chains if c.startswith(PREFIX))
        deletes = [
            "-D " + line[3:]
            for line in lines
            if not line.split()[1].startswith(PREFIX) and _target(line).startswith(PREFIX)
        ]
        if ours or deletes:
            flushes = [f"-F {c}" for c in ours] + [f"-X {c}" for c in ours]
            sections += [f"*{table}", *deletes, *flushes, "COMMIT"]
    return "\n".join(sections) + "\n" if sections else ""


def list_weft_chains(netns: str | None = None) -> dict[str, set[str]]:
    """The ``WEFT-`` chains per table in ``netns`` (``None``: the current namespace)."""
    return weft_chains(netns_mod.iptables_save(netns))


def apply(rules: Sequence[ServicePortRule], netns: str | None = None) -> None:
    """Replace the service rules in ``netns`` with ``rules`` and make sure the jumps exist."""
    saved = netns_mod.iptables_save(netns)
    netns_mod.iptables_restore(netns, render(rules, existing_chains=weft_chains(saved)["nat"]))
    jumps = render_jumps(saved)
    if jumps:
        netns_mod.iptables_restore(netns, jumps)


def remove(netns: str | None = None) -> bool:
    """Delete every ``WEFT-`` chain and jump in ``netns``; returns whether anything was there."""
    removal = render_removal(netns_mod.iptables_save(netns))
    if not removal:
        return False
    netns_mod.iptables_restore(netns, removal)
    return True
