"""Service rules in a real kernel: a node namespace with a bridge and three /32 pods.

Pods ``a`` and ``b`` serve their own name over HTTP on 8080; pod ``c`` is a client. The node
routes the (test-only) service CIDR onto the bridge: without a route, the node's own connections
to a cluster IP fail before the nat ``OUTPUT`` hook, and pods get "no route" (not our REJECT) for
a service without endpoints.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial

import pytest

from harness.mesh import wait_for
from weft.local import netns as netns_mod
from weft.local import service_rules
from weft.local.netns import Topology
from weft.local.service_rules import ServiceEndpoint, ServicePortRule

pytestmark = pytest.mark.netns

GATEWAY = "10.244.0.1"
SERVICE_CIDR = "10.97.0.0/16"
WEB_IP, SOLO_IP, EMPTY_IP = "10.97.0.10", "10.97.0.11", "10.97.0.12"
POD_IPS = {"a": "10.244.1.2", "b": "10.244.1.3", "c": "10.244.1.4"}
SERVER_PORT = 8080
NODE_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.conf.default.send_redirects": 0,
    # Pod traffic is routed, never bridged between pods; with br_netfilter on, a hairpin
    # connection is DNATed at the bridge layer and "bridged" back out of its own port: dropped.
    "net.bridge.bridge-nf-call-iptables": 0,
}


def rule(name: str, ip: str, *backends: str) -> ServicePortRule:
    """Port ``http`` (80 -> 8080) of service ``default/<name>`` backed by pods ``backends``."""
    endpoints = tuple(ServiceEndpoint(POD_IPS[b], SERVER_PORT) for b in backends)
    return ServicePortRule("default", name, "http", "TCP", ip, 80, endpoints)


RULES = [rule("web", WEB_IP, "a", "b"), rule("solo", SOLO_IP, "a"), rule("empty", EMPTY_IP)]


@dataclass
class Cluster:
    """The node and pod namespaces of the module's topology."""

    topology: Topology
    node: str
    pods: dict[str, str] = field(default_factory=dict)

    def curl(
        self, netns: str, *urls: str, max_time: float = 5.0
    ) -> subprocess.CompletedProcess[str]:
        """curl ``urls`` from ``netns`` (one new connection each); never raises on status."""
        argv = ["curl", "-sS", "-H", "Connection: close", "--max-time", str(max_time), *urls]
        return self.topology.exec(netns, argv, check=False, timeout=max_time * len(urls) + 10)

    def saved(self) -> str:
        """``iptables-save`` of the node, without its timestamped comment lines."""
        out = self.topology.exec(self.node, ["iptables-save"]).stdout
        return "\n".join(line for line in out.splitlines() if not line.startswith("#"))


