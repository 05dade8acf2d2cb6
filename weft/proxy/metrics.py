"""The proxy's Prometheus series, named, labelled and bucketed as linkerd2-proxy's.

The hot path only bumps integers on small slotted objects; the text exposition is built by a
``prometheus_client`` collector when ``/metrics`` is scraped. Series idle for longer than the
retain period are dropped, as linkerd2-proxy's ``METRICS_RETAIN_IDLE`` does.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from weft.proxy.tap.registry import Taps

LabelPairs = tuple[tuple[str, str], ...]

LATENCY_BUCKETS_MS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
    1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000,
)  # fmt: skip
_BUCKET_LABELS = (*(str(b) for b in LATENCY_BUCKETS_MS), "+Inf")


class Histogram:
    """A cumulative-on-render histogram over Linkerd's latency buckets (milliseconds)."""

    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value_ms: float) -> None:
        """Record one observation."""
        self.counts[bisect_left(LATENCY_BUCKETS_MS, value_ms)] += 1
        self.count += 1
        self.total += value_ms

    def samples(
        self, name: str, labels: dict[str, str]
    ) -> Iterator[tuple[str, dict[str, str], float]]:
        """Yield ``_bucket``, ``_sum`` and ``_count`` samples."""
        running = 0
        for le, n in zip(_BUCKET_LABELS, self.counts, strict=True):
            running += n
            yield f"{name}_bucket", {**labels, "le": le}, running
        yield f"{name}_sum", labels, self.total
        yield f"{name}_count", labels, self.count


class CloseStats:
    """``tcp_close_total`` and ``tcp_connection_duration_ms`` for one ``errno``."""

    __slots__ = ("count", "duration")

    def __init__(self) -> None:
        self.count = 0
        self.duration = Histogram()


ResponseKey = tuple[int, str, int | None, str | None]


