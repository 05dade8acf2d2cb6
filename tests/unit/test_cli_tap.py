"""``weft tap``: TapEvents read from protobuf's JSON mapping, the tap request, and Linkerd's
line and JSON formats."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import viz_answers as answers
from tests.conftest import GoldenChecker
from weft.cli.tap import tap_query
from weft.cli.tap_output import event_json, event_line, grpc_status_name
from weft.cli.viz_format import InputError
from weft.viz.resources import Resource, ResourceError
from weft.viz.tap_events import (
    Header,
    RequestInit,
    ResponseEnd,
    ResponseInit,
    StreamId,
    TapEventError,
    duration_ns,
    parse_event,
)
from weft.viz.tap_query import TapQuery

# -- reading events -------------------------------------------------------------------------------


def test_a_request_init_is_read_with_addresses_labels_and_headers() -> None:
    data = answers.request(7, src_labels=answers.WEB_SRC)
    data["http"]["requestInit"]["headers"] = answers.headers(("user-agent", b"bot"))
    event = parse_event(data)
    assert event.source.address == "10.244.0.7:41000"
    assert event.destination.address == "10.244.0.5:8080"
    assert event.source.labels["pod"] == "vote-bot-77c4"
    assert event.direction == "INBOUND"
    assert event.http == RequestInit(
        StreamId(0, 7),
        "GET",
        "HTTP",
        "web-svc.emojivoto.svc.cluster.local:80",
        "/api/list",
        (Header("user-agent", b"bot"),),
    )


def test_left_out_zero_values_read_as_zero_and_ipv6_addresses_are_bracketed() -> None:
    data = answers.response(0, dst=("fd00::5", 8080))
    data["http"]["responseInit"] = {"sinceRequestInit": "0s"}  # status 0 and id left out
    event = parse_event(data)
    assert event.destination.address == "[fd00::5]:8080"
    assert event.http == ResponseInit(StreamId(0, 0), 0, 0)


def test_a_response_end_reads_its_eos() -> None:
    grpc = parse_event(answers.end(3, eos={"grpcStatusCode": 14}, size=1234)).http
    assert grpc == ResponseEnd(StreamId(0, 3), 3_000_000, 500_000, 1234, grpc_status=14)
    reset = parse_event(answers.end(3, eos={"resetErrorCode": 2})).http
    assert isinstance(reset, ResponseEnd) and reset.reset_error == 2 and reset.grpc_status is None


@pytest.mark.parametrize(
    ("text", "ns"), [("0s", 0), ("0.002500s", 2_500_000), ("1.500s", 1_500_000_000), (None, 0)]
)
def test_durations_are_protobufs_json_strings(text: str | None, ns: int) -> None:
    assert duration_ns(text) == ns


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("http"), "no requestInit, responseInit or responseEnd"),
        (lambda e: e.update(proxyDirection="SIDEWAYS"), "unknown proxyDirection"),
        (lambda e: e["source"]["ip"].update(ipv4=2**32), "not an address"),
        (lambda e: e["http"]["requestInit"].update(path=7), "path is not a string"),
        (lambda e: e["http"]["requestInit"]["id"].update(stream="x"), "stream is not an integer"),
        (lambda e: e.update(sourceMeta={"labels": {"a": 1}}), "labels holds a value"),
    ],
)
def test_objects_that_are_not_tap_events_are_refused(mutate: Any, message: str) -> None:
    data = answers.request(1)
    mutate(data)
    with pytest.raises(TapEventError, match=message):
        parse_event(data)


def test_a_bad_duration_is_refused() -> None:
    with pytest.raises(TapEventError, match="not a duration"):
        parse_event(answers.response(1, latency="2.5ms"))


# -- the request ----------------------------------------------------------------------------------


def test_tap_targets_a_workloads_path_with_the_filters_that_are_set() -> None:
    query = tap_query(
        ["deploy/web"], "emojivoto", to="svc/emoji-svc", method="POST", path="/api", max_rps=10
    )
    assert query.url_path() == (
        "apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/deployments/web/tap"
    )
    assert query.body() == {
        "maxRps": 10.0,
        "extract": False,
        "toResource": {"namespace": "emojivoto", "type": "service", "name": "emoji-svc"},
        "method": "POST",
        "path": "/api",
    }


def test_a_namespace_is_tapped_by_its_own_path() -> None:
    for args in (["ns/emojivoto"], ["ns"]):
        query = tap_query(args, "emojivoto", authority="web-svc:80", scheme="http", extract=True)
        assert query.url_path() == "apis/tap.linkerd.io/v1alpha1/watch/namespaces/emojivoto/tap"
        assert query.body() == {
            "maxRps": 100.0,
            "extract": True,
            "authority": "web-svc:80",
            "scheme": "http",
        }


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (["svc/web-svc"], {}, "cannot tap services: tap namespaces, deployments, jobs, pods"),
        (["au/web-svc"], {}, "cannot tap authorities"),
        (["deploy"], {}, "tap deployment: name one (deployment/NAME), or tap ns/NAMESPACE"),
        (["deploy/a", "deploy/b"], {}, "tap one resource"),
        (["deploy/web"], {"to": "deploy"}, "--to deployment: name one"),
        (["deploy/web"], {"to": "au/x"}, "--to takes one of"),
        (["deploy/web"], {"to_namespace": "x"}, "--to-namespace needs --to"),
        (["deploy/web"], {"method": "GET /"}, '--method "GET /" is not an HTTP method'),
        (["deploy/web"], {"max_rps": 0}, "--max-rps must be above zero"),
        (["deploy/web"], {"max_rps": float("nan")}, "--max-rps must be above zero"),
    ],
)
def test_tap_refuses_bad_command_lines(
    args: list[str], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises((InputError, ResourceError)) as info:
        tap_query(args, "emojivoto", **kwargs)
    assert message in str(info.value)


def test_a_target_without_namespace_is_refused() -> None:
    with pytest.raises(ResourceError, match="which namespace"):
        TapQuery(Resource("deployment", "web"))


# -- output ---------------------------------------------------------------------------------------

STREAM = [
    answers.request(
        1, src_labels=answers.WEB_SRC, dst_labels=answers.WEB_DST, route={"route": "GET /api/list"}
    ),
    answers.response(1, src_labels=answers.WEB_SRC, dst_labels=answers.WEB_DST),
    answers.end(1, src_labels=answers.WEB_SRC, dst_labels=answers.WEB_DST),
    answers.request(
        2,
        method="POST",
        path="/emojivoto.v1.VotingService/VoteDoughnut",
        inbound=False,
        src=("10.244.0.5", 50000),
        dst=("10.244.0.9", 8080),
        src_labels={},
        dst_labels={"tls": "true", "pod": "voting-5c4f", "namespace": "emojivoto"},
    ),
    answers.response(
        2,
        latency="1.250000s",
        inbound=False,
        src=("10.244.0.5", 50000),
        dst=("10.244.0.9", 8080),
        src_labels={},
        dst_labels={"tls": "true"},
    ),
    answers.end(
        2,
        eos={"grpcStatusCode": 2},
        size=0,
        inbound=False,
        src=("10.244.0.5", 50000),
        dst=("10.244.0.9", 8080),
        src_labels={},
        dst_labels={"tls": "true"},
    ),
    answers.end(3, eos={"resetErrorCode": 8}, body="0.000010s"),
]


def test_tap_lines_are_linkerds(golden: GoldenChecker) -> None:
    lines = [event_line(parse_event(e)) for e in STREAM]
    assert lines[0].startswith(
        "req id=0:1 proxy=in  src=10.244.0.7:41000 dst=10.244.0.5:8080 tls=true"
    )
    golden.check("viz/tap.txt", "\n".join(lines) + "\n")


def test_tap_wide_lines_name_the_peers_resources_and_route(golden: GoldenChecker) -> None:
    lines = [event_line(parse_event(e), "deployment") for e in STREAM]
    assert lines[0].endswith(
        "src_res=deploy/vote-bot src_ns=emojivoto dst_res=deploy/web dst_ns=emojivoto"
        " rt_route=GET /api/list"
    )
    golden.check("viz/tap_wide.txt", "\n".join(lines) + "\n")


def test_tap_json_objects_are_linkerds(golden: GoldenChecker) -> None:
    data = answers.request(1, src_labels=answers.WEB_SRC)
    data["http"]["requestInit"]["headers"] = answers.headers(
        ("x-bin", b"\xff\x00"), ("accept", b"*/*")
    )
    objects = [event_json(parse_event(e)) for e in [data, *STREAM[1:3], STREAM[5]]]
    assert objects[0]["requestInitEvent"]["headers"] == [
        {"name": "x-bin", "valueBin": "/wA="},
        {"name": "accept", "valueStr": "*/*"},
    ]
    assert objects[1]["responseInitEvent"]["sinceRequestInit"] == {"seconds": 0, "nanos": 2500000}
    assert objects[3]["responseEndEvent"]["grpcStatusCode"] == 2
    golden.check("viz/tap.json", "\n".join(json.dumps(o, indent=2) for o in objects) + "\n")


def test_grpc_status_names_are_gos() -> None:
    assert [grpc_status_name(c) for c in (0, 4, 16, 17)] == [
        "OK",
        "DeadlineExceeded",
        "Unauthenticated",
        "Code(17)",
    ]
