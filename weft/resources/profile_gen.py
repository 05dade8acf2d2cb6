"""ServiceProfiles generated from a template, an OpenAPI/Swagger document or protobuf services.

Pure functions behind ``weft profile`` (Linkerd's ``linkerd profile``): they take parsed input
and return a ServiceProfile object (or, for the template, YAML text). Reading files and running
protoc is the command's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from weft.resources.profiles import parse_go_duration

if TYPE_CHECKING:
    from google.protobuf.descriptor_pb2 import FileDescriptorSet

API_VERSION = "linkerd.io/v1alpha2"
KIND = "ServiceProfile"

# The operations of an OpenAPI path item, in the order routes are emitted for one path.
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# What Go's regexp.QuoteMeta escapes, so generated regexes read the same as Linkerd's.
_REGEX_META = frozenset(r"\.+*?()|[]{}^$")
_PATH_PARAM = re.compile(r"\{[^{}/]*\}")
_STATUS_RANGE = re.compile(r"([1-5])XX", re.IGNORECASE)

Obj = dict[str, Any]


class ProfileSourceError(ValueError):
    """The input describes no usable routes, or has a field that cannot become part of one."""


def profile_name(service: str, namespace: str, cluster_domain: str) -> str:
    """The name Linkerd looks a service's profile up by: ``<svc>.<ns>.svc.<cluster-domain>``."""
    return f"{service}.{namespace}.svc.{cluster_domain}"


def quote_regex(text: str) -> str:
    """``text`` with every regular-expression metacharacter escaped (like Go's QuoteMeta)."""
    return "".join(f"\\{char}" if char in _REGEX_META else char for char in text)


def path_regex(path: str) -> str:
    """A regex for ``path`` where each ``{param}`` template matches one path segment."""
    return "[^/]*".join(quote_regex(part) for part in _PATH_PARAM.split(path))


def _profile(service: str, namespace: str, cluster_domain: str, routes: list[Obj]) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": profile_name(service, namespace, cluster_domain),
            "namespace": namespace,
        },
        "spec": {"routes": routes},
    }


def template(service: str, namespace: str, cluster_domain: str) -> str:
    """A commented sample ServiceProfile, as YAML, for a person to edit."""
    name = profile_name(service, namespace, cluster_domain)
    return f"""\
### ServiceProfile for {name} ###
apiVersion: {API_VERSION}
kind: {KIND}
metadata:
  # The proxies look a profile up by the service's fully-qualified name, in its namespace.
  name: {name}
  namespace: {namespace}
spec:
  # The routes of the service. Metrics (request volume, success rate, latency) are kept per
  # route, and retries and timeouts are configured per route.
  routes:
  - name: '/authors/{{id}}'

    # Every route needs a condition. A request belongs to the first route whose condition it
    # matches; requests that match none are counted under a default route.
    condition:
      # A regular expression that must match the whole request path.
      pathRegex: '/authors/\\d+'

      # The request method. When a condition has several fields, all of them must match.
      method: POST

      # Conditions can be combined with "all", "any" and "not":
      # all:
      # - pathRegex: '/authors/\\d+'
      # - not:
      #     method: DELETE

    # Response classes decide which responses count as failures. They are tried in order and
    # the first match wins; a response no class matches succeeds unless its status is 5xx.
    responseClasses:
    - condition:
        status:
          min: 500
          max: 599
      isFailure: true

    # Whether a failed request on this route may be retried. Only mark routes whose requests
    # are idempotent.
    # isRetryable: true

    # How long the proxy waits for a response on this route before failing the request.
    timeout: 250ms

  # Limits retries to a share of the requests, so that retrying cannot overload the service.
  retryBudget:
    # Retries may add at most this fraction of the original requests...
    retryRatio: 0.2
    # ...plus this many retries per second, so that low-traffic routes can still retry...
    minRetriesPerSecond: 10
    # ...with requests and retries counted over this window.
    ttl: 10s
"""


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ProfileSourceError(f"{where} must be a string, not {value!r}")
    return value


def _absolute(path: str) -> str:
    return path if path.startswith("/") else f"/{path}"


def _openapi_base_path(doc: Mapping[str, Any]) -> str:
    """The path every operation is under: ``basePath`` (Swagger 2), the first server's (3.x)."""
    if "swagger" in doc:
        base = _text(doc.get("basePath", ""), "basePath")
    else:
        servers = doc.get("servers")
        if not isinstance(servers, list) or not servers or not isinstance(servers[0], dict):
            return ""
        url = _text(servers[0].get("url", ""), "servers[0].url")
        variables = servers[0].get("variables")
        if isinstance(variables, dict):
            for key, variable in variables.items():
                if isinstance(variable, dict) and isinstance(variable.get("default"), str):
                    url = url.replace(f"{{{key}}}", variable["default"])
        base = urlsplit(url).path
    return _absolute(base).rstrip("/") if base else ""


