"""What discovery yields: endpoints, the concrete addresses requests and connections go to.

The :class:`~weft.proxy.routing.Router` (the seam service discovery plugs into) maps names to
logical destinations, which pick among these.
"""

from __future__ import annotations

from typing import NamedTuple

from weft.proxy.metrics import LabelPairs

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
