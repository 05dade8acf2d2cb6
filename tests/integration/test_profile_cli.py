"""``weft profile`` run as a real process: protoc on real .proto files, Swagger files, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from weft.resources import validate_service_profile

ROOT = Path(__file__).resolve().parents[2]

SHOP_PROTO = """\
syntax = "proto3";
package shop.v1;

import "google/protobuf/empty.proto";

message BookId { string id = 1; }
message Book { string id = 1; string title = 2; }

service Books {
  rpc GetBook(BookId) returns (Book);
  rpc WatchBooks(google.protobuf.Empty) returns (stream Book);
  rpc Upload(stream Book) returns (google.protobuf.Empty);
}

service Admin {
  rpc Purge(google.protobuf.Empty) returns (google.protobuf.Empty);
}
"""

PING_PROTO = """\
syntax = "proto3";
import "google/protobuf/empty.proto";
service Ping { rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty); }
"""

SWAGGER_YAML = """\
swagger: "2.0"
info: {title: books, version: "1"}
basePath: /api
paths:
  /books/{id}:
    get:
      responses:
        200: {description: ok}
        503: {description: unavailable}
        default: {description: other}
      x-linkerd-retryable: true
      x-linkerd-timeout: 1s
    put:
      responses:
        "204": {description: stored}
