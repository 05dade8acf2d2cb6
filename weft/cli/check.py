"""``weft check``: Linkerd-style health checks of a local cluster, section by section.

Each category gathers data (the agent's API, the trust files, probes of the proxies) and
turns it into results with the pure checks of :mod:`weft.cli.check_results`. ``--pre`` and
``--proxy`` will pick other categories in :func:`categories`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click
from cryptography import x509

from weft.cli import check_results as results
from weft.cli.check_results import CheckResult, ProxyCert, Report
from weft.cli.cluster import Ctx
from weft.cli.pod_certs import cluster_options, mesh_settings, probe, target_for
from weft.identity.certs import CertError, load_certs_pem
from weft.identity.trust import TrustFiles, read_trust
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
    cfg: ClusterConfig | None = None
    client: ApiClient | None = None
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def require(self) -> tuple[ClusterConfig, ApiClient]:
        """The cluster and client (the reachability check, which is fatal, set them)."""
        if self.cfg is None or self.client is None:
            raise RuntimeError("the node agent check must run first")
        return self.cfg, self.client


Run = Callable[[CheckEnv], AsyncGenerator[CheckResult, None]]


@dataclass(frozen=True)
class Category:
    """A named section of checks."""

    name: str
    run: Run


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


# -- running them -------------------------------------------------------------------------

LOCAL_CLUSTER = Category("weft-local-cluster", local_cluster)
IDENTITY = Category("weft-identity", identity)
IDENTITY_DATA_PLANE = Category("weft-identity-data-plane", data_plane)


def categories() -> list[Category]:
    """The sections ``weft check`` runs, in order."""
    return [LOCAL_CLUSTER, IDENTITY, IDENTITY_DATA_PLANE]


async def run_checks(env: CheckEnv, chosen: list[Category], echo: Callable[[str], None]) -> int:
    """Run the categories, printing each result as it comes; stops after a fatal failure."""
    report = Report()
    async with env.stack:
        for category in chosen:
            async with contextlib.aclosing(category.run(env)) as checks:
                async for result in checks:
                    for line in report.add(category.name, result):
                        echo(line)
                    if report.stopped:
                        break
            if report.stopped:
                break
    for line in report.finish():
        echo(line)
    return report.exit_code


@click.command()
@cluster_options
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=DEFAULT_WAIT,
    show_default=True,
    help="Seconds to wait for the control plane pods to be ready.",
)
def check(cluster_name: str, state_dir: str | None, wait: float) -> None:
    """Check the local cluster, its identity trust and its proxies' certificates."""
    env = CheckEnv(Ctx(cluster_name, state_dir), wait)
    sys.exit(asyncio.run(run_checks(env, categories(), click.echo)))
