"""The dashboard server over real HTTP on loopback: pages, assets, API errors, the tap socket.

Its backends are a loopback port that refuses connections (bound, never listening), so every
call to them fails the way an unreachable metrics API, Prometheus or tap controller does.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import yarl
from aiohttp.test_utils import TestClient, TestServer

from weft.web.backends import Backends, BackendUrls
from weft.web.server import Dashboard, WebConfig

pytestmark = pytest.mark.anyio


@pytest.fixture
def refused() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` where nothing listens (the port stays bound meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>weft</title><div id=app></div>")
    (tmp_path / "assets" / "index-abc.js").write_text("console.log('weft')")
    (tmp_path / "secret.txt").write_text("not an asset")
    return tmp_path


async def _client(
    config: WebConfig,
) -> AsyncIterator[TestClient[aiohttp.web.Request, aiohttp.web.Application]]:
    async with Backends(config.urls) as backends:
        dashboard = Dashboard(config, backends)
        async with TestClient(TestServer(dashboard.app)) as client:
            yield client


@pytest.fixture
async def client(
    refused: str, dist: Path, tmp_path: Path
) -> AsyncIterator[TestClient[aiohttp.web.Request, aiohttp.web.Application]]:
    token = tmp_path / "token"
    token.write_text("a-token\n")
    urls = BackendUrls(refused, refused, refused, token)
    async for c in _client(WebConfig(urls, "weft", dist)):
        yield c


async def test_every_app_path_serves_the_built_page(client: TestClient) -> None:  # type: ignore[type-arg]
    for path in ("/", "/namespaces/emojivoto", "/namespaces/emojivoto/deployments/web", "/tap"):
        response = await client.get(path)
        assert response.status == 200, path
        assert "<div id=app>" in await response.text()
        assert response.headers["Cache-Control"] == "no-cache"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    asset = await client.get("/assets/index-abc.js")
    assert asset.status == 200 and "immutable" in asset.headers["Cache-Control"]
    assert (await client.get("/assets/missing.js")).status == 404
    # Nothing outside assets/ is served as a file, however the path is spelt.
    for path in ("/assets/../secret.txt", "/assets/%2e%2e/secret.txt", "/assets/..%2fsecret.txt"):
        url = yarl.URL(str(client.make_url("")) + path, encoded=True)
        async with client.session.get(url) as response:
            assert "not an asset" not in await response.text(), path


async def test_without_a_build_pages_say_what_to_run(refused: str, tmp_path: Path) -> None:
    urls = BackendUrls(refused, refused, refused, tmp_path / "token")
    async for client in _client(WebConfig(urls, "weft", tmp_path / "nothing")):
        response = await client.get("/namespaces/emojivoto")
        assert response.status == 503
        assert "Run <code>scripts/setup</code>" in (await response.text()).replace("\n", " ")


async def test_api_errors_are_json_with_the_right_status(client: TestClient) -> None:  # type: ignore[type-arg]
    cases = {
        "/api/overview?window=forever": (400, 'invalid window "forever"'),
        "/api/namespaces/Bad_NS": (400, 'invalid namespace "Bad_NS"'),
        "/api/namespaces/emojivoto/widgets/x": (400, 'unknown resource type "widgets"'),
        "/api/namespaces/emojivoto/deployments/web/series?window=1m": (400, "from 5m to 6h"),
        "/api/nothing/here": (404, "no API at /api/nothing/here"),
        "/api/overview": (503, "metrics API at http://127.0.0.1:"),
        "/api/namespaces/emojivoto": (503, "metrics API at http://127.0.0.1:"),
        "/api/namespaces/emojivoto/deployments/web": (503, "metrics API at"),
        "/api/namespaces/emojivoto/deployments/web/series": (
            503,
            "prometheus at http://127.0.0.1:",
        ),
    }
    # The control-plane page shows what it has and names what failed.
    control = await client.get("/api/controlplane")
    assert control.status == 200
    errors = {e["section"]: e["error"] for e in (await control.json())["errors"]}
    assert sorted(errors) == ["certificates", "checks", "pods", "scrapes"]
    assert errors["pods"].startswith("metrics API at http://127.0.0.1:")
    assert errors["pods"].endswith(": cannot connect (Connection refused)")
    assert errors["certificates"].startswith("prometheus at http://127.0.0.1:")
    for path, (status, message) in cases.items():
        response = await client.get(path)
        assert response.status == status, path
        body = await response.json()
        assert message in body["error"], (path, body)
        assert "\n" not in body["error"]


async def test_tap_is_a_websocket_that_reports_errors_in_band(client: TestClient) -> None:  # type: ignore[type-arg]
    plain = await client.get("/api/tap")
    assert plain.status == 400
    assert "WebSocket" in (await plain.json())["error"]

    async def first_message(query: object) -> dict[str, object]:
        async with client.ws_connect("/api/tap") as ws:
            await ws.send_str(json.dumps(query) if not isinstance(query, str) else query)
            message = await ws.receive_json(timeout=10)
            closing = await ws.receive(timeout=10)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            return dict(message)

    assert await first_message({"resource": "svc/web"}) == {
        "error": "cannot tap services: tap a namespace, deployment, job or pod",
        "status": 400,
    }
    assert (await first_message("{not json"))["error"] == "the tap query is not JSON"
    refused = await first_message({"resource": "deploy/web", "namespace": "emojivoto"})
    assert refused["status"] == 503
    assert str(refused["error"]).startswith("tap controller at http://127.0.0.1:")


async def test_tap_without_a_token_says_which_file(
    refused: str, dist: Path, tmp_path: Path
) -> None:
    urls = BackendUrls(refused, refused, refused, tmp_path / "no-token")
    async for client in _client(WebConfig(urls, "weft", dist)):
        async with client.ws_connect("/api/tap") as ws:
            await ws.send_json({"resource": "deploy/web"})
            message = await ws.receive_json(timeout=10)
        assert message["status"] == 503
        assert f"cannot read the service-account token {tmp_path / 'no-token'}" in message["error"]
