"""Where a request or connection goes: the seam service discovery plugs into."""

from __future__ import annotations

import asyncio
from typing import NamedTuple, Protocol

from weft.proxy.errors import GRPC_UNAVAILABLE, ProxyError
from weft.proxy.metrics import LabelPairs

Addr = tuple[str, int]


class Endpoint(NamedTuple):
    """A concrete address to dial, the ``dst_*`` labels its metrics carry, and the identity
    its certificate must have (``None``: not meshed, so plaintext)."""

    addr: Addr
    labels: LabelPairs = ()
    identity: str | None = None


class Router(Protocol):
    """Chooses an endpoint for a logical destination.

    ``authority`` is the request's logical name (``l5d-dst-override``, ``:authority`` or
    ``Host``), or ``None`` for opaque TCP; ``target`` is the connection's original destination
    (or configured forward address), ``None`` when it has neither.
    """

    def endpoint(self, authority: str | None, target: Addr | None) -> Endpoint:
        """The endpoint for one request (HTTP) or one connection (opaque TCP).

        Raises :class:`ProxyError` when there is nowhere to send it.
        """
        ...

    def prepare(self, target: Addr | None) -> asyncio.Future[None] | None:
        """Start discovering ``target``; a future to wait on before routing, or None if ready."""
        ...


class OriginalDestination:
    """The standalone router: every destination is its original destination address."""

    def endpoint(self, authority: str | None, target: Addr | None) -> Endpoint:
        if target is None:
            raise ProxyError(
                502, f"no route to {authority or 'an unknown destination'}", GRPC_UNAVAILABLE
            )
        return Endpoint(target)

    def prepare(self, target: Addr | None) -> asyncio.Future[None] | None:
        return None
