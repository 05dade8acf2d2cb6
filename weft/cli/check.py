"""``weft check``: Linkerd-style health checks of a local cluster, section by section.

Each category gathers data (the agent's API, the trust files, probes of the proxies, the metrics
API and Prometheus through the agent's service proxy) and turns it into results with the pure
checks of :mod:`weft.cli.check_results`. ``--proxy`` adds the data plane's checks, as
``linkerd check --proxy`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import click
from cryptography import x509

from weft.cli import check_results as results
from weft.cli.check_results import Category, CheckResult, ProxyCert, Report
from weft.cli.cluster import Ctx
from weft.cli.pod_certs import cluster_options, mesh_settings, probe, target_for
from weft.identity.certs import CertError, load_certs_pem
from weft.identity.trust import TrustFiles, read_trust
from weft.inject.config import installed_version
from weft.local import control_plane
from weft.local.api_client import ApiClient
from weft.local.cluster_config import ClusterConfig, ClusterConfigError
from weft.platform import PlatformError

POLL_INTERVAL = 0.5
DEFAULT_WAIT = 60.0
Obj = dict[str, Any]


@dataclass
class CheckEnv:
    """What the checks share: the cluster, and its agent's client once it answered."""

    ctx: Ctx
    wait: float
    namespace: str | None = None  # the data plane checks' scope (None: every namespace)
    cfg: ClusterConfig | None = None
    client: ApiClient | None = None
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def require(self) -> tuple[ClusterConfig, ApiClient]:
        """The cluster and client (the reachability check, which is fatal, set them)."""
        if self.cfg is None or self.client is None:
            raise RuntimeError("the node agent check must run first")
        return self.cfg, self.client


class Env(Protocol):
    """What running categories needs of their environment: a stack closed at the end."""

    stack: contextlib.AsyncExitStack


# -- weft-local-cluster -------------------------------------------------------------------


async def _connect(env: CheckEnv) -> str | None:
    try:
        cfg = env.ctx.config()
        client = await env.stack.enter_async_context(ApiClient(cfg.api_socket, timeout=5.0))
        await client.list("Namespace")
    except (ClusterConfigError, PlatformError, OSError) as e:
        return str(e)
    env.cfg, env.client = cfg, client
    return None


async def _control_plane(env: CheckEnv) -> CheckResult:
    _, client = env.require()
    start = time.monotonic()
    deadline = start + env.wait
    while True:
        pods = await client.list("Pod", control_plane.NAMESPACE)
        result = results.control_plane_ready(
            pods, control_plane.NAMESPACE, time.monotonic() - start
        )
        if not result.failed or time.monotonic() >= deadline:
            return result
        await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


async def local_cluster(env: CheckEnv) -> AsyncGenerator[CheckResult, None]:
    """The agent answers and the control plane is ready."""
    yield results.agent_reachable(await _connect(env))
    try:
        yield await _control_plane(env)
    except PlatformError as e:
        yield results.failed(results.CONTROL_PLANE_READY, str(e))


# -- weft-identity ------------------------------------------------------------------------


@dataclass(frozen=True)
class Trust:
    """The cluster's trust files as parsed, and why they are not a valid configuration."""

    anchors: list[x509.Certificate]
    issuer_chain: list[x509.Certificate]
    problem: str | None


def load_trust(cfg: ClusterConfig) -> Trust:
    """Parse the anchors and issuer on their own, then check them together (``read_trust``)."""
    files = TrustFiles.in_dir(control_plane.identity_dir(cfg))
    try:
        anchors = load_certs_pem(files.anchors.read_bytes(), str(files.anchors))
        issuer_chain = load_certs_pem(files.issuer_cert.read_bytes(), str(files.issuer_cert))
    except (CertError, OSError) as e:
        return Trust([], [], str(e))
    try:
        read_trust(files)
    except CertError as e:
        return Trust(anchors, issuer_chain, str(e))
    return Trust(anchors, issuer_chain, None)


