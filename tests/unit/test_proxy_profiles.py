"""Destination profiles as the proxy applies them (weft.proxy.profiles).

Profiles are built with the generated classes and decoded from their bytes by the proxy's own
decoder (``weft.proxy_api``), as they arrive from the destination service."""

from __future__ import annotations

import pytest

from weft.api import destination_pb2 as pb
from weft.api import http_types_pb2 as http_pb
from weft.proxy.profiles import (
    DEFAULT_MIN_RETRIES_PER_SECOND,
    DEFAULT_RETRY_RATIO,
    DEFAULT_RETRY_TTL,
    MAX_MATCHED,
    NO_PROFILE,
    Profile,
    Route,
    anchored,
    profile_from_message,
)
from weft.proxy_api import destination as api

FQN = "web.emojivoto.svc.cluster.local."


def path(regex: str) -> pb.RequestMatch:
    return pb.RequestMatch(path=pb.PathMatch(regex=regex))


def method(name: str) -> pb.RequestMatch:
    registered = getattr(http_pb.HttpMethod, name, None)
    if isinstance(registered, int):
        return pb.RequestMatch(method=http_pb.HttpMethod(registered=registered))  # type: ignore[arg-type]
    return pb.RequestMatch(method=http_pb.HttpMethod(unregistered=name))


def all_of(*matches: pb.RequestMatch) -> pb.RequestMatch:
    return pb.RequestMatch(all=pb.RequestMatch.Seq(matches=matches))


def any_of(*matches: pb.RequestMatch) -> pb.RequestMatch:
    return pb.RequestMatch(any=pb.RequestMatch.Seq(matches=matches))


def not_(match: pb.RequestMatch) -> pb.RequestMatch:
    negated = pb.RequestMatch()
    getattr(negated, "not").CopyFrom(match)
    return negated


def status(low: int = 0, high: int = 0) -> pb.ResponseMatch:
    return pb.ResponseMatch(status=pb.HttpStatusRange(min=low, max=high))


def rsp_not(match: pb.ResponseMatch) -> pb.ResponseMatch:
    negated = pb.ResponseMatch()
    getattr(negated, "not").CopyFrom(match)
    return negated


def rsp_any(*matches: pb.ResponseMatch) -> pb.ResponseMatch:
    return pb.ResponseMatch(any=pb.ResponseMatch.Seq(matches=matches))


def rsp_all(*matches: pb.ResponseMatch) -> pb.ResponseMatch:
    return pb.ResponseMatch(all=pb.ResponseMatch.Seq(matches=matches))


def route(
    name: str,
    condition: pb.RequestMatch | None,
    classes: tuple[tuple[pb.ResponseMatch, bool], ...] = (),
    **fields: object,
) -> pb.Route:
    message = pb.Route(
        metrics_labels={"route": name},
        response_classes=[pb.ResponseClass(condition=c, is_failure=f) for c, f in classes],
        **fields,  # type: ignore[arg-type]
    )
    if condition is not None:
        message.condition.CopyFrom(condition)
    return message


def profile(*routes: pb.Route, fqn: str = FQN, port: int = 80, **fields: object) -> Profile:
    message = pb.DestinationProfile(
        routes=routes,
        fully_qualified_name=fqn,
        **fields,  # type: ignore[arg-type]
    )
    return profile_from_message(api.decode_profile(message.SerializeToString()), port)


def route_name(p: Profile, verb: str, target: str) -> str | None:
    matched = p.route(verb, target)
    return None if matched is None else dict(matched.labels)["rt_route"]


# -- request matching ---------------------------------------------------------------------


def test_anchoring_adds_what_is_missing() -> None:
    assert anchored("/books") == "^/books$"
    assert anchored("^/a.*") == "^/a.*$"
    assert anchored("/a$") == "^/a$"
    assert anchored("^/a$") == "^/a$"


def test_path_regexes_are_anchored() -> None:
    p = profile(route("books", path("/books")), route("a", path("^/a.*")))
    assert route_name(p, "GET", "/books") == "books"
    assert route_name(p, "GET", "/books/1") is None
    assert route_name(p, "GET", "/x/books") is None
    assert route_name(p, "GET", "/a") == "a"
    assert route_name(p, "GET", "/abc/d") == "a"
    assert route_name(p, "GET", "/ba") is None


def test_methods_registered_and_unregistered() -> None:
    p = profile(route("post", method("POST")), route("purge", method("PURGE")))
    assert route_name(p, "POST", "/") == "post"
    assert route_name(p, "GET", "/") is None
    assert route_name(p, "PURGE", "/x") == "purge"
    lower = profile(route("purge", method("purge")))
    assert route_name(lower, "PURGE", "/") == "purge"


