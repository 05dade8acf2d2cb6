"""Proxy configuration from LINKERD2_PROXY_* variables."""

import pytest

from weft.proxy.config import DEFAULT_OPAQUE_PORTS, ConfigError, ProxyConfig, parse_duration


def test_defaults_match_linkerd() -> None:
    cfg = ProxyConfig.from_env({"LINKERD2_PROXY_IDENTITY_DISABLED": "1"})
    assert cfg.outbound.listen == ("127.0.0.1", 4140)
    assert cfg.inbound.listen == ("0.0.0.0", 4143)
    assert cfg.control_listen == ("0.0.0.0", 4190)
    assert cfg.admin_listen == ("0.0.0.0", 4191)
    assert cfg.inbound.detect_timeout == 10.0
    assert cfg.outbound.opaque_ports == DEFAULT_OPAQUE_PORTS == {
        25, 587, 3306, 4444, 5432, 6379, 9300, 11211
    }  # fmt: skip
    assert cfg.metrics_retain_idle == 600.0
    assert cfg.identity_disabled and cfg.destination_addr is None
    assert cfg.outbound.discovery_idle_timeout == cfg.inbound.discovery_idle_timeout == 60.0
    assert (cfg.inbound.router_capacity, cfg.outbound.router_capacity) == (100, 10000)
    assert cfg.inbound.max_in_flight == cfg.outbound.max_in_flight == 10000  # Linkerd 2.6's
    assert cfg.inbound.h2_max_concurrent_streams == cfg.outbound.h2_max_concurrent_streams == 200


def test_load_limits_are_per_direction() -> None:
    cfg = ProxyConfig.from_env(
        {
            "LINKERD2_PROXY_IDENTITY_DISABLED": "1",
            "LINKERD2_PROXY_INBOUND_MAX_IN_FLIGHT": "100",
            "LINKERD2_PROXY_OUTBOUND_SERVER_HTTP2_MAX_CONCURRENT_STREAMS": "50",
        }
    )
    assert (cfg.inbound.max_in_flight, cfg.outbound.max_in_flight) == (100, 10000)
    assert (cfg.inbound.h2_max_concurrent_streams, cfg.outbound.h2_max_concurrent_streams) == (
        200,
        50,
    )


def test_discovery_idle_timeout_and_router_capacity_take_linkerds_names() -> None:
    def outbound(**env: str) -> tuple[float, int]:
        env = {f"LINKERD2_PROXY_OUTBOUND_{k}": v for k, v in env.items()}
        cfg = ProxyConfig.from_env({"LINKERD2_PROXY_IDENTITY_DISABLED": "1", **env})
        return cfg.outbound.discovery_idle_timeout, cfg.outbound.router_capacity

    assert outbound(ROUTER_MAX_IDLE_AGE="30s", ROUTER_CAPACITY="50") == (30.0, 50)  # 2.6
    assert outbound(DISCOVERY_IDLE_TIMEOUT="5s") == (5.0, 10000)  # current
    assert outbound(DISCOVERY_IDLE_TIMEOUT="5s", ROUTER_MAX_IDLE_AGE="30s")[0] == 5.0
    with pytest.raises(ConfigError, match="OUTBOUND_ROUTER_CAPACITY: must be at least 1"):
        outbound(ROUTER_CAPACITY="0")


def test_variables_override_defaults() -> None:
    cfg = ProxyConfig.from_env(
        {
            "LINKERD2_PROXY_INBOUND_LISTEN_ADDR": "[::]:5143",
            "LINKERD2_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION": "22, 8000-8002",
            "LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT": "250ms",
            "LINKERD2_PROXY_METRICS_RETAIN_IDLE": "2m",
            "LINKERD2_PROXY_INBOUND_FORWARD": "127.0.0.1:8080",
            "LINKERD2_PROXY_DESTINATION_SVC_ADDR": "dst.example:8086",
            "LINKERD2_PROXY_IDENTITY_DISABLED": "",
        }
    )
    assert cfg.inbound.listen == ("::", 5143)
    assert cfg.outbound.opaque_ports == {22, 8000, 8001, 8002}
    assert cfg.inbound.detect_timeout == 0.25
    assert cfg.metrics_retain_idle == 120.0
    assert cfg.inbound.forward == ("127.0.0.1", 8080)
    assert cfg.destination_addr == ("dst.example", 8086)
    assert cfg.identity_disabled


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LINKERD2_PROXY_INBOUND_LISTEN_ADDR", "4143"),
        ("LINKERD2_PROXY_ADMIN_LISTEN_ADDR", "0.0.0.0:99999"),
        ("LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT", "soon"),
        ("LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION", "80,x"),
        ("LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION", "90-80"),
        ("LINKERD2_PROXY_MAX_HEADER_BYTES", "-1"),
        ("LINKERD2_PROXY_OUTBOUND_ROUTER_MAX_IDLE_AGE", "a while"),
        ("LINKERD2_PROXY_OUTBOUND_ROUTER_CAPACITY", "lots"),
        ("LINKERD2_PROXY_INBOUND_MAX_IN_FLIGHT", "0"),
        ("LINKERD2_PROXY_OUTBOUND_SERVER_HTTP2_MAX_CONCURRENT_STREAMS", "many"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name.removeprefix("LINKERD2_PROXY_").split("_")[0]):
        ProxyConfig.from_env({name: value, "LINKERD2_PROXY_IDENTITY_DISABLED": "1"})


def test_durations() -> None:
    assert parse_duration("x", "100ms") == pytest.approx(0.1)
    assert parse_duration("x", "10s") == 10
    assert parse_duration("x", "1h") == 3600
    assert parse_duration("x", "250") == pytest.approx(0.25)


def test_tap_settings() -> None:
    cfg = ProxyConfig.from_env({"LINKERD2_PROXY_IDENTITY_DISABLED": "1"})
    assert not cfg.tap_disabled and cfg.tap_svc_name == ""
    name = "weft-tap.weft.serviceaccount.identity.weft.cluster.local"
    cfg = ProxyConfig.from_env(
        {
            "LINKERD2_PROXY_IDENTITY_DISABLED": "1",
            "LINKERD2_PROXY_TAP_SVC_NAME": f" {name} ",
            "LINKERD2_PROXY_TAP_DISABLED": "true",
        }
    )
    assert cfg.tap_disabled and cfg.tap_svc_name == name
    for off in ("", "0", "false"):
        env = {"LINKERD2_PROXY_IDENTITY_DISABLED": "1", "LINKERD2_PROXY_TAP_DISABLED": off}
        assert not ProxyConfig.from_env(env).tap_disabled
