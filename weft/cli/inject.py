"""``weft inject``: mesh the workloads of manifests, as ``linkerd inject`` does.

Without ``--manual`` every pod template gets ``linkerd.io/inject: enabled`` (and the
``config.linkerd.io/*`` annotations of the proxy flags given); the proxy is added when the pods
are admitted, by the local runtime or the proxy-injector webhook. With ``--manual`` the
``linkerd-init`` and ``linkerd-proxy`` containers are written into the manifest, configured as
the installed control plane (read from the cluster) or, with ``--ignore-cluster``, as the flags
say. Input: files, directories and ``-`` (stdin); YAML streams, JSON, ``List``s. One line per
object on stderr says what was done and why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from weft.inject.annotations import CONFIG_PREFIX
from weft.inject.config import InjectConfig
from weft.inject.workloads import Outcome, each_object, inject_object
from weft.resources import ManifestError
from weft.resources.load import load_documents

F = TypeVar("F", bound=Callable[..., None])

# Proxy flags: (flag, annotation after config.linkerd.io/, type).
PROXY_FLAGS: tuple[tuple[str, str, Any], ...] = (
    ("--proxy-image", "proxy-image", str),
    ("--proxy-version", "proxy-version", str),
    ("--init-image", "init-image", str),
    ("--image-pull-policy", "image-pull-policy", click.Choice(["Always", "IfNotPresent", "Never"])),
    ("--proxy-uid", "proxy-uid", click.IntRange(min=1)),
    ("--proxy-gid", "proxy-gid", click.IntRange(min=1)),
    ("--proxy-log-level", "proxy-log-level", str),
    ("--inbound-port", "inbound-port", click.IntRange(1, 65535)),
    ("--outbound-port", "outbound-port", click.IntRange(1, 65535)),
    ("--admin-port", "admin-port", click.IntRange(1, 65535)),
    ("--control-port", "control-port", click.IntRange(1, 65535)),
    ("--skip-inbound-ports", "skip-inbound-ports", str),
    ("--skip-outbound-ports", "skip-outbound-ports", str),
    ("--opaque-ports", "opaque-ports", str),
    ("--proxy-cpu-request", "proxy-cpu-request", str),
    ("--proxy-cpu-limit", "proxy-cpu-limit", str),
    ("--proxy-memory-request", "proxy-memory-request", str),
    ("--proxy-memory-limit", "proxy-memory-limit", str),
)
BOOL_FLAGS = (
    ("--disable-identity", "disable-identity"),
    ("--disable-tap", "disable-tap"),
    ("--enable-external-profiles", "enable-external-profiles"),
)


def _param(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def proxy_options(func: F) -> F:
    """The proxy flags, each written as its ``config.linkerd.io/*`` annotation."""
    for flag, annotation, kind in reversed(PROXY_FLAGS):
        func = click.option(
            flag, type=kind, default=None, help=f"Sets {CONFIG_PREFIX}{annotation}."
        )(func)
    for flag, annotation in reversed(BOOL_FLAGS):
        func = click.option(flag, is_flag=True, help=f'Sets {CONFIG_PREFIX}{annotation}: "true".')(
            func
        )
    return func


def flag_annotations(params: dict[str, Any]) -> dict[str, str]:
    """The annotations the given proxy flags stand for."""
    out = {
        CONFIG_PREFIX + annotation: str(params[_param(flag)])
        for flag, annotation, _ in PROXY_FLAGS
        if params.get(_param(flag)) is not None
    }
    out.update(
        {
            CONFIG_PREFIX + annotation: "true"
            for flag, annotation in BOOL_FLAGS
            if params.get(_param(flag))
        }
    )
    return out


def dump(documents: list[Any], output: str) -> str:
    """The documents as a YAML stream, or JSON (one document as itself, several as a List)."""
    if output == "json":
        body = (
            documents[0]
            if len(documents) == 1
            else {"apiVersion": "v1", "kind": "List", "items": documents}
        )
        return json.dumps(body, indent=2) + "\n"
    return yaml.safe_dump_all(documents, sort_keys=False)


def read(command: str, files: tuple[str, ...]) -> list[Any]:
    """The documents of the inputs; one line and exit 1 if they cannot be read."""
    try:
        return [doc for _, doc in load_documents(files)]
    except ManifestError as exc:
        click.echo(f"weft {command}: {exc}", err=True)
        sys.exit(1)


def report(outcomes: list[Outcome]) -> None:
    """One line per object on stderr, and the warnings."""
    for outcome in outcomes:
        click.echo(outcome.line(), err=True)
        for warning in outcome.warnings:
            click.echo(f'warning: {outcome.kind.lower()} "{outcome.name}": {warning}', err=True)


async def _installed(kubeconfig: str | None, context: str | None, namespace: str) -> InjectConfig:
    from weft.cli.kube_options import connect
    from weft.k8s.install import components as c
    from weft.k8s.install.inject_config import inject_config
    from weft.k8s.install.render import CONFIG_MAP, TRUST_ROOTS
    from weft.k8s.install.values import InstallValues
    from weft.k8s.kinds import api_kind

    client = await connect(kubeconfig, context)
    try:
        config = await client.get(api_kind("ConfigMap").path(namespace, CONFIG_MAP))
        roots = await client.get(api_kind("ConfigMap").path(namespace, TRUST_ROOTS))
    finally:
        await client.close()
    values = InstallValues.from_json(str((config.get("data") or {}).get(c.CONFIG_KEY)))
    return inject_config(values, str((roots.get("data") or {}).get(c.TRUST_ROOTS_KEY, "")))


def manual_config(
    namespace: str,
    kubeconfig: str | None,
    context: str | None,
    ignore_cluster: bool,
    anchors_file: Path | None,
) -> InjectConfig:
    """The injector's settings for ``--manual``: the installed control plane's, or defaults."""
    from weft.k8s.client import KubeError
    from weft.k8s.install.inject_config import inject_config
    from weft.k8s.install.values import InstallValues

    addressed = kubeconfig or context or os.environ.get("KUBECONFIG")
    if addressed and not ignore_cluster:
        try:
            return asyncio.run(_installed(kubeconfig, context, namespace))
        except (KubeError, ValueError) as exc:
            click.echo(
                f"weft inject: cannot read the installed config ({exc}); use --ignore-cluster",
                err=True,
            )
            sys.exit(1)
    values = InstallValues(namespace=namespace)
    if anchors_file is None:
        click.echo(
            "warning: no trust anchors (--identity-trust-anchors-file): "
            "the proxies get identity disabled",
            err=True,
        )
        return dataclasses.replace(inject_config(values, ""), identity_disabled=True)
    return inject_config(values, anchors_file.read_text())


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--manual", is_flag=True, help="Write the proxy and init containers into the output.")
@click.option(
    "--ignore-cluster", is_flag=True, help="--manual: use defaults, not the installed config."
)
@click.option(
    "--identity-trust-anchors-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="--manual --ignore-cluster: the trust anchors the proxies verify peers with.",
)
@click.option(
    "-L", "--namespace", default="weft", show_default=True, help="The control plane's namespace."
)
@click.option(
    "--kubeconfig", default=None, help="--manual: the cluster to read the installed config from."
)
@click.option("--context", default=None, help="The kubeconfig context.")
@click.option(
    "-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
@proxy_options
def inject(
    files: tuple[str, ...],
    manual: bool,
    ignore_cluster: bool,
    identity_trust_anchors_file: Path | None,
    namespace: str,
    kubeconfig: str | None,
    context: str | None,
    output: str,
    **params: Any,
) -> None:
    """Mesh the workloads in FILES (files, directories or - for stdin).

    \\b
    weft inject app.yml | kubectl apply -f -            # the webhook adds the proxy
    weft inject --manual app.yml | kubectl apply -f -   # the proxy written into the manifest
    """
    documents = read("inject", files)
    annotations = flag_annotations(params)
    config = (
        manual_config(namespace, kubeconfig, context, ignore_cluster, identity_trust_anchors_file)
        if manual
        else InjectConfig()
    )
    outcomes: list[Outcome] = []
    out = [
        each_object(
            doc, lambda obj: inject_object(obj, config, annotations, manual=manual), outcomes
        )
        for doc in documents
    ]
    click.echo(dump(out, output), nl=False)
    report(outcomes)
