"""Reading a proxy's ``/metrics`` for the demo: which meshed edges have carried requests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


def identity(service_account: str, namespace: str, control_namespace: str, domain: str) -> str:
    """The mesh identity of a service account, as proxies report it in server_id/client_id."""
    return f"{service_account}.{namespace}.serviceaccount.identity.{control_namespace}.{domain}"


@dataclass(frozen=True)
class Edge:
    """Outbound requests from one proxy to a server with ``server_id``, over mTLS."""

    name: str
    server_id: str


def total(text: str, name: str, labels: dict[str, str]) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    found = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                found += sample.value
    return found


def edges_seen(text: str, edges: Iterable[Edge]) -> list[Edge]:
    """The edges with at least one outbound mTLS request in the exposition ``text``."""
    return [
        edge
        for edge in edges
        if total(
            text,
            "request_total",
            {"direction": "outbound", "tls": "true", "server_id": edge.server_id},
        )
        > 0
    ]
