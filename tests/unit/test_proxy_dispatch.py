"""What a request owes its destination's profile: route metrics, retries and their budget."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from weft.proxy.dispatch import Dispatch, request_path
from weft.proxy.metrics import ProxyMetrics
from weft.proxy.profiles import MAX_RETRY_BYTES, Profile, Route
from weft.proxy.routing import Fallbacks, Logical

DST = "web.ns.svc.cluster.local:80"


def prefix_route(name: str, prefix: str, *, retryable: bool = False) -> Route:
    return Route(
        labels=(("rt_route", name),),
        matches=lambda _method, path: path.startswith(prefix),
        retryable=retryable,
        timeout=1.5 if retryable else None,
    )


def logical(name: str = DST, **budget: float) -> Logical:
    destination = Logical(Fallbacks(), name or None)
    destination.set_profile(
        Profile(
            name=name,
            routes=(prefix_route("books", "/books", retryable=True), prefix_route("home", "/h")),
            **budget,  # type: ignore[arg-type]
        )
    )
    return destination


def samples(metrics: ProxyMetrics, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples called ``name`` in the rendered exposition, by their label sets."""
    found: dict[frozenset[tuple[str, str]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name:
                found[frozenset(sample.labels.items())] = sample.value
    return found


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


@pytest.fixture
def metrics() -> ProxyMetrics:
    return ProxyMetrics(600)


# -- request_path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/", "/"),
        (b"/books/1?page=2", "/books/1?page=2"),
        (b"http://web.ns:80/books/1?x=y", "/books/1?x=y"),
        (b"https://web.ns/", "/"),
        (b"http://web.ns:80", "/"),
        # RFC 3986: the authority ends at "?" too; an empty path is "/".
        (b"http://web.ns?x=/y", "/?x=/y"),
        (b"*", "*"),
        (b"web.ns:443", "web.ns:443"),
        (b"/caf\xe9", "/caf\xe9"),
    ],
)
def test_request_path(target: bytes, path: str) -> None:
    assert request_path(target) == path


# -- route metrics ------------------------------------------------------------------------


def test_a_matched_route_is_counted_with_its_labels(metrics: ProxyMetrics) -> None:
    for _ in range(2):
        d = Dispatch("outbound", metrics, logical(), "GET", "/books/1", 10.0)
        assert d.route is not None and d.timeout == 1.5
        d.done(10.1, 100.0, 200, None)
    requests = samples(metrics, "route_request_total")
    assert requests == {labels(direction="outbound", dst=DST, rt_route="books"): 2.0}
    responses = samples(metrics, "route_response_total")
    key = labels(
        direction="outbound",
        dst=DST,
        rt_route="books",
        status_code="200",
        classification="success",
    )
    assert responses == {key: 2.0}


def test_an_unmatched_request_is_counted_under_dst_alone(metrics: ProxyMetrics) -> None:
    d = Dispatch("inbound", metrics, logical(), "GET", "/authors", 10.0)
    assert d.route is None and d.timeout is None
    d.done(10.1, 3.0, 503, None)
    assert samples(metrics, "route_request_total") == {labels(direction="inbound", dst=DST): 1.0}
    responses = samples(metrics, "route_response_total")
    key = labels(direction="inbound", dst=DST, status_code="503", classification="failure")
    assert responses == {key: 1.0}


def test_a_profile_without_a_name_counts_nothing(metrics: ProxyMetrics) -> None:
    d = Dispatch("outbound", metrics, logical(name=""), "GET", "/books/1", 10.0)
    assert d.route is not None  # the route still applies (timeouts, retries)
    d.attempt(10.0)
    d.attempt_done(10.1, 1.0, 200, None)
    d.done(10.1, 1.0, 200, None)
    assert metrics.route.series == {} and metrics.route_actual.series == {}
    assert samples(metrics, "route_request_total") == {}


# -- retries ------------------------------------------------------------------------------


def test_a_retryable_route_deposits_and_keeps_the_body(metrics: ProxyMetrics) -> None:
    destination = logical(retry_ratio=1.0, min_retries_per_second=0)
    d = Dispatch("outbound", metrics, destination, "POST", "/books", 10.0)
    assert sum(destination.budget(10.0).deposits) == 1
    assert d.replay == []
    d.keep(b"abc")
    d.keep(memoryview(b"def"))
    assert d.replay == [b"abc", b"def"]
    assert d.replay_bytes == 6
    # A route that is not retryable neither deposits nor keeps anything.
    plain = Dispatch("outbound", metrics, destination, "GET", "/home", 10.0)
    plain.keep(b"abc")
    assert plain.replay is None
    assert sum(destination.budget(10.0).deposits) == 1


