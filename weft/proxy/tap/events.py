"""``TapEvent`` messages for a tapped request (pure apart from reading its :class:`Tapped`).

An event is what every event of the request shares (addresses, direction, endpoint and route
metadata) plus its ``http`` part. Serialised protobuf messages merge when concatenated, so the
shared part is encoded once per request and each event appends only its own bytes.
"""

from __future__ import annotations

import ipaddress

from google.protobuf.duration_pb2 import Duration

from weft.api import http_types_pb2, net_pb2, tap_pb2
from weft.proxy.context import INBOUND, OUTBOUND
from weft.proxy.tap.registry import Addr, Fields, Tapped

Http = tap_pb2.TapEvent.Http

_DIRECTIONS = {
    INBOUND: tap_pb2.TapEvent.INBOUND,
    OUTBOUND: tap_pb2.TapEvent.OUTBOUND,
}
_METHODS = frozenset(http_types_pb2.HttpMethod.Registered.keys())
_SCHEMES = {"http": http_types_pb2.Scheme.HTTP, "https": http_types_pb2.Scheme.HTTPS}


def tcp_address(addr: Addr | None) -> net_pb2.TcpAddress:
    """An address as ``TcpAddress`` (a host name, or no address, leaves ``ip`` unset)."""
    if addr is None:
        return net_pb2.TcpAddress()
    out = net_pb2.TcpAddress(port=addr[1])
    try:
        ip = ipaddress.ip_address(addr[0])
    except ValueError:
        return out
    if ip.version == 4:
        out.ip.ipv4 = int(ip)
    else:
        value = int(ip)
        out.ip.ipv6.first = value >> 64
        out.ip.ipv6.last = value & 0xFFFF_FFFF_FFFF_FFFF
    return out


def http_method(method: str) -> http_types_pb2.HttpMethod:
    """``HttpMethod``: registered for the nine standard methods, else unregistered."""
    if method in _METHODS:
        return http_types_pb2.HttpMethod(registered=method)
    return http_types_pb2.HttpMethod(unregistered=method)


def http_scheme(scheme: str) -> http_types_pb2.Scheme:
    """``Scheme``: registered for http and https, else unregistered."""
    registered = _SCHEMES.get(scheme.lower())
    if registered is not None:
        return http_types_pb2.Scheme(registered=registered)
    return http_types_pb2.Scheme(unregistered=scheme)


def headers(fields: Fields) -> http_types_pb2.Headers:
    """``Headers`` of header fields: names in lower case, HTTP/2 pseudo-headers left out."""
    return http_types_pb2.Headers(
        headers=[
            http_types_pb2.Header(name=name.decode("latin-1").lower(), value=value)
            for name, value in fields
            if name[:1] != b":"
        ]
    )


def duration(seconds: float) -> Duration:
    """A ``Duration`` of ``seconds`` (nanosecond resolution, never negative)."""
    d = Duration()
    d.FromNanoseconds(max(0, round(seconds * 1e9)))
    return d


def common(tapped: Tapped) -> bytes:
    """The encoded part every event of ``tapped`` shares (encoded once)."""
    encoded = tapped.encoded
    if encoded is None:
        f = tapped.facts
        event = tap_pb2.TapEvent(
            source=tcp_address(f.source),
            destination=tcp_address(f.destination),
            source_meta=tap_pb2.TapEvent.EndpointMeta(labels=f.src_labels),
            destination_meta=tap_pb2.TapEvent.EndpointMeta(labels=f.dst_labels),
            route_meta=tap_pb2.TapEvent.RouteMeta(labels=f.route_labels),
            proxy_direction=_DIRECTIONS.get(f.direction, tap_pb2.TapEvent.UNKNOWN),
        )
        encoded = tapped.encoded = event.SerializeToString()
    return encoded


def _stream_id(base: int, stream: int) -> Http.StreamId:
    return Http.StreamId(base=base, stream=stream)


def request_init(tapped: Tapped, base: int, stream: int, extract: bool) -> bytes:
    """The encoded RequestInit event of ``tapped`` for tap ``base``."""
    f = tapped.facts
    init = Http.RequestInit(
        id=_stream_id(base, stream),
        method=http_method(f.method),
        authority=f.authority,
        path=f.path,
    )
    scheme = f.scheme
    if scheme:
        init.scheme.CopyFrom(http_scheme(scheme))
    if extract:
        init.headers.CopyFrom(headers(f.fields()))
    return common(tapped) + tap_pb2.TapEvent(http=Http(request_init=init)).SerializeToString()


def response_init(tapped: Tapped, base: int, stream: int, extract: bool) -> bytes:
    """The encoded ResponseInit event of ``tapped`` for tap ``base``."""
    init = Http.ResponseInit(
        id=_stream_id(base, stream),
        since_request_init=duration(tapped.response_at - tapped.request_at),
        http_status=tapped.status,
    )
    if extract and tapped.response_headers is not None:
        init.headers.CopyFrom(headers(tapped.response_headers()))
    return common(tapped) + tap_pb2.TapEvent(http=Http(response_init=init)).SerializeToString()


def response_end(tapped: Tapped, base: int, stream: int, extract: bool) -> bytes:
    """The encoded ResponseEnd event of ``tapped`` for tap ``base``: the gRPC status from the
    trailers (or a trailers-only head), or the reset's error code, as its ``eos``."""
    end = Http.ResponseEnd(
        id=_stream_id(base, stream),
        since_request_init=duration(tapped.ended_at - tapped.request_at),
        response_bytes=tapped.response_bytes,
    )
    if tapped.response_at:
        end.since_response_init.CopyFrom(duration(tapped.ended_at - tapped.response_at))
    if tapped.reset_code is not None:
        end.eos.reset_error_code = tapped.reset_code
    elif tapped.grpc_status is not None:
        end.eos.grpc_status_code = tapped.grpc_status
    if extract and tapped.trailers is not None:
        end.trailers.CopyFrom(headers(tapped.trailers()))
    return common(tapped) + tap_pb2.TapEvent(http=Http(response_end=end)).SerializeToString()
