"""Canonical names, original-destination fallbacks and logical destinations (weft.proxy.routing)."""

from __future__ import annotations

import pytest

from weft.proxy.config import context_namespace
from weft.proxy.discovery import Endpoint
from weft.proxy.errors import ProxyError
from weft.proxy.profiles import Profile
from weft.proxy.routing import (
    Fallbacks,
    Logical,
    OriginalDestination,
    canonical_name,
    split_host_port,
)

CLUSTER = ("svc.cluster.local.",)


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("web", "web.emojivoto.svc.cluster.local:9090"),
        ("web:8080", "web.emojivoto.svc.cluster.local:8080"),
        ("web.emojivoto", "web.emojivoto.svc.cluster.local:9090"),
        ("web.other:81", "web.other.svc.cluster.local:81"),
        ("web.emojivoto.svc", "web.emojivoto.svc.cluster.local:9090"),
        ("web.emojivoto.svc.cluster.local", "web.emojivoto.svc.cluster.local:9090"),
        ("web.emojivoto.svc.cluster.local.", "web.emojivoto.svc.cluster.local:9090"),
        ("web.emojivoto.svc.cluster.local.:8080", "web.emojivoto.svc.cluster.local:8080"),
        ("WEB.EmojiVoto.SVC.Cluster.Local:80", "web.emojivoto.svc.cluster.local:80"),
        (" web:80 ", "web.emojivoto.svc.cluster.local:80"),
        ("web:notaport", "web.emojivoto.svc.cluster.local:9090"),
        # Completed as the resolver's search path would; the destination service then says
        # it does not know the name, and the request goes to its original destination.
        ("example.com", "example.com.svc.cluster.local:9090"),
        ("10.0.0.1", None),
        ("10.0.0.1:80", None),
        ("[::1]:80", None),
        ("[2001:db8::1]", None),
        ("::1", None),
        ("", None),
        (":80", None),
        ("api.example.org", None),
        ("web.emojivoto.svc.cluster.other", None),
    ],
)
def test_canonical_names(authority: str, expected: str | None) -> None:
    assert canonical_name(authority, 9090, "emojivoto", CLUSTER) == expected


def test_a_dot_suffix_accepts_every_name() -> None:
    assert canonical_name("example.org", 80, "emojivoto", (".",)) == "example.org:80"
    assert canonical_name("Example.ORG.:8443", 80, "", (".",)) == "example.org:8443"
    assert canonical_name("10.1.1.1:80", 80, "emojivoto", (".",)) is None
    both = (*CLUSTER, ".")
    assert canonical_name("web", 80, "emojivoto", both) == "web.emojivoto.svc.cluster.local:80"


def test_other_suffixes() -> None:
    suffixes = ("svc.cluster.local.", "example.org.")
    assert canonical_name("api.example.org", 80, "ns", suffixes) == "api.example.org:80"
    # Two labels are completed first, as the resolver's search path tries them.
    assert canonical_name("example.org", 80, "ns", suffixes) == "example.org.svc.cluster.local:80"
    assert canonical_name("api.example.net", 80, "ns", suffixes) is None
    other_domain = ("svc.corp.internal.",)
    assert canonical_name("web.ns", 80, "x", other_domain) == "web.ns.svc.corp.internal:80"


def test_no_suffixes_means_no_names() -> None:
    assert canonical_name("web.emojivoto.svc.cluster.local", 80, "emojivoto", ()) is None
    assert canonical_name("web", 80, "emojivoto", ()) is None


def test_a_bare_name_without_a_namespace_is_not_completed() -> None:
    assert canonical_name("web", 80, "", CLUSTER) is None
    assert canonical_name("web.emojivoto", 80, "", CLUSTER) == "web.emojivoto.svc.cluster.local:80"


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("web", ("web", None)),
        ("web:8080", ("web", 8080)),
        ("web:", ("web", None)),
        ("web:0", ("web", None)),
        ("web:65535", ("web", 65535)),
        ("web:65536", ("web", None)),
        ("web:-1", ("web", None)),
        ("web:http", ("web", None)),
        ("10.0.0.1:80", ("10.0.0.1", 80)),
        ("[::1]:80", ("::1", 80)),
        ("[::1]", ("::1", None)),
        ("[2001:db8::1]:8443", ("2001:db8::1", 8443)),
        ("2001:db8::1", ("2001:db8::1", None)),
        ("", ("", None)),
    ],
)
def test_split_host_port(authority: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(authority) == expected


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("web:\xb2", "web.ns.svc.cluster.local:80"),
        ("web:8\xb9", "web.ns.svc.cluster.local:80"),
        ("[::1]:\xb3", None),
    ],
)
def test_a_non_ascii_digit_port_is_invalid_not_an_exception(
    authority: str, expected: str | None
) -> None:
    """Host headers are decoded as latin-1: ``²`` is a digit to ``str.isdigit`` but not to
    ``int``; such a port is invalid like any other (the default port is used)."""
    assert split_host_port(authority)[1] is None
    assert canonical_name(authority, 80, "ns", CLUSTER) == expected


