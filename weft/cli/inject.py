"""``weft inject``: mark workloads for the mesh, as ``linkerd inject`` does without ``--manual``.

Every pod template (and Pod) in the input gets ``linkerd.io/inject: enabled``; the YAML goes to
stdout and one line per workload to stderr. The proxy itself is added when the pods are
admitted: by the local runtime, or by the proxy-injector webhook on Kubernetes.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import yaml

from weft.inject.annotations import WORKLOAD_KINDS, annotate_inject
from weft.resources import ManifestError
from weft.resources.load import load_documents


def _inject(doc: Any, report: list[str]) -> Any:
    if not isinstance(doc, dict):
        return doc
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        return {**doc, "items": [_inject(item, report) for item in doc["items"]]}
    kind = doc.get("kind")
    if kind == "Pod" or kind in WORKLOAD_KINDS:
        name = (doc.get("metadata") or {}).get("name", "")
        report.append(f'{str(kind).lower()} "{name}" injected')
        return annotate_inject(doc, "enabled")
    return doc


@click.command()
@click.argument("files", nargs=-1, required=True)
def inject(files: tuple[str, ...]) -> None:
    """Add linkerd.io/inject: enabled to the workloads in FILES (files, directories or -)."""
    try:
        documents = load_documents(files)
    except ManifestError as exc:
        click.echo(f"weft inject: {exc}", err=True)
        sys.exit(1)
    report: list[str] = []
    out = [_inject(doc, report) for _, doc in documents]
    click.echo(yaml.safe_dump_all(out, sort_keys=False), nl=False)
    for line in report:
        click.echo(line, err=True)
