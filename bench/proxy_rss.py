"""Resident memory of meshed proxies with identity and discovery on, idle and under load.

One local cluster (``weft cluster``) with its real control plane runs the ``routed`` namespace of
``bench/mtls.py``: a client and two nginx replicas behind a Service with a ServiceProfile, all
meshed with identity (the default). The client loads the Service's name, so its proxy holds
``GetProfile`` and ``Get`` streams, balances over both replicas and speaks mTLS to them; every
proxy got its certificate through ``Certify``. The figures, per proxy (the client's and one
server's):

- ``idle``: RSS once the proxies have routed a few requests and then sat for ``--settle``
  seconds (discovery streams open, certificate held);
- ``h1 max`` / ``grpc max``: peak RSS sampled every 0.1 s while wrk / h2load drive the most the
  path takes for ``--seconds``, and the CPU per request per proxy over that run;
- ``after``: RSS ``--settle`` seconds after the last load;
- ``loaded``: which of grpcio's ``cygrpc``, cryptography's ``_rust`` and protobuf's ``_message``
  (upb) shared objects the proxy has mapped (``/proc/<pid>/maps``).

    sudo .venv/bin/python bench/proxy_rss.py [--seconds 10] [--settle 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import configs
from bench.loadgen import GRPC_PATH, H1, H2, Load, LoadGen, grpc_frame
from bench.mtls import H1_PORT, H2_PORT, manifest
from bench.usage import monitor, rss_mb
from harness.local_cluster import LocalCluster
from harness.mesh import wait_for

NAMESPACE = "routed"
LOADS = (Load(H1, None), Load(H2, None))
# Shared objects whose presence in a proxy's memory map says which library it loaded.
LIBRARIES = {"grpc": "cygrpc", "cryptography": "_rust", "protobuf": "google/_upb"}


@dataclass
class ProxyFigures:
    """What one proxy used."""

    idle_mb: float = 0.0
    after_mb: float = 0.0
    peak_mb: dict[str, float] = field(default_factory=dict)
    cpu_us_per_req: dict[str, float] = field(default_factory=dict)
    loaded: list[str] = field(default_factory=list)


def say(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def loaded_libraries(pid: int) -> list[str]:
    """The libraries of :data:`LIBRARIES` whose shared objects ``pid`` has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [name for name, marker in LIBRARIES.items() if marker in maps]


def measure(cluster: LocalCluster, workdir: Path, seconds: int, settle: float) -> dict[str, Any]:
    """Every figure for the client's proxy and one server's proxy."""
    backend = cluster.wait_ready(NAMESPACE, "backend-", 2, timeout=120)[0]
    client = cluster.wait_ready(NAMESPACE, "client-", 1, timeout=120)[0]
    name = client["metadata"]["name"]
    host = f"backend.{NAMESPACE}.svc.cluster.local"
    urls = {H1: f"http://{host}:{H1_PORT}/", H2: f"http://{host}:{H2_PORT}{GRPC_PATH}"}

    def runner(argv: Sequence[str], timeout: float) -> Any:
        return cluster.exec(name, NAMESPACE, list(argv), check=False, timeout=timeout)

    proxies = {
        role: cluster.pids(pod, "weft proxy")[0]
        for role, pod in (("client", client), ("server", backend))
    }
    figures = {role: ProxyFigures() for role in proxies}
    gen = LoadGen(runner, workdir)
    for _ in range(3):  # open the discovery streams and the mTLS connections
        runner(["curl", "-sS", "-o", "/dev/null", urls[H1]], 30)
    time.sleep(settle)  # the figure is what a proxy holds after sitting still
    for role, pid in proxies.items():
        figures[role].idle_mb = rss_mb(pid)
    for proto in (H1, H2):
        gen.warm_up(proto, urls[proto])
    for load in LOADS:
        with monitor(proxies) as usage:
            outcome = gen.measure(load, urls[load.proto], seconds)
        for role, used in usage.items():
            figures[role].peak_mb[load.key] = used.max_rss_mb
            if outcome.requests:
                figures[role].cpu_us_per_req[load.key] = used.cpu_s / outcome.requests * 1e6
        say(f"{load.label}: {outcome.rps:.0f} req/s, errors {outcome.errors + outcome.non_2xx}")
    time.sleep(settle)  # as above, after the loads
    for role, pid in proxies.items():
        figures[role].after_mb = rss_mb(pid)
        figures[role].loaded = loaded_libraries(pid)
    return {role: asdict(f) for role, f in figures.items()}


def report(figures: dict[str, Any]) -> list[str]:
    """One line per proxy."""
    lines = []
    for role, f in figures.items():
        peaks = ", ".join(f"{load} peak {mb:.1f} MB" for load, mb in f["peak_mb"].items())
        cpu = ", ".join(f"{load} {us:.1f} us/req" for load, us in f["cpu_us_per_req"].items())
        lines.append(
            f"{role} proxy: idle {f['idle_mb']:.1f} MB, {peaks}, after {f['after_mb']:.1f} MB; "
            f"CPU {cpu}; loaded: {', '.join(f['loaded']) or 'none of grpc/cryptography/protobuf'}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Bring a cluster up, measure, print the report; write JSON to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per load")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before idle figures")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not configs.ECHO_MODULE.exists():
        say(f"missing {configs.ECHO_MODULE}: apt-get install libnginx-mod-http-echo")
        return 2
    with tempfile.TemporaryDirectory(prefix="weft-bench-rss-") as tmp:
        workdir = Path(tmp)
        cluster = LocalCluster(workdir, pod_cidr="10.252.0.0/16", service_cidr="10.253.0.0/16")
        say(f"cluster {cluster.name} up")
        cluster.up()
        try:
            (workdir / "grpc-body.bin").write_bytes(grpc_frame())
            prefix = workdir / "nginx"
            prefix.mkdir()
            conf = configs.backend_nginx(prefix, H1_PORT, H2_PORT, workdir / "grpc-body.bin")
            (prefix / "nginx.conf").write_text(conf)
            cluster.apply(manifest(NAMESPACE, prefix))
            wait_for(
                lambda: cluster.ready_pods(NAMESPACE, "client-"),
                120,
                what="the client pod ready",
                interval=0.5,
            )
            figures = measure(cluster, workdir, args.seconds, args.settle)
        finally:
            cluster.down()
    print("\n".join(report(figures)))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