def test_all_any_and_not() -> None:
    p = profile(
        route("get-books", all_of(method("GET"), path("/books/[0-9]+"))),
        route("writes", any_of(method("PUT"), method("DELETE"))),
        route("not-head", not_(method("HEAD"))),
    )
    assert route_name(p, "GET", "/books/12") == "get-books"
    assert route_name(p, "POST", "/books/12") == "not-head"
    assert route_name(p, "PUT", "/x") == "writes"
    assert route_name(p, "DELETE", "/books/12") == "writes"
    assert route_name(p, "HEAD", "/books/12") is None


def test_the_query_string_is_ignored() -> None:
    p = profile(route("books", path("/books")))
    assert route_name(p, "GET", "/books?page=2&q=/x") == "books"
    assert route_name(p, "GET", "/books/?page=2") is None


def test_the_first_matching_route_wins() -> None:
    p = profile(
        route("one", path("/books/.*")),
        route("any", path(".*")),
        route("also-one", path("/books/1")),
    )
    assert route_name(p, "GET", "/books/1") == "one"
    assert route_name(p, "GET", "/authors") == "any"


def test_no_match_and_no_routes_give_none() -> None:
    p = profile(route("books", path("/books")))
    assert p.route("GET", "/authors") is None
    assert profile().route("GET", "/") is None
    assert NO_PROFILE.route("GET", "/") is None


def test_route_labels_are_rt_prefixed_and_sorted() -> None:
    message = route("books", path("/books"))
    message.metrics_labels["op"] = "list"
    p = profile(message)
    assert p.routes[0].labels == (("rt_op", "list"), ("rt_route", "books"))


# -- response classes ---------------------------------------------------------------------


def test_response_classes_override_the_default_classifier() -> None:
    classes = ((status(500, 504), False), (status(200, 299), True))
    p = profile(route("r", path("/.*"), classes))
    r = p.routes[0]
    assert r.classify(502, None) == "success"
    assert r.classify(504, None) == "success"
    assert r.classify(204, None) == "failure"
    assert r.classify(200, 0) == "failure"  # the class decides before the gRPC status


def test_without_a_matching_class_the_default_classifier_decides() -> None:
    p = profile(route("r", path("/.*"), ((status(404, 404), True),)))
    r = p.routes[0]
    assert r.classify(404, None) == "failure"
    assert r.classify(503, None) == "failure"
    assert r.classify(200, None) == "success"
    assert r.classify(200, 14) == "failure"
    assert r.classify(200, 0) == "success"
    assert r.classify(500, 0) == "success"  # gRPC status first, as the default classifier


def test_a_range_with_one_bound_is_a_single_status() -> None:
    p = profile(
        route("min", path("/min"), ((status(low=503), True),)),
        route("max", path("/max"), ((status(high=201), True),)),
    )
    by_min, by_max = p.routes
    assert by_min.classify(503, None) == "failure"
    assert by_min.classify(504, None) == "failure"  # no class matches: the default (5xx)
    assert by_max.classify(201, None) == "failure"
    assert by_max.classify(200, None) == "success"
    assert by_max.classify(202, None) == "success"


def test_not_any_and_all_response_matches() -> None:
    p = profile(
        route("not", path("/not"), ((rsp_not(status(200, 399)), True),)),
        route("any", path("/any"), ((rsp_any(status(429), status(418)), True),)),
        route("all", path("/all"), ((rsp_all(status(500, 599), rsp_not(status(503))), False),)),
    )
    negated, either, both = p.routes
    assert negated.classify(404, None) == "failure"
    assert negated.classify(302, None) == "success"
    assert either.classify(429, None) == "failure"
    assert either.classify(418, None) == "failure"
    assert either.classify(404, None) == "success"
    assert both.classify(500, None) == "success"
    assert both.classify(503, None) == "failure"  # not matched by the class: default 5xx


def test_errors_are_failures_whatever_the_classes_say() -> None:
    p = profile(route("r", path("/.*"), ((status(100, 599), False),)))
    assert p.routes[0].classify(200, None, "timeout") == "failure"
    assert p.routes[0].classify(200, None) == "success"


# -- timeouts and retries -----------------------------------------------------------------


def test_route_timeouts() -> None:
    timed = route("timed", path("/t"))
    timed.timeout.seconds = 2
    timed.timeout.nanos = 500_000_000
    zero = route("zero", path("/z"))
    zero.timeout.SetInParent()
    p = profile(timed, zero, route("plain", path("/p")))
    assert p.routes[0].timeout == pytest.approx(2.5)
    assert p.routes[1].timeout is None
    assert p.routes[2].timeout is None


def test_retryable_routes() -> None:
    p = profile(route("r", path("/r"), is_retryable=True), route("n", path("/n")))
    assert p.routes[0].retryable
    assert not p.routes[1].retryable


def test_the_default_retry_budget() -> None:
    assert (DEFAULT_RETRY_RATIO, DEFAULT_MIN_RETRIES_PER_SECOND, DEFAULT_RETRY_TTL) == (
        0.2,
        10,
        10.0,
    )
    p = profile()
    assert (p.retry_ratio, p.min_retries_per_second, p.retry_ttl) == (0.2, 10, 10.0)
    assert (NO_PROFILE.retry_ratio, NO_PROFILE.min_retries_per_second) == (0.2, 10)


