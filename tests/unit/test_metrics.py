"""The proxy's Prometheus exposition: names, labels, buckets, retirement."""

import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from weft.proxy.metrics import LATENCY_BUCKETS_MS, ProxyMetrics

BASE = (("direction", "inbound"), ("tls", "disabled"))


def _samples(metrics: ProxyMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def test_http_series_have_linkerd_names_labels_and_buckets() -> None:
    m = ProxyMetrics(retain_idle=600)
    ep = m.http.endpoint("web.ns.svc.cluster.local:8080", BASE)
    ep.request(1.0)
    ep.request(1.0)
    ep.response(1.0, 3.5, 200, "success")
    ep.response(1.0, 70.0, 200, "failure", grpc_status=2)
    s = _samples(m)
    labels = {
        ("authority", "web.ns.svc.cluster.local:8080"),
        ("direction", "inbound"),
        ("tls", "disabled"),
    }
    assert s[("request_total", frozenset(labels))] == 2
    ok = labels | {("status_code", "200"), ("classification", "success")}
    assert s[("response_total", frozenset(ok))] == 1
    failed = labels | {("status_code", "200"), ("classification", "failure"), ("grpc_status", "2")}
    assert s[("response_total", frozenset(failed))] == 1
    les = sorted(
        {dict(k[1])["le"] for k in s if k[0] == "response_latency_ms_bucket"},
        key=lambda v: float(v),
    )
    assert les == [str(b) for b in LATENCY_BUCKETS_MS] + ["+Inf"]
    status = frozenset(labels | {("status_code", "200")})
    assert s[("response_latency_ms_bucket", status | {("le", "4")})] == 1
    assert s[("response_latency_ms_bucket", status | {("le", "50")})] == 1
    assert s[("response_latency_ms_bucket", status | {("le", "100")})] == 2
    assert s[("response_latency_ms_count", status)] == 2
    assert not [k for k in s if k[0].endswith("_created")]


def test_tcp_series_count_bytes_and_closes() -> None:
    m = ProxyMetrics(retain_idle=600)
    stats = m.tcp.stats((("direction", "outbound"), ("peer", "dst"), ("tls", "disabled")))
    a, b = stats.open(), stats.open()
    a.read, a.written = 10, 20
    b.read = 5
    a.close()
    s = _samples(m)
    labels = frozenset({("direction", "outbound"), ("peer", "dst"), ("tls", "disabled")})
    assert s[("tcp_open_total", labels)] == 2
    assert s[("tcp_open_connections", labels)] == 1
    assert s[("tcp_read_bytes_total", labels)] == 15
    assert s[("tcp_write_bytes_total", labels)] == 20
    assert s[("tcp_close_total", labels | {("errno", "")})] == 1
    assert s[("tcp_connection_duration_ms_count", labels | {("errno", "")})] == 1
    a.close()  # idempotent
    assert _samples(m)[("tcp_close_total", labels | {("errno", "")})] == 1


def test_idle_series_retire_but_open_connections_stay() -> None:
    m = ProxyMetrics(retain_idle=10)
    ep = m.http.endpoint("a", BASE)
    ep.request(100.0)
    live = m.tcp.stats((("direction", "inbound"), ("peer", "src"), ("tls", "disabled"))).open()
    m.retire_idle(now=105.0)
    assert m.http.series
    m.retire_idle(now=111.0)
    assert not m.http.series
    assert m.tcp.series, "a series with an open connection is never retired"
    live.close()
    m.retire_idle(now=live.opened + 1000)
    assert not m.tcp.series


def test_process_metrics_are_exposed() -> None:
    text = ProxyMetrics(retain_idle=600).render().decode()
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        assert f"\n{name} " in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_parses_the_exposition() -> None:
    m = ProxyMetrics(retain_idle=600)
    ep = m.http.endpoint("x:1", BASE)
    ep.request(1.0)
    ep.response(1.0, 1.0, 503, "failure", error=None)
    m.tcp.stats((("direction", "inbound"), ("peer", "src"), ("tls", "disabled"))).open().close()
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=m.render(), capture_output=True, check=False
    )
    # 0 = clean, 3 = lint findings only (Linkerd's `_ms` unit names); 1 = parse error.
    assert proc.returncode in (0, 3), proc.stderr
