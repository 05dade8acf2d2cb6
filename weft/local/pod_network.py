"""How a pod is wired: a network namespace with a /32 address on a veth into the node's bridge.

Pods get /32 addresses with the bridge address as their only (on-link) gateway, so every packet
between pods crosses the node namespace's IP layer, where the service rules (DNAT) and the
hairpin masquerade apply — no br_netfilter needed. ``/etc/netns/<pod>/resolv.conf`` and
``hosts`` make the cluster DNS apply to every process started with ``ip netns exec``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from weft.local import netns as ns
from weft.local.cluster_config import BRIDGE, ClusterConfig
from weft.local.dns import resolv_conf

POD_IFNAME = "eth0"


def create_node(cfg: ClusterConfig) -> None:
    """Create the node namespace with the bridge (the pods' gateway) and forwarding on."""
    ns.run([ns.IP, "netns", "add", cfg.node_netns])
    # Set before the bridge exists, so it inherits "default": pods must not learn shortcuts.
    for key in (
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
    ):
        ns.run(ns.exec_argv(cfg.node_netns, ["sysctl", "-q", "-w", key]))
    # br_netfilter (when the kernel has it) must not see bridged frames: a pod reaching itself
    # through a service would be DNATed at the bridge layer and dropped. All pod traffic is
    # routed (pods have /32 addresses), so the IP layer's rules see everything anyway.
    bridge_nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    ns.run(
        ns.exec_argv(
            cfg.node_netns,
            ["sh", "-c", f"[ ! -e {bridge_nf} ] || echo 0 > {bridge_nf}"],
        )
    )
    ns.batch(
        cfg.node_netns,
        [
            "link set lo up",
            f"link add {BRIDGE} type bridge",
            f"addr add {cfg.gateway} dev {BRIDGE}",
            f"link set {BRIDGE} up",
            # Cluster IPs need a route for the node's own connections (nat OUTPUT runs after
            # routing) and so that a service without endpoints is refused, not unroutable.
            f"route add {cfg.service_cidr} dev {BRIDGE}",
        ],
    )


def create_pod(cfg: ClusterConfig, pod_uid: str, ip: str, hostname: str, namespace: str) -> str:
    """Create the pod's namespace, wired to the bridge with ``ip``; returns the namespace."""
    netns = cfg.pod_netns(pod_uid)
    node_if = cfg.node_ifname(pod_uid)
    gateway = cfg.gateway.ip
    address = ipaddress.IPv4Address(ip)
    if ns.netns_exists(netns):
        delete_pod(cfg, pod_uid)
    ns.run([ns.IP, "netns", "add", netns])
    for key in (
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.accept_redirects=0",
        "net.ipv4.conf.default.accept_redirects=0",
    ):
        ns.run(ns.exec_argv(netns, ["sysctl", "-q", "-w", key]))
    ns.batch(
        cfg.node_netns,
        [
            f"link add {node_if} type veth peer name {POD_IFNAME} netns {netns}",
            f"link set {node_if} master {BRIDGE}",
            f"link set {node_if} up",
        ],
    )
    ns.batch(
        netns,
        [
            "link set lo up",
            f"addr add {address}/32 dev {POD_IFNAME}",
            f"link set {POD_IFNAME} up",
            f"route add {gateway} dev {POD_IFNAME} scope link",
            f"route add default via {gateway} dev {POD_IFNAME}",
        ],
    )
    write_etc(cfg, netns, ip, hostname, namespace)
    return netns


def write_etc(cfg: ClusterConfig, netns: str, ip: str, hostname: str, namespace: str) -> None:
    """``/etc/netns/<pod>/{resolv.conf,hosts}``: cluster DNS with search domains, own name."""
    directory = ns.NETNS_ETC_DIR / netns
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "resolv.conf").write_text(
        resolv_conf(str(cfg.gateway.ip), namespace, cfg.cluster_domain)
    )
    (directory / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"
    )


def delete_pod(cfg: ClusterConfig, pod_uid: str) -> None:
    """Remove the pod's namespace (and with it the veth pair)."""
    ns.delete_netns(cfg.pod_netns(pod_uid))
