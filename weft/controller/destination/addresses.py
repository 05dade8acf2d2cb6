"""What ``Destination.Get`` answers for a path, computed from a snapshot of the cluster.

Everything here is pure: :class:`ClusterState` is fed watch events by the service, and
:func:`resolve` and :func:`diff` turn it into the updates of one ``Get`` stream. The state also
holds the ServiceProfiles and TrafficSplits that :mod:`.profiles` answers ``GetProfile`` from.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from weft.proxy.config import DEFAULT_OPAQUE_PORTS

Obj = dict[str, Any]
Key = tuple[str, str]
Labels = tuple[tuple[str, str], ...]
AddrKey = tuple[str, int]

PROXY_CONTAINER = "linkerd-proxy"
INIT_CONTAINER = "linkerd-init"
IDENTITY_DISABLED_ENV = "LINKERD2_PROXY_IDENTITY_DISABLED"
OPAQUE_PORTS_ENV = "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION"
HASH_LABEL = "pod-template-hash"
DEFAULT_PORT = 80

# The metric label naming a pod's controller, by the controller's kind (others: lower-cased).
_OWNER_LABELS = {
    "Deployment": "deployment",
    "ReplicaSet": "replicaset",
    "StatefulSet": "statefulset",
    "DaemonSet": "daemonset",
    "Job": "k8s_job",  # not "job": Prometheus keeps that label for itself (Linkerd does the same)
    "CronJob": "cronjob",
    "ReplicationController": "replicationcontroller",
}


@dataclass(frozen=True)
class MeshSettings:
    """The control plane's namespace, the identity trust domain and the cluster's DNS domain."""

    control_namespace: str = "weft"
    trust_domain: str = "cluster.local"
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True)
class Address:
    """One endpoint: where it is, its metric labels, its TLS identity and its protocol hint."""

    ip: str
    port: int
    labels: Labels
    identity: str | None
    h2: bool


@dataclass(frozen=True)
class AddressSet:
    """A destination's endpoints; ``exists`` is False when the destination is unknown."""

    exists: bool
    labels: Labels
    addrs: dict[AddrKey, Address]


@dataclass(frozen=True)
class Target:
    """What a path names: a service port, an IP address and port, or nothing known."""

    kind: Literal["service", "ip", "unknown"]
    port: int = 0
    namespace: str = ""
    name: str = ""
    ip: str = ""


UNKNOWN_TARGET = Target("unknown")


@dataclass(frozen=True)
class Add:
    """Addresses that are new or changed, with the set-level labels."""

    addrs: tuple[Address, ...]
    labels: Labels


@dataclass(frozen=True)
class Remove:
    """Addresses that are gone."""

    addrs: tuple[AddrKey, ...]


@dataclass(frozen=True)
class NoEndpoints:
    """The destination has no endpoints; ``exists`` False means it is unknown."""

    exists: bool


Update: TypeAlias = Add | Remove | NoEndpoints


# -- paths --------------------------------------------------------------------------------


def parse_path(path: str, settings: MeshSettings) -> Target:
    """Parse ``<svc>.<ns>.svc.<cluster-domain>[.][:port]`` or ``<ipv4>:<port>`` (port 80)."""
    host, sep, port_text = path.strip().lower().rpartition(":")
    if not sep:
        host, port_text = port_text, str(DEFAULT_PORT)
    if not (port_text.isascii() and port_text.isdigit()):
        return UNKNOWN_TARGET
    port = int(port_text)
    if not 0 < port < 65536 or not host:
        return UNKNOWN_TARGET
    try:
        return Target("ip", port, ip=str(ipaddress.IPv4Address(host)))
    except ValueError:
        pass
    suffix = ".svc." + settings.cluster_domain.lower().strip(".")
    name = host.removesuffix(".")
    if not name.endswith(suffix):
        return UNKNOWN_TARGET
    parts = name[: -len(suffix)].split(".")
    if len(parts) != 2 or not all(parts):
        return UNKNOWN_TARGET
    return Target("service", port, namespace=parts[1], name=parts[0])


