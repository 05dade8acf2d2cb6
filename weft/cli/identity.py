"""``weft identity``: the certificates meshed pods' proxies present (like ``linkerd identity``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from cryptography import x509
from cryptography.x509.oid import NameOID

from weft.cli.check_results import GLYPHS
from weft.cli.cluster import Ctx
from weft.cli.pod_certs import (
    PROBE_TIMEOUT,
    ProbeOutcome,
    Target,
    cluster_options,
    mesh_settings,
    probe,
    probe_main,
    target_for,
    unprobeable,
)
from weft.identity.certs import (
    CertError,
    anchor_path,
    certs_to_pem,
    describe,
    dns_names,
    load_certs_pem,
    not_after,
    not_before,
    verify_leaf,
)
from weft.identity.trust import TrustFiles
from weft.local.cluster_config import ClusterConfig, ClusterConfigError
from weft.local.control_plane import identity_dir
from weft.platform import PlatformError

Obj = dict[str, Any]


def _fail(message: str) -> NoReturn:
    click.echo(f"weft identity: {message}", err=True)
    sys.exit(1)


# -- what is shown (pure) -----------------------------------------------------------------


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def time_left(until: datetime, now: datetime) -> str:
    """``12d 3h``, ``5h 2m``, ``4m 10s``; ``expired 3m ago`` once past."""
    span = until - now
    seconds = int(abs(span) / timedelta(seconds=1))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}d {hours}h"
    elif hours:
        text = f"{hours}h {minutes}m"
    else:
        text = f"{minutes}m {secs}s"
    return f"expired {text} ago" if span < timedelta(0) else text


def _issuer_cn(cert: x509.Certificate) -> str:
    attrs = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return text or cert.issuer.rfc4514_string() or "(empty)"


def verdict(
    chain: Sequence[x509.Certificate],
    issuer_chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    identity: str,
    now: datetime,
) -> tuple[bool, str]:
    """Whether the leaf is valid for ``identity`` and chains to the anchors, and one line why."""
    leaf, *presented = chain
    intermediates = [*presented, *issuer_chain]
    try:
        verify_leaf(leaf, intermediates, anchors, identity=identity, now=now)
        path = anchor_path(leaf, intermediates, anchors)
    except CertError as e:
        return False, f"{GLYPHS['error']} not valid: {e}"
    names = " → ".join(describe(c) for c in path[1:])
    return True, f"{GLYPHS['ok']} valid for {identity}: chains to the trust anchors ({names})"


def certificate_lines(
    target: Target,
    index: int,
    total: int,
    chain: Sequence[x509.Certificate],
    verdict_line: str,
    verify_error: str | None,
    now: datetime,
) -> list[str]:
    """One pod's block: the leaf's details, the PEM of the presented chain, the chain check."""
    leaf = chain[0]
    lines = [
        f"POD {target.pod} ({index} of {total})",
        "",
        f"Subject:     {leaf.subject.rfc4514_string() or '(empty)'}",
        f"DNS name:    {', '.join(dns_names(leaf)) or '(none)'}",
        f"Issuer:      {_issuer_cn(leaf)}",
        f"Serial:      {leaf.serial_number:x}",
        f"Not before:  {_stamp(not_before(leaf))}",
        f"Not after:   {_stamp(not_after(leaf))}",
        f"Time left:   {time_left(not_after(leaf), now)}",
        "",
        certs_to_pem(chain).decode().rstrip("\n"),
        "",
        verdict_line,
    ]
    if verify_error:
        lines.append(f"  (TLS verification said: {verify_error})")
    return lines


# -- the command ----------------------------------------------------------------------------


def _targets(c: Ctx, namespace: str, names: Sequence[str]) -> tuple[ClusterConfig, list[Target]]:
    try:
        cfg = c.config()
        pods: list[Obj] = c.call(lambda client: client.list("Pod", namespace))
    except (ClusterConfigError, PlatformError, OSError) as e:
        _fail(str(e))
    settings = mesh_settings(cfg)
    by_name = {p["metadata"]["name"]: p for p in pods}
    targets = []
    for name in names:
        pod = by_name.get(name)
        if pod is None:
            _fail(f'pod "{name}" not found in namespace {namespace}')
        reason = unprobeable(pod, settings)
        target = target_for(pod, settings)
        if reason or target is None:
            _fail(f"pod {name} {reason or 'has no certificate to read'}")
        targets.append(target)
    return cfg, targets


def _trust(directory: Path) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    files = TrustFiles.in_dir(directory)
    try:
        anchors = load_certs_pem(files.anchors.read_bytes(), str(files.anchors))
    except (CertError, OSError) as e:
        _fail(f"cannot read the cluster's trust anchors: {e}")
    try:
        issuer_chain = load_certs_pem(files.issuer_cert.read_bytes(), str(files.issuer_cert))
    except (CertError, OSError):
        issuer_chain = []  # the presented chain may still lead to the anchors
    return anchors, issuer_chain


def _show(
    targets: Sequence[Target],
    outcomes: dict[str, ProbeOutcome],
    trust: tuple[list[x509.Certificate], list[x509.Certificate]],
    pem: bool,
) -> int:
    anchors, issuer_chain = trust
    now = datetime.now(UTC)
    status = 0
    for index, target in enumerate(targets, 1):
        outcome = outcomes[target.addr]
        try:
            chain = outcome.chain()
        except CertError as e:
            chain, outcome = (), ProbeOutcome(target.addr, target.identity, error=str(e))
        if not chain:
            click.echo(
                f"weft identity: cannot read the certificate of pod {target.pod} "
                f"at {target.addr}: {outcome.error or 'no certificate presented'}",
                err=True,
            )
            status = 1
            continue
        ok, line = verdict(chain, issuer_chain, anchors, target.identity, now)
        status |= 0 if ok else 1
        if pem:
            click.echo(certs_to_pem(chain).decode(), nl=False)
            continue
        if index > 1:
            click.echo()
        block = certificate_lines(
            target, index, len(targets), chain, line, outcome.verify_error, now
        )
        click.echo("\n".join(block))
    return status


@click.command()
@click.argument("pods", nargs=-1, metavar="POD...")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--pem", is_flag=True, help="Print only the certificates, as PEM (leaf first).")
@cluster_options
@click.option("--probe", "probes", multiple=True, hidden=True, help="IP:PORT=IDENTITY to read.")
@click.option("--anchors", type=click.Path(path_type=Path), hidden=True)
@click.option("--timeout", type=float, default=PROBE_TIMEOUT, hidden=True)
def identity(
    pods: tuple[str, ...],
    namespace: str,
    pem: bool,
    cluster_name: str,
    state_dir: str | None,
    probes: tuple[str, ...],
    anchors: Path | None,
    timeout: float,
) -> None:
    """Show the certificates meshed pods' proxies present, and check them."""
    if probes:
        # Hidden: the handshakes themselves, run by the command inside the node namespace.
        if anchors is None:
            _fail("--probe needs --anchors")
        probe_main(probes, anchors, timeout)
        return
    if not pods:
        _fail("name at least one pod: weft identity [-n NAMESPACE] POD...")
    c = Ctx(cluster_name, state_dir)
    cfg, targets = _targets(c, namespace, pods)
    directory = identity_dir(cfg)
    trust = _trust(directory)
    outcomes = asyncio.run(probe(cfg, targets, TrustFiles.in_dir(directory).anchors))
    sys.exit(_show(targets, outcomes, trust, pem))
