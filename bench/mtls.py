"""The meshed pair's costs: mTLS against plaintext, and routing by name (discovery, P2C
balancing, a ServiceProfile route) against routing by pod IP.

One local cluster (``weft cluster``) with its real control plane runs four copies of the same
client and backend, each in its own namespace:

- ``direct``: not meshed; the client loads the backend pod's IP directly (the baseline);
- ``plain``: meshed with ``config.linkerd.io/disable-identity``; plaintext between the proxies;
- ``mtls``: meshed with identity (the default): TLS 1.3 between the proxies;
- ``routed``: as ``mtls``, but two backend replicas behind a Service with a ServiceProfile, and
  the client loads the Service's name: every request is matched against the profile's route
  (``route_*`` metrics) and balanced over both replicas with P2C over peak-EWMA;
- ``nginx``: not meshed; an nginx reverse proxy in each pod (the client's on 127.0.0.1, the
  server's in front of the backend, keep-alive upstreams, found by the Service's name): the
  reference pair for HTTP/1.1 (bench/run.py's nginx pair, inside the cluster).

The first three clients target their backend's pod IP, so those paths differ only in the
proxies; the loads run in interleaved rounds and the figures are medians over the rounds. The
targets come from the identity issue: the mTLS pair's added p50 at 1000 req/s at most 1.3 times
the plaintext pair's, and its maximum throughput at least 80 % of it; and from the orig-proto
issue (HTTP/1.1 carried as HTTP/2 between meshed proxies): the routed pair's HTTP/1.1 maximum
throughput at least 75 % of the nginx pair's, and its CPU per HTTP/1.1 request per proxy at most
1.3 times its CPU per gRPC request. The client proxy's ``tcp_open_total{peer="dst"}`` after the
run shows that handshakes are paid per connection.

    sudo .venv/bin/python bench/mtls.py [--seconds 5] [--rounds 3] [--only NS,...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import configs
from bench.loadgen import (
    GRPC_PATH,
    H1,
    H2,
    BenchError,
    Load,
    LoadGen,
    Outcome,
    grpc_frame,
)
from bench.usage import monitor
from harness.local_cluster import LocalCluster, metric_total
from harness.mesh import wait_for

H1_PORT, H2_PORT = 8080, 8081
NGINX_PORT = 10080
LOADS = (Load(H1, 1000), Load(H1, None), Load(H2, 1000), Load(H2, None))
NAMESPACES = ("direct", "plain", "mtls", "routed", "nginx")
MESHED = ("plain", "mtls", "routed")


def say(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def manifest(namespace: str, prefix: Path) -> str:
    """A backend (nginx) and an idle client in ``namespace``, meshed as the name says; for
    ``routed`` two backends behind a Service with a ServiceProfile; for ``nginx`` an nginx
    proxy in each pod."""
    annotations = {
        "direct": "",
        "plain": "linkerd.io/inject: enabled\n        config.linkerd.io/disable-identity: 'true'",
        "mtls": "linkerd.io/inject: enabled",
        "routed": "linkerd.io/inject: enabled",
        "nginx": "",
    }[namespace]
    replicas = 2 if namespace == "routed" else 1
    meta = f"\n      annotations:\n        {annotations}" if annotations else ""
    conf = prefix / "nginx.conf"
    nginx = namespace == "nginx"
    server_proxy = client_proxy = ""
    if nginx:
        server_proxy = NGINX_PROXY.format(role="server", prefix=prefix, probe=SERVER_PROBE)
        client_proxy = NGINX_PROXY.format(role="client", prefix=prefix, probe=CLIENT_PROBE)
    extra = ROUTED.format(ns=namespace) if namespace == "routed" else ""
    extra += NGINX_SERVICE if nginx else ""
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {namespace}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: backend, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: backend}}}}
  template:
    metadata:
      labels: {{app: backend}}{meta}
    spec:
      containers:
      - name: nginx
        command: [nginx, -p, "{prefix}/", -e, "{prefix}/error.log", -c, "{conf}"]
        ports: [{{name: http, containerPort: {H1_PORT}}}, {{name: grpc, containerPort: {H2_PORT}}}]
        readinessProbe:
          tcpSocket: {{port: {H1_PORT}}}
          periodSeconds: 1{server_proxy}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata:
      labels: {{app: client}}{meta}
    spec:
      containers:
      - name: sleep
        command: [sleep, infinity]{client_proxy}
{extra}"""


