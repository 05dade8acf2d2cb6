"""A container's environment and command line, resolved the way the kubelet does it.

``env`` entries are taken in order; ``valueFrom`` reads pod fields, ConfigMaps and Secrets;
``$(VAR)`` in values, ``command`` and ``args`` expands to variables defined earlier (``$$``
escapes a dollar; unknown references stay as written).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Obj = dict[str, Any]
# (kind, namespace, name) -> object or None: how ConfigMaps and Secrets are looked up.
Lookup = Callable[[str, str, str], Obj | None]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_LABEL_PATH = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


class EnvError(ValueError):
    """An environment variable that cannot be resolved (the container cannot start)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand ``$(VAR)`` references in ``text`` from ``env``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(sub, text)


def field_value(pod: Obj, path: str) -> str:
    """The value of a ``fieldRef.fieldPath`` for ``pod``."""
    meta = pod["metadata"]
    spec = pod["spec"]
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "spec.nodeName": spec.get("nodeName") or "",
        "status.podIP": pod.get("status", {}).get("podIP") or "",
        "status.hostIP": pod.get("status", {}).get("hostIP") or "",
    }
    if path in simple:
        return str(simple[path] or "")
    match = _LABEL_PATH.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise EnvError(f"unsupported fieldRef.fieldPath {path!r}")


def _key_ref(pod: Obj, ref: Obj, kind: str, lookup: Lookup) -> str | None:
    namespace = pod["metadata"]["namespace"]
    obj = lookup(kind, namespace, ref["name"])
    optional = bool(ref.get("optional"))
    if obj is None:
        if optional:
            return None
        raise EnvError(f'{kind.lower()} "{ref["name"]}" not found')
    key = ref["key"]
    if kind == "Secret":
        if key in (obj.get("stringData") or {}):
            return str(obj["stringData"][key])
        if key in (obj.get("data") or {}):
            return base64.b64decode(obj["data"][key]).decode()
    elif key in (obj.get("data") or {}):
        return str(obj["data"][key])
    if optional:
        return None
    raise EnvError(f'key "{key}" not found in {kind.lower()} "{ref["name"]}"')


def resolve_env(
    pod: Obj, container: Obj, base: Mapping[str, str], lookup: Lookup
) -> dict[str, str]:
    """The complete environment of ``container``: ``base`` plus its ``env`` list."""
    env = dict(base)
    for entry in container.get("env") or []:
        name = entry["name"]
        source = entry.get("valueFrom")
        if source is None:
            env[name] = expand(str(entry.get("value", "")), env)
            continue
        value: str | None
        if "fieldRef" in source:
            value = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source:
            value = _key_ref(pod, source["configMapKeyRef"], "ConfigMap", lookup)
        elif "secretKeyRef" in source:
            value = _key_ref(pod, source["secretKeyRef"], "Secret", lookup)
        else:
            raise EnvError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def command_line(container: Obj, env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded; raises if there is no command."""
    command: Sequence[str] = container.get("command") or []
    args: Sequence[str] = container.get("args") or []
    if not command:
        raise EnvError(
            "no command: the local runtime runs a container's command and args on the host "
            "(images are not pulled), so every container needs a command"
        )
    return [expand(str(part), env) for part in (*command, *args)]


# Where Kubernetes mounts a pod's service-account token. The local runtime has no mount
# namespaces, so paths under it point at the pod's own token directory instead.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def redirect_token_paths(values: Sequence[str], token_dir: str) -> list[str]:
    """``values`` with the service-account mount path replaced by ``token_dir``."""
    prefix = SERVICE_ACCOUNT_DIR + "/"
    return [token_dir + "/" + v[len(prefix) :] if v.startswith(prefix) else v for v in values]
