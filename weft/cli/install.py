"""``weft install``: print the control plane as Kubernetes manifests (``| kubectl apply -f -``).

The trust anchor and issuer are generated unless the three ``--identity-*-file`` options give
them; every flag is recorded in the ``weft-config`` ConfigMap, which ``weft upgrade`` reads.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from weft.identity.certs import CertError
from weft.k8s.install.render import Secrets, generate_secrets, render, secrets_from_files, to_json
from weft.k8s.install.render import to_yaml as render_yaml
from weft.k8s.install.values import InstallValues, ValuesError

F = TypeVar("F", bound=Callable[..., None])


@dataclass(frozen=True)
class ValueFlag:
    """A flag that sets one :class:`InstallValues` field."""

    flag: str
    field: str
    type: Any
    help: str


VALUE_FLAGS = (
    ValueFlag("--ha", "ha", bool, "Run 3 replicas of each component, spread over nodes."),
    ValueFlag(
        "--controller-replicas",
        "controller_replicas",
        click.IntRange(min=1),
        "Replicas of each component.",
    ),
    ValueFlag(
        "--controller-log-level", "controller_log_level", str, "Log level of the components."
    ),
    ValueFlag(
        "--image", "image", str, "The weft image (registry/name), for components and proxies."
    ),
    ValueFlag("--image-version", "version", str, "The image's tag [default: this CLI's version]."),
    ValueFlag(
        "--image-pull-policy",
        "image_pull_policy",
        click.Choice(["Always", "IfNotPresent", "Never"]),
        "Pull policy of every weft container.",
    ),
    ValueFlag(
        "--identity-issuance-lifetime",
        "identity_issuance_lifetime",
        str,
        "Proxy certificates' lifetime.",
    ),
    ValueFlag(
        "--identity-clock-skew-allowance",
        "identity_clock_skew_allowance",
        str,
        "Backdating of certificates.",
    ),
    ValueFlag(
        "--webhook-failure-policy",
        "webhook_failure_policy",
        click.Choice(["Ignore", "Fail"]),
        "What the API server does when a webhook does not answer.",
    ),
    ValueFlag("--proxy-uid", "proxy_uid", click.IntRange(min=1), "The proxy's user id."),
    ValueFlag("--proxy-gid", "proxy_gid", click.IntRange(min=1), "The proxy's group id."),
    ValueFlag("--proxy-log-level", "proxy_log_level", str, "The proxy's log filter."),
    ValueFlag(
        "--inbound-port", "inbound_port", click.IntRange(1, 65535), "The proxy's inbound port."
    ),
    ValueFlag(
        "--outbound-port", "outbound_port", click.IntRange(1, 65535), "The proxy's outbound port."
    ),
    ValueFlag("--admin-port", "admin_port", click.IntRange(1, 65535), "The proxy's admin port."),
    ValueFlag(
        "--control-port",
        "control_port",
        click.IntRange(1, 65535),
        "The proxy's control (tap) port.",
    ),
    ValueFlag(
        "--proxy-cpu-request", "proxy_cpu_request", str, "The proxy's CPU request, e.g. 100m."
    ),
    ValueFlag("--proxy-cpu-limit", "proxy_cpu_limit", str, "The proxy's CPU limit."),
    ValueFlag(
        "--proxy-memory-request",
        "proxy_memory_request",
        str,
        "The proxy's memory request, e.g. 20Mi.",
    ),
    ValueFlag("--proxy-memory-limit", "proxy_memory_limit", str, "The proxy's memory limit."),
)


def value_options(func: F) -> F:
    """The :data:`VALUE_FLAGS` as options (unset ones are None: keep the default or record)."""
    for spec in reversed(VALUE_FLAGS):
        if spec.type is bool:
            option = click.option(spec.flag, spec.field, is_flag=True, default=None, help=spec.help)
        else:
            option = click.option(
                spec.flag, spec.field, type=spec.type, default=None, help=spec.help
            )
        func = option(func)
    return func


def output_option(func: F) -> F:
    """``-o yaml|json``."""
    return click.option(
        "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
    )(func)


def apply_flags(values: InstallValues, flags: dict[str, Any]) -> InstallValues:
    """``values`` with the flags given (not None) applied and checked; exits on a bad value."""
    try:
        return values.replace(**{f.field: flags.get(f.field) for f in VALUE_FLAGS}).check()
    except ValuesError as exc:
        click.echo(f"weft: {exc}", err=True)
        sys.exit(1)


def emit(values: InstallValues, secrets: Secrets, output: str) -> None:
    """Print the control plane."""
    objects = render(values, secrets)
    click.echo(render_yaml(objects) if output == "yaml" else to_json(objects), nl=False)


@click.command()
@click.option(
    "-L", "--namespace", default="weft", show_default=True, help="The control plane's namespace."
)
@click.option("--identity-trust-domain", "trust_domain", default="cluster.local", show_default=True)
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option(
    "--identity-trust-anchors-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trust anchors (PEM) instead of generated ones; needs the two issuer files too.",
)
@click.option(
    "--identity-issuer-certificate-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--identity-issuer-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@value_options
@output_option
def install(
    namespace: str,
    trust_domain: str,
    cluster_domain: str,
    identity_trust_anchors_file: Path | None,
    identity_issuer_certificate_file: Path | None,
    identity_issuer_key_file: Path | None,
    output: str,
    **flags: Any,
) -> None:
    """Print the control plane's manifests: weft install | kubectl apply -f -"""
    values = apply_flags(
        InstallValues(
            namespace=namespace, trust_domain=trust_domain, cluster_domain=cluster_domain
        ),
        flags,
    )
    files = (
        identity_trust_anchors_file,
        identity_issuer_certificate_file,
        identity_issuer_key_file,
    )
    now = datetime.now(UTC)
    try:
        if any(files):
            if not all(files):
                raise click.UsageError(
                    "give all three of --identity-trust-anchors-file, "
                    "--identity-issuer-certificate-file and --identity-issuer-key-file, or none"
                )
            anchors, cert, key = (f for f in files if f is not None)
            secrets = secrets_from_files(values, anchors, cert, key, now)
        else:
            secrets = generate_secrets(values, now)
    except CertError as exc:
        click.echo(f"weft install: {exc}", err=True)
        sys.exit(1)
    emit(values, secrets, output)