"""


def weft_profile(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "weft", "profile", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def valid_profile(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    profile = yaml.safe_load(result.stdout)
    assert validate_service_profile(profile) == []
    return profile


def route_conditions(profile: Any) -> list[tuple[str, dict[str, str]]]:
    return [(route["name"], route["condition"]) for route in profile["spec"]["routes"]]


def test_proto_with_two_services_and_streaming_rpcs(tmp_path: Path) -> None:
    proto = tmp_path / "shop.proto"
    proto.write_text(SHOP_PROTO)
    profile = valid_profile(weft_profile("-n", "shop", "books", "--proto", str(proto)))
    assert profile["apiVersion"] == "linkerd.io/v1alpha2"
    assert profile["kind"] == "ServiceProfile"
    assert profile["metadata"] == {"name": "books.shop.svc.cluster.local", "namespace": "shop"}
    assert route_conditions(profile) == [
        ("GetBook", {"pathRegex": r"/shop\.v1\.Books/GetBook", "method": "POST"}),
        ("WatchBooks", {"pathRegex": r"/shop\.v1\.Books/WatchBooks", "method": "POST"}),
        ("Upload", {"pathRegex": r"/shop\.v1\.Books/Upload", "method": "POST"}),
        ("Purge", {"pathRegex": r"/shop\.v1\.Admin/Purge", "method": "POST"}),
    ]


def test_proto_without_package_importing_a_well_known_type(tmp_path: Path) -> None:
    proto = tmp_path / "ping.proto"
    proto.write_text(PING_PROTO)
    result = weft_profile("ping", "--proto", str(proto), "--cluster-domain", "example.org")
    profile = valid_profile(result)
    assert profile["metadata"]["name"] == "ping.default.svc.example.org"
    assert route_conditions(profile) == [
        ("Ping", {"pathRegex": "/Ping/Ping", "method": "POST"}),
    ]


def test_proto_imports_resolve_through_extra_proto_paths(tmp_path: Path) -> None:
    (tmp_path / "deps" / "common").mkdir(parents=True)
    (tmp_path / "deps" / "common" / "ids.proto").write_text(
        'syntax = "proto3";\npackage common;\nmessage Id { string id = 1; }\n'
    )
    (tmp_path / "svc").mkdir()
    proto = tmp_path / "svc" / "lookup.proto"
    proto.write_text(
        'syntax = "proto3";\nimport "common/ids.proto";\n'
        "service Lookup { rpc Find(common.Id) returns (common.Id); }\n"
    )
    missing = weft_profile("lookup", "--proto", str(proto))
    assert missing.returncode != 0
    assert "--proto-path" in missing.stderr
    found = weft_profile("lookup", "--proto", str(proto), "-I", str(tmp_path / "deps"))
    assert route_conditions(valid_profile(found)) == [
        ("Find", {"pathRegex": "/Lookup/Find", "method": "POST"})
    ]


def test_swagger_yaml_file(tmp_path: Path) -> None:
    spec = tmp_path / "books.yaml"
    spec.write_text(SWAGGER_YAML)
    profile = valid_profile(weft_profile("--namespace", "shop", "books", "--open-api", str(spec)))
    assert profile["metadata"] == {"name": "books.shop.svc.cluster.local", "namespace": "shop"}
    assert profile["spec"]["routes"] == [
        {
            "name": "GET /api/books/{id}",
            "condition": {"pathRegex": "/api/books/[^/]*", "method": "GET"},
            "responseClasses": [
                {"condition": {"status": {"min": 200, "max": 200}}, "isFailure": False},
                {"condition": {"status": {"min": 503, "max": 503}}, "isFailure": True},
            ],
            "isRetryable": True,
            "timeout": "1s",
        },
        {
            "name": "PUT /api/books/{id}",
            "condition": {"pathRegex": "/api/books/[^/]*", "method": "PUT"},
            "responseClasses": [
                {"condition": {"status": {"min": 204, "max": 204}}, "isFailure": False},
            ],
        },
    ]


def test_openapi_json_from_stdin() -> None:
    doc = '{"openapi": "3.0.0", "paths": {"/health": {"get": {"responses": {"200": {}}}}}}'
    profile = valid_profile(weft_profile("web", "--open-api", "-", stdin=doc))
    assert route_conditions(profile) == [
        ("GET /health", {"pathRegex": "/health", "method": "GET"}),
    ]


def test_template() -> None:
    result = weft_profile("web", "-n", "emojivoto", "--template")
    profile = valid_profile(result)
    assert result.stdout.startswith("### ServiceProfile for web.emojivoto.svc.cluster.local ###")
    assert profile["metadata"] == {
        "name": "web.emojivoto.svc.cluster.local",
        "namespace": "emojivoto",
    }
    [route] = profile["spec"]["routes"]
    assert route["condition"] == {"pathRegex": r"/authors/\d+", "method": "POST"}
    assert route["timeout"] == "250ms"
    assert "# isRetryable: true" in result.stdout
    assert profile["spec"]["retryBudget"] == {
        "retryRatio": 0.2,
        "minRetriesPerSecond": 10,
        "ttl": "10s",
    }


def assert_one_error_line(result: subprocess.CompletedProcess[str], *mentions: str) -> str:
    assert result.returncode != 0
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ")
    for text in mentions:
        assert text in line
    return line


def test_missing_files_are_reported(tmp_path: Path) -> None:
    for mode in ("--proto", "--open-api"):
        missing = tmp_path / f"absent{mode}"
        assert_one_error_line(weft_profile("web", mode, str(missing)), str(missing))


def test_broken_proto_reports_protoc_message(tmp_path: Path) -> None:
    proto = tmp_path / "broken.proto"
    proto.write_text('syntax = "proto3";\nservice S {\n  rpc A(M) returns (M)\n}\n')
    line = assert_one_error_line(weft_profile("web", "--proto", str(proto)), "broken.proto")
    assert "Expected" in line


@pytest.mark.parametrize(
    ("content", "mention"),
    [
        ("paths: [", "cannot parse"),
        ("title: not an api\n", "not a Swagger 2.0 or OpenAPI 3 document"),
        ('swagger: "2.0"\npaths: {}\n', "no operations"),
    ],
)
def test_unusable_openapi_files_are_reported(tmp_path: Path, content: str, mention: str) -> None:
    spec = tmp_path / "api.yaml"
    spec.write_text(content)
    assert_one_error_line(weft_profile("web", "--open-api", str(spec)), mention)


def test_proto_without_services_is_reported(tmp_path: Path) -> None:
    proto = tmp_path / "messages.proto"
    proto.write_text('syntax = "proto3";\nmessage M {}\n')
    assert_one_error_line(
        weft_profile("web", "--proto", str(proto)), "messages.proto", "no services"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("web",),
        ("web", "--template", "--proto", "x.proto"),
        ("web", "--open-api", "a.yaml", "--proto", "x.proto"),
    ],
)
def test_exactly_one_mode_is_required(args: tuple[str, ...]) -> None:
    result = weft_profile(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: give exactly one of --template, --open-api FILE or --proto FILE"]


def test_invalid_service_name_is_a_usage_error() -> None:
    result = weft_profile("Web_App", "--template")
    assert result.returncode == 2
    assert "SERVICE" in result.stderr
