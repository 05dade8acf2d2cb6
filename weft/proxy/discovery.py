"""Where a request or connection goes: the seam service discovery plugs into.

A :class:`Router` maps a request's logical name (or, without one, the connection's original
destination) to a :class:`~weft.proxy.routing.Logical` destination, which holds the profile its
requests follow and picks an endpoint for each of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from weft.proxy.metrics import LabelPairs

if TYPE_CHECKING:
    from weft.proxy.routing import Logical

Addr = tuple[str, int]


class Endpoint(NamedTuple):
    """A concrete address to dial, the ``dst_*`` labels its metrics carry, the identity its
    certificate must have (``None``: not meshed, so plaintext), and whether discovery hinted
    that it speaks HTTP/2 (a meshed proxy: HTTP/1 requests go to it as HTTP/2 with
    ``l5d-orig-proto``)."""

    addr: Addr
    labels: LabelPairs = ()
    identity: str | None = None
    h2: bool = False


class Router(Protocol):
    """Chooses the logical destination of requests and connections."""

    def logical(self, name: str | None, target: Addr | None) -> Logical:
        """The destination of a request named ``name`` (``l5d-dst-override``, ``:authority`` or
        ``Host``; ``None`` for opaque TCP) on a connection whose original destination (or
        configured forward address) is ``target``."""
        ...
