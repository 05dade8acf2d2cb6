"""Manifest loading: YAML or JSON text, files, directories and stdin to resource models."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, TypeAlias, cast

import yaml
from pydantic import ValidationError

from weft.resources.apps import Deployment, Job
from weft.resources.core import (
    ConfigMap,
    Endpoints,
    Namespace,
    Pod,
    Secret,
    Service,
    ServiceAccount,
)
from weft.resources.errors import FIELD_ERROR, ManifestError
from weft.resources.mesh import ServiceProfile, TrafficSplit
from weft.resources.meta import KubeObject

Resource: TypeAlias = (
    Namespace
    | ServiceAccount
    | ConfigMap
    | Secret
    | Service
    | Endpoints
    | Pod
    | Deployment
    | Job
    | ServiceProfile
    | TrafficSplit
)

KINDS: dict[str, type[KubeObject]] = {
    model.__name__: model
    for model in (
        Namespace,
        ServiceAccount,
        ConfigMap,
        Secret,
        Service,
        Endpoints,
        Pod,
        Deployment,
        Job,
        ServiceProfile,
        TrafficSplit,
    )
}

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN_SOURCE = "<stdin>"


class _Loader(yaml.SafeLoader):
    """A safe YAML loader that keeps timestamps as strings, as Kubernetes does."""


def _timestamp_as_string(loader: _Loader, node: yaml.ScalarNode) -> str:
    """Construct a YAML timestamp as its text."""
    return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


def _join(path: str, child: str) -> str:
    """``path`` extended by a field name or by an ``[index]``."""
    return path + child if not path or child.startswith("[") else f"{path}.{child}"


def _field_path(loc: Sequence[int | str]) -> str:
    """``spec.ports[0].targetPort`` for a pydantic error location."""
    path = ""
    for part in loc:
        path = _join(path, f"[{part}]" if isinstance(part, int) else part)
    return path


def _first_error(exc: ValidationError) -> str:
    """The first validation error as ``<field path>: <problem>``."""
    error = exc.errors()[0]
    path = _field_path(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == FIELD_ERROR:
        context = error.get("ctx", {})
        path, message = _join(path, context["path"]), context["message"]
    elif error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{path}: {message}" if path else message


def _yaml_documents(text: str, source: str) -> list[Any]:
    """The documents of a YAML stream (or of one JSON text, for a ``.json`` source)."""
    if source.endswith(".json"):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise ManifestError(
                f"{source}: document 1: invalid JSON: {exc.msg} (line {exc.lineno})"
            ) from None
    documents: list[Any] = []
    try:
        for document in yaml.load_all(text, Loader=_Loader):
            documents.append(document)
    except yaml.YAMLError as exc:
        problem = str(exc)
        if isinstance(exc, yaml.MarkedYAMLError):
            problem = exc.problem or exc.context or problem
            if exc.problem_mark is not None:
                problem += f" (line {exc.problem_mark.line + 1})"
        raise ManifestError(
            f"{source}: document {len(documents) + 1}: invalid YAML: {problem}"
        ) from None
    return documents


def _parse_object(doc: Any, where: str, default_namespace: str | None) -> list[Resource]:
    """The resources in one document (several for a ``List``); ``where`` names the document."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected an object with apiVersion and kind")
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise ManifestError(f'{where}: missing "kind"')
    if kind == "List":
        return _parse_list(doc, where, default_namespace)
    model = KINDS.get(kind)
    if model is None:
        raise ManifestError(f'{where}: unknown kind "{kind}" (apiVersion {api_version})')
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    label = f"{where} ({kind} {name})" if isinstance(name, str) else f"{where} ({kind})"
    if not isinstance(api_version, str) or not api_version:
        raise ManifestError(f'{label}: missing "apiVersion"')
    if model.NAMESPACED and isinstance(metadata, dict):
        namespace = metadata.get("namespace")
        if namespace is None:
            namespace = default_namespace or "default"
            doc = {**doc, "metadata": {**metadata, "namespace": namespace}}
        elif default_namespace is not None and namespace != default_namespace:
            raise ManifestError(
                f'{label}: metadata.namespace: "{namespace}" does not match the requested '
                f'namespace "{default_namespace}"'
            )
    try:
        resource = model.model_validate(doc)
    except ValidationError as exc:
        raise ManifestError(f"{label}: {_first_error(exc)}") from None
    resource._source = where
    return [cast(Resource, resource)]


def _parse_list(doc: dict[str, Any], where: str, default_namespace: str | None) -> list[Resource]:
    """The items of a ``kind: List`` document."""
    if doc.get("apiVersion") != "v1":
        raise ManifestError(f'{where} (List): apiVersion: "{doc.get("apiVersion")}" is not v1')
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "items"):
            raise ManifestError(f"{where} (List): {key}: unknown field")
    items = doc.get("items") or []
    if not isinstance(items, list):
        raise ManifestError(f"{where} (List): items: must be a list")
    resources: list[Resource] = []
    for i, item in enumerate(items):
        resources.extend(_parse_object(item, f"{where}, items[{i}]", default_namespace))
    return resources


def parse_manifest_text(
    text: str, source: str, default_namespace: str | None = None
) -> list[Resource]:
    """The resources in a YAML (or JSON) text; ``source`` names it in errors."""
    resources: list[Resource] = []
    for index, doc in enumerate(_yaml_documents(text, source), start=1):
        resources.extend(_parse_object(doc, f"{source}: document {index}", default_namespace))
    return resources


def _read_sources(sources: Sequence[str], stdin: TextIO | None) -> list[tuple[str, str]]:
    """``(name, text)`` of every manifest file named by ``sources``."""
    texts: list[tuple[str, str]] = []
    for source in sources:
        if source == "-":
            texts.append((STDIN_SOURCE, (stdin or sys.stdin).read()))
            continue
        path = Path(source)
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file()
            )
        else:
            files = [path]
        for file in files:
            try:
                texts.append((str(file), file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ManifestError(f"{file}: {reason}") from None
    return texts


def load_documents(sources: Sequence[str], *, stdin: TextIO | None = None) -> list[tuple[str, Any]]:
    """``(source, document)`` for every YAML/JSON document in the given files, directories or "-",
    parsed but not validated (empty documents are skipped); raises ``ManifestError``."""
    return [
        (name, doc)
        for name, text in _read_sources(sources, stdin)
        for doc in _yaml_documents(text, name)
        if doc is not None
    ]


def load_manifests(
    sources: Sequence[str], *, stdin: TextIO | None = None, default_namespace: str | None = None
) -> list[Resource]:
    """Every resource in the given files, directories (``*.yaml``, ``*.yml``, ``*.json``) or "-".

    All or nothing: the first problem raises ``ManifestError`` and nothing is returned.
    """
    resources: list[Resource] = []
    for name, text in _read_sources(sources, stdin):
        resources.extend(parse_manifest_text(text, name, default_namespace))
    return resources