# -- the cluster snapshot -----------------------------------------------------------------


def object_key(obj: Obj) -> Key:
    """An object's (namespace, name)."""
    meta = obj["metadata"]
    return str(meta.get("namespace") or "default"), str(meta["name"])


def service_ips(service: Obj) -> list[str]:
    """A service's cluster IPs (none for a headless service)."""
    spec = service.get("spec") or {}
    ips = [spec.get("clusterIP"), *(spec.get("clusterIPs") or [])]
    return list(dict.fromkeys(str(ip) for ip in ips if ip and ip != "None"))


def pod_ips(pod: Obj) -> list[str]:
    """A pod's IPs while it is Running (none otherwise)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return []
    ips = [status.get("podIP"), *((entry or {}).get("ip") for entry in status.get("podIPs") or [])]
    return list(dict.fromkeys(str(ip) for ip in ips if ip))


class ClusterState:
    """Services, Endpoints, pods, ServiceProfiles and TrafficSplits by (namespace, name).

    Services and pods are also indexed by IP.
    """

    def __init__(self) -> None:
        self.services: dict[Key, Obj] = {}
        self.endpoints: dict[Key, Obj] = {}
        self.pods: dict[Key, Obj] = {}
        self.profiles: dict[Key, Obj] = {}
        self.splits: dict[Key, Obj] = {}
        self.service_by_ip: dict[str, Key] = {}
        self.pod_by_ip: dict[str, Key] = {}

    def _table(self, kind: str) -> dict[Key, Obj] | None:
        return {
            "Service": self.services,
            "Endpoints": self.endpoints,
            "Pod": self.pods,
            "ServiceProfile": self.profiles,
            "TrafficSplit": self.splits,
        }.get(kind)

    def _index(self, kind: str) -> tuple[dict[str, Key], Callable[[Obj], list[str]]] | None:
        if kind == "Service":
            return self.service_by_ip, service_ips
        if kind == "Pod":
            return self.pod_by_ip, pod_ips
        return None

    def apply(self, kind: str, event_type: str, obj: Obj) -> None:
        """Apply one ``ADDED``, ``MODIFIED`` or ``DELETED`` event; other kinds are ignored."""
        table = self._table(kind)
        if table is None:
            return
        if event_type not in ("ADDED", "MODIFIED", "DELETED"):
            raise ValueError(f"unknown watch event type {event_type!r}")
        key = object_key(obj)
        self._remove(kind, table, key)
        if event_type != "DELETED":
            table[key] = obj
            index = self._index(kind)
            if index is not None:
                by_ip, ips_of = index
                for ip in ips_of(obj):
                    by_ip[ip] = key

    def replace(self, kind: str, objects: Iterable[Obj]) -> None:
        """Make ``objects`` the whole of ``kind`` (after a fresh list)."""
        table = self._table(kind)
        if table is None:
            return
        for key in list(table):
            self._remove(kind, table, key)
        for obj in objects:
            self.apply(kind, "ADDED", obj)

    def traffic_split(self, namespace: str, service: str) -> Obj | None:
        """The TrafficSplit whose apex (``spec.service``) is ``service``; the first by name."""
        keys = (
            key
            for key, split in self.splits.items()
            if key[0] == namespace and _apex(split) == service
        )
        first = min(keys, default=None)
        return None if first is None else self.splits[first]

    def _remove(self, kind: str, table: dict[Key, Obj], key: Key) -> None:
        old = table.pop(key, None)
        index = self._index(kind)
        if old is None or index is None:
            return
        by_ip, ips_of = index
        for ip in ips_of(old):
            if by_ip.get(ip) != key:
                continue
            del by_ip[ip]
            # Another object may hold the same IP (a pod IP reused before the old pod is gone).
            for other_key, other in table.items():
                if ip in ips_of(other):
                    by_ip[ip] = other_key
                    break


def _apex(split: Obj) -> Any:
    """A TrafficSplit's ``spec.service`` (None when it has no readable spec)."""
    spec = split.get("spec")
    return spec.get("service") if isinstance(spec, dict) else None