NGINX_PROXY = """
      - name: proxy
        command: [nginx, -p, "{prefix}/{role}-proxy/", -c, "{prefix}/{role}-proxy/nginx.conf"]
        readinessProbe:{probe}
          periodSeconds: 1"""
# The server's proxy listens on the pod IP; the client's, on 127.0.0.1, is ready once the pair
# answers through it.
SERVER_PROBE = f"\n          tcpSocket: {{port: {NGINX_PORT}}}"
CLIENT_URL = f"http://127.0.0.1:{NGINX_PORT}/"
CLIENT_PROBE = f"\n          exec: {{command: [curl, -sf, -o, /dev/null, {CLIENT_URL}]}}"
NGINX_SERVICE = f"""---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: nginx}}
spec:
  selector: {{app: backend}}
  ports: [{{name: proxy, port: {NGINX_PORT}}}]
"""


def nginx_proxies(prefix: Path) -> None:
    """The ``nginx`` namespace's two proxy configurations, under ``prefix``."""
    server, client = prefix / "server-proxy", prefix / "client-proxy"
    for path in (server, client):
        path.mkdir()
    upstream = f"127.0.0.1:{H1_PORT}"
    (server / "nginx.conf").write_text(configs.nginx_proxy(server, f"{NGINX_PORT}", upstream))
    peer = f"backend.nginx.svc.cluster.local:{NGINX_PORT}"
    listen = f"127.0.0.1:{NGINX_PORT}"
    (client / "nginx.conf").write_text(configs.nginx_proxy(client, listen, peer))


ROUTED = f"""---
apiVersion: v1
kind: Service
metadata: {{{{name: backend, namespace: {{ns}}}}}}
spec:
  selector: {{{{app: backend}}}}
  ports: [{{{{name: http, port: {H1_PORT}}}}}, {{{{name: grpc, port: {H2_PORT}}}}}]
---
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {{{{name: backend.{{ns}}.svc.cluster.local, namespace: {{ns}}}}}}
spec:
  routes:
  - name: root
    condition: {{{{method: GET, pathRegex: /}}}}
  - name: grpc
    condition: {{{{method: POST, pathRegex: "{GRPC_PATH}"}}}}
"""


@dataclass
class Measured:
    """One load against one namespace."""

    load: str
    outcome: dict[str, Any] | None = None
    cpu_us_per_req: float | None = None
    max_rss_mb: float | None = None
    error: str = ""


@dataclass
class PathResult:
    """Everything measured through one namespace's path."""

    namespace: str
    runs: list[Measured] = field(default_factory=list)
    dst_connections: float | None = None
    tls_dst_connections: float | None = None
    per_backend: dict[str, float] = field(default_factory=dict)  # responses by dst_pod
    route_requests: float | None = None


def run_path(
    cluster: LocalCluster, namespace: str, workdir: Path, seconds: int, result: PathResult
) -> None:
    """Warm up and apply every load from ``namespace``'s client to its backend's pod IP (for
    ``routed``: to its Service's name)."""
    routed = namespace == "routed"
    nginx = namespace == "nginx"
    backend = cluster.wait_ready(namespace, "backend-", 2 if routed else 1, timeout=90)[0]
    client = cluster.wait_ready(namespace, "client-", 1, timeout=90)[0]
    name = client["metadata"]["name"]
    host = f"backend.{namespace}.svc.cluster.local" if routed else backend["status"]["podIP"]
    urls = {H1: f"http://{host}:{H1_PORT}/", H2: f"http://{host}:{H2_PORT}{GRPC_PATH}"}
    if nginx:  # HTTP/1.1 only, through the client pod's nginx
        urls = {H1: CLIENT_URL}

    def runner(argv: Sequence[str], timeout: float) -> Any:
        return cluster.exec(name, namespace, list(argv), check=False, timeout=timeout)

    gen = LoadGen(runner, workdir)
    pattern = "proxy/nginx.conf" if nginx else "weft proxy"
    proxies = {
        f"{role}-proxy": pid
        for role, pod in (("client", client), ("server", backend))
        for pid in cluster.pids(pod, pattern)[:1]
    }
    for proto in urls:
        gen.warm_up(proto, urls[proto])
    for load in LOADS:
        if load.proto not in urls:
            continue
        run = Measured(load.key)
        try:
            with monitor(proxies) as usage:
                outcome: Outcome = gen.measure(load, urls[load.proto], seconds)
            run.outcome = asdict(outcome)
            if proxies and outcome.requests:
                cpu = sum(u.cpu_s for u in usage.values())
                run.cpu_us_per_req = cpu / outcome.requests / len(proxies) * 1e6
                run.max_rss_mb = max(u.max_rss_mb for u in usage.values())
            say(
                f"[{namespace}] {load.label}: p50 {outcome.p50_ms} ms, "
                f"{outcome.rps:.0f} req/s, errors {outcome.errors + outcome.non_2xx}"
            )
        except BenchError as exc:
            run.error = str(exc)
            say(f"[{namespace}] {load.label}: {exc}")
        result.runs.append(run)
    if namespace in MESHED:
        text = cluster.exec(name, namespace, ["curl", "-sS", "http://127.0.0.1:4191/metrics"])
        labels = {"direction": "outbound", "peer": "dst"}
        result.dst_connections = metric_total(text.stdout, "tcp_open_total", **labels)
        result.tls_dst_connections = metric_total(
            text.stdout, "tcp_open_total", tls="true", **labels
        )
        if routed:
            for pod in cluster.ready_pods(namespace, "backend-"):
                pod_name = pod["metadata"]["name"]
                result.per_backend[pod_name] = metric_total(
                    text.stdout, "response_total", direction="outbound", dst_pod=pod_name
                )
            result.route_requests = metric_total(text.stdout, "route_request_total")


