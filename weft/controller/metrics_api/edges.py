"""Edges: which resources call which, and with which TLS identities (pure).

An edge comes from a client's outbound series (``<kind>`` → ``dst_<kind>``, with the server's
identity ``server_id``); the client's identity is the ``client_id`` the server's inbound series
recorded, taken among the identities of the client's own pods, so an edge names only what was
seen on both ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from weft.controller.metrics_api.samples import Sample
from weft.viz import resources as r

# Linkerd's wording for the proxy's no_tls_reason values.
NO_TLS_MESSAGES = {
    "disabled": "Disabled",
    "loopback": "Loopback",
    "no_authority_in_http_request": "No Authority In HTTP Request",
    "not_http": "Not HTTP",
    "not_provided_by_remote": "Not Provided By Remote",
    "not_provided_by_service_discovery": "Not Provided By Service Discovery",
}


def no_identity_message(labels: Mapping[str, str]) -> str:
    """Why a connection had no identity, as edges shows it ("" when it had one)."""
    if labels.get("server_id"):
        return ""
    reason = labels.get("no_tls_reason", "")
    if reason:
        return NO_TLS_MESSAGES.get(reason, reason.replace("_", " ").title())
    return NO_TLS_MESSAGES["disabled"] if labels.get("tls") == "disabled" else ""


def edges(
    kind: str,
    namespace: str,
    outbound: Sequence[Sample],
    inbound: Sequence[Sample],
    identities: Mapping[tuple[str, str], set[str]],
) -> list[dict[str, Any]]:
    """The edges between resources of ``kind`` that touch ``namespace`` ("" for all);
    ``identities`` holds the TLS identities of each (namespace, name)'s pods."""
    own, dst = r.label(kind), r.dst_label(kind)
    seen_by_server: dict[tuple[str, str], set[str]] = {}
    for sample in inbound:
        client = sample.labels.get("client_id")
        if client:
            key = (sample.labels.get("namespace", ""), sample.labels.get(own, ""))
            seen_by_server.setdefault(key, set()).add(client)
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for sample in outbound:
        labels = sample.labels
        src_key = (labels.get("namespace", ""), labels.get(own, ""))
        dst_key = (labels.get("dst_namespace", ""), labels.get(dst, ""))
        if not all(src_key) or not all(dst_key):
            continue
        if namespace and namespace not in (src_key[0], dst_key[0]):
            continue
        clients = sorted(identities.get(src_key, set()) & seen_by_server.get(dst_key, set()))
        server_id = labels.get("server_id", "")
        message = no_identity_message(labels)
        found.setdefault(
            (*src_key, *dst_key, server_id, message),
            {
                "src": r.Resource(kind, src_key[1], src_key[0]).to_json(),
                "dst": r.Resource(kind, dst_key[1], dst_key[0]).to_json(),
                "clientId": clients[0] if clients else "",
                "serverId": server_id,
                "noIdentityMsg": message,
            },
        )
    return [found[key] for key in sorted(found, key=lambda k: (k[0], k[2], k[1], k[3], *k[4:]))]
