"""Reading meshed pods' certificates: which pods, and a TLS probe of their inbound proxies.

A meshed proxy terminates TLS on its inbound port when the ClientHello names its identity
(SNI) and does not require a client certificate, so one handshake shows its certificate. Pod
IPs are reachable only from the cluster's node namespace: :func:`probe` runs ``weft identity
--probe`` there (``ip netns exec``), which does the handshakes and prints one JSON line each.
"""

from __future__ import annotations

import _ssl
import asyncio
import json
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from weft.controller.destination.addresses import (
    IDENTITY_DISABLED_ENV,
    MeshSettings,
    identity_name,
    object_key,
    pod_ips,
    proxy_container,
)
from weft.identity.certs import load_certs_pem
from weft.local import control_plane
from weft.local import netns as ns
from weft.local.cluster_config import DEFAULT_NAME, ClusterConfig

F = TypeVar("F", bound=Callable[..., Any])
Obj = dict[str, Any]

INBOUND_ADDR_ENV = "LINKERD2_PROXY_INBOUND_LISTEN_ADDR"
DEFAULT_INBOUND_PORT = 4143
PROBE_TIMEOUT = 5.0
MAX_PARALLEL = 16


def cluster_options(func: F) -> F:
    """``--name``/``WEFT_CLUSTER`` and ``--state-dir``/``WEFT_STATE_DIR``, as ``weft cluster``."""
    func = click.option(
        "--state-dir",
        envvar="WEFT_STATE_DIR",
        default=None,
        help="State directory [default: /var/lib/weft/<name>].",
    )(func)
    return click.option(
        "--name",
        "cluster_name",
        envvar="WEFT_CLUSTER",
        default=DEFAULT_NAME,
        show_default=True,
        help="Cluster name (as given to `weft cluster`).",
    )(func)


# -- which pods ---------------------------------------------------------------------------


def mesh_settings(cfg: ClusterConfig) -> MeshSettings:
    """The identity naming of a local cluster's proxies."""
    return MeshSettings(
        control_namespace=control_plane.NAMESPACE,
        trust_domain=control_plane.TRUST_DOMAIN,
        cluster_domain=cfg.cluster_domain,
    )


def _env(container: Obj, name: str) -> Obj | None:
    return next((e for e in container.get("env") or [] if e.get("name") == name), None)


def pod_identity(pod: Obj, settings: MeshSettings) -> str | None:
    """The TLS identity of a meshed pod's proxy; None when unmeshed or identity is disabled."""
    proxy = proxy_container(pod)
    if proxy is None or _env(proxy, IDENTITY_DISABLED_ENV) is not None:
        return None
    return identity_name(pod, settings)


def unprobeable(pod: Obj, settings: MeshSettings) -> str | None:
    """Why the pod's certificate cannot be read (completes "pod NAME ..."), or None."""
    proxy = proxy_container(pod)
    if proxy is None:
        return "is not meshed (it has no linkerd-proxy container)"
    if pod_identity(pod, settings) is None:
        return f"has identity disabled ({IDENTITY_DISABLED_ENV} is set)"
    if pod["metadata"].get("deletionTimestamp"):
        return "is terminating"
    if not pod_ips(pod):
        phase = (pod.get("status") or {}).get("phase") or "Pending"
        return f"is not running (phase {phase})"
    return None


def inbound_port(proxy: Obj) -> int:
    """The proxy's inbound port, from its listen address (4143 if it names none)."""
    entry = _env(proxy, INBOUND_ADDR_ENV) or {}
    _, _, port = str(entry.get("value") or "").rpartition(":")
    return int(port) if port.isdigit() else DEFAULT_INBOUND_PORT


@dataclass(frozen=True)
class Target:
    """A meshed pod's proxy to read the certificate of."""

    namespace: str
    pod: str
    ip: str
    port: int
    identity: str

    @property
    def ref(self) -> str:
        """``<namespace>/<pod>``."""
        return f"{self.namespace}/{self.pod}"

    @property
    def addr(self) -> str:
        """``<ip>:<port>``."""
        return f"{self.ip}:{self.port}"


def target_for(pod: Obj, settings: MeshSettings) -> Target | None:
    """The probe target of a running meshed pod with identity, else None."""
    identity = pod_identity(pod, settings)
    proxy = proxy_container(pod)
    if identity is None or proxy is None or unprobeable(pod, settings):
        return None
    namespace, name = object_key(pod)
    return Target(namespace, name, pod_ips(pod)[0], inbound_port(proxy), identity)


# -- what a probe answers -----------------------------------------------------------------


@dataclass(frozen=True)
class ProbeOutcome:
    """The chain a proxy presented (PEM, leaf first) and any verification error, or an error."""

    addr: str
    identity: str
    chain_pem: tuple[str, ...] = ()
    verify_error: str | None = None
    error: str | None = None

    def chain(self) -> tuple[x509.Certificate, ...]:
        """The presented certificates, parsed."""
        if not self.chain_pem:
            return ()
        pem = "".join(self.chain_pem).encode()
        return tuple(load_certs_pem(pem, f"certificate of {self.addr}"))


