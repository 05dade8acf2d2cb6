"""Two pods on a bridge, each with a weft proxy wired in by proxy-init rules; traffic between them.

Stands in for ``weft demo`` until the local runtime exists. Everything it creates is named
``weft-demo-*`` and removed on exit (and at start, should an earlier run have been killed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from tempfile import mkdtemp

from weft.local import proxy_init
from weft.local.netns import Topology, list_netns, run

NODE, CLIENT, SERVER = "weft-demo-node", "weft-demo-client", "weft-demo-server"
BRIDGE = "wdemo0"
SUBNET = "10.254.77"
PROXY_GID = 2102

SERVER_APP = """
import http.server, socket, threading
def banner():
    s = socket.create_server(("0.0.0.0", 5432))
    while True:
        c, _ = s.accept(); c.sendall(b"hello from a server-speaks-first protocol\\n"); c.close()
threading.Thread(target=banner, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"hello from the server pod\\n"
        self.send_response(500 if self.path == "/fail" else 200)
        self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""


def step(text: str) -> None:
    """Print a progress line."""
    print(f"==> {text}", flush=True)


def wait_until(check: object, what: str, timeout: float = 20.0) -> None:
    """Poll ``check()`` until true or fail with ``what``."""
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.05)


def remove_leftovers() -> None:
    """Delete namespaces an earlier, killed run left behind (all by name)."""
    for ns in (CLIENT, SERVER, NODE):
        if ns in list_netns():
            for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                run(["kill", "-9", pid], check=False)
            run(["ip", "netns", "del", ns], check=False)


def main() -> int:
    """Build the pods, send traffic, show the proxies' metrics, tear down."""
    remove_leftovers()
    logs = Path(mkdtemp(prefix="weft-demo-"))
    topo = Topology()
    try:
        step("creating a node namespace with a bridge and two pod namespaces")
        topo.add_netns(NODE)
        topo.add_bridge(NODE, BRIDGE, f"{SUBNET}.1/24")
        for i, pod in ((2, CLIENT), (3, SERVER)):
            topo.add_netns(pod)
            topo.add_veth(
                pod_netns=pod,
                node_netns=NODE,
                bridge=BRIDGE,
                node_ifname=f"wdemo{i}",
                address=f"{SUBNET}.{i}/24",
                gateway=f"{SUBNET}.1",
            )
        server_ip = f"{SUBNET}.3"

        step("writing Linkerd proxy-init iptables rules in both pods (proxy exempt by GID 2102)")
        rules = proxy_init.ProxyInitConfig(proxy_gid=PROXY_GID)
        for pod in (CLIENT, SERVER):
            proxy_init.install(pod, rules)

        step("starting the server app (HTTP on :8080, a banner on opaque port 5432)")
        app_log = open(logs / "server-app.log", "wb")  # noqa: SIM115 - lives as long as the pod
        topo.popen(SERVER, [sys.executable, "-c", SERVER_APP], stdout=app_log, stderr=app_log)

        step("starting a weft proxy in each pod")
        env = {**os.environ, "LINKERD2_PROXY_IDENTITY_DISABLED": "1"}
        for pod in (CLIENT, SERVER):
            log = open(logs / f"{pod}-proxy.log", "wb")  # noqa: SIM115
            argv = ["setpriv", f"--regid={PROXY_GID}", "--clear-groups", "--"]
            topo.popen(pod, [*argv, sys.executable, "-m", "weft", "proxy"], env=env,
                       stdout=log, stderr=log)  # fmt: skip
        for pod in (CLIENT, SERVER):
            wait_until(lambda pod=pod: _curl(pod, "http://127.0.0.1:4191/ready") == "ready\n",
                       f"the proxy in {pod} to be ready")  # fmt: skip
        wait_until(lambda: _curl(SERVER, "http://127.0.0.1:8080/") != "", "the server app")

        step(f"client pod -> http://{server_ip}:8080/ five times, and /fail once")
        for _ in range(5):
            print("    " + _curl(CLIENT, f"http://{server_ip}:8080/").strip())
        _curl(CLIENT, f"http://{server_ip}:8080/fail")
        step(f"client pod -> {server_ip}:5432 (opaque TCP; the server speaks first)")
        banner = topo.exec(CLIENT, ["curl", "-s", "--max-time", "5", f"telnet://{server_ip}:5432"],
                           check=False)  # fmt: skip
        print("    " + banner.stdout.strip())

        for pod, direction in ((CLIENT, "outbound"), (SERVER, "inbound")):
            step(f"{direction} metrics of the proxy in {pod} (curl :4191/metrics)")
            for line in _curl(pod, "http://127.0.0.1:4191/metrics").splitlines():
                if line.startswith(("request_total", "response_total", "tcp_open_total")):
                    print("    " + line)
        step(f"done; logs in {logs}. Removing everything the demo created.")
        return 0
    finally:
        errors = topo.cleanup()
        if errors:
            print("demo: clean-up problems: " + "; ".join(errors), file=sys.stderr)


def _curl(pod: str, url: str) -> str:
    proc = subprocess.run(
        ["ip", "netns", "exec", pod, "curl", "-s", "--max-time", "5", url],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout


if __name__ == "__main__":
    sys.exit(main())
