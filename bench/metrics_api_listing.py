"""What listing through the platform per request costs the metrics API.

A real node-agent API server (``weft.local.api_server`` over a unix socket, in this process)
holds ``--pods`` injected pods spread over ``--deployments`` Deployments in one namespace;
``LocalPlatform`` lists them as the metrics API does. It times, as medians over ``--rounds``:
one ``list("Pod")``, a whole StatSummary with ``skipStats`` (the lists plus assembly, no
Prometheus) for every deployment and for type ``all``, and the deployments' assembly alone with
canned Prometheus answers.

    .venv/bin/python bench/metrics_api_listing.py --pods 100 --deployments 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from weft.controller.destination.addresses import MeshSettings
from weft.controller.metrics_api import queries as q
from weft.controller.metrics_api.api import MetricsApi
from weft.controller.metrics_api.prometheus import PrometheusClient
from weft.controller.metrics_api.samples import Sample
from weft.controller.metrics_api.stat_summary import object_table
from weft.inject.config import InjectConfig
from weft.inject.inject import inject_pod_template
from weft.local.api_server import ApiServer
from weft.local.cluster_config import ClusterConfig
from weft.local.platform import LocalPlatform
from weft.local.store import ObjectStore
from weft.viz.resources import Resource

NS = "bench"


def objects(pods: int, deployments: int) -> list[dict[str, Any]]:
    """A namespace, the deployments and their injected, running pods."""
    found: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    ]
    config = InjectConfig()
    for d in range(deployments):
        name = f"app-{d}"
        found.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"selector": {"matchLabels": {"app": name}}},
            }
        )
    for p in range(pods):
        owner = f"app-{p % deployments}"
        template = {
            "metadata": {"labels": {"app": owner}, "annotations": {"linkerd.io/inject": "enabled"}},
            "spec": {"containers": [{"name": "app", "command": ["sleep", "1d"]}]},
        }
        pod = inject_pod_template(
            template, namespace_annotations={}, owner_kind="Deployment", owner_name=owner,
            config=config, namespace=NS,
        )  # fmt: skip
        pod.update(apiVersion="v1", kind="Pod")
        pod["metadata"].update(
            name=f"{owner}-{p}",
            namespace=NS,
            ownerReferences=[{"kind": "Deployment", "name": owner, "controller": True}],
        )
        pod["status"] = {"phase": "Running", "podIP": f"10.244.{p // 250}.{p % 250 + 2}"}
        found.append(pod)
    return found


async def median_ms(rounds: int, step: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        await step()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def main(pods: int, deployments: int, rounds: int) -> None:
    store = ObjectStore()
    with store.transaction():
        for obj in objects(pods, deployments):
            store.put(obj)
    with tempfile.TemporaryDirectory() as tmp:
        server = ApiServer(ClusterConfig(state_dir=tmp), store, b"k" * 32)
        socket_path = Path(tmp) / "api.sock"
        await server.start(socket_path)
        platform = LocalPlatform(socket_path)
        api = MetricsApi(platform, PrometheusClient("http://127.0.0.1:9"), MeshSettings())
        body = {"selector": {"resource": {"type": "deploy", "namespace": NS}}, "skipStats": True}
        try:
            listed = await median_ms(rounds, lambda: platform.list("Pod", NS))
            summary = await median_ms(rounds, lambda: api.stat_summary(body))
            every = {"selector": {"resource": {"type": "all", "namespace": NS}}, "skipStats": True}
            summary_all = await median_ms(rounds, lambda: api.stat_summary(every))
            found = await platform.list("Pod", NS)
            kinds = await platform.list("Deployment", NS)
            plan = q.stat_plan(Resource("deployment", "", NS))
            canned = {
                "requests": [
                    Sample({"namespace": NS, "deployment": f"app-{d}", "classification": c}, 10.0)
                    for d in range(deployments)
                    for c in ("success", "failure")
                ]
            }

            async def assemble() -> object:
                return object_table(
                    "deployment", kinds, found, canned, plan, "1m", tcp=False, traffic_only=False
                )

            assembly = await median_ms(rounds, assemble)
        finally:
            await platform.close()
            await server.close()
    print(
        f"pods={pods} deployments={deployments} rounds={rounds}: "
        f"list(Pod) {listed:.2f} ms, StatSummary skipStats {summary:.2f} ms "
        f"(type all: {summary_all:.2f} ms), "
        f"assembly alone {assembly:.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    uvloop.run(main(args.pods, args.deployments, args.rounds))
