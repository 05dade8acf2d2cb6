"""``weft tap`` output (pure): TapEvents as Linkerd's lines (reference §8.3) or JSON objects.

    req id=0:1 proxy=in  src=10.244.0.7:41000 dst=10.244.0.5:8080 tls=true :method=GET ...
    rsp id=0:1 proxy=in  src=... dst=... tls=true :status=200 latency=2500µs
    end id=0:1 proxy=in  src=... dst=... tls=true duration=120µs response-length=42B

``tls`` is the label of the remote peer: the source's for inbound, the destination's for
outbound. Latency counts from the request's head, duration from the response's head.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from weft.viz.resources import label, short_name
from weft.viz.tap_events import (
    INBOUND,
    OUTBOUND,
    Header,
    Peer,
    RequestInit,
    ResponseInit,
    TapEvent,
)

# gRPC status names as Go's codes.Code prints them (Linkerd's CLI is Go).
GRPC_STATUS = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)


def grpc_status_name(code: int) -> str:
    """``14`` → ``Unavailable``; an unknown code → ``Code(42)``."""
    return GRPC_STATUS[code] if code < len(GRPC_STATUS) else f"Code({code})"


def _flow(event: TapEvent) -> str:
    if event.direction == INBOUND:
        proxy, remote = "in ", event.source
    elif event.direction == OUTBOUND:
        proxy, remote = "out", event.destination
    else:
        proxy, remote = "???", None
    tls = remote.labels.get("tls", "") if remote is not None else ""
    return f"proxy={proxy} src={event.source.address} dst={event.destination.address} tls={tls}"


def _resource(side: str, peer: Peer, kind: str) -> str:
    """`` src_res=deploy/web src_ns=emojivoto`` (or ``src_pod=...``) for ``-o wide``."""
    parts = []
    if name := peer.labels.get(label(kind)):
        parts.append(f"{side}_res={short_name(kind)}/{name}")
    elif pod := peer.labels.get("pod"):
        parts.append(f"{side}_pod={pod}")
    if namespace := peer.labels.get("namespace"):
        parts.append(f"{side}_ns={namespace}")
    return "".join(f" {p}" for p in parts)


def event_line(event: TapEvent, wide_kind: str | None = None) -> str:
    """One event as Linkerd's ``tap`` line; with ``wide_kind`` (the tapped resource's type)
    the peers' resources and the route labels are appended, as ``-o wide`` does."""
    http = event.http
    flow = _flow(event)
    if isinstance(http, RequestInit):
        line = (
            f"req id={http.id} {flow} :method={http.method} :authority={http.authority} "
            f":path={http.path}"
        )
    elif isinstance(http, ResponseInit):
        line = (
            f"rsp id={http.id} {flow} :status={http.http_status} "
            f"latency={http.since_request_init_ns // 1000}µs"
        )
    else:
        if http.grpc_status is not None:
            end = f" grpc-status={grpc_status_name(http.grpc_status)}"
        elif http.reset_error is not None:
            end = f" reset-error={http.reset_error}"
        else:
            end = ""
        line = (
            f"end id={http.id} {flow}{end} duration={http.since_response_init_ns // 1000}µs "
            f"response-length={http.response_bytes}B"
        )
    if wide_kind is not None:
        line += _resource("src", event.source, wide_kind)
        line += _resource("dst", event.destination, wide_kind)
        line += "".join(f" rt_{k}={v}" for k, v in sorted(event.route_labels.items()))
    return line


def _headers(headers: tuple[Header, ...]) -> list[dict[str, str]]:
    out = []
    for header in headers:
        try:
            out.append({"name": header.name, "valueStr": header.value.decode()})
        except UnicodeDecodeError:
            out.append({"name": header.name, "valueBin": base64.b64encode(header.value).decode()})
    return out


def _duration(ns: int) -> dict[str, int]:
    seconds, nanos = divmod(ns, 1_000_000_000)
    return {"seconds": seconds, "nanos": nanos}


def _endpoint(peer: Peer) -> dict[str, Any]:
    return {"ip": peer.ip, "port": peer.port, "metadata": dict(peer.labels)}


def event_json(event: TapEvent) -> dict[str, Any]:
    """One event as Linkerd's ``tap -o json`` object."""
    http = event.http
    data: dict[str, Any] = {
        "source": _endpoint(event.source),
        "destination": _endpoint(event.destination),
        "proxyDirection": event.direction,
    }
    if event.route_labels:
        data["routeMeta"] = dict(event.route_labels)
    sid: Mapping[str, int] = {"base": http.id.base, "stream": http.id.stream}
    if isinstance(http, RequestInit):
        data["requestInitEvent"] = {
            "id": sid,
            "method": http.method,
            "scheme": http.scheme,
            "authority": http.authority,
            "path": http.path,
            "headers": _headers(http.headers),
        }
    elif isinstance(http, ResponseInit):
        data["responseInitEvent"] = {
            "id": sid,
            "sinceRequestInit": _duration(http.since_request_init_ns),
            "httpStatus": http.http_status,
            "headers": _headers(http.headers),
        }
    else:
        end: dict[str, Any] = {
            "id": sid,
            "sinceRequestInit": _duration(http.since_request_init_ns),
            "sinceResponseInit": _duration(http.since_response_init_ns),
            "responseBytes": http.response_bytes,
            "trailers": _headers(http.trailers),
        }
        if http.grpc_status is not None:
            end["grpcStatusCode"] = http.grpc_status
        if http.reset_error is not None:
            end["resetErrorCode"] = http.reset_error
        data["responseEndEvent"] = end
    return data
