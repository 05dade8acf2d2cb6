"""Logical destinations: the profile a request follows and the endpoint it goes to.

A :class:`Logical` is what a request's name (or its connection's original destination) stands
for. The standalone proxy has one, which sends everything to the original destination; with a
destination service each name gets its own (``weft.proxy.destination``), with the routes, retry
budget and traffic split of its profile and endpoints balanced by :mod:`weft.proxy.balance`. A
:class:`Router` (the seam service discovery plugs into) maps a request's name, or without one its
connection's original destination, to its logical destination.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Protocol

from mypy_extensions import mypyc_attr

from weft.proxy.balance import Load
from weft.proxy.budget import RetryBudget
from weft.proxy.discovery import Addr, Endpoint
from weft.proxy.errors import GRPC_UNAVAILABLE, ProxyError
from weft.proxy.profiles import NO_PROFILE, Profile

MAX_FALLBACKS = 10000  # original-destination loads kept before the table is started afresh


class Fallbacks:
    """Loads for original destinations, so connections to one keep a single estimate."""

    def __init__(self) -> None:
        self.loads: dict[Addr, Load] = {}

    def load(self, target: Addr | None, name: str | None) -> Load:
        """The load of ``target`` itself; :class:`ProxyError` when there is no target."""
        if target is None:
            raise ProxyError(
                502, f"no route to {name or 'an unknown destination'}", GRPC_UNAVAILABLE
            )
        load = self.loads.get(target)
        if load is None:
            if len(self.loads) >= MAX_FALLBACKS:
                self.loads.clear()
            load = self.loads[target] = Load(Endpoint(target), time.monotonic())
        return load


@mypyc_attr(allow_interpreted_subclasses=True)  # harness/proxy_pair.py subclasses it
class Logical:
    """A logical destination. This base sends everything to the original destination."""

    def __init__(self, fallbacks: Fallbacks, name: str | None = None) -> None:
        self.fallbacks = fallbacks
        self.name = name
        self.profile: Profile = NO_PROFILE
        self._budget: RetryBudget | None = None

    def waiting(self) -> asyncio.Future[None] | None:
        """A future to wait on before the first request is routed, or None when ready."""
        return None

    def pick(self, target: Addr | None, name: str | None = None) -> Load | None:
        """Where the next request goes; None when the destination exists but has no endpoints
        right now (wait on :meth:`changed`, at most the dispatch timeout). Raises
        :class:`ProxyError` when there is nowhere to send it."""
        return self.fallbacks.load(target, self.name or name)

    def changed(self) -> asyncio.Future[None] | None:
        """A future that completes at the next endpoint change; None if there will be none."""
        return None

    def budget(self, now: float) -> RetryBudget:
        """The retry budget shared by this destination's retryable routes."""
        budget = self._budget
        if budget is None:
            p = self.profile
            budget = RetryBudget(p.retry_ratio, p.min_retries_per_second, p.retry_ttl, now)
            self._budget = budget
        return budget

    def set_profile(self, profile: Profile) -> None:
        """Follow a new profile (the retry budget starts afresh if its parameters changed)."""
        old = self.profile
        self.profile = profile
        if (old.retry_ratio, old.min_retries_per_second, old.retry_ttl) != (
            profile.retry_ratio,
            profile.min_retries_per_second,
            profile.retry_ttl,
        ):
            self._budget = None


class Router(Protocol):
    """Chooses the logical destination of requests and connections."""

    def logical(self, name: str | None, target: Addr | None) -> Logical:
        """The destination of a request named ``name`` (``l5d-dst-override``, ``:authority`` or
        ``Host``; ``None`` for opaque TCP) on a connection whose original destination (or
        configured forward address) is ``target``."""
        ...


class OriginalDestination:
    """The standalone router: every destination is its original destination address."""

    def __init__(self) -> None:
        self._logical = Logical(Fallbacks())

    def logical(self, name: str | None, target: Addr | None) -> Logical:
        return self._logical


def split_host_port(authority: str) -> tuple[str, int | None]:
    """``(host, port)`` of an authority; the port is None when absent or invalid."""
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = authority[1:end], authority[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    elif authority.count(":") == 1:
        host, port_text = authority.split(":")
    else:
        host, port_text = authority, ""
    valid = port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536
    port = int(port_text) if valid else None
    return host, port


def canonical_name(
    authority: str, default_port: int, namespace: str, suffixes: tuple[str, ...]
) -> str | None:
    """The fully qualified ``host:port`` that the destination service resolves, or None.

    Short names are completed as the pod's resolver would (``web`` → ``web.<namespace>.svc.…``,
    ``web.ns`` → ``web.ns.svc.…``, ``web.ns.svc`` → ``web.ns.svc.…``); IP addresses and names
    outside ``suffixes`` (``.`` means every name) give None, and so go to the original
    destination. Without a port the original destination's port is used.
    """
    host, port = split_host_port(authority.strip())
    host = host.lower().rstrip(".")
    if not host:
        return None
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    cluster = next((s for s in suffixes if s.startswith("svc.")), "")
    if cluster:
        domain = cluster[4:].rstrip(".")
        labels = host.split(".")
        if len(labels) == 1 and namespace:
            host = f"{host}.{namespace}.svc.{domain}"
        elif len(labels) == 2:
            host = f"{host}.svc.{domain}"
        elif len(labels) == 3 and labels[2] == "svc":
            host = f"{host}.{domain}"
    fqdn = host + "."
    if not any(s == "." or fqdn.endswith("." + s) for s in suffixes):
        return None
    return f"{host}:{port or default_port}"
