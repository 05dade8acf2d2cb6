"""``TapEvent`` messages for a tapped request (pure apart from reading its :class:`Tapped`).

An event is what every event of the request shares (addresses, direction, endpoint and route
metadata) plus its ``http`` part. Serialised protobuf messages merge when concatenated, so the
shared part is encoded once per request and each event appends only its own bytes.
"""

from __future__ import annotations

import socket

from google.protobuf.duration_pb2 import Duration

from weft.api import http_types_pb2, net_pb2, tap_pb2
from weft.proxy.context import INBOUND, OUTBOUND
from weft.proxy.tap.registry import Addr, Fields, Tapped

Http = tap_pb2.TapEvent.Http

_DIRECTIONS = {
    INBOUND: tap_pb2.TapEvent.INBOUND,
    OUTBOUND: tap_pb2.TapEvent.OUTBOUND,
}
_METHODS = dict(http_types_pb2.HttpMethod.Registered.items())
_SCHEMES = {"http": http_types_pb2.Scheme.HTTP, "https": http_types_pb2.Scheme.HTTPS}
COMMON_CACHE_SIZE = 4096
_COMMON: dict[tuple[object, ...], bytes] = {}


def set_tcp_address(out: net_pb2.TcpAddress, addr: Addr | None) -> None:
    """Fill ``out`` with ``addr`` (a host name, or no address, leaves ``ip`` unset)."""
    if addr is None:
        return
    host, out.port = addr
    try:
        out.ip.ipv4 = int.from_bytes(socket.inet_pton(socket.AF_INET, host))
        return
    except OSError:
        pass
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, host))
    except OSError:
        return  # a host name
    out.ip.ipv6.first = value >> 64
    out.ip.ipv6.last = value & 0xFFFF_FFFF_FFFF_FFFF


def set_headers(out: http_types_pb2.Headers, fields: Fields) -> None:
    """Fill ``out`` with header fields: names in lower case, HTTP/2 pseudo-headers left out."""
    out.SetInParent()  # asked for: present even when empty
    add = out.headers.add
    for name, value in fields:
        if name[:1] != b":":
            add(name=name.decode("latin-1").lower(), value=value)


def set_duration(out: Duration, seconds: float) -> None:
    """Fill ``out`` with ``seconds`` (nanosecond resolution, never negative)."""
    out.seconds, out.nanos = divmod(max(0, round(seconds * 1e9)), 1_000_000_000)


def common(tapped: Tapped) -> bytes:
    """The encoded part every event of ``tapped`` shares: encoded once per request, and kept
    for the next requests with the same connection, endpoint and route."""
    encoded = tapped.encoded
    if encoded is None:
        f = tapped.facts
        key = f.key
        encoded = _COMMON.get(key)
        if encoded is None:
            event = tap_pb2.TapEvent(
                proxy_direction=_DIRECTIONS.get(f.direction, tap_pb2.TapEvent.UNKNOWN)
            )
            set_tcp_address(event.source, f.source)
            set_tcp_address(event.destination, f.destination)
            event.source_meta.labels.update(f.src_labels)
            event.destination_meta.labels.update(f.dst_labels)
            event.route_meta.labels.update(f.route_labels)
            encoded = event.SerializeToString()
            if len(_COMMON) >= COMMON_CACHE_SIZE:
                _COMMON.clear()
            _COMMON[key] = encoded
        tapped.encoded = encoded
    return encoded


def request_init(tapped: Tapped, base: int, stream: int, extract: bool) -> bytes:
    """The encoded RequestInit event of ``tapped`` for tap ``base``."""
    f = tapped.facts
    event = tap_pb2.TapEvent()
    init = event.http.request_init
    init.id.base = base
    init.id.stream = stream
    method = _METHODS.get(f.method)
    if method is not None:
        init.method.registered = method  # type: ignore[assignment]
    else:
        init.method.unregistered = f.method
    init.authority = f.authority
    init.path = f.path
    scheme = f.scheme
    if scheme:
        registered = _SCHEMES.get(scheme.lower())
        if registered is not None:
            init.scheme.registered = registered
        else:
            init.scheme.unregistered = scheme
    if extract:
        set_headers(init.headers, f.fields())
    return common(tapped) + event.SerializeToString()


def response_init(tapped: Tapped, base: int, stream: int, extract: bool) -> bytes:
    """The encoded ResponseInit event of ``tapped`` for tap ``base``."""
    event = tap_pb2.TapEvent()
    init = event.http.response_init
    init.id.base = base
    init.id.stream = stream
    set_duration(init.since_request_init, tapped.response_at - tapped.request_at)
    init.http_status = tapped.status
    if extract and tapped.response_headers is not None:
        set_headers(init.headers, tapped.response_headers())
    return common(tapped) + event.SerializeToString()


def response_end(tapped: Tapped, base: int, stream: int, extract: bool) -> bytes:
    """The encoded ResponseEnd event of ``tapped`` for tap ``base``: the gRPC status from the
    trailers (or a trailers-only head), or the reset's error code, as its ``eos``."""
    event = tap_pb2.TapEvent()
    end = event.http.response_end
    end.id.base = base
    end.id.stream = stream
    set_duration(end.since_request_init, tapped.ended_at - tapped.request_at)
    if tapped.response_at:
        set_duration(end.since_response_init, tapped.ended_at - tapped.response_at)
    end.response_bytes = tapped.response_bytes
    if tapped.reset_code is not None:
        end.eos.reset_error_code = tapped.reset_code
    elif tapped.grpc_status is not None:
        end.eos.grpc_status_code = tapped.grpc_status
    if extract and tapped.trailers is not None:
        set_headers(end.trailers, tapped.trailers())
    return common(tapped) + event.SerializeToString()
