"""Proxy configuration read from linkerd2-proxy's ``LINKERD2_PROXY_*`` environment variables."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from weft.identity.config import IdentityConfig

DEFAULT_OPAQUE_PORTS = frozenset({25, 587, 3306, 4444, 5432, 6379, 9300, 11211})
# Requests in flight per listener before the proxy sheds load (Linkerd 2.6's default; current
# Linkerd proxies default to 100000).
DEFAULT_MAX_IN_FLIGHT = 10000
# SETTINGS_MAX_CONCURRENT_STREAMS advertised on accepted HTTP/2 connections: hyper 1.x's server
# default (the current Linkerd proxy reads SERVER_HTTP2_MAX_CONCURRENT_STREAMS as optional).
DEFAULT_H2_MAX_CONCURRENT_STREAMS = 200

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigError(ValueError):
    """A configuration variable has a value the proxy cannot use."""


def parse_duration(name: str, text: str) -> float:
    """Parse a linkerd2-proxy duration (``100ms``, ``10s``, ``2m``; bare = ms) into seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{name}: invalid duration {text!r} (expected e.g. 100ms, 10s, 2m)")
    value, unit = match.groups()
    return float(value) * _UNIT_SECONDS[unit or "ms"]


def parse_addr(name: str, text: str) -> tuple[str, int]:
    """Parse ``host:port`` (IPv6 as ``[::1]:4140``)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"{name}: invalid address {text!r} (expected host:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port_num = int(port)
    if not 0 <= port_num <= 65535:
        raise ConfigError(f"{name}: port out of range in {text!r}")
    return host, port_num


def context_namespace(token: str) -> str:
    """The client's namespace in a ``DESTINATION_CONTEXT`` token, ``ns:<ns>`` (Linkerd 2.6) or
    JSON ``{"ns": ...}`` (current); "" if none. The destination service reads it the same way."""
    token = token.strip()
    if token.startswith("ns:"):
        return token[len("ns:") :].strip()
    if token.startswith("{"):
        try:
            fields = json.loads(token)
        except ValueError:
            return ""
        namespace = fields.get("ns") if isinstance(fields, dict) else None
        return namespace if isinstance(namespace, str) else ""
    return ""


def parse_suffixes(text: str | None, default: str) -> tuple[str, ...]:
    """DNS suffixes resolved through the destination service, lower-case, each ending in ``.``
    (``.`` alone means every name; an empty setting means none)."""
    value = default if text is None else text
    return tuple(
        s if s.endswith(".") else s + "."
        for s in (part.strip().lower() for part in value.split(","))
        if s
    )


def parse_ports(name: str, text: str) -> frozenset[int]:
    """Parse a comma-separated list of ports and ``lo-hi`` ranges."""
    ports: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ConfigError(f"{name}: invalid port {part!r}")
        first, last = int(lo), int(hi or lo)
        if not 0 < first <= last <= 65535:
            raise ConfigError(f"{name}: invalid port range {part!r}")
        ports.update(range(first, last + 1))
    return frozenset(ports)


@dataclass(frozen=True)
class DirectionConfig:
    """Settings that exist once for inbound and once for outbound."""

    listen: tuple[str, int]
    forward: tuple[str, int] | None
    connect_timeout: float
    detect_timeout: float
    opaque_ports: frozenset[int]
    pool_idle_timeout: float
    max_idle_per_endpoint: int
    dispatch_timeout: float
    discovery_idle_timeout: float
    router_capacity: int
    max_in_flight: int
    h2_max_concurrent_streams: int


@dataclass(frozen=True)
class ProxyConfig:
    """Everything the proxy reads from its environment."""

    inbound: DirectionConfig
    outbound: DirectionConfig
    admin_listen: tuple[str, int]
    control_listen: tuple[str, int]
    identity: IdentityConfig | None
    destination_addr: tuple[str, int] | None
    destination_name: str
    destination_context: str
    destination_suffixes: tuple[str, ...]
    trust_anchors_pem: bytes | None
    log_filter: str
    log_format: str
    metrics_retain_idle: float
    shutdown_endpoint_enabled: bool
    shutdown_grace_period: float
    max_head_bytes: int
    h2_initial_stream_window: int
    h2_initial_connection_window: int
    tap_disabled: bool = False
    tap_svc_name: str = ""
    env: Mapping[str, str] = field(repr=False, default_factory=dict)

    @property
    def identity_disabled(self) -> bool:
        """Whether mTLS identity is off (``LINKERD2_PROXY_IDENTITY_DISABLED``)."""
        return self.identity is None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProxyConfig:
        """Build the configuration from ``env``; raises :class:`ConfigError` on a bad value."""
        reader = _Reader(env)
        inbound = reader.direction(
            "INBOUND", listen="0.0.0.0:4143", connect="100ms", dispatch="1s", capacity=100
        )
        outbound = reader.direction(
            "OUTBOUND", listen="127.0.0.1:4140", connect="1s", dispatch="3s", capacity=10000
        )
        dest = reader.get("DESTINATION_SVC_ADDR")
        log_filter = reader.get("LOG") or "warn,linkerd=info,weft=info"
        return cls(
            inbound=inbound,
            outbound=outbound,
            admin_listen=reader.addr("ADMIN_LISTEN_ADDR", "0.0.0.0:4191"),
            control_listen=reader.addr("CONTROL_LISTEN_ADDR", "0.0.0.0:4190"),
            identity=None if reader.get("IDENTITY_DISABLED") is not None else reader.identity(),
            destination_addr=parse_addr("LINKERD2_PROXY_DESTINATION_SVC_ADDR", dest)
            if dest
            else None,
            destination_name=reader.get("DESTINATION_SVC_NAME") or "",
            destination_context=reader.get("DESTINATION_CONTEXT") or "",
            destination_suffixes=parse_suffixes(
                reader.get("DESTINATION_GET_SUFFIXES"), "svc.cluster.local."
            ),
            trust_anchors_pem=(reader.get("IDENTITY_TRUST_ANCHORS") or "").encode() or None,
            log_filter=log_filter,
            log_format=(reader.get("LOG_FORMAT") or "plain").lower(),
            metrics_retain_idle=reader.duration("METRICS_RETAIN_IDLE", "10m"),
            shutdown_endpoint_enabled=reader.flag("SHUTDOWN_ENDPOINT_ENABLED"),
            shutdown_grace_period=reader.duration("SHUTDOWN_GRACE_PERIOD", "2m"),
            max_head_bytes=reader.integer("MAX_HEADER_BYTES", 65536),
            h2_initial_stream_window=reader.integer("HTTP2_INITIAL_STREAM_WINDOW_SIZE", 65535),
            h2_initial_connection_window=reader.integer(
                "HTTP2_INITIAL_CONNECTION_WINDOW_SIZE", 1048576
            ),
            tap_disabled=reader.flag("TAP_DISABLED"),
            tap_svc_name=(reader.get("TAP_SVC_NAME") or "").strip(),
            env=dict(env),
        )


class _Reader:
    """Typed access to ``LINKERD2_PROXY_<NAME>`` variables with Linkerd's defaults."""

    PREFIX = "LINKERD2_PROXY_"

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str) -> str | None:
        return self._env.get(self.PREFIX + name)

    def flag(self, name: str) -> bool:
        value = self.get(name)
        return value is not None and value.strip().lower() not in ("", "0", "false", "no")

    def addr(self, name: str, default: str) -> tuple[str, int]:
        return parse_addr(self.PREFIX + name, self.get(name) or default)

    def duration(self, name: str, default: str) -> float:
        return parse_duration(self.PREFIX + name, self.get(name) or default)

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        if not value.strip().isdigit():
            raise ConfigError(f"{self.PREFIX}{name}: expected a whole number, got {value!r}")
        return int(value)

    def positive(self, name: str, default: int) -> int:
        value = self.integer(name, default)
        if value < 1:
            raise ConfigError(f"{self.PREFIX}{name}: must be at least 1")
        return value

    def required(self, name: str) -> str:
        value = self.get(name)
        if not value:
            raise ConfigError(
                f"{self.PREFIX}{name} must be set unless LINKERD2_PROXY_IDENTITY_DISABLED is"
            )
        return value

    def identity(self) -> IdentityConfig:
        return IdentityConfig(
            local_name=self.required("IDENTITY_LOCAL_NAME"),
            trust_anchors_pem=self.required("IDENTITY_TRUST_ANCHORS").encode(),
            token_file=self.required("IDENTITY_TOKEN_FILE"),
            svc_addr=self.addr("IDENTITY_SVC_ADDR", self.required("IDENTITY_SVC_ADDR")),
            svc_name=self.required("IDENTITY_SVC_NAME"),
            min_refresh=self.duration("IDENTITY_MIN_REFRESH", "10s"),
            max_refresh=self.duration("IDENTITY_MAX_REFRESH", "24h"),
            certify_timeout=self.duration("CONTROL_DISPATCH_TIMEOUT", "5s"),
            backoff_min=self.duration("CONTROL_EXP_BACKOFF_MIN", "100ms"),
            backoff_max=self.duration("CONTROL_EXP_BACKOFF_MAX", "5s"),
        )

    def direction(
        self, prefix: str, *, listen: str, connect: str, dispatch: str, capacity: int
    ) -> DirectionConfig:
        forward = self.get(f"{prefix}_FORWARD")
        opaque = self.get(f"{prefix}_PORTS_DISABLE_PROTOCOL_DETECTION")
        # Linkerd 2.6 named the idle age ROUTER_MAX_IDLE_AGE; current proxies read
        # DISCOVERY_IDLE_TIMEOUT. Either works; the current name wins when both are set.
        idle_name = f"{prefix}_DISCOVERY_IDLE_TIMEOUT"
        if self.get(idle_name) is None:
            idle_name = f"{prefix}_ROUTER_MAX_IDLE_AGE"
        return DirectionConfig(
            listen=self.addr(f"{prefix}_LISTEN_ADDR", listen),
            forward=parse_addr(self.PREFIX + f"{prefix}_FORWARD", forward) if forward else None,
            connect_timeout=self.duration(f"{prefix}_CONNECT_TIMEOUT", connect),
            detect_timeout=self.duration(f"{prefix}_DETECT_TIMEOUT", "10s"),
            opaque_ports=parse_ports(self.PREFIX + prefix, opaque)
            if opaque is not None
            else DEFAULT_OPAQUE_PORTS,
            pool_idle_timeout=self.duration(f"{prefix}_HTTP1_CONNECTION_POOL_IDLE_TIMEOUT", "3s"),
            max_idle_per_endpoint=self.integer(f"{prefix}_MAX_IDLE_CONNS_PER_ENDPOINT", 10000),
            dispatch_timeout=self.duration(f"{prefix}_DISPATCH_TIMEOUT", dispatch),
            discovery_idle_timeout=self.duration(idle_name, "60s"),
            router_capacity=self.positive(f"{prefix}_ROUTER_CAPACITY", capacity),
            max_in_flight=self.positive(f"{prefix}_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT),
            h2_max_concurrent_streams=self.positive(
                f"{prefix}_SERVER_HTTP2_MAX_CONCURRENT_STREAMS", DEFAULT_H2_MAX_CONCURRENT_STREAMS
            ),
        )