# -- resolution ---------------------------------------------------------------------------


def unknown_set() -> AddressSet:
    """The answer for a destination nobody knows."""
    return AddressSet(False, (), {})


def resolve(state: ClusterState, path: str, settings: MeshSettings) -> AddressSet:
    """The endpoints ``Get`` reports for ``path`` in ``state``."""
    target = parse_path(path, settings)
    if target.kind == "service":
        service = state.services.get((target.namespace, target.name))
        if service is None:
            return unknown_set()
        return service_addresses(state, service, target.port, settings)
    if target.kind == "ip":
        key = state.service_by_ip.get(target.ip)
        if key is not None:
            return service_addresses(state, state.services[key], target.port, settings)
        key = state.pod_by_ip.get(target.ip)
        if key is not None:
            address = pod_address(target.ip, target.port, state.pods[key], settings)
            return AddressSet(True, (("namespace", key[0]),), {(target.ip, target.port): address})
    return unknown_set()


def service_addresses(
    state: ClusterState, service: Obj, port: int, settings: MeshSettings
) -> AddressSet:
    """The ready endpoints behind ``port`` of ``service``.

    A port the service does not list is used as the endpoint port as it is, as Linkerd does.
    """
    namespace, name = object_key(service)
    service_port = next(
        (p for p in service.get("spec", {}).get("ports") or [] if _int(p.get("port")) == port),
        None,
    )
    endpoints = state.endpoints.get((namespace, name)) or {}
    addrs: dict[AddrKey, Address] = {}
    for subset in endpoints.get("subsets") or []:
        endpoint_port = port if service_port is None else _endpoint_port(subset, service_port)
        if endpoint_port is None:
            continue
        for entry in subset.get("addresses") or []:
            ip = str(entry.get("ip") or "")
            if not _valid_ip(ip):
                continue
            pod = _referenced_pod(state, entry.get("targetRef"), namespace)
            addrs[(ip, endpoint_port)] = pod_address(ip, endpoint_port, pod, settings)
    return AddressSet(True, (("namespace", namespace), ("service", name)), addrs)


def _endpoint_port(subset: Obj, service_port: Obj) -> int | None:
    """The subset port a service port maps to: the same name, else the only port."""
    ports = subset.get("ports") or []
    name = service_port.get("name")
    if name:
        return next((_int(p.get("port")) for p in ports if p.get("name") == name), None)
    return _int(ports[0].get("port")) if len(ports) == 1 else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _valid_ip(ip: str) -> bool:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True


def _referenced_pod(state: ClusterState, ref: Obj | None, namespace: str) -> Obj | None:
    if not ref or ref.get("kind", "Pod") != "Pod" or not ref.get("name"):
        return None
    return state.pods.get((str(ref.get("namespace") or namespace), str(ref["name"])))


# -- pods ---------------------------------------------------------------------------------


def proxy_container(pod: Obj) -> Obj | None:
    """The pod's ``linkerd-proxy`` container (a sidecar or a native sidecar), if meshed."""
    spec = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if container.get("name") == PROXY_CONTAINER:
            return dict(container)
    return None


def service_account(pod: Obj) -> str:
    """The pod's service account name."""
    spec = pod.get("spec") or {}
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def identity_name(pod: Obj, settings: MeshSettings) -> str:
    """The TLS identity of a meshed pod."""
    namespace = object_key(pod)[0]
    return (
        f"{service_account(pod)}.{namespace}.serviceaccount.identity."
        f"{settings.control_namespace}.{settings.trust_domain}"
    )


def owner_label(pod: Obj) -> tuple[str, str] | None:
    """The (label, value) naming the pod's controller, e.g. ``("deployment", "web")``."""
    refs = pod["metadata"].get("ownerReferences") or []
    ref = next((r for r in refs if r.get("controller")), refs[0] if len(refs) == 1 else None)
    if ref is None:
        return None
    kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
    if kind == "ReplicaSet":
        pod_hash = (pod["metadata"].get("labels") or {}).get(HASH_LABEL)
        if pod_hash and name.endswith(f"-{pod_hash}"):
            return "deployment", name[: -len(pod_hash) - 1]
    return _OWNER_LABELS.get(kind, kind.lower()), name