async def identity(env: CheckEnv) -> AsyncGenerator[CheckResult, None]:
    """The trust anchors and issuer (reference §7.3)."""
    cfg, _ = env.require()
    trust = load_trust(cfg)
    now = datetime.now(UTC)
    for result in results.identity_results(
        trust.anchors, trust.issuer_chain, trust.problem, now=now
    ):
        yield result


# -- weft-identity-data-plane -------------------------------------------------------------


async def _proxy_certs(cfg: ClusterConfig, client: ApiClient) -> list[ProxyCert]:
    settings = mesh_settings(cfg)
    pods: list[Obj] = await client.list("Pod")
    targets = [t for p in pods if (t := target_for(p, settings)) is not None]
    anchors_file = TrustFiles.in_dir(control_plane.identity_dir(cfg)).anchors
    outcomes = await probe(cfg, targets, anchors_file)
    found = []
    for target in targets:
        outcome = outcomes[target.addr]
        try:
            chain = outcome.chain()
        except CertError as e:
            found.append(ProxyCert(target.ref, error=str(e)))
            continue
        found.append(ProxyCert(target.ref, chain, outcome.error or ""))
    return found


async def data_plane(env: CheckEnv) -> AsyncGenerator[CheckResult, None]:
    """Every running meshed proxy's certificate chains to the current anchors."""
    cfg, client = env.require()
    trust = load_trust(cfg)
    if not trust.anchors:
        yield results.failed(results.DATA_PLANE_MATCH, trust.problem or "no trust anchors")
        return
    try:
        proxies = await _proxy_certs(cfg, client)
    except PlatformError as e:
        yield results.failed(results.DATA_PLANE_MATCH, str(e))
        return
    yield results.data_plane_certificates(
        proxies, trust.anchors, trust.issuer_chain, now=datetime.now(UTC)
    )


# -- weft-api ---------------------------------------------------------------------------------


async def api(env: CheckEnv) -> AsyncGenerator[CheckResult, None]:
    """The metrics API's self-check: it can talk to the platform and to Prometheus."""
    _, client = env.require()
    answer: Obj | None = None
    problem: str | None = None
    deadline = time.monotonic() + env.wait
    while True:
        try:
            answer = await client.get_json(
                control_plane.METRICS_API.proxy_path("/api/v1/SelfCheck")
            )
            problem = None
            if all(c.get("status") == "OK" for c in answer.get("results") or [{}]):
                break
        except PlatformError as e:
            problem = str(e)
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_INTERVAL)
    for result in results.self_check(answer, problem):
        yield result


# -- weft-data-plane ----------------------------------------------------------------------------


async def _scraped(client: ApiClient) -> set[tuple[str, str]]:
    """(namespace, pod) of every proxy Prometheus last scraped successfully."""
    path = control_plane.PROMETHEUS.proxy_path("/api/v1/query")
    answer = await client.get_json(path, query='up{job="weft-proxy"} == 1')
    found = set()
    for sample in (answer.get("data") or {}).get("result") or []:
        metric = sample.get("metric") or {}
        found.add((str(metric.get("namespace", "")), str(metric.get("pod", ""))))
    return found


async def proxies(env: CheckEnv) -> AsyncGenerator[CheckResult, None]:
    """Every meshed proxy is ready, scraped by Prometheus, and of the CLI's version."""
    _, client = env.require()
    start = time.monotonic()
    deadline = start + env.wait

    async def pods() -> list[Obj]:
        return await client.list("Pod", env.namespace)

    try:
        while True:
            found = await pods()
            ready = results.proxies_ready(found, time.monotonic() - start)
            if not ready.failed or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_INTERVAL)
        yield ready
        while True:
            found = await pods()
            try:
                scraped = await _scraped(client)
                metrics = results.proxy_metrics(found, scraped, time.monotonic() - start)
            except PlatformError as e:
                metrics = results.failed(results.PROXY_METRICS, f"cannot query Prometheus: {e}")
            if not metrics.failed or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_INTERVAL)
        yield metrics
        yield results.proxy_versions(found, installed_version())
    except PlatformError as e:
        yield results.failed(results.PROXIES_READY, str(e))


# -- running them -------------------------------------------------------------------------