def budget(ratio: float, per_second: int, seconds: int, nanos: int = 0) -> pb.RetryBudget:
    message = pb.RetryBudget(retry_ratio=ratio, min_retries_per_second=per_second)
    message.ttl.seconds = seconds
    message.ttl.nanos = nanos
    return message


def test_an_explicit_retry_budget() -> None:
    p = profile(retry_budget=budget(0.25, 3, 20, 500_000_000))
    assert (p.retry_ratio, p.min_retries_per_second, p.retry_ttl) == (0.25, 3, 20.5)
    edges = profile(retry_budget=budget(1000.0, 0, 60))
    assert (edges.retry_ratio, edges.min_retries_per_second, edges.retry_ttl) == (1000.0, 0, 60)
    low = profile(retry_budget=budget(0.0, 1, 1))
    assert (low.retry_ratio, low.min_retries_per_second, low.retry_ttl) == (0.0, 1, 1.0)


@pytest.mark.parametrize(
    "out_of_range",
    [
        budget(0.2, 5, 0, 500_000_000),  # ttl 0.5 s
        budget(0.2, 5, 120),  # ttl 120 s
        budget(2000.0, 5, 10),  # ratio above 1000
        budget(-0.5, 5, 10),  # negative ratio
        budget(0.2, 5, 0),  # no ttl
    ],
)
def test_an_out_of_range_retry_budget_gives_the_default(out_of_range: pb.RetryBudget) -> None:
    p = profile(route("r", path("/r")), retry_budget=out_of_range)
    assert (p.retry_ratio, p.min_retries_per_second, p.retry_ttl) == (0.2, 10, 10.0)
    assert len(p.routes) == 1


def test_min_retries_above_i32_max_gives_the_default() -> None:
    """linkerd.md §4.6: a budget is rejected when min_retries_per_second > i32::MAX."""
    p = profile(retry_budget=budget(0.2, 2**31, 10))
    assert p.min_retries_per_second == DEFAULT_MIN_RETRIES_PER_SECOND


# -- unusable routes, names, overrides ----------------------------------------------------


def test_an_unusable_route_is_skipped_and_the_others_kept() -> None:
    p = profile(
        route("first", path("/a")),
        route("bad-regex", path("/books/(")),
        route("no-condition", None),
        route("empty-nested", all_of(path("/x"), pb.RequestMatch())),
        route("bad-class", path("/c"), ((pb.ResponseMatch(), True),)),
        route("last", path("/b")),
    )
    assert [dict(r.labels)["rt_route"] for r in p.routes] == ["first", "last"]
    assert route_name(p, "GET", "/b") == "last"


def test_the_name_is_the_fqn_and_port() -> None:
    assert profile(port=8080).name == "web.emojivoto.svc.cluster.local:8080"
    assert profile(fqn="web.emojivoto.svc.cluster.local").name == (
        "web.emojivoto.svc.cluster.local:80"
    )
    assert profile(fqn="").name == ""
    assert NO_PROFILE.name == ""


def test_dst_overrides_keep_their_weights_and_drop_zero_weights() -> None:
    p = profile(
        dst_overrides=[
            pb.WeightedDst(authority="web-v1.emojivoto.svc.cluster.local.:80", weight=9000),
            pb.WeightedDst(authority="web-v2.emojivoto.svc.cluster.local.:80", weight=0),
            pb.WeightedDst(authority="web-v3.emojivoto.svc.cluster.local.:80", weight=1000),
        ]
    )
    assert p.overrides == (
        ("web-v1.emojivoto.svc.cluster.local.:80", 9000),
        ("web-v3.emojivoto.svc.cluster.local.:80", 1000),
    )
    assert profile().overrides == ()


def test_a_route_built_directly_defaults_to_the_default_classifier() -> None:
    r = Route(labels=(), matches=lambda _m, _p: True)
    assert r.classify(500, None) == "failure"
    assert r.classify(200, None) == "success"
    assert not r.retryable and r.timeout is None


def test_a_profile_matches_each_method_and_path_once_and_remembers_a_bounded_number() -> None:
    seen: list[tuple[str, str]] = []

    def matches(method: str, path: str) -> bool:
        seen.append((method, path))
        return path.startswith("/api/")

    api_route = Route(labels=(("rt_route", "api"),), matches=matches)
    profile = Profile(name="svc:80", routes=(api_route,))
    assert profile.route("GET", "/api/x?page=1") is api_route
    assert profile.route("GET", "/api/x?page=2") is api_route  # the query is not part of it
    assert profile.route("GET", "/other") is None
    assert profile.route("GET", "/other") is None
    assert seen == [("GET", "/api/x"), ("GET", "/other")]
    for n in range(MAX_MATCHED + 10):
        assert profile.route("POST", f"/api/{n}") is api_route
    assert len(profile._matched) <= MAX_MATCHED  # many distinct paths do not grow it without end
    assert profile.route("POST", "/api/1") is api_route