# -- fallbacks and logical destinations ---------------------------------------------------


def test_fallbacks_keep_one_load_per_target() -> None:
    fallbacks = Fallbacks()
    first = fallbacks.load(("10.0.0.1", 80), "web")
    assert first.endpoint == Endpoint(("10.0.0.1", 80))
    assert fallbacks.load(("10.0.0.1", 80), None) is first
    other = fallbacks.load(("10.0.0.1", 81), None)
    assert other is not first and other.endpoint.addr == ("10.0.0.1", 81)


def test_no_target_is_a_502_naming_the_name() -> None:
    fallbacks = Fallbacks()
    with pytest.raises(ProxyError) as err:
        fallbacks.load(None, "web.emojivoto.svc.cluster.local:80")
    assert err.value.status == 502
    assert "web.emojivoto.svc.cluster.local:80" in err.value.reason
    with pytest.raises(ProxyError) as unnamed:
        fallbacks.load(None, None)
    assert unnamed.value.status == 502


def test_a_logical_destination_sends_to_the_original_destination() -> None:
    fallbacks = Fallbacks()
    logical = Logical(fallbacks, "web.ns.svc.cluster.local:80")
    assert logical.waiting() is None and logical.changed() is None
    load = logical.pick(("10.0.0.2", 80))
    assert load is not None and load is fallbacks.load(("10.0.0.2", 80), None)
    with pytest.raises(ProxyError) as err:
        logical.pick(None, "other")
    assert "web.ns.svc.cluster.local:80" in err.value.reason  # its own name first
    with pytest.raises(ProxyError) as unnamed:
        Logical(fallbacks).pick(None, "asked-for")
    assert "asked-for" in unnamed.value.reason


def test_the_original_destination_router_has_one_logical() -> None:
    router = OriginalDestination()
    one = router.logical("web", ("10.0.0.1", 80))
    assert router.logical(None, None) is one
    load = one.pick(("10.0.0.1", 80))
    assert load is not None and load.endpoint.addr == ("10.0.0.1", 80)


def test_the_budget_follows_the_profile() -> None:
    logical = Logical(Fallbacks())
    budget = logical.budget(0.0)
    assert budget.ratio == 0.2 and budget.reserve == 100
    assert logical.budget(1.0) is budget
    # A new profile with the same budget parameters keeps the budget (and what it holds).
    logical.set_profile(Profile(name="web.ns.svc.cluster.local:80"))
    assert logical.profile.name == "web.ns.svc.cluster.local:80"
    assert logical.budget(2.0) is budget
    # Different parameters start a new budget.
    logical.set_profile(Profile(name="web.ns.svc.cluster.local:80", retry_ratio=0.5))
    fresh = logical.budget(3.0)
    assert fresh is not budget
    assert fresh.ratio == 0.5
    logical.set_profile(Profile(retry_ratio=0.5, retry_ttl=20.0))
    assert logical.budget(4.0).reserve == 10 * 20.0


@pytest.mark.parametrize(
    ("token", "namespace"),
    [
        ("ns:emojivoto", "emojivoto"),
        (" ns:emojivoto\n", "emojivoto"),
        ('{"ns":"x","pod":"p"}', "x"),
        (' {"ns": "emojivoto", "pod": "web-1"} ', "emojivoto"),
        ('{"pod":"p"}', ""),
        ('{"ns": 3}', ""),
        ("[1, 2]", ""),
        ("{not json", ""),
        ("garbage", ""),
        ("", ""),
    ],
)
def test_context_namespace(token: str, namespace: str) -> None:
    assert context_namespace(token) == namespace