LOCAL_CLUSTER = Category("weft-local-cluster", local_cluster)
IDENTITY = Category("weft-identity", identity)
API = Category("weft-api", api)
IDENTITY_DATA_PLANE = Category("weft-identity-data-plane", data_plane)
DATA_PLANE = Category("weft-data-plane", proxies)


def categories(proxy: bool = False) -> list[Category]:
    """The sections ``weft check`` runs, in order (``--proxy`` adds the data plane's)."""
    chosen = [LOCAL_CLUSTER, IDENTITY, API, IDENTITY_DATA_PLANE]
    return [*chosen, DATA_PLANE] if proxy else chosen


async def run_checks(
    env: Env, chosen: list[Category], echo: Callable[[str], None], output: str = "table"
) -> int:
    """Run the categories, printing each result as it comes (or, for ``json``, the report at
    the end); stops after a fatal failure."""
    report = Report()
    live = output != "json"
    async with env.stack:
        for category in chosen:
            async with contextlib.aclosing(category.run(env)) as checks:
                async for result in checks:
                    lines = report.add(category.name, result)
                    for line in lines if live else ():
                        echo(line)
                    if report.stopped:
                        break
            if report.stopped:
                break
    if live:
        for line in report.finish():
            echo(line)
    else:
        echo(json.dumps(report.to_json(), indent=2))
    return report.exit_code


def _kubernetes_addressed(
    ctx: click.Context, kubeconfig: str | None, context: str | None, pre: bool
) -> bool:
    """Whether the command checks Kubernetes: --kubeconfig, --context or --pre given, or
    $KUBECONFIG set while no local cluster was named (--name/--state-dir or their variables)."""
    if kubeconfig or context or pre:
        return True
    local = ("cluster_name", "state_dir")
    named = any(
        ctx.get_parameter_source(p) not in (None, click.core.ParameterSource.DEFAULT) for p in local
    )
    return bool(os.environ.get("KUBECONFIG")) and not named


@click.command()
@cluster_options
@click.option(
    "--kubeconfig",
    default=None,
    help="Check the Kubernetes cluster of this kubeconfig instead of a local cluster.",
)
@click.option("--context", default=None, help="The kubeconfig context (implies Kubernetes).")
@click.option(
    "-L",
    "--control-namespace",
    default="weft",
    show_default=True,
    help="Kubernetes: the control plane's namespace.",
)
@click.option(
    "--pre", is_flag=True, help="Kubernetes: check that weft can be installed (implies Kubernetes)."
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=DEFAULT_WAIT,
    show_default=True,
    help="Seconds to wait for the control plane (and with --proxy, the proxies) to be ready.",
)
@click.option("--proxy", is_flag=True, help="Also check the data plane's proxies.")
@click.option(
    "-n",
    "--namespace",
    default=None,
    help="With --proxy: only the proxies of this namespace [default: every namespace].",
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def check(
    ctx: click.Context,
    cluster_name: str,
    state_dir: str | None,
    kubeconfig: str | None,
    context: str | None,
    control_namespace: str,
    pre: bool,
    wait: float,
    proxy: bool,
    namespace: str | None,
    output: str,
) -> None:
    """Check the mesh, its identity trust, its control plane and (--proxy) its proxies.

    \b
    Which cluster: a local cluster (`weft cluster`, --name/--state-dir) by default; a
    Kubernetes cluster when --kubeconfig, --context or --pre is given, or when $KUBECONFIG is
    set and no local cluster is named. Exits 1 if a check fails.
    """
    if _kubernetes_addressed(ctx, kubeconfig, context, pre):
        from weft.cli import check_k8s

        kube_env = check_k8s.KubeCheckEnv(kubeconfig, context, control_namespace, wait, namespace)
        chosen = check_k8s.categories(pre, proxy)
        sys.exit(asyncio.run(run_checks(kube_env, chosen, click.echo, output)))
    env = CheckEnv(Ctx(cluster_name, state_dir), wait, namespace)
    sys.exit(asyncio.run(run_checks(env, categories(proxy), click.echo, output)))
