"""``io.linkerd.proxy.destination`` as the proxy uses it (field numbers: ``weft/api/
destination.proto``, ``net.proto``, ``http_types.proto``): the ``GetDestination`` request, and
the ``Update`` and ``DestinationProfile`` answers decoded into the parts the proxy reads."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from weft.proxy_api.wire import (
    FIXED32,
    LEN,
    MAX_DEPTH,
    VARINT,
    Fields,
    Occurrence,
    WireError,
    boolean,
    encode_string,
    fixed32,
    fixed64,
    float32,
    int32,
    int64,
    message,
    repeated,
    string,
    string_map,
    uint32,
)

Addr = tuple[str, int]

# http_types.HttpMethod.Registered, by number
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "HEAD", "TRACE")


def get_destination(scheme: str, path: str, context_token: str) -> bytes:
    """An encoded ``GetDestination``."""
    return encode_string(1, scheme) + encode_string(2, path) + encode_string(3, context_token)


# -- Update ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WeightedAddr:
    """One endpoint of an ``add``: its address (None when it has no IP), its ``metric_labels``,
    its TLS identity (the ``dns_like_identity`` name; None without one) and whether its
    ``protocol_hint`` is ``h2`` (a meshed proxy that takes HTTP/1 carried over HTTP/2)."""

    addr: Addr | None
    labels: dict[str, str]
    tls_identity: str | None
    h2: bool = False


@dataclass(frozen=True, slots=True)
class Add:
    """``add``: endpoints, and labels for all of them."""

    addrs: list[WeightedAddr]
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class Remove:
    """``remove``: endpoints gone (None for an address without an IP)."""

    addrs: list[Addr | None]


@dataclass(frozen=True, slots=True)
class NoEndpoints:
    """``no_endpoints``: none; ``exists`` says whether the service does."""

    exists: bool


Update = Add | Remove | NoEndpoints | None  # None: an Update with nothing set


def _ip(fields: Fields) -> str | None:
    """An ``IPAddress`` as text; None when neither member is set."""
    chosen = fields.oneof({1: FIXED32, 2: LEN})
    if chosen is None:
        return None
    number, found = chosen
    if number == 1:
        return str(ipaddress.IPv4Address(fixed32(found)))
    ipv6 = message(found) or Fields(b"")
    value = (fixed64(ipv6.get(1)) << 64) | fixed64(ipv6.get(2))
    return str(ipaddress.IPv6Address(value))


def tcp_address(data: bytes) -> Addr | None:
    """``(ip, port)`` of an encoded ``TcpAddress``; None when it has no IP."""
    return _tcp_address(Fields(data))


def _tcp_address(fields: Fields) -> Addr | None:
    ip_fields = message(fields.get(1))
    ip = _ip(ip_fields) if ip_fields is not None else None
    return None if ip is None else (ip, uint32(fields.get(2)))


def _tls_identity(found: list[Occurrence]) -> str | None:
    tls = message(found)
    chosen = tls.oneof({1: LEN, 3: LEN}) if tls is not None else None
    if chosen is None or chosen[0] != 1:
        return None
    dns_like = message(chosen[1])
    return (string(dns_like.get(1)) if dns_like is not None else "") or None


def _h2_hint(found: list[Occurrence]) -> bool:
    hint = message(found)
    chosen = hint.oneof({1: LEN, 3: LEN}) if hint is not None else None
    return chosen is not None and chosen[0] == 1


def _weighted_addr(data: bytes) -> WeightedAddr:
    fields = Fields(data)
    addr = message(fields.get(1))
    return WeightedAddr(
        _tcp_address(addr) if addr is not None else None,
        string_map(fields.get(4)),
        _tls_identity(fields.get(5)),
        _h2_hint(fields.get(6)),
    )


def decode_update(data: bytes) -> Update:
    """An encoded ``Update``; :class:`~weft.proxy_api.wire.WireError` when it is not one."""
    chosen = Fields(data).oneof({1: LEN, 2: LEN, 3: LEN})
    if chosen is None:
        return None
    number, found = chosen
    body = message(found) or Fields(b"")
    if number == 1:
        return Add([_weighted_addr(a) for a in repeated(body.get(1))], string_map(body.get(2)))
    if number == 2:
        return Remove([tcp_address(a) for a in repeated(body.get(1))])
    return NoEndpoints(boolean(body.get(1)))


# -- DestinationProfile --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestMatch:
    """A ``RequestMatch``: ``kind`` is the member set (``all``, ``any``, ``not``, ``path``,
    ``method``; empty for none), with ``matches`` (one for ``not``), ``regex`` or ``method``
    (upper case; empty for an unknown registered method)."""

    kind: str = ""
    matches: tuple[RequestMatch, ...] = ()
    regex: str = ""
    method: str = ""


@dataclass(frozen=True, slots=True)
class ResponseMatch:
    """A ``ResponseMatch``: ``kind`` is ``all``, ``any``, ``not``, ``status`` (or empty), with
    ``matches`` or the status range's ``low`` and ``high`` as sent (0: missing)."""

    kind: str = ""
    matches: tuple[ResponseMatch, ...] = ()
    low: int = 0
    high: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """A ``Route``; ``timeout`` in seconds, None when absent."""

    condition: RequestMatch
    classes: tuple[tuple[ResponseMatch, bool], ...]  # (condition, is_failure)
    labels: dict[str, str]
    retryable: bool
    timeout: float | None


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """A ``RetryBudget``; ``ttl`` in seconds."""

    retry_ratio: float
    min_retries_per_second: int
    ttl: float