def pod_labels(pod: Obj, settings: MeshSettings, meshed: bool) -> Labels:
    """The per-address metric labels of a pod's endpoint, sorted by name."""
    labels: dict[str, str] = {}
    owner = owner_label(pod)
    if owner is not None:
        labels[owner[0]] = owner[1]
    pod_hash = (pod["metadata"].get("labels") or {}).get(HASH_LABEL)
    if pod_hash:
        labels["pod_template_hash"] = str(pod_hash)
    if meshed:
        labels["control_plane_ns"] = settings.control_namespace
    labels["pod"] = object_key(pod)[1]
    labels["serviceaccount"] = service_account(pod)
    return tuple(sorted(labels.items()))


def pod_address(ip: str, port: int, pod: Obj | None, settings: MeshSettings) -> Address:
    """The address ``ip:port`` of ``pod`` (an unknown pod gives a bare address)."""
    if pod is None:
        return Address(ip, port, (), None, False)
    proxy = proxy_container(pod)
    if proxy is None:
        return Address(ip, port, pod_labels(pod, settings, False), None, False)
    labels = pod_labels(pod, settings, True)
    if port in skipped_inbound_ports(pod):
        # The proxy never sees this port (its own admin port, or one the pod skips): plaintext.
        return Address(ip, port, labels, None, False)
    env = {str(e.get("name")): str(e.get("value") or "") for e in proxy.get("env") or []}
    identity = None if IDENTITY_DISABLED_ENV in env else identity_name(pod, settings)
    # The pod's proxy copies opaque ports as bytes: HTTP/2 sent there would reach the app as such.
    opaque = env.get(OPAQUE_PORTS_ENV)
    h2 = port not in (DEFAULT_OPAQUE_PORTS if opaque is None else _port_list(opaque))
    return Address(ip, port, labels, identity, h2)


def skipped_inbound_ports(pod: Obj) -> frozenset[int]:
    """Ports the pod's ``linkerd-init`` rules leave out of inbound redirection."""
    spec = pod.get("spec") or {}
    for container in spec.get("initContainers") or []:
        if container.get("name") != INIT_CONTAINER:
            continue
        argv = [str(a) for a in (*(container.get("command") or []), *(container.get("args") or []))]
        for flag, value in itertools.pairwise(argv):
            if flag == "--inbound-ports-to-ignore":
                return _port_list(value)
    return frozenset()


def _port_list(text: str) -> frozenset[int]:
    ports: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            ports.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(ports)


# -- stream updates -----------------------------------------------------------------------


def addr_sort_key(key: AddrKey) -> tuple[int, int, str, int]:
    """Order addresses numerically by IP, then port."""
    ip, port = key
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return 0, 0, ip, port
    return parsed.version, int(parsed), ip, port


def _sorted(addrs: Iterable[Address]) -> tuple[Address, ...]:
    return tuple(sorted(addrs, key=lambda a: addr_sort_key((a.ip, a.port))))


def diff(old: AddressSet | None, new: AddressSet) -> list[Update]:
    """The updates that take a stream that last reported ``old`` (None: nothing yet) to ``new``."""
    if old is None:
        if new.addrs:
            return [Add(_sorted(new.addrs.values()), new.labels)]
        return [NoEndpoints(new.exists)]
    out: list[Update] = []
    removed = sorted((k for k in old.addrs if k not in new.addrs), key=addr_sort_key)
    if removed:
        out.append(Remove(tuple(removed)))
    relabelled = old.labels != new.labels
    added = [a for k, a in new.addrs.items() if relabelled or old.addrs.get(k) != a]
    if added:
        out.append(Add(_sorted(added), new.labels))
    if not new.addrs and (old.addrs or old.exists != new.exists):
        out.append(NoEndpoints(new.exists))
    return out