def _check_version(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise ProfileSourceError("not a Swagger 2.0 or OpenAPI 3 document (expected a mapping)")
    if "swagger" in doc:
        if str(doc["swagger"]) != "2.0":
            raise ProfileSourceError(
                f"unsupported Swagger version {doc['swagger']!r} (expected 2.0, or OpenAPI 3)"
            )
    elif "openapi" in doc:
        if not str(doc["openapi"]).startswith("3."):
            raise ProfileSourceError(
                f"unsupported OpenAPI version {doc['openapi']!r} (expected 3.x, or Swagger 2.0)"
            )
    else:
        raise ProfileSourceError(
            'not a Swagger 2.0 or OpenAPI 3 document (no "swagger" or "openapi" field)'
        )


def _status_range(key: Any, where: str) -> tuple[int, int] | None:
    """The statuses a ``responses`` key covers; None for ``default`` and extensions."""
    text = str(key)
    if text == "default" or text.startswith("x-"):
        return None
    if text.isdigit():
        code = int(text)
        if not 100 <= code <= 599:
            raise ProfileSourceError(f"{where}: status {code} is not between 100 and 599")
        return code, code
    match = _STATUS_RANGE.fullmatch(text)
    if match:
        first = int(match[1]) * 100
        return first, first + 99
    raise ProfileSourceError(f"{where}: {text!r} is not a status code")


def _response_classes(responses: Any, where: str) -> list[Obj]:
    if responses is None:
        return []
    if not isinstance(responses, dict):
        raise ProfileSourceError(f"{where} must be a mapping")
    ranges = sorted(
        {r for key in responses if (r := _status_range(key, f"{where}.{key}")) is not None}
    )
    return [
        {"condition": {"status": {"min": low, "max": high}}, "isFailure": low >= 500}
        for low, high in ranges
    ]


def _operation_route(method: str, full_path: str, operation: Any, where: str) -> Obj:
    if not isinstance(operation, dict):
        raise ProfileSourceError(f"{where} must be a mapping")
    route: Obj = {
        "name": f"{method.upper()} {full_path}",
        "condition": {"pathRegex": path_regex(full_path), "method": method.upper()},
    }
    classes = _response_classes(operation.get("responses"), f"{where}.responses")
    if classes:
        route["responseClasses"] = classes
    retryable = operation.get("x-linkerd-retryable")
    if retryable is not None:
        if not isinstance(retryable, bool):
            raise ProfileSourceError(
                f"{where}.x-linkerd-retryable must be true or false, not {retryable!r}"
            )
        if retryable:
            route["isRetryable"] = True
    timeout = operation.get("x-linkerd-timeout")
    if timeout is not None:
        timeout = _text(timeout, f"{where}.x-linkerd-timeout")
        try:
            parse_go_duration(timeout)
        except ValueError as exc:
            raise ProfileSourceError(
                f'{where}.x-linkerd-timeout: {exc} (expected a Go duration such as "250ms")'
            ) from None
        route["timeout"] = timeout
    return route


def from_openapi(doc: Any, service: str, namespace: str, cluster_domain: str) -> Obj:
    """A profile with a route per path and method of a Swagger 2.0 or OpenAPI 3 document.

    Raises :class:`ProfileSourceError` if ``doc`` is not such a document, has a field that cannot
    be turned into a route, or has no operations.
    """
    _check_version(doc)
    base = _openapi_base_path(doc)
    paths = doc.get("paths") or {}
    if not isinstance(paths, dict):
        raise ProfileSourceError('"paths" must be a mapping')
    routes: list[Obj] = []
    for path in sorted(paths, key=str):
        where = f"paths.{path}"
        item = paths[path]
        if item is None:
            continue
        if not isinstance(item, dict):
            raise ProfileSourceError(f"{where} must be a mapping")
        full_path = base + _absolute(_text(path, f"{where} (the path)"))
        for method in HTTP_METHODS:
            if item.get(method) is not None:
                routes.append(
                    _operation_route(method, full_path, item[method], f"{where}.{method}")
                )
    if not routes:
        raise ProfileSourceError("the document declares no operations, so there are no routes")
    return _profile(service, namespace, cluster_domain, routes)


def from_proto_descriptors(
    fds: FileDescriptorSet, service: str, namespace: str, cluster_domain: str
) -> Obj:
    """A profile with a route per RPC of each service in the set's files.

    gRPC requests are ``POST /<package>.<Service>/<Method>``; the route is named after the RPC.
    Raises :class:`ProfileSourceError` if the files define no RPCs.
    """
    routes: list[Obj] = []
    for file in fds.file:
        for svc in file.service:
            qualified = f"{file.package}.{svc.name}" if file.package else svc.name
            routes.extend(
                {
                    "name": rpc.name,
                    "condition": {
                        "pathRegex": quote_regex(f"/{qualified}/{rpc.name}"),
                        "method": "POST",
                    },
                }
                for rpc in svc.method
            )
    if not routes:
        raise ProfileSourceError("the file defines no services with RPCs, so there are no routes")
    return _profile(service, namespace, cluster_domain, routes)
