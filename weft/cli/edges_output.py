"""``weft edges`` output (pure): the metrics API's Edges as Linkerd's table or as JSON.

SECURED is ``√`` for an edge both ends proved with mTLS identities, else the reason there was
none. The table shortens identities to ``<serviceaccount>.<namespace>`` (the rest is the same
for every workload of a cluster); ``-o wide`` and JSON show them whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from weft.cli import viz_format as fmt

SECURED = "√"
NO_EDGES = "No edges found."


@dataclass(frozen=True)
class Edge:
    """Requests from one resource to another, with the identities the proxies saw."""

    src: str
    src_namespace: str
    dst: str
    dst_namespace: str
    client_id: str
    server_id: str
    no_identity_msg: str

    def sort_key(self) -> tuple[str, str, str, str]:
        """Source namespace and name, then destination's."""
        return (self.src_namespace, self.src, self.dst_namespace, self.dst)


def parse_edges(answer: dict[str, Any]) -> list[Edge]:
    """The edges of an Edges ``ok`` answer, sorted; raises
    :class:`~weft.cli.viz_format.AnswerError`."""
    edges = []
    for data in fmt.objects(answer.get("edges"), "edges"):
        src = fmt.obj(data.get("src") or {}, "edges[].src")
        dst = fmt.obj(data.get("dst") or {}, "edges[].dst")
        edges.append(
            Edge(
                src=fmt.text(src, "name"),
                src_namespace=fmt.text(src, "namespace"),
                dst=fmt.text(dst, "name"),
                dst_namespace=fmt.text(dst, "namespace"),
                client_id=fmt.text(data, "clientId"),
                server_id=fmt.text(data, "serverId"),
                no_identity_msg=fmt.text(data, "noIdentityMsg"),
            )
        )
    return sorted(edges, key=Edge.sort_key)


def short_identity(identity: str) -> str:
    """``web.emojivoto.serviceaccount.identity.weft.cluster.local`` → ``web.emojivoto``."""
    return ".".join(identity.split(".")[:2])


def render_table(edges: Sequence[Edge], wide: bool) -> str:
    """Linkerd's ``edges`` table."""
    header = ["SRC", "DST", "SRC_NS", "DST_NS", "CLIENT_ID", "SERVER_ID", "SECURED"]
    show = (lambda identity: identity) if wide else short_identity
    rows = [
        [
            e.src,
            e.dst,
            e.src_namespace,
            e.dst_namespace,
            show(e.client_id) or fmt.NO_VALUE,
            show(e.server_id) or fmt.NO_VALUE,
            e.no_identity_msg or SECURED,
        ]
        for e in edges
    ]
    return "\n".join(fmt.table(header, rows, [fmt.LEFT] * len(header)))


def render_json(edges: Sequence[Edge]) -> str:
    """``edges -o json``: a list of edge objects."""
    return json.dumps(
        [
            {
                "src": e.src,
                "src_namespace": e.src_namespace,
                "dst": e.dst,
                "dst_namespace": e.dst_namespace,
                "client_id": e.client_id,
                "server_id": e.server_id,
                "no_identity_msg": e.no_identity_msg,
            }
            for e in edges
        ],
        indent=2,
    )
