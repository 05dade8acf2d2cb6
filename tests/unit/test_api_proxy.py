"""Which endpoint the node agent's service proxy sends a request to (pure)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from weft.local.api_proxy import ProxyTargetError, pick_endpoint, split_service

Obj = dict[str, Any]


def service(*ports: Obj) -> Obj:
    return {"metadata": {"namespace": "weft", "name": "api"}, "spec": {"ports": list(ports)}}


def endpoints(*subsets: Obj) -> Obj:
    return {"subsets": list(subsets)}


HTTP = {"name": "http", "port": 80}
ADMIN = {"name": "admin", "port": 9995}


def test_a_named_port_picks_a_ready_address_on_its_target_port() -> None:
    eps = endpoints(
        {
            "ports": [{"name": "http", "port": 8085}, {"name": "admin", "port": 9995}],
            "addresses": [{"ip": "10.0.0.2"}],
            "notReadyAddresses": [{"ip": "10.0.0.3"}],
        }
    )
    assert pick_endpoint(service(HTTP, ADMIN), eps, "http") == ("10.0.0.2", 8085)
    assert pick_endpoint(service(HTTP, ADMIN), eps, "9995") == ("10.0.0.2", 9995)


def test_the_only_port_needs_no_name_and_every_ready_address_is_a_choice() -> None:
    eps = endpoints(
        {"ports": [{"port": 8080}], "addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.4"}]}
    )
    seen = {pick_endpoint(service({"port": 80}), eps, "", random.Random(i))[0] for i in range(50)}
    assert seen == {"10.0.0.2", "10.0.0.4"}


@pytest.mark.parametrize(
    ("svc", "eps", "port", "status", "text"),
    [
        (service(HTTP, ADMIN), None, "", 400, "has 2 ports"),
        (service(HTTP), None, "grpc", 404, "has no port grpc"),
        (service(HTTP), None, "http", 503, "no ready endpoints"),
        (
            service(HTTP),
            endpoints({"ports": [{"name": "http", "port": 1}], "notReadyAddresses": [{"ip": "x"}]}),
            "http",
            503,
            "no ready endpoints",
        ),
    ],
)
def test_what_cannot_be_proxied_says_why(
    svc: Obj, eps: Obj | None, port: str, status: int, text: str
) -> None:
    with pytest.raises(ProxyTargetError) as info:
        pick_endpoint(svc, eps, port)
    assert info.value.status == status
    assert text in str(info.value)


def test_a_service_spec_splits_into_name_and_port() -> None:
    assert split_service("weft-tap:8088") == ("weft-tap", "8088")
    assert split_service("weft-tap") == ("weft-tap", "")
