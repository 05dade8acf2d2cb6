"""kube-proxy and cluster DNS for the node: service rules and names follow Services/Endpoints."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from weft.local import service_rules
from weft.local.dns import ClusterRecords, DNSServer
from weft.local.store import ObjectStore

log = logging.getLogger("weft.local.service_proxy")
Obj = dict[str, Any]


def port_rules(service: Obj, endpoints: Obj | None) -> list[service_rules.ServicePortRule]:
    """The iptables rules of one Service: one per port, with its ready endpoints."""
    meta = service["metadata"]
    spec = service["spec"]
    rules = []
    for port in spec.get("ports") or []:
        name = port.get("name", "")
        protocol = port.get("protocol", "TCP")
        eps: list[service_rules.ServiceEndpoint] = []
        for subset in (endpoints or {}).get("subsets") or []:
            target = next(
                (p["port"] for p in subset.get("ports", []) if p.get("name", "") == name), None
            )
            if target is None:
                continue
            eps.extend(
                service_rules.ServiceEndpoint(ip=a["ip"], port=int(target))
                for a in subset.get("addresses") or []
            )
        rules.append(
            service_rules.ServicePortRule(
                namespace=meta["namespace"],
                service=meta["name"],
                port_name=name,
                protocol=protocol,
                cluster_ip=spec["clusterIP"],
                port=int(port["port"]),
                endpoints=tuple(sorted(set(eps), key=lambda e: (e.ip, e.port))),
            )
        )
    return rules


class ServiceProxy:
    """Keeps the node's service rules and DNS records in line with the store."""

    def __init__(self, store: ObjectStore, dns: DNSServer) -> None:
        self.store = store
        self.dns = dns
        self._applied: list[service_rules.ServicePortRule] | None = None
        self._lock = asyncio.Lock()

    def desired(self) -> list[service_rules.ServicePortRule]:
        """The rules every Service and its Endpoints call for now."""
        rules = []
        for service in self.store.list("Service"):
            meta = service["metadata"]
            endpoints = self.store.get("Endpoints", meta["namespace"], meta["name"])
            rules.extend(port_rules(service, endpoints))
        return rules

    async def sync(self) -> None:
        """Update DNS at once and the iptables rules when they changed."""
        services = {
            (s["metadata"]["namespace"], s["metadata"]["name"]): s["spec"]["clusterIP"]
            for s in self.store.list("Service")
        }
        self.dns.update(ClusterRecords(services=services))
        async with self._lock:
            rules = self.desired()
            if rules == self._applied:
                return
            await asyncio.to_thread(service_rules.apply, rules)
            self._applied = rules
            log.debug("service rules: %d service ports", len(rules))
