"""ServiceProfiles built from the template, OpenAPI/Swagger documents and protobuf descriptors."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from google.protobuf.descriptor_pb2 import FileDescriptorSet

from weft.resources import ServiceProfile, parse_manifest_text, validate_service_profile
from weft.resources.profile_gen import (
    ProfileSourceError,
    from_openapi,
    from_proto_descriptors,
    path_regex,
    profile_name,
    quote_regex,
    template,
)

Obj = dict[str, Any]

SWAGGER: Obj = {
    "swagger": "2.0",
    "info": {"title": "books", "version": "1"},
    "basePath": "/base",
    "paths": {
        "/books/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "type": "string"}],
            "post": {"responses": {"200": {"description": "ok"}}},
            "get": {
                "responses": {
                    "200": {"description": "ok"},
                    "404": {"description": "missing"},
                    "500": {"description": "broken"},
                    "default": {"description": "other"},
                },
                "x-linkerd-retryable": True,
                "x-linkerd-timeout": "300ms",
            },
        },
        "/authors/{id}/books": {
            "get": {"responses": {"default": {"description": "other"}}},
        },
    },
}


def status_class(code: int, failure: bool) -> Obj:
    return {"condition": {"status": {"min": code, "max": code}}, "isFailure": failure}


def routes(profile: Obj) -> list[Obj]:
    found: list[Obj] = profile["spec"]["routes"]
    return found


def assert_valid(profile: Obj) -> None:
    assert validate_service_profile(profile) == []
    [loaded] = parse_manifest_text(yaml.safe_dump(profile), "generated.yaml")
    assert isinstance(loaded, ServiceProfile)


def test_profile_is_named_after_the_service_fqdn() -> None:
    assert profile_name("web", "emojivoto", "cluster.local") == "web.emojivoto.svc.cluster.local"


def test_template_is_valid_yaml_with_the_sample_route_and_budget() -> None:
    text = template("web", "emojivoto", "example.org")
    profile = yaml.safe_load(text)
    assert_valid(profile)
    assert profile["apiVersion"] == "linkerd.io/v1alpha2"
    assert profile["kind"] == "ServiceProfile"
    assert profile["metadata"] == {
        "name": "web.emojivoto.svc.example.org",
        "namespace": "emojivoto",
    }
    [route] = routes(profile)
    assert route["name"] == "/authors/{id}"
    assert route["condition"] == {"pathRegex": r"/authors/\d+", "method": "POST"}
    assert route["responseClasses"] == [
        {"condition": {"status": {"min": 500, "max": 599}}, "isFailure": True}
    ]
    assert route["timeout"] == "250ms"
    assert "isRetryable" not in route
    assert re.search(r"^\s*# isRetryable: true$", text, re.MULTILINE)
    assert profile["spec"]["retryBudget"] == {
        "retryRatio": 0.2,
        "minRetriesPerSecond": 10,
        "ttl": "10s",
    }
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 10


def test_swagger_gives_a_route_per_path_and_method_in_stable_order() -> None:
    profile = from_openapi(SWAGGER, "books", "shop", "cluster.local")
    assert_valid(profile)
    assert profile["metadata"] == {"name": "books.shop.svc.cluster.local", "namespace": "shop"}
    assert routes(profile) == [
        {
            "name": "GET /base/authors/{id}/books",
            "condition": {"pathRegex": "/base/authors/[^/]*/books", "method": "GET"},
        },
        {
            "name": "GET /base/books/{id}",
            "condition": {"pathRegex": "/base/books/[^/]*", "method": "GET"},
            "responseClasses": [
                status_class(200, False),
                status_class(404, False),
                status_class(500, True),
            ],
            "isRetryable": True,
            "timeout": "300ms",
        },
        {
            "name": "POST /base/books/{id}",
            "condition": {"pathRegex": "/base/books/[^/]*", "method": "POST"},
            "responseClasses": [status_class(200, False)],
        },
    ]


def test_generated_path_regex_matches_one_segment_per_parameter() -> None:
    [_, get_book, _] = routes(from_openapi(SWAGGER, "books", "shop", "cluster.local"))
    pattern = re.compile(get_book["condition"]["pathRegex"])
    assert pattern.fullmatch("/base/books/42")
    assert pattern.fullmatch("/base/books/")
    assert not pattern.fullmatch("/base/books/42/x")
    assert not pattern.fullmatch("/base/booksX42")


def test_regex_metacharacters_in_paths_are_quoted() -> None:
    assert quote_regex(r"/a.b+c*?()|[]{}^$\d") == r"/a\.b\+c\*\?\(\)\|\[\]\{\}\^\$\\d"
    regex = path_regex("/v1.0/c++/{name}.json")
    assert regex == r"/v1\.0/c\+\+/[^/]*\.json"
    assert re.fullmatch(regex, "/v1.0/c++/notes.json")
    assert not re.fullmatch(regex, "/v1x0/c++/notes.json")
    assert not re.fullmatch(regex, "/v1.0/cc/notes.json")


def test_swagger_yaml_with_integer_status_keys_and_root_base_path() -> None:
    doc = yaml.safe_load(
        """
        swagger: "2.0"
        basePath: /
        paths:
          /ping:
            head:
              responses:
                503: {description: down}
                204: {description: up}
        """
    )
    [route] = routes(from_openapi(doc, "svc", "default", "cluster.local"))
    assert route["name"] == "HEAD /ping"
    assert route["responseClasses"] == [status_class(204, False), status_class(503, True)]


def test_openapi3_uses_the_first_server_path_as_base() -> None:
    doc: Obj = {
        "openapi": "3.0.3",
        "info": {"title": "books", "version": "1"},
        "servers": [
            {
                "url": "https://{host}/api/{version}/",
                "variables": {"host": {"default": "x.test"}, "version": {"default": "v2"}},
            },
            {"url": "/other"},
        ],
        "paths": {
            "/books/{id}": {
                "summary": "a book",
                "delete": {
                    "responses": {"204": {"description": "gone"}, "5XX": {"description": "no"}},
                    "x-linkerd-timeout": "2s",
                },
            }
        },
    }
    profile = from_openapi(doc, "books", "shop", "cluster.local")
    assert_valid(profile)
    assert routes(profile) == [
        {
            "name": "DELETE /api/v2/books/{id}",
            "condition": {"pathRegex": "/api/v2/books/[^/]*", "method": "DELETE"},
            "responseClasses": [
                status_class(204, False),
                {"condition": {"status": {"min": 500, "max": 599}}, "isFailure": True},
            ],
            "timeout": "2s",
        }
    ]


def test_openapi3_without_servers_has_no_base() -> None:
    doc: Obj = {"openapi": "3.1.0", "paths": {"/x": {"get": {}}}}
    [route] = routes(from_openapi(doc, "svc", "default", "cluster.local"))
    assert route == {"name": "GET /x", "condition": {"pathRegex": "/x", "method": "GET"}}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (None, "not a Swagger 2.0 or OpenAPI 3 document"),
        ({"info": {}}, 'no "swagger" or "openapi" field'),
        ({"swagger": "1.2", "paths": {}}, "unsupported Swagger version"),
        ({"openapi": "2.0", "paths": {}}, "unsupported OpenAPI version"),
        ({"swagger": "2.0", "paths": {}}, "no operations"),
        ({"swagger": "2.0", "paths": {"/x": {"parameters": []}}}, "no operations"),
        (
            {"swagger": "2.0", "paths": {"/x": {"get": {"x-linkerd-timeout": "soon"}}}},
            'paths./x.get.x-linkerd-timeout: invalid duration "soon"',
        ),
        (
            {"swagger": "2.0", "paths": {"/x": {"get": {"x-linkerd-retryable": "yes"}}}},
            "x-linkerd-retryable must be true or false",
        ),
        (
            {"swagger": "2.0", "paths": {"/x": {"get": {"responses": {"700": {}}}}}},
            "status 700 is not between 100 and 599",
        ),
        (
            {"swagger": "2.0", "paths": {"/x": {"get": {"responses": {"OK": {}}}}}},
            "'OK' is not a status code",
        ),
    ],
)
def test_unusable_documents_are_rejected_with_the_reason(doc: Any, message: str) -> None:
    with pytest.raises(ProfileSourceError, match=re.escape(message)):
        from_openapi(doc, "svc", "default", "cluster.local")


def descriptors() -> FileDescriptorSet:
    fds = FileDescriptorSet()
    shop = fds.file.add(name="shop.proto", package="shop.v1")
    books = shop.service.add(name="Books")
    books.method.add(name="Get", input_type=".shop.v1.Id", output_type=".shop.v1.Book")
    books.method.add(name="Watch", output_type=".shop.v1.Book", server_streaming=True)
    shop.service.add(name="Admin").method.add(name="Purge")
    bare = fds.file.add(name="bare.proto")
    bare.service.add(name="Ping").method.add(name="Ping")
    return fds


def test_proto_gives_a_post_route_per_rpc() -> None:
    profile = from_proto_descriptors(descriptors(), "shop", "shop", "cluster.local")
    assert_valid(profile)
    assert [(r["name"], r["condition"]) for r in routes(profile)] == [
        ("Get", {"pathRegex": r"/shop\.v1\.Books/Get", "method": "POST"}),
        ("Watch", {"pathRegex": r"/shop\.v1\.Books/Watch", "method": "POST"}),
        ("Purge", {"pathRegex": r"/shop\.v1\.Admin/Purge", "method": "POST"}),
        ("Ping", {"pathRegex": "/Ping/Ping", "method": "POST"}),
    ]
    assert re.fullmatch(routes(profile)[0]["condition"]["pathRegex"], "/shop.v1.Books/Get")
    assert not re.fullmatch(routes(profile)[0]["condition"]["pathRegex"], "/shopXv1.Books/Get")


def test_proto_without_rpcs_is_rejected() -> None:
    fds = FileDescriptorSet()
    fds.file.add(name="m.proto").message_type.add(name="M")
    with pytest.raises(ProfileSourceError, match="no services"):
        from_proto_descriptors(fds, "svc", "default", "cluster.local")
