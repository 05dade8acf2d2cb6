"""What the controller adds to a proxy's tap event: who the source and destination are (pure).

Proxies know addresses and TLS; the controller knows the cluster. Each side of an event whose IP
is a pod's gets that pod's ``pod``, ``namespace``, owner (``deployment``, ``k8s_job``, ...) and
``serviceaccount`` labels, as Linkerd's tap server adds them. Events are in protobuf's JSON mapping
(``TapEvent`` with camelCase fields; an IPv4 address is ``{"ip": {"ipv4": <u32>}, "port": N}``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from weft.controller.destination.addresses import object_key, owner_label, pod_ips, service_account

Obj = dict[str, Any]


def pod_index(pods: Iterable[Obj]) -> dict[str, dict[str, str]]:
    """Pod IP → the labels that name the pod in tap events."""
    index: dict[str, dict[str, str]] = {}
    for pod in pods:
        namespace, name = object_key(pod)
        labels = {"pod": name, "namespace": namespace, "serviceaccount": service_account(pod)}
        owner = owner_label(pod)
        if owner is not None:
            labels[owner[0]] = owner[1]
        for ip in pod_ips(pod):
            index[ip] = labels
    return index


def address_ip(address: Any) -> str | None:
    """The dotted IPv4 (or IPv6) text of a ``TcpAddress`` in JSON form, if it has one."""
    if not isinstance(address, dict):
        return None
    ip = address.get("ip")
    if not isinstance(ip, dict):
        return None
    v4 = ip.get("ipv4")
    if isinstance(v4, int):
        return str(ipaddress.IPv4Address(v4 & 0xFFFFFFFF))
    v6 = ip.get("ipv6")
    if isinstance(v6, dict):
        first, last = int(v6.get("first", 0)), int(v6.get("last", 0))
        return str(ipaddress.IPv6Address((first << 64) | last))
    return None


def enrich(event: Obj, index: dict[str, dict[str, str]]) -> Obj:
    """``event`` with pod labels added to ``sourceMeta`` and ``destinationMeta`` (in place)."""
    for side, meta in (("source", "sourceMeta"), ("destination", "destinationMeta")):
        ip = address_ip(event.get(side))
        found = index.get(ip) if ip is not None else None
        if not found:
            continue
        labels = event.setdefault(meta, {}).setdefault("labels", {})
        for key, value in found.items():
            labels.setdefault(key, value)
    return event