def listening(cluster: Cluster, netns: str, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in ``netns``."""
    out = cluster.topology.exec(netns, ["ss", "-Hltn", f"sport = :{port}"]).stdout
    return bool(out.strip())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The node with its bridge and service route, pods a-c, and the servers in a and b."""
    suffix = secrets.token_hex(3)
    topology = Topology()
    servers: list[subprocess.Popen[bytes]] = []
    workdir = tmp_path_factory.mktemp("service-rules")
    try:
        node = topology.add_netns(f"wsr-{suffix}-node")
        c = Cluster(topology, node)
        for key, value in NODE_SYSCTLS.items():
            topology.set_sysctl(node, key, value)
        bridge = f"wsb{suffix}"
        topology.add_bridge(node, bridge, f"{GATEWAY}/16")
        netns_mod.batch(node, [f"route add {SERVICE_CIDR} dev {bridge}"])
        for index, (name, ip) in enumerate(POD_IPS.items()):
            pod = topology.add_netns(f"wsr-{suffix}-{name}")
            topology.add_veth(
                pod_netns=pod,
                node_netns=node,
                bridge=bridge,
                node_ifname=f"wsv{suffix}{index}",
                address=f"{ip}/32",
            )
            netns_mod.batch(
                pod,
                [
                    f"route add {GATEWAY} dev eth0 scope link",
                    f"route add default via {GATEWAY} dev eth0",
                ],
            )
            c.pods[name] = pod
        for name in ("a", "b"):
            root = workdir / name
            root.mkdir()
            (root / "name").write_text(f"pod-{name}\n")
            with (workdir / f"{name}.log").open("wb") as log:
                argv = [sys.executable, "-m", "http.server", str(SERVER_PORT), "-d", str(root)]
                servers.append(topology.popen(c.pods[name], argv, stdout=log, stderr=log))
        for name in ("a", "b"):
            wait_for(partial(listening, c, c.pods[name], SERVER_PORT), 15, what=f"{name} :8080")
        yield c
    finally:
        for server in servers:
            server.kill()
            server.wait(10)
        errors = topology.cleanup()
        assert not errors, errors
        for server in servers:
            assert server.returncode is not None


def url(ip: str) -> str:
    """The name file of the service at ``ip``."""
    return f"http://{ip}/name"


def test_pods_reach_each_other_directly(cluster: Cluster) -> None:
    out = cluster.curl(cluster.pods["c"], f"http://{POD_IPS['a']}:{SERVER_PORT}/name")
    assert (out.returncode, out.stdout) == (0, "pod-a\n"), out.stderr


def test_cluster_ip_spreads_over_every_endpoint(cluster: Cluster) -> None:
    service_rules.apply(RULES, cluster.node)
    out = cluster.curl(cluster.pods["c"], *[url(WEB_IP)] * 40)
    assert out.returncode == 0, out.stderr
    seen = Counter(out.stdout.split())
    assert set(seen) == {"pod-a", "pod-b"}, seen
    assert sum(seen.values()) == 40


def test_node_itself_reaches_cluster_ip(cluster: Cluster) -> None:
    service_rules.apply(RULES, cluster.node)
    out = cluster.curl(cluster.node, url(WEB_IP))
    assert out.returncode == 0 and out.stdout in ("pod-a\n", "pod-b\n"), out.stderr


def test_hairpin_endpoint_reaches_itself(cluster: Cluster) -> None:
    service_rules.apply(RULES, cluster.node)
    out = cluster.curl(cluster.pods["a"], url(SOLO_IP), url(SOLO_IP))
    assert (out.returncode, out.stdout) == (0, "pod-a\npod-a\n"), out.stderr


def test_service_without_endpoints_refuses_at_once(cluster: Cluster) -> None:
    service_rules.apply(RULES, cluster.node)
    started = time.monotonic()
    out = cluster.curl(cluster.pods["c"], url(EMPTY_IP), max_time=10)
    elapsed = time.monotonic() - started
    assert out.returncode == 7, (out.returncode, out.stderr)  # couldn't connect
    assert elapsed < 3, elapsed


def test_kernel_holds_exactly_the_rendered_rules(cluster: Cluster) -> None:
    service_rules.apply(RULES, cluster.node)
    saved = cluster.saved()
    rendered = service_rules.render(RULES)

    def ours(text: str) -> list[str]:
        return sorted(line for line in text.splitlines() if line.startswith("-A WEFT-"))

    assert ours(saved) == ours(rendered)


def test_reapplying_keeps_one_jump_each(cluster: Cluster) -> None:
    service_rules.apply(RULES, cluster.node)
    first = cluster.saved()
    service_rules.apply(RULES, cluster.node)
    service_rules.apply(RULES, cluster.node)
    second = cluster.saved()
    assert second == first
    jumps = Counter(
        line.split()[1] + " " + line.rsplit(" -j ", 1)[1]
        for line in second.splitlines()
        if line.startswith("-A ") and not line.startswith("-A WEFT-") and " -j WEFT-" in line
    )
    assert jumps == Counter(f"{chain} {target}" for _, chain, _, target in service_rules.JUMPS)


def test_stale_chains_are_deleted(cluster: Cluster) -> None:
    service_rules.apply(RULES, cluster.node)
    solo = RULES[1]
    assert solo.svc_chain() in service_rules.list_weft_chains(cluster.node)["nat"]
    service_rules.apply([RULES[0]], cluster.node)
    chains = service_rules.list_weft_chains(cluster.node)
    assert chains == service_rules.weft_chains(service_rules.render([RULES[0]]))
    assert solo.svc_chain() not in chains["nat"]
    out = cluster.curl(cluster.pods["c"], *[url(WEB_IP)] * 6)
    assert out.returncode == 0, out.stderr


def test_remove_deletes_everything_and_is_idempotent(cluster: Cluster) -> None:
    service_rules.apply(RULES, cluster.node)
    assert service_rules.remove(cluster.node) is True
    assert service_rules.list_weft_chains(cluster.node) == {"nat": set(), "filter": set()}
    assert "WEFT-" not in cluster.saved()
    assert service_rules.remove(cluster.node) is False
    # Without the REJECT rule the node ARPs for the cluster IP in vain: no answer within 1s.
    out = cluster.curl(cluster.pods["c"], url(EMPTY_IP), max_time=1)
    assert out.returncode == 28, (out.returncode, out.stderr)