class EndpointStats:
    """The series of one endpoint label set: requests and the responses to them."""

    __slots__ = ("labels", "last_used", "latency", "requests", "responses", "retries_skipped")

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.requests = 0
        self.retries_skipped = 0
        self.responses: dict[ResponseKey, int] = {}
        self.latency: dict[int, Histogram] = {}
        self.last_used = time.monotonic()

    def request(self, now: float) -> None:
        """Count a request whose headers were received at ``now`` (monotonic seconds)."""
        self.requests += 1
        self.last_used = now

    def response(
        self,
        now: float,
        latency_ms: float,
        status_code: int,
        classification: str,
        grpc_status: int | None = None,
        error: str | None = None,
    ) -> None:
        """Count a finished response and its latency."""
        key = (status_code, classification, grpc_status, error)
        self.responses[key] = self.responses.get(key, 0) + 1
        hist = self.latency.get(status_code)
        if hist is None:
            hist = self.latency[status_code] = Histogram()
        # Histogram.observe, inline: every request records three or four responses.
        hist.counts[bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1
        hist.count += 1
        hist.total += latency_ms
        self.last_used = now


class HttpFamily:
    """``<prefix>request_total``, ``<prefix>response_total``, ``<prefix>response_latency_ms``
    and, where retries were skipped, ``<prefix>retry_skipped_total{skipped="budget"}``."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.series: dict[tuple[str, LabelPairs], EndpointStats] = {}

    def endpoint(self, authority: str, base: LabelPairs) -> EndpointStats:
        """The series for ``authority`` plus the connection's ``base`` labels."""
        key = (authority, base)
        stats = self.series.get(key)
        if stats is None:
            labels = {"authority": authority} if authority else {}
            labels.update(base)
            stats = self.series[key] = EndpointStats(labels)
        return stats

    def collect(self) -> Iterator[Metric]:
        p = self.prefix
        req = Metric(f"{p}request", "Total count of HTTP requests.", "counter")
        rsp = Metric(f"{p}response", "Total count of HTTP responses.", "counter")
        lat = Metric(
            f"{p}response_latency_ms",
            "Elapsed times between a request's headers being received and its response stream "
            "completing.",
            "histogram",
        )
        skipped = Metric(f"{p}retry_skipped", "Retries not made, by reason.", "counter")
        for stats in self.series.values():
            req.add_sample(f"{p}request_total", stats.labels, stats.requests)
            if stats.retries_skipped:
                labels = {**stats.labels, "skipped": "budget"}
                skipped.add_sample(f"{p}retry_skipped_total", labels, stats.retries_skipped)
            for (status, cls, grpc, error), count in stats.responses.items():
                labels = {**stats.labels, "status_code": str(status), "classification": cls}
                if grpc is not None:
                    labels["grpc_status"] = str(grpc)
                if error is not None:
                    labels["error"] = error
                rsp.add_sample(f"{p}response_total", labels, count)
            for status, hist in stats.latency.items():
                status_labels = {**stats.labels, "status_code": str(status)}
                for sample in hist.samples(f"{p}response_latency_ms", status_labels):
                    lat.add_sample(*sample)
        yield req
        yield rsp
        yield lat
        if skipped.samples:
            yield skipped

    def retire(self, idle_before: float) -> None:
        for key in [k for k, s in self.series.items() if s.last_used < idle_before]:
            del self.series[key]


class ConnStats:
    """Byte counts of one open TCP connection; closed through :meth:`close`."""

    __slots__ = ("opened", "owner", "read", "written")

    def __init__(self, owner: TcpStats) -> None:
        self.owner = owner
        self.read = 0
        self.written = 0
        self.opened = time.monotonic()

    def close(self, errno: str = "") -> None:
        """Record the close (``errno`` empty when clean). Idempotent."""
        owner = self.owner
        if self in owner.live:
            owner.live.discard(self)
            owner.closed_read += self.read
            owner.closed_written += self.written
            now = time.monotonic()
            closes = owner.closes.get(errno)
            if closes is None:
                closes = owner.closes[errno] = CloseStats()
            closes.count += 1
            closes.duration.observe((now - self.opened) * 1000.0)
            owner.last_used = now


class TcpStats:
    """The ``tcp_*`` series of one (direction, peer, tls) label set."""

    __slots__ = ("closed_read", "closed_written", "closes", "labels", "last_used", "live", "opens")

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.opens = 0
        self.live: set[ConnStats] = set()
        self.closed_read = 0
        self.closed_written = 0
        self.closes: dict[str, CloseStats] = {}
        self.last_used = time.monotonic()

    def open(self) -> ConnStats:
        """Count a newly opened connection and return its byte counters."""
        self.opens += 1
        conn = ConnStats(self)
        self.live.add(conn)
        return conn


class TcpFamily:
    """``tcp_open_total``, ``tcp_open_connections``, byte counters, closes and durations."""

    def __init__(self) -> None:
        self.series: dict[LabelPairs, TcpStats] = {}

    def stats(self, labels: LabelPairs) -> TcpStats:
        """The series for ``labels`` (direction, peer, tls, ...)."""
        stats = self.series.get(labels)
        if stats is None:
            stats = self.series[labels] = TcpStats(dict(labels))
        return stats

    def collect(self) -> Iterator[Metric]:
        opens = Metric("tcp_open", "Total count of opened connections.", "counter")
        open_now = Metric("tcp_open_connections", "Number of currently-open connections.", "gauge")
        read = Metric("tcp_read_bytes", "Total count of bytes read from peers.", "counter")
        write = Metric("tcp_write_bytes", "Total count of bytes written to peers.", "counter")
        closes = Metric("tcp_close", "Total count of closed connections.", "counter")
        duration = Metric(
            "tcp_connection_duration_ms", "Connection lifetimes in milliseconds.", "histogram"
        )
        for s in self.series.values():
            opens.add_sample("tcp_open_total", s.labels, s.opens)
            open_now.add_sample("tcp_open_connections", s.labels, len(s.live))
            live_read = sum(c.read for c in s.live)
            live_written = sum(c.written for c in s.live)
            read.add_sample("tcp_read_bytes_total", s.labels, s.closed_read + live_read)
            write.add_sample("tcp_write_bytes_total", s.labels, s.closed_written + live_written)
            for errno, cs in s.closes.items():
                labels = {**s.labels, "errno": errno}
                closes.add_sample("tcp_close_total", labels, cs.count)
                for sample in cs.duration.samples("tcp_connection_duration_ms", labels):
                    duration.add_sample(*sample)
        yield from (opens, open_now, read, write, closes, duration)

    def retire(self, idle_before: float) -> None:
        stale = [k for k, s in self.series.items() if not s.live and s.last_used < idle_before]
        for key in stale:
            del self.series[key]


class ProxyMetrics:
    """All of one proxy's series, exposed through a ``prometheus_client`` registry."""

    def __init__(self, retain_idle: float) -> None:
        self.retain_idle = retain_idle
        self.http = HttpFamily()
        self.route = HttpFamily("route_")
        self.route_actual = HttpFamily("route_actual_")
        self.tcp = TcpFamily()
        self.tcp_errors: dict[tuple[str, str], int] = {}
        self.cert_expiry: float | None = None
        self.taps: Taps | None = None  # set when the control port serves tap
        self.registry = CollectorRegistry(auto_describe=False)
        # The registry only calls collect(). Not a subclass of prometheus_client's Collector:
        # compiled, this class cannot have a base from outside the compiled modules' build.
        self.registry.register(cast("Collector", self))
        ProcessCollector(namespace="", registry=self.registry)

    def tcp_error(self, direction: str, error: str) -> None:
        """Count a connection refused or failed for ``error`` (``<direction>_tcp_errors_total``)."""
        key = (direction, error)
        self.tcp_errors[key] = self.tcp_errors.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        yield from self.http.collect()
        yield from self.route.collect()
        yield from self.route_actual.collect()
        yield from self.tcp.collect()
        for direction in ("inbound", "outbound"):
            family = Metric(
                f"{direction}_tcp_errors", "Connections that failed, by error", "counter"
            )
            for (d, error), n in sorted(self.tcp_errors.items()):
                if d == direction:
                    family.add_sample(f"{direction}_tcp_errors_total", {"error": error}, n)
            if family.samples:
                yield family
        if self.cert_expiry is not None:
            family = Metric(
                "identity_cert_expiration_timestamp_seconds",
                "When this proxy's certificate expires (Unix time)",
                "gauge",
            )
            family.add_sample(family.name, {}, self.cert_expiry)
            yield family
        if self.taps is not None:
            streams = Metric("tap_observe_streams", "Tap streams being served.", "gauge")
            streams.add_sample("tap_observe_streams", {}, len(self.taps.streams))
            dropped = Metric(
                "tap_events_dropped", "Tap events lost because a client read too slowly.", "counter"
            )
            dropped.add_sample("tap_events_dropped_total", {}, self.taps.dropped)
            yield streams
            yield dropped

    def retire_idle(self, now: float | None = None) -> None:
        """Drop series that have not been touched for ``retain_idle`` seconds."""
        idle_before = (time.monotonic() if now is None else now) - self.retain_idle
        self.http.retire(idle_before)
        self.route.retire(idle_before)
        self.route_actual.retire(idle_before)
        self.tcp.retire(idle_before)

    def render(self) -> bytes:
        """The Prometheus text exposition of every series."""
        return generate_latest(self.registry)
