"""``weft profile``: print a ServiceProfile for a service (like ``linkerd profile``).

The profile comes from a commented template, a Swagger 2.0 / OpenAPI 3 document, or the gRPC
services of a .proto file. The routes are built by :mod:`weft.resources.profile_gen`; this module
reads the input and runs protoc.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import yaml

from weft.resources import profile_gen
from weft.resources.meta import check_dns1035_label, check_dns_label, check_dns_subdomain
from weft.resources.profiles import validate_service_profile

if TYPE_CHECKING:
    from google.protobuf.descriptor_pb2 import FileDescriptorSet


def _read_text(path: str) -> str:
    """The contents of ``path`` (``-`` is stdin)."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"cannot read {path}: not UTF-8 text ({exc.reason})") from None


def load_document(text: str, source: str) -> Any:
    """``text`` parsed as JSON, or else as YAML; ``source`` names it in the error."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise click.ClickException(
            f"cannot parse {source} as JSON or YAML: {problem}{where}"
        ) from None


def _run_protoc(args: list[str]) -> tuple[int, str]:
    """Run protoc in this process; its exit code and what it wrote to stderr."""
    from grpc_tools import protoc

    # protoc writes its diagnostics straight to file descriptor 2, so capture at that level.
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            code = int(protoc.main(["protoc", *args]))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        output = capture.read().decode("utf-8", "replace")
    return code, output


def proto_descriptors(path: str, include_dirs: Sequence[str] = ()) -> FileDescriptorSet:
    """The descriptor of the .proto file at ``path``, compiled by protoc.

    Imports are looked up in the file's directory, ``include_dirs`` and the well-known types
    bundled with grpcio-tools. Raises ``click.ClickException`` with protoc's messages on failure.
    """
    from google.protobuf.descriptor_pb2 import FileDescriptorSet

    source = Path(path)
    if not source.is_file():
        reason = "is not a file" if source.exists() else "no such file"
        raise click.ClickException(f"cannot read {path}: {reason}")
    with (
        resources.as_file(resources.files("grpc_tools") / "_proto") as bundled,
        tempfile.TemporaryDirectory() as scratch,
    ):
        out = Path(scratch) / "descriptors.pb"
        includes = [source.resolve().parent, *(Path(d) for d in include_dirs), bundled]
        code, output = _run_protoc(
            [
                *(f"--proto_path={d}" for d in includes),
                f"--descriptor_set_out={out}",
                source.name,
            ]
        )
        messages = [line.strip() for line in output.splitlines() if line.strip()]
        if code != 0 or not out.exists():
            detail = "; ".join(messages) or f"protoc exited with status {code}"
            if any(m.endswith("File not found.") for m in messages):
                detail += " (give the directory an import is under with --proto-path)"
            raise click.ClickException(f"protoc cannot compile {path}: {detail}")
        for message in messages:  # warnings, such as unused imports
            click.echo(f"protoc: {message}", err=True)
        return FileDescriptorSet.FromString(out.read_bytes())


def _check_names(service: str, namespace: str, cluster_domain: str) -> None:
    for check, value, what in (
        (check_dns1035_label, service, "SERVICE"),
        (check_dns_label, namespace, "--namespace"),
        (check_dns_subdomain, cluster_domain, "--cluster-domain"),
    ):
        try:
            check(value)
        except ValueError as exc:
            raise click.UsageError(f"{what}: {exc}") from None


def _checked(profile: dict[str, Any]) -> dict[str, Any]:
    """``profile`` if it validates; a generated profile that does not is a bug in weft."""
    errors = validate_service_profile(profile)
    if errors:
        raise click.ClickException(
            "weft generated an invalid ServiceProfile (a bug, please report it): "
            + "; ".join(errors)
        )
    return profile


def _dump(profile: dict[str, Any]) -> str:
    return yaml.safe_dump(profile, sort_keys=False, default_flow_style=False, allow_unicode=True)


@click.command()
@click.option(
    "-n",
    "--namespace",
    default="default",
    show_default=True,
    help="Namespace of the service.",
)
@click.option(
    "--cluster-domain",
    default="cluster.local",
    show_default=True,
    help="The cluster's DNS domain, part of the profile's name.",
)
@click.option("--template", "use_template", is_flag=True, help="Print a commented sample profile.")
@click.option(
    "--open-api",
    "open_api",
    metavar="FILE",
    help="Build routes from a Swagger 2.0 or OpenAPI 3 document (JSON or YAML; - for stdin).",
)
@click.option(
    "--proto", metavar="FILE", help="Build routes from the gRPC services in a .proto file."
)
@click.option(
    "-I",
    "--proto-path",
    "proto_paths",
    multiple=True,
    metavar="DIR",
    help="With --proto: another directory to resolve imports in (repeatable).",
)
@click.argument("service")
def profile(
    namespace: str,
    cluster_domain: str,
    use_template: bool,
    open_api: str | None,
    proto: str | None,
    proto_paths: tuple[str, ...],
    service: str,
) -> None:
    """Print a ServiceProfile for SERVICE as YAML.

    Give exactly one of --template, --open-api FILE or --proto FILE. The output can be
    edited and applied; the profile is named SERVICE.NAMESPACE.svc.CLUSTER-DOMAIN.
    """
    modes = [use_template, open_api is not None, proto is not None]
    if sum(modes) != 1:
        raise click.UsageError("give exactly one of --template, --open-api FILE or --proto FILE")
    if proto_paths and proto is None:
        raise click.UsageError("--proto-path only applies with --proto")
    _check_names(service, namespace, cluster_domain)

    if use_template:
        text = profile_gen.template(service, namespace, cluster_domain)
        _checked(yaml.safe_load(text))
        click.echo(text, nl=False)
        return

    try:
        if open_api is not None:
            source = "stdin" if open_api == "-" else open_api
            doc = load_document(_read_text(open_api), source)
            generated = profile_gen.from_openapi(doc, service, namespace, cluster_domain)
        else:
            assert proto is not None
            source = proto
            fds = proto_descriptors(proto, proto_paths)
            generated = profile_gen.from_proto_descriptors(fds, service, namespace, cluster_domain)
    except profile_gen.ProfileSourceError as exc:
        raise click.ClickException(f"{source}: {exc}") from None
    click.echo(_dump(_checked(generated)), nl=False)
