"""TapEvents as the tap controller streams them (pure): protobuf's JSON mapping of
``io.linkerd.proxy.tap.TapEvent`` (camelCase fields, durations as ``"0.002500s"``, 64-bit
integers as strings, IPv4 addresses as a big-endian uint32, zero values left out) read into
small typed objects that ``weft tap``, ``weft top`` and the dashboard share.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

INBOUND = "INBOUND"
OUTBOUND = "OUTBOUND"
UNKNOWN = "UNKNOWN"

_DURATION = re.compile(r"^(\d+)(?:\.(\d{1,9}))?s$")


class TapEventError(ValueError):
    """A JSON object that is not a TapEvent; ``str()`` is one line."""


@dataclass(frozen=True)
class Peer:
    """One end of a tapped request: its address and the labels the proxy and the tap
    controller know it by (``pod``, ``namespace``, ``deployment``, ``tls``...)."""

    ip: str
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """``10.244.0.5:8080`` (``[fd00::5]:8080`` for IPv6)."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class StreamId:
    """Which request of which proxy: ``base`` names the proxy's tap, ``stream`` the request."""

    base: int
    stream: int

    def __str__(self) -> str:
        return f"{self.base}:{self.stream}"


@dataclass(frozen=True)
class Header:
    """A request or response header (values are bytes, as in the proto)."""

    name: str
    value: bytes


@dataclass(frozen=True)
class RequestInit:
    """The request's head arrived."""

    id: StreamId
    method: str
    scheme: str
    authority: str
    path: str
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True)
class ResponseInit:
    """The response's head arrived; latency since the request's head in nanoseconds."""

    id: StreamId
    since_request_init_ns: int
    http_status: int
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True)
class ResponseEnd:
    """The response stream ended: normally (``grpc_status`` for gRPC) or reset."""

    id: StreamId
    since_request_init_ns: int
    since_response_init_ns: int
    response_bytes: int
    grpc_status: int | None = None
    reset_error: int | None = None
    trailers: tuple[Header, ...] = ()


HttpEvent = RequestInit | ResponseInit | ResponseEnd


@dataclass(frozen=True)
class TapEvent:
    """One event of a tapped request, as the proxy on ``direction``'s side saw it."""

    source: Peer
    destination: Peer
    direction: str
    http: HttpEvent
    route_labels: Mapping[str, str] = field(default_factory=dict)


# -- reading the JSON mapping -----------------------------------------------------------------


def _obj(data: Any, what: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TapEventError(f"{what} is not an object")
    return data


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TapEventError(f"{key} is not an integer: {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise TapEventError(f"{key} is not an integer: {value!r}") from None
    if number < 0:
        raise TapEventError(f"{key} is negative: {value!r}")
    return number


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise TapEventError(f"{key} is not a string: {value!r}")
    return value


def duration_ns(text: Any) -> int:
    """``"0.002500s"`` (protobuf's JSON Duration) → 2500000 ns; absent → 0."""
    if text is None:
        return 0
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise TapEventError(f"not a duration: {text!r}")
    seconds, fraction = match.groups()
    return int(seconds) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def _labels(data: Any, what: str) -> dict[str, str]:
    labels = _obj(_obj(data, what).get("labels"), f"{what}.labels")
    if not all(isinstance(v, str) for v in labels.values()):
        raise TapEventError(f"{what}.labels holds a value that is not a string")
    return labels


def _ip(data: dict[str, Any]) -> str:
    try:
        if "ipv4" in data:
            return str(ipaddress.IPv4Address(_int(data, "ipv4")))
        if "ipv6" in data:
            v6 = _obj(data["ipv6"], "ipv6")
            return str(ipaddress.IPv6Address(_int(v6, "first") << 64 | _int(v6, "last")))
    except ipaddress.AddressValueError as exc:
        raise TapEventError(f"not an address: {exc}") from None
    return "0.0.0.0"


def _peer(address: Any, meta: Any, what: str) -> Peer:
    addr = _obj(address, what)
    return Peer(_ip(_obj(addr.get("ip"), f"{what}.ip")), _int(addr, "port"), _labels(meta, what))


def _registered(data: Any, what: str, default: str) -> str:
    """An ``HttpMethod``/``Scheme``: the registered name, else the unregistered string."""
    value = _obj(data, what)
    name = value.get("registered", value.get("unregistered", default))
    if not isinstance(name, str):
        raise TapEventError(f"{what} is not a string: {name!r}")
    return name


def _headers(data: Any, what: str) -> tuple[Header, ...]:
    entries = _obj(data, what).get("headers") or []
    if not isinstance(entries, list):
        raise TapEventError(f"{what}.headers is not a list")
    headers = []
    for entry in entries:
        header = _obj(entry, f"{what}.headers[]")
        try:
            value = base64.b64decode(_str(header, "value"), validate=True)
        except binascii.Error:
            raise TapEventError(f"{what}: a header value is not base64") from None
        headers.append(Header(_str(header, "name"), value))
    return tuple(headers)


def _stream_id(data: dict[str, Any]) -> StreamId:
    sid = _obj(data.get("id"), "id")
    return StreamId(_int(sid, "base"), _int(sid, "stream"))


def _http(data: dict[str, Any]) -> HttpEvent:
    if "requestInit" in data:
        init = _obj(data["requestInit"], "requestInit")
        return RequestInit(
            id=_stream_id(init),
            method=_registered(init.get("method"), "method", "GET"),
            scheme=_registered(init.get("scheme"), "scheme", "HTTP"),
            authority=_str(init, "authority"),
            path=_str(init, "path"),
            headers=_headers(init.get("headers"), "requestInit"),
        )
    if "responseInit" in data:
        init = _obj(data["responseInit"], "responseInit")
        return ResponseInit(
            id=_stream_id(init),
            since_request_init_ns=duration_ns(init.get("sinceRequestInit")),
            http_status=_int(init, "httpStatus"),
            headers=_headers(init.get("headers"), "responseInit"),
        )
    if "responseEnd" in data:
        end = _obj(data["responseEnd"], "responseEnd")
        eos = _obj(end.get("eos"), "responseEnd.eos")
        return ResponseEnd(
            id=_stream_id(end),
            since_request_init_ns=duration_ns(end.get("sinceRequestInit")),
            since_response_init_ns=duration_ns(end.get("sinceResponseInit")),
            response_bytes=_int(end, "responseBytes"),
            grpc_status=_int(eos, "grpcStatusCode") if "grpcStatusCode" in eos else None,
            reset_error=_int(eos, "resetErrorCode") if "resetErrorCode" in eos else None,
            trailers=_headers(end.get("trailers"), "responseEnd.trailers"),
        )
    raise TapEventError("the event has no requestInit, responseInit or responseEnd")


def parse_event(data: Any) -> TapEvent:
    """A TapEvent from its JSON mapping; raises :class:`TapEventError`."""
    event = _obj(data, "event")
    direction = event.get("proxyDirection", UNKNOWN)
    if direction not in (INBOUND, OUTBOUND, UNKNOWN):
        raise TapEventError(f"unknown proxyDirection {direction!r}")
    return TapEvent(
        source=_peer(event.get("source"), event.get("sourceMeta"), "source"),
        destination=_peer(event.get("destination"), event.get("destinationMeta"), "destination"),
        direction=direction,
        http=_http(_obj(event.get("http"), "http")),
        route_labels=_labels(event.get("routeMeta"), "routeMeta"),
    )