def test_up_to_64_kib_of_body_is_kept_and_no_more(metrics: ProxyMetrics) -> None:
    assert MAX_RETRY_BYTES == 64 * 1024
    d = Dispatch("outbound", metrics, logical(), "POST", "/books", 10.0)
    d.keep(b"x" * (MAX_RETRY_BYTES - 1))
    d.keep(b"y")
    assert d.replay is not None and sum(len(part) for part in d.replay) == MAX_RETRY_BYTES
    d.keep(b"z")
    assert d.replay is None  # too big to replay: given up
    d.keep(b"more")
    assert d.replay is None
    assert not d.retry(503, None, 10.1)


def test_retry_only_failures_within_the_budget(metrics: ProxyMetrics) -> None:
    # Reserve 0, ratio 1: each retryable request pays for one retry.
    destination = logical(retry_ratio=1.0, min_retries_per_second=0)
    d = Dispatch("outbound", metrics, destination, "GET", "/books/1", 10.0)
    assert not d.retry(200, None, 10.1)  # a success is not retried
    assert not d.retry(200, 0, 10.1)
    assert d.retry(503, None, 10.1)
    assert not d.retry(503, None, 10.2)  # spent
    assert not d.retry(200, 14, 10.2)  # spent (a gRPC failure)
    key = labels(direction="outbound", dst=DST, rt_route="books", skipped="budget")
    assert samples(metrics, "route_retry_skipped_total") == {key: 2.0}
    # Another request deposits again.
    again = Dispatch("outbound", metrics, destination, "GET", "/books/2", 10.3)
    assert again.retry(500, None, 10.4)


def test_a_route_that_is_not_retryable_is_never_retried(metrics: ProxyMetrics) -> None:
    d = Dispatch("outbound", metrics, logical(), "GET", "/home", 10.0)
    assert not d.retry(503, None, 10.1)
    unmatched = Dispatch("outbound", metrics, logical(), "GET", "/nowhere", 10.0)
    assert not unmatched.retry(503, None, 10.1)
    assert samples(metrics, "route_retry_skipped_total") == {}


def test_a_response_class_decides_what_is_retried(metrics: ProxyMetrics) -> None:
    route = Route(
        labels=(("rt_route", "teapot"),),
        matches=lambda _m, _p: True,
        classes=((lambda status: status == 418, True), (lambda status: status >= 500, False)),
        retryable=True,
    )
    destination = Logical(Fallbacks())
    destination.set_profile(Profile(name=DST, routes=(route,)))
    d = Dispatch("outbound", metrics, destination, "GET", "/", 10.0)
    assert d.classify(418, None) == "failure"
    assert d.classify(503, None) == "success"
    assert not d.retry(503, None, 10.1)
    assert d.retry(418, None, 10.1)


# -- attempts -----------------------------------------------------------------------------


def test_attempts_count_as_actual_requests(metrics: ProxyMetrics) -> None:
    d = Dispatch("outbound", metrics, logical(), "GET", "/books/1", 10.0)
    d.attempt(10.0)
    d.attempt_done(10.1, 5.0, 503, None)
    assert d.retry(503, None, 10.1)
    d.attempt(10.1)
    d.attempt_done(10.2, 7.0, 200, None)
    d.done(10.2, 12.0, 200, None)
    base = {"direction": "outbound", "dst": DST, "rt_route": "books"}
    assert samples(metrics, "route_request_total") == {labels(**base): 1.0}
    assert samples(metrics, "route_actual_request_total") == {labels(**base): 2.0}
    assert samples(metrics, "route_response_total") == {
        labels(**base, status_code="200", classification="success"): 1.0
    }
    assert samples(metrics, "route_actual_response_total") == {
        labels(**base, status_code="503", classification="failure"): 1.0,
        labels(**base, status_code="200", classification="success"): 1.0,
    }
    # The latency the client saw spans both attempts.
    assert samples(metrics, "route_response_latency_ms_sum") == {
        labels(**base, status_code="200"): 12.0
    }


def test_an_error_is_counted_as_a_failure_with_its_label(metrics: ProxyMetrics) -> None:
    d = Dispatch("outbound", metrics, logical(), "GET", "/home", 10.0)
    d.attempt(10.0)
    d.attempt_done(11.5, 1500.0, 504, None, "timeout")
    d.done(11.5, 1500.0, 504, None, "timeout")
    base = {"direction": "outbound", "dst": DST, "rt_route": "home", "status_code": "504"}
    expected = {labels(**base, classification="failure", error="timeout"): 1.0}
    assert samples(metrics, "route_response_total") == expected
    assert samples(metrics, "route_actual_response_total") == expected
