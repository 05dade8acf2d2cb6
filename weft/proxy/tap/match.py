"""``ObserveRequest.match`` → a predicate over :class:`RequestFacts` (pure).

The match tree is checked and compiled once per Observe call, so evaluating it per request is a
few closure calls. Semantics: ``all`` of nothing is true, ``any`` of nothing false; a netmask
matches addresses of its own family only; a port range is inclusive (``max`` 0: ``min`` alone);
``authority`` and ``path`` compare exactly or by prefix, ``path`` without the query; ``scheme`` is
compared without case, ``method`` exactly; labels must be present with that value.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import TypeVar

from weft.api import http_types_pb2, net_pb2, tap_pb2
from weft.proxy.tap.registry import Addr, RequestFacts

Predicate = Callable[[RequestFacts], bool]
Match = tap_pb2.ObserveRequest.Match
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

T = TypeVar("T")

MAX_DEPTH = 32  # nesting of all/any/not accepted


class MatchError(ValueError):
    """An ``ObserveRequest.match`` the proxy cannot evaluate (answered INVALID_ARGUMENT)."""


def _always(_: RequestFacts) -> bool:
    return True


def compile_match(match: Match | None) -> Predicate:
    """The predicate of ``match``; no match at all selects every request."""
    if match is None:
        return _always
    return _compile(match, "match", 0)


def method_name(method: http_types_pb2.HttpMethod) -> str:
    """The method an ``HttpMethod`` names (``GET``, or the unregistered text)."""
    kind = method.WhichOneof("type")
    if kind == "registered":
        return http_types_pb2.HttpMethod.Registered.Name(method.registered)
    if kind == "unregistered" and method.unregistered:
        return method.unregistered
    raise MatchError("method: neither registered nor unregistered")


def scheme_name(scheme: http_types_pb2.Scheme) -> str:
    """The scheme a ``Scheme`` names, in lower case (``http``, ``https``, ...)."""
    kind = scheme.WhichOneof("type")
    if kind == "registered":
        return http_types_pb2.Scheme.Registered.Name(scheme.registered).lower()
    if kind == "unregistered" and scheme.unregistered:
        return scheme.unregistered.lower()
    raise MatchError("scheme: neither registered nor unregistered")


def ip_of(address: net_pb2.IPAddress) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address an ``IPAddress`` holds."""
    kind = address.WhichOneof("ip")
    if kind == "ipv4":
        return ipaddress.IPv4Address(address.ipv4)
    if kind == "ipv6":
        return ipaddress.IPv6Address((address.ipv6.first << 64) | address.ipv6.last)
    raise MatchError("netmask: the address is neither IPv4 nor IPv6")


def _compile(m: Match, where: str, depth: int) -> Predicate:
    if depth > MAX_DEPTH:
        raise MatchError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    kind = m.WhichOneof("match")
    if kind == "all" or kind == "any":
        seq = m.all if kind == "all" else m.any
        parts = tuple(
            _compile(sub, f"{where}.{kind}[{i}]", depth + 1) for i, sub in enumerate(seq.matches)
        )
        if kind == "all":
            return lambda f: all(p(f) for p in parts)
        return lambda f: any(p(f) for p in parts)
    if kind == "not":
        inner = _compile(getattr(m, "not"), f"{where}.not", depth + 1)
        return lambda f: not inner(f)
    if kind == "source":
        return _tcp(m.source, f"{where}.source", lambda f: f.source)
    if kind == "destination":
        return _tcp(m.destination, f"{where}.destination", lambda f: f.destination)
    if kind == "http":
        return _http(m.http, f"{where}.http")
    if kind == "destination_label":
        key, value = m.destination_label.key, m.destination_label.value
        return lambda f: f.dst_labels.get(key) == value
    if kind == "route_label":
        key, value = m.route_label.key, m.route_label.value
        return lambda f: f.route_labels.get(key) == value
    raise MatchError(f"{where}: empty match")


def _tcp(tcp: Match.Tcp, where: str, addr: Callable[[RequestFacts], Addr | None]) -> Predicate:
    kind = tcp.WhichOneof("match")
    if kind == "netmask":
        try:
            ip = ip_of(tcp.netmask.ip)
        except MatchError as exc:
            raise MatchError(f"{where}.{exc}") from None
        if tcp.netmask.mask > ip.max_prefixlen:
            raise MatchError(
                f"{where}.netmask: mask {tcp.netmask.mask} is longer than {ip.max_prefixlen} bits"
            )
        net: IPNet = ipaddress.ip_network((ip, tcp.netmask.mask), strict=False)
        return lambda f: _in_network(addr(f), net)
    if kind == "ports":
        low = tcp.ports.min
        high = tcp.ports.max or low
        if high > 65535 or low > high:
            raise MatchError(f"{where}.ports: invalid range {low}-{tcp.ports.max}")

        def in_range(f: RequestFacts) -> bool:
            a = addr(f)
            return a is not None and low <= a[1] <= high

        return in_range
    raise MatchError(f"{where}: neither netmask nor ports")


def _in_network(addr: Addr | None, net: IPNet) -> bool:
    if addr is None:
        return False
    try:
        ip = ipaddress.ip_address(addr[0])
    except ValueError:
        return False  # a host name, not an address
    return ip.version == net.version and ip in net


def _http(http: Match.Http, where: str) -> Predicate:
    kind = http.WhichOneof("match")
    if kind == "scheme":
        scheme = _named(scheme_name, http.scheme, where)
        return lambda f: f.scheme.lower() == scheme
    if kind == "method":
        method = _named(method_name, http.method, where)
        return lambda f: f.method == method
    if kind == "authority":
        return _string(http.authority, f"{where}.authority", lambda f: f.authority)
    if kind == "path":
        return _string(http.path, f"{where}.path", lambda f: f.path)
    raise MatchError(f"{where}: empty http match")


def _named(name: Callable[[T], str], message: T, where: str) -> str:
    try:
        return name(message)
    except MatchError as exc:
        raise MatchError(f"{where}.{exc}") from None


def _string(
    m: Match.Http.StringMatch, where: str, value: Callable[[RequestFacts], str]
) -> Predicate:
    kind = m.WhichOneof("match")
    if kind == "exact":
        exact = m.exact
        return lambda f: value(f) == exact
    if kind == "prefix":
        prefix = m.prefix
        return lambda f: value(f).startswith(prefix)
    raise MatchError(f"{where}: neither exact nor prefix")