@dataclass(frozen=True, slots=True)
class DestinationProfile:
    """The parts of a ``DestinationProfile`` the proxy uses."""

    routes: tuple[Route, ...] = ()
    retry_budget: RetryBudget | None = None
    dst_overrides: tuple[tuple[str, int], ...] = field(default=())  # (authority, weight)
    fully_qualified_name: str = ""


_SEQ_KINDS = {1: "all", 2: "any", 3: "not"}
_REQUEST_MATCH = {1: LEN, 2: LEN, 3: LEN, 4: LEN, 5: LEN}
_RESPONSE_MATCH = {1: LEN, 2: LEN, 3: LEN, 4: LEN}


def _seconds(fields: Fields) -> float:
    """A ``google.protobuf.Duration`` in seconds."""
    return int64(fields.get(1)) + int32(fields.get(2)) / 1e9


def _nested(depth: int) -> int:
    if depth >= MAX_DEPTH:
        raise WireError(f"matches nested deeper than {MAX_DEPTH}")
    return depth + 1


def _request_match(fields: Fields | None, depth: int = 0) -> RequestMatch:
    depth = _nested(depth)
    chosen = fields.oneof(_REQUEST_MATCH) if fields is not None else None
    if chosen is None:
        return RequestMatch()
    number, found = chosen
    body = message(found) or Fields(b"")
    if number in (1, 2):
        kind = _SEQ_KINDS[number]
        parts = tuple(_request_match(Fields(m), depth) for m in repeated(body.get(1)))
        return RequestMatch(kind, parts)
    if number == 3:
        return RequestMatch("not", (_request_match(body, depth),))
    if number == 4:
        return RequestMatch("path", regex=string(body.get(1)))
    method = body.oneof({1: VARINT, 2: LEN})
    name = ""
    if method is not None and method[0] == 1:
        index = int32(method[1])
        name = METHODS[index] if 0 <= index < len(METHODS) else ""
    elif method is not None:
        name = string(method[1]).upper()
    return RequestMatch("method", method=name)


def _response_match(fields: Fields | None, depth: int = 0) -> ResponseMatch:
    depth = _nested(depth)
    chosen = fields.oneof(_RESPONSE_MATCH) if fields is not None else None
    if chosen is None:
        return ResponseMatch()
    number, found = chosen
    body = message(found) or Fields(b"")
    if number in (1, 2):
        kind = _SEQ_KINDS[number]
        parts = tuple(_response_match(Fields(m), depth) for m in repeated(body.get(1)))
        return ResponseMatch(kind, parts)
    if number == 3:
        return ResponseMatch("not", (_response_match(body, depth),))
    return ResponseMatch("status", low=uint32(body.get(1)), high=uint32(body.get(2)))


def _route(data: bytes) -> Route:
    fields = Fields(data)
    classes = []
    for encoded in repeated(fields.get(2)):
        response_class = Fields(encoded)
        condition = _response_match(message(response_class.get(1)))
        classes.append((condition, boolean(response_class.get(2))))
    timeout = message(fields.get(5))
    return Route(
        condition=_request_match(message(fields.get(1))),
        classes=tuple(classes),
        labels=string_map(fields.get(3)),
        retryable=boolean(fields.get(4)),
        timeout=_seconds(timeout) if timeout is not None else None,
    )


def decode_profile(data: bytes) -> DestinationProfile:
    """An encoded ``DestinationProfile``; :class:`~weft.proxy_api.wire.WireError` when it is
    not one."""
    fields = Fields(data)
    budget = message(fields.get(2))
    retry_budget = None
    if budget is not None:
        ttl = message(budget.get(3))
        retry_budget = RetryBudget(
            retry_ratio=float32(budget.get(1)),
            min_retries_per_second=uint32(budget.get(2)),
            ttl=_seconds(ttl) if ttl is not None else 0.0,
        )
    overrides = []
    for encoded in repeated(fields.get(3)):
        dst = Fields(encoded)
        overrides.append((string(dst.get(1)), uint32(dst.get(2))))
    return DestinationProfile(
        routes=tuple(_route(r) for r in repeated(fields.get(1))),
        retry_budget=retry_budget,
        dst_overrides=tuple(overrides),
        fully_qualified_name=string(fields.get(5)),
    )
