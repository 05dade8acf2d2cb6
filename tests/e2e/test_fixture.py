"""The netns layer, proxy-init in a real namespace, and the mesh fixture's teardown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.mesh import APPS_DIR, Mesh, wait_for
from weft.local import proxy_init
from weft.local.netns import NETNS_ETC_DIR, Topology, list_netns, run

pytestmark = pytest.mark.netns


def host_traces(marker: str) -> dict[str, list[str]]:
    """Host-namespace links, addresses and iptables lines that mention ``marker`` or proxy-init.

    Other sessions may change the host concurrently, so only what could be ours is compared.
    """

    def matching(text: str) -> list[str]:
        return sorted(line for line in text.splitlines() if marker in line or "proxy-init/" in line)

    return {
        "links": matching(run(["ip", "-o", "link", "show"]).stdout),
        "addrs": matching(run(["ip", "-o", "addr", "show"]).stdout),
        "nat": matching(run(["iptables-save", "-t", "nat"]).stdout),
        "filter": matching(run(["iptables-save", "-t", "filter"]).stdout),
    }


def leftovers(prefix: str) -> list[str]:
    """Namespaces or /etc/netns entries whose name starts with ``prefix``."""
    found = [n for n in list_netns() if n.startswith(prefix)]
    if NETNS_ETC_DIR.exists():
        found += [str(p) for p in NETNS_ETC_DIR.iterdir() if p.name.startswith(prefix)]
    return found


def test_topology_builds_and_removes_everything(tmp_path: Path) -> None:
    tag = os.urandom(3).hex()
    prefix = f"wt-{tag}"
    before = host_traces(tag)
    bridge, port = f"wb{tag}", f"wv{tag}0"
    topo = Topology()
    try:
        node = topo.add_netns(f"{prefix}-n")
        pod = topo.add_netns(f"{prefix}-p")
        topo.add_bridge(node, bridge, "10.244.7.1/24")
        topo.add_veth(
            pod_netns=pod,
            node_netns=node,
            bridge=bridge,
            node_ifname=port,
            address="10.244.7.2/24",
            gateway="10.244.7.1",
        )
        topo.set_sysctl(node, "net.ipv4.ip_forward", 1)
        topo.write_etc_file(pod, "hosts", "10.244.7.1 gateway.test\n")
        # The pod has eth0 with its address, lo up, a default route via the bridge address.
        addrs = json.loads(topo.exec(pod, ["ip", "-j", "addr", "show"]).stdout)
        by_name = {a["ifname"]: a for a in addrs}
        assert {"lo", "eth0"} <= set(by_name)
        assert "UP" in by_name["lo"]["flags"]
        assert [i["local"] for i in by_name["eth0"]["addr_info"] if i["family"] == "inet"] == [
            "10.244.7.2"
        ]
        assert "default via 10.244.7.1 dev eth0" in topo.exec(pod, ["ip", "route"]).stdout
        # The node end is a port of the bridge, the bridge holds the gateway address.
        master = json.loads(topo.exec(node, ["ip", "-j", "link", "show", port]).stdout)
        assert master[0]["master"] == bridge
        assert topo.exec(node, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
        # The pod reaches a TCP service on the gateway address (across the veth and bridge).
        banner = topo.popen(
            node, [sys.executable, str(APPS_DIR / "tcp_app.py"), "banner", "--port", "7"]
        )
        probe = [sys.executable, str(APPS_DIR / "tcp_app.py"), "probe", "10.244.7.1", "7"]
        result = wait_for(
            lambda: json.loads(topo.exec(pod, probe).stdout), 10, what="banner from the gateway"
        )
        assert result["banner"] == "BANNER 7\r\n" and result["echo"] == "ping\n"
        # /etc/netns overrides apply under `ip netns exec`, not outside.
        assert "gateway.test" in topo.exec(pod, ["cat", "/etc/hosts"]).stdout
        assert "gateway.test" not in Path("/etc/hosts").read_text()
        # Background processes get killed by cleanup.
        sleeper = topo.popen(pod, ["sleep", "600"])
        assert leftovers(prefix)
    finally:
        errors = topo.cleanup()
    assert errors == []
    assert sleeper.wait(10) == -9
    assert banner.wait(10) == -9
    assert leftovers(prefix) == []
    assert topo.cleanup() == []  # idempotent
    assert host_traces(tag) == before


def test_proxy_init_apply_is_idempotent_and_remove_is_exact() -> None:
    prefix = f"wt-{os.urandom(3).hex()}"
    with Topology() as topo:
        ns = topo.add_netns(f"{prefix}-p")
        # An unrelated rule that must survive.
        topo.exec(
            ns,
            ["iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"],
        )
        config = proxy_init.ProxyInitConfig(proxy_uid=2102, proxy_gid=2102)
        rules = proxy_init.install(ns, config, timestamp=42)
        saved = topo.exec(ns, ["iptables-save", "-t", "nat"]).stdout
        ours = [line for line in saved.splitlines() if "proxy-init/" in line]
        assert len(ours) == rules.count("\n-A ")
        assert all("/42" in line for line in ours)
        proxy_init.install(ns, config, timestamp=43)
        again = topo.exec(ns, ["iptables-save", "-t", "nat"]).stdout
        assert len([line for line in again.splitlines() if "proxy-init/" in line]) == len(ours)
        assert "/42" not in again
        assert proxy_init.remove(ns) is True
        after = topo.exec(ns, ["iptables-save", "-t", "nat"]).stdout
        assert "PROXY_INIT" not in after and "proxy-init" not in after
        assert "-A OUTPUT -p tcp -m tcp --dport 9 -j ACCEPT" in after
        assert proxy_init.remove(ns) is False


def _mesh_with_processes(tmp_path: Path, with_proxy: bool, tag: str) -> tuple[Mesh, list[int]]:
    mesh = Mesh(tmp_path, name=tag)
    try:
        a = mesh.add_pod("a", meshed=with_proxy)
        b = mesh.add_pod("b", meshed=with_proxy)
        if not with_proxy:
            proxy_init.install(a.netns, a.proxy_init_config())
        server = b.spawn_app("echo", "echo.py", "--port", "8080", port=8080)
        sleeper = a.spawn("sleep", ["sleep", "600"])
        status, _ = a.http_get(f"http://{b.ip}:8080/") if with_proxy else (200, "")
        assert status == 200
        pids = [server.popen.pid, sleeper.popen.pid]
        if with_proxy:
            assert a.proxy is not None and b.proxy is not None
            pids += [a.proxy.popen.pid, b.proxy.popen.pid]
        return mesh, pids
    except BaseException:
        mesh.close()
        raise


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] == "Z"


@pytest.mark.parametrize("with_proxy", [False, True], ids=["rules-only", "proxies"])
def test_mesh_teardown_leaves_nothing(tmp_path: Path, with_proxy: bool) -> None:
    tag = os.urandom(3).hex()
    before = host_traces(tag)
    mesh, pids = _mesh_with_processes(tmp_path, with_proxy, tag)
    prefix = mesh.prefix
    namespaces = mesh.namespaces
    assert len(namespaces) == 3 and all(n.startswith(prefix) for n in namespaces)
    for pod in mesh.pods.values():
        saved = pod.run(["iptables-save", "-t", "nat"]).stdout
        if pod.name == "a" or with_proxy:
            assert "PROXY_INIT_OUTPUT" in saved
    mesh.close()
    mesh.close()  # idempotent
    assert leftovers(prefix) == []
    for ns in namespaces:
        probe = subprocess.run(["ip", "netns", "exec", ns, "true"], capture_output=True)
        assert probe.returncode != 0
    wait_for(lambda: all(_pid_gone(p) for p in pids), 10, what="pod processes to exit")
    assert host_traces(tag) == before


def test_proxy_stops_cleanly_on_sigterm_and_shutdown_endpoint(mesh: Mesh) -> None:
    pod = mesh.add_pod("a")
    assert pod.stop_proxy() == 0
    proxy = pod.start_proxy()
    status, body = pod.http_get("http://127.0.0.1:4191/shutdown", method="POST")
    assert (status, body) == (200, "shutdown\n")
    assert proxy.popen.wait(10) == 0