def _get(result: PathResult, load: str, key: str) -> float | None:
    """The median over the rounds of one figure of one load."""
    values = [
        float(run.outcome[key])
        for run in result.runs
        if run.load == load and run.outcome is not None and run.outcome.get(key) is not None
    ]
    return statistics.median(values) if values else None


def _cpu(result: PathResult | None, load: str) -> float | None:
    """CPU per request per proxy of one load (its median over the rounds)."""
    if result is None:
        return None
    values = [r.cpu_us_per_req for r in result.runs if r.load == load and r.cpu_us_per_req]
    return statistics.median(values) if values else None


def report(results: dict[str, PathResult]) -> list[str]:
    """The comparison lines: added latency, throughput ratio, CPU and connections."""
    results = {ns: results.get(ns, PathResult(ns)) for ns in NAMESPACES}
    lines = []
    routed_h1 = _get(results["routed"], "h1@max", "rps")
    nginx_h1 = _get(results["nginx"], "h1@max", "rps")
    if routed_h1 and nginx_h1:
        share = routed_h1 / nginx_h1
        verdict = "pass" if share >= 0.75 else "FAIL"
        lines.append(
            f"h1 max throughput: routed by name {routed_h1:.0f} vs nginx pair {nginx_h1:.0f} "
            f"req/s = {share:.1%} (target >= 75%: {verdict})"
        )
    cpu_h1, cpu_grpc = _cpu(results["routed"], "h1@max"), _cpu(results["routed"], "grpc@max")
    if cpu_h1 and cpu_grpc:
        ratio = cpu_h1 / cpu_grpc
        verdict = "pass" if ratio <= 1.3 else "FAIL"
        lines.append(
            f"routed, CPU per request per proxy at max: h1 {cpu_h1:.1f} us vs grpc "
            f"{cpu_grpc:.1f} us = {ratio:.2f}x (target <= 1.3x: {verdict})"
        )
    cpu_nginx = _cpu(results["nginx"], "h1@max")
    if cpu_nginx:
        lines.append(f"nginx pair, CPU per h1 request per proxy at max: {cpu_nginx:.1f} us")
    for proto in ("h1", "grpc"):
        base = _get(results["direct"], f"{proto}@1000", "p50_ms")
        plain = _get(results["plain"], f"{proto}@1000", "p50_ms")
        mtls = _get(results["mtls"], f"{proto}@1000", "p50_ms")
        if None not in (base, plain, mtls):
            assert base is not None and plain is not None and mtls is not None
            added_plain, added_mtls = plain - base, mtls - base
            ratio = added_mtls / added_plain if added_plain > 0 else float("inf")
            verdict = "pass" if ratio <= 1.3 else "FAIL"
            lines.append(
                f"{proto} added p50 @1000/s: mTLS +{added_mtls:.3f} ms vs plaintext "
                f"+{added_plain:.3f} ms = {ratio:.2f}x (target <= 1.3x: {verdict})"
            )
        top_plain = _get(results["plain"], f"{proto}@max", "rps")
        top_mtls = _get(results["mtls"], f"{proto}@max", "rps")
        if top_plain and top_mtls:
            share = top_mtls / top_plain
            verdict = "pass" if share >= 0.8 else "FAIL"
            lines.append(
                f"{proto} max throughput: mTLS {top_mtls:.0f} vs plaintext {top_plain:.0f} req/s "
                f"= {share:.1%} (target >= 80%: {verdict})"
            )
        routed = _get(results["routed"], f"{proto}@1000", "p50_ms")
        if None not in (base, mtls, routed):
            assert base is not None and mtls is not None and routed is not None
            lines.append(
                f"{proto} added p50 @1000/s: routed by name +{routed - base:.3f} ms vs by pod IP "
                f"+{mtls - base:.3f} ms"
            )
        top_routed = _get(results["routed"], f"{proto}@max", "rps")
        if top_routed and top_mtls:
            lines.append(
                f"{proto} max throughput: routed by name {top_routed:.0f} vs by pod IP "
                f"{top_mtls:.0f} req/s = {top_routed / top_mtls:.1%}"
            )
        for ns in MESHED:
            cpu = _cpu(results[ns], f"{proto}@max")
            rss = [r.max_rss_mb for r in results[ns].runs if r.load == f"{proto}@max"]
            if cpu is not None and any(rss):
                lines.append(
                    f"{proto} at max, {ns}: CPU per request per proxy {cpu:.1f} us (median), "
                    f"peak proxy RSS {max(r or 0.0 for r in rss):.1f} MB"
                )
    for ns in MESHED:
        res = results[ns]
        if res.dst_connections is None or res.tls_dst_connections is None:
            continue
        lines.append(
            f"{ns}: the client proxy opened {res.dst_connections:.0f} connections to the server "
            f"({res.tls_dst_connections:.0f} of them TLS) over the whole run"
        )
    routed_result = results["routed"]
    if routed_result.per_backend:
        spread = ", ".join(f"{v:.0f}" for v in sorted(routed_result.per_backend.values()))
        lines.append(
            f"routed: responses per backend replica {spread}; "
            f"route_request_total {routed_result.route_requests or 0:.0f}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; print the report; write JSON to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per load")
    parser.add_argument("--rounds", type=int, default=3, help="figures are medians of rounds")
    parser.add_argument(
        "--only", help=f"comma-separated namespaces to run (default: {','.join(NAMESPACES)})"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    chosen = tuple(args.only.split(",")) if args.only else NAMESPACES
    unknown = set(chosen) - set(NAMESPACES)
    if unknown:
        say(f"unknown namespaces: {', '.join(sorted(unknown))}")
        return 2
    if not configs.ECHO_MODULE.exists():
        say(f"missing {configs.ECHO_MODULE}: apt-get install libnginx-mod-http-echo")
        return 2
    with tempfile.TemporaryDirectory(prefix="weft-bench-mtls-") as tmp:
        workdir = Path(tmp)
        cluster = LocalCluster(workdir, pod_cidr="10.254.0.0/16", service_cidr="10.255.0.0/16")
        say(f"cluster {cluster.name} up")
        cluster.up()
        try:
            grpc_body = workdir / "grpc-body.bin"
            grpc_body.write_bytes(grpc_frame())
            for ns in chosen:
                (workdir / ns).mkdir()
                prefix = workdir / ns / "nginx"
                prefix.mkdir()
                conf = configs.backend_nginx(prefix, H1_PORT, H2_PORT, grpc_body)
                (prefix / "nginx.conf").write_text(conf)
                if ns == "nginx":
                    nginx_proxies(prefix)
                cluster.apply(manifest(ns, prefix))
            wait_for(
                lambda: all(cluster.ready_pods(ns, "client-") for ns in chosen),
                120,
                what="every client pod ready",
                interval=0.5,
            )
            results = {ns: PathResult(ns) for ns in chosen}
            for round_no in range(args.rounds):  # interleaved, so drift hits every path alike
                for ns in chosen:
                    scratch = workdir / ns / f"round-{round_no}"
                    scratch.mkdir()
                    run_path(cluster, ns, scratch, args.seconds, results[ns])
        finally:
            cluster.down()
    lines = report(results)
    print("\n".join(lines))
    if args.out:
        args.out.write_text(
            json.dumps({ns: asdict(r) for ns, r in results.items()}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