def encode_outcome(outcome: ProbeOutcome) -> str:
    """One JSON line."""
    return json.dumps(
        {
            "addr": outcome.addr,
            "identity": outcome.identity,
            "chain": list(outcome.chain_pem),
            "verify_error": outcome.verify_error,
            "error": outcome.error,
        }
    )


def decode_outcomes(text: str) -> list[ProbeOutcome]:
    """The outcomes in the probe's output; lines that are not outcomes are ignored."""
    found = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
            found.append(
                ProbeOutcome(
                    addr=str(data["addr"]),
                    identity=str(data["identity"]),
                    chain_pem=tuple(str(c) for c in data["chain"]),
                    verify_error=data["verify_error"],
                    error=data["error"],
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return found


def parse_probe_arg(text: str) -> tuple[str, int, str]:
    """``IP:PORT=IDENTITY`` as (ip, port, identity)."""
    addr, _, identity = text.partition("=")
    host, _, port = addr.rpartition(":")
    if not (host and port.isdigit() and identity):
        raise click.BadParameter(f"{text!r} is not IP:PORT=IDENTITY", param_hint="--probe")
    return host, int(port), identity


# -- the probe (inside the node namespace) ------------------------------------------------


def _context(anchors_pem: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if anchors_pem is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=anchors_pem)
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def _presented(tls: ssl.SSLSocket) -> list[bytes]:
    # Python 3.11 has no public API for the peer's chain; its private one is used when present.
    getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    if getter is None:
        return []
    certs: list[_ssl.Certificate] = getter() or []
    return [c.public_bytes(_ssl.ENCODING_DER) for c in certs]


def _handshake(ctx: ssl.SSLContext, host: str, port: int, name: str, timeout: float) -> list[bytes]:
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=name) as tls,
    ):
        leaf = tls.getpeercert(binary_form=True)
        if not leaf:
            raise ssl.SSLError("the proxy presented no certificate")
        rest = [der for der in _presented(tls) if der != leaf]
        return [leaf, *rest]


def _pem(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def read_chain(
    host: str, port: int, identity: str, anchors_pem: str, timeout: float
) -> ProbeOutcome:
    """Handshake with SNI ``identity``, verifying against the anchors; unverified if that fails."""
    addr = f"{host}:{port}"
    verify_error = None
    try:
        try:
            chain = _handshake(_context(anchors_pem), host, port, identity, timeout)
        except ssl.SSLCertVerificationError as e:
            verify_error = str(e.verify_message or e)
            chain = _handshake(_context(None), host, port, identity, timeout)
        pems = tuple(_pem(der) for der in chain)
    except (OSError, ValueError) as e:
        return ProbeOutcome(addr, identity, error=" ".join(str(e).split()) or type(e).__name__)
    return ProbeOutcome(addr, identity, pems, verify_error)


def probe_main(args: Sequence[str], anchors_file: Path, timeout: float) -> None:
    """Read every ``IP:PORT=IDENTITY`` target, printing one JSON line each."""
    targets = [parse_probe_arg(a) for a in args]
    anchors_pem = anchors_file.read_text()
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets))) as pool:
        outcomes = pool.map(lambda t: read_chain(t[0], t[1], t[2], anchors_pem, timeout), targets)
        for outcome in outcomes:
            click.echo(encode_outcome(outcome))


# -- from the host ------------------------------------------------------------------------


def probe_argv(cfg: ClusterConfig, targets: Sequence[Target], anchors_file: Path) -> list[str]:
    """The command that probes ``targets`` from inside the cluster's node namespace."""
    argv = [sys.executable, "-m", "weft", "identity", "--anchors", str(anchors_file)]
    for target in targets:
        argv += ["--probe", f"{target.addr}={target.identity}"]
    return ns.exec_argv(cfg.node_netns, argv)


async def probe(
    cfg: ClusterConfig,
    targets: Sequence[Target],
    anchors_file: Path,
    *,
    timeout: float = PROBE_TIMEOUT,
) -> dict[str, ProbeOutcome]:
    """What each target's proxy presented, by address (an outcome with ``error`` if unread)."""
    if not targets:
        return {}
    proc = await asyncio.create_subprocess_exec(
        *probe_argv(cfg, targets, anchors_file),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout * len(targets) + 30):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        out, err = b"", b"the probe did not finish in time"
    found = {o.addr: o for o in decode_outcomes(out.decode(errors="replace"))}
    lines = err.decode(errors="replace").strip().splitlines()
    why = lines[-1] if lines else f"the probe exited with {proc.returncode}"
    return {
        t.addr: found.get(t.addr) or ProbeOutcome(t.addr, t.identity, error=why) for t in targets
    }
