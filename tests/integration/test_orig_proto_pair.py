"""HTTP/1 through a proxy pair that carries it as HTTP/2 (``l5d-orig-proto``), over mTLS.

A client's outbound listener sends to the server's inbound listener with discovery's ``h2``
hint on the endpoint (``harness/proxy_pair.py``); the app behind the inbound one is
``tests/e2e/apps/echo.py``, an HTTP/1.1 and HTTP/2 server in its own process that says which
protocol it was spoken to in (``x-echo-proto``). Clients are h2load and a raw HTTP/1 client on
sockets, so framing, keep-alive and ``Connection: close`` are seen as the bytes say.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from harness.local_cluster import APPS
from harness.loop_errors import no_loop_errors  # noqa: F401 (an autouse fixture)
from harness.mesh import Sample, parse_samples, select, total, wait_for
from harness.proxy_pair import CLIENT_ID, ProxyPair
from weft.proxy import downgrade, h1head
from weft.proxy.profiles import Profile, Route
from weft.proxy.tap.registry import RequestFacts, Tapped

pytestmark = pytest.mark.anyio

TIMEOUT = 20.0
PATTERN = b"0123456789abcdef" * 4096
Addr = tuple[str, int]


def pattern(n: int) -> bytes:
    """``n`` bytes of echo.py's repeating pattern."""
    reps, rest = divmod(n, len(PATTERN))
    return PATTERN * reps + PATTERN[:rest]


@dataclass
class App:
    """echo.py on 127.0.0.1, its requests logged to ``log``."""

    proc: subprocess.Popen[bytes]
    addr: Addr
    log: Path

    def requests(self) -> list[str]:
        """The ``REQ <proto> <method> <path>`` lines so far."""
        return [ln for ln in self.log.read_text().splitlines() if ln.startswith("REQ ")]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    log = tmp_path / "echo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(APPS / "echo.py"), "--host", "127.0.0.1", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def listening() -> int:
        assert proc.poll() is None, f"echo.py exited: {log.read_text()}"
        found = re.search(r"LISTENING (\d+)", log.read_text())
        return int(found.group(1)) if found else 0

    try:
        port = wait_for(listening, TIMEOUT, what="echo.py listening")
        yield App(proc, ("127.0.0.1", port), log)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
async def pair(app: App) -> AsyncIterator[ProxyPair]:
    pair = await ProxyPair(app.addr, mtls=True, h2=True).start()
    try:
        yield pair
    finally:
        await pair.close()


# -- a raw HTTP/1 client ---------------------------------------------------------------------


@dataclass
class Response:
    """One response as the bytes said it."""

    version: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    framing: str = "none"  # length | chunked | close | none


class Client:
    """One HTTP/1 connection to the outbound listener."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, pair: ProxyPair) -> Client:
        reader, writer = await asyncio.open_connection(*pair.outbound, limit=1 << 20)
        return cls(reader, writer)

    def send(self, raw: bytes) -> None:
        self.writer.write(raw)

    async def response(self, head_request: bool = False) -> Response:
        """Read one response (its body framed as its head says)."""
        async with asyncio.timeout(TIMEOUT):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head[:-4].decode("latin-1").split("\r\n")
            version, status, _ = lines[0].split(" ", 2)
            rsp = Response(version, int(status))
            for line in lines[1:]:
                name, _, value = line.partition(":")
                rsp.headers[name.strip().lower()] = value.strip()
            if head_request or rsp.status in (204, 304) or rsp.status < 200:
                return rsp
            if rsp.headers.get("transfer-encoding", "").lower() == "chunked":
                rsp.framing = "chunked"
                body = bytearray()
                while True:
                    size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
                    body += (await self.reader.readexactly(size + 2))[:-2]
                    if size == 0:
                        break
                rsp.body = bytes(body)
            elif "content-length" in rsp.headers:
                rsp.framing = "length"
                rsp.body = await self.reader.readexactly(int(rsp.headers["content-length"]))
            else:
                rsp.framing = "close"
                rsp.body = await self.reader.read()
            return rsp

    async def closed_by_proxy(self) -> bool:
        """Whether the proxy closed the connection (EOF without another byte)."""
        async with asyncio.timeout(TIMEOUT):
            return await self.reader.read(1) == b""

    def close(self) -> None:
        self.writer.close()


def request(
    method: str,
    path: str,
    *,
    version: str = "HTTP/1.1",
    headers: tuple[str, ...] = (),
    body: bytes | None = None,
    chunked: bool = False,
) -> bytes:
    """A raw request to echo.py (``Host: app``)."""
    lines = [f"{method} {path} {version}", "Host: app", *headers]
    data = b""
    if body is not None and chunked:
        lines.append("Transfer-Encoding: chunked")
        pieces = [body[i : i + 7000] for i in range(0, len(body), 7000)]
        data = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    elif body is not None:
        lines.append(f"Content-Length: {len(body)}")
        data = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def samples(pair: ProxyPair) -> list[Sample]:
    """The pair's metrics (both proxies share one registry; ``direction`` tells them apart)."""
    return parse_samples(pair.metrics.render().decode())


def opened(pair: ProxyPair, direction: str, peer: str) -> float:
    """``tcp_open_total`` of one direction and peer."""
    return total(samples(pair), "tcp_open_total", direction=direction, peer=peer)


# -- tests -----------------------------------------------------------------------------------


async def test_many_client_connections_cross_on_one_proxy_connection(
    app: App, pair: ProxyPair
) -> None:
    clients, requests = 40, 4000
    proc = await asyncio.create_subprocess_exec(
        "h2load", "--h1", "-c", str(clients), "-n", str(requests),
        f"http://127.0.0.1:{pair.outbound[1]}/chunked/3000",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode()
    assert f"{requests} succeeded, 0 failed" in out, out
    assert "status codes: 4000 2xx" in out, out
    # Forty HTTP/1 connections from the client, one connection between the proxies.
    assert opened(pair, "outbound", "src") == clients
    assert opened(pair, "outbound", "dst") == 1
    assert opened(pair, "inbound", "src") == 1
    # The app was spoken to in HTTP/1.1, every time, over at most one connection per client.
    seen = app.requests()
    assert len(seen) == requests and set(seen) == {"REQ HTTP/1.1 GET /chunked/3000"}
    assert opened(pair, "inbound", "dst") <= clients
    # Both ends count HTTP/1 traffic: status and classification, no gRPC status.
    found = samples(pair)
    for direction in ("outbound", "inbound"):
        assert total(found, "request_total", direction=direction) == requests
        responses = select(found, "response_total", direction=direction)
        assert sum(value for _, _, value in responses) == requests
        for _, labels, _ in responses:
            assert (labels["status_code"], labels["classification"]) == ("200", "success")
            assert "grpc_status" not in labels and "error" not in labels
    outbound_tls = select(found, "request_total", direction="outbound")[0][1]
    assert outbound_tls["tls"] == "true" and outbound_tls["authority"] == pair_authority(pair)


def pair_authority(pair: ProxyPair) -> str:
    """The authority h2load's requests carry (the outbound listener's address)."""
    return f"127.0.0.1:{pair.outbound[1]}"


@pytest.mark.parametrize("size", [0, 1, 70_000, 3 << 20])
@pytest.mark.parametrize("framing", ["length", "chunked", "none"])
async def test_request_and_response_bodies_cross_intact(
    pair: ProxyPair, framing: str, size: int
) -> None:
    body = pattern(size)
    client = await Client.open(pair)
    try:
        if framing == "none":
            client.send(request("GET", f"/bytes/{size}"))
            rsp = await client.response()
            assert (rsp.status, rsp.framing, rsp.body) == (200, "length", body)
        else:
            client.send(request("POST", "/echo", body=body, chunked=framing == "chunked"))
            rsp = await client.response()
            assert rsp.status == 200 and rsp.body == body
        assert rsp.headers["x-echo-proto"] == "HTTP/1.1"
        # The app's chunked and close-delimited bodies reach an HTTP/1.1 client chunked, on a
        # connection that stays open.
        for path in (f"/chunked/{size}", f"/close/{size}"):
            client.send(request("GET", path))
            rsp = await client.response()
            assert (rsp.status, rsp.body) == (200, body)
            # (an empty body may end with the response head: content-length 0)
            assert rsp.framing == "chunked" or (size == 0 and rsp.framing == "length")
    finally:
        client.close()


async def test_an_http10_client_gets_a_body_without_length_and_the_end_of_the_connection(
    pair: ProxyPair,
) -> None:
    client = await Client.open(pair)
    try:
        client.send(request("GET", "/chunked/5000", version="HTTP/1.0"))
        rsp = await client.response()
        assert (rsp.version, rsp.status, rsp.framing) == ("HTTP/1.0", 200, "close")
        assert rsp.body == pattern(5000)
        assert rsp.headers["x-echo-proto"] == "HTTP/1.0"  # the app saw the client's version
    finally:
        client.close()


async def test_head_204_and_304_have_no_body_and_the_connection_goes_on(pair: ProxyPair) -> None:
    client = await Client.open(pair)
    try:
        client.send(request("HEAD", "/bytes/100"))
        rsp = await client.response(head_request=True)
        assert (rsp.status, rsp.headers["content-length"]) == (200, "100")
        for status in (204, 304):
            client.send(request("GET", f"/status/{status}"))
            rsp = await client.response()
            assert rsp.status == status and "transfer-encoding" not in rsp.headers
        client.send(request("GET", "/bytes/5"))
        rsp = await client.response()
        assert (rsp.status, rsp.body) == (200, b"01234")
    finally:
        client.close()


async def test_pipelined_requests_are_answered_in_order(pair: ProxyPair) -> None:
    client = await Client.open(pair)
    try:
        client.send(b"".join(request("GET", f"/bytes/{n}") for n in (3, 1, 2)))
        bodies = [(await client.response()).body for _ in range(3)]
        assert bodies == [b"012", b"0", b"01"]
    finally:
        client.close()


async def test_keep_alive_and_connection_close_are_as_the_client_asked(pair: ProxyPair) -> None:
    # HTTP/1.1 with Connection: close: answered, then closed.
    client = await Client.open(pair)
    client.send(request("GET", "/bytes/3", headers=("Connection: close",)))
    rsp = await client.response()
    assert rsp.body == b"012" and rsp.headers["connection"].lower() == "close"
    assert await client.closed_by_proxy()
    client.close()
    # HTTP/1.0 asking for keep-alive keeps its connection.
    client = await Client.open(pair)
    try:
        for n in (2, 4):
            client.send(request("GET", f"/bytes/{n}", version="HTTP/1.0",
                                headers=("Connection: keep-alive",)))  # fmt: skip
            rsp = await client.response()
            assert (rsp.version, rsp.body) == ("HTTP/1.0", pattern(n))
            assert rsp.headers["connection"].lower() == "keep-alive"
    finally:
        client.close()
    # HTTP/1.0 without it: closed after the response.
    client = await Client.open(pair)
    client.send(request("GET", "/bytes/3", version="HTTP/1.0"))
    rsp = await client.response()
    assert rsp.body == b"012"
    assert await client.closed_by_proxy()
    client.close()


async def test_upgrade_requests_stay_http1(pair: ProxyPair) -> None:
    client = await Client.open(pair)
    try:
        client.send(request("GET", "/bytes/1"))
        await client.response()
        assert opened(pair, "outbound", "dst") == 1
        client.send(request("GET", "/info", headers=("Connection: Upgrade", "Upgrade: websocket")))
        rsp = await client.response()
        info = json.loads(rsp.body)
        assert info["proto"] == "HTTP/1.1"
        assert ["Upgrade", "websocket"] in info["headers"]
        # It took a connection of its own to the server's proxy, in HTTP/1.
        assert opened(pair, "outbound", "dst") == 2
    finally:
        client.close()


async def test_failures_are_counted_as_http1_at_both_ends(pair: ProxyPair) -> None:
    client = await Client.open(pair)
    try:
        client.send(request("GET", "/status/503"))
        assert (await client.response()).status == 503
    finally:
        client.close()
    found = samples(pair)
    for direction in ("outbound", "inbound"):
        ((_, labels, value),) = select(found, "response_total", direction=direction)
        assert value == 1
        assert (labels["status_code"], labels["classification"]) == ("503", "failure")
        assert "grpc_status" not in labels


async def test_the_app_gets_the_clients_identity_and_no_proxy_headers(pair: ProxyPair) -> None:
    client = await Client.open(pair)
    try:
        client.send(request("GET", "/info", headers=("l5d-client-id: forged", "X-Kept: 1")))
        info = json.loads((await client.response()).body)
    finally:
        client.close()
    headers = {name.lower(): value for name, value in info["headers"]}
    assert headers["l5d-client-id"] == CLIENT_ID  # from the client proxy's certificate
    assert headers["host"] == "app" and headers["x-kept"] == "1"
    assert "l5d-orig-proto" not in headers


# -- routes, retries, timeouts and tap through the stream ------------------------------------

DST = "web.test.svc.cluster.local:80"
PROFILE = Profile(
    name=DST,
    routes=(
        Route(
            labels=(("rt_route", "flaky"),),
            matches=lambda method, path: path == "/flaky",
            retryable=True,
        ),
        Route(labels=(("rt_route", "slow"),), matches=lambda m, p: p == "/slow", timeout=0.3),
    ),
)


class Recorder:
    """A tap sink that takes every request and records what it is told."""

    spent = False

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.claimed = 0

    def matches(self, facts: RequestFacts) -> bool:
        return True

    def claim(self) -> int:
        self.claimed += 1
        return self.claimed - 1

    def request_init(self, tapped: Tapped, stream: int) -> None:
        f = tapped.facts
        names = sorted({name.decode().lower() for name, _ in f.fields()})
        self.seen.append(("request", f.method, f.scheme, f.path, f.route_labels, names))

    def response_init(self, tapped: Tapped, stream: int) -> None:
        self.seen.append(("response", tapped.status))

    def response_end(self, tapped: Tapped, stream: int) -> None:
        self.seen.append(("end", tapped.response_bytes))


@pytest.fixture
async def flaky_app() -> AsyncIterator[tuple[Addr, list[bytes]]]:
    """An HTTP/1.1 app (aiohttp): ``/flaky`` fails every other request with 503 and says how
    many body bytes it got; ``/slow`` answers after 2 s."""
    bodies: list[bytes] = []

    async def flaky(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        if len(bodies) % 2:
            return web.Response(status=503, text="try again")
        return web.Response(text=f"got {len(bodies[-1])}")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_route("*", "/flaky", flaky)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield ("127.0.0.1", runner.addresses[0][1]), bodies
    finally:
        await runner.cleanup()


async def test_retries_timeouts_route_metrics_and_tap_work_through_the_stream(
    flaky_app: tuple[Addr, list[bytes]],
) -> None:
    addr, bodies = flaky_app
    pair = await ProxyPair(addr, mtls=True, h2=True, profile=PROFILE).start()
    recorders = [Recorder(), Recorder()]  # inbound, outbound (the pair's listener order)
    for listener, recorder in zip(pair.listeners, recorders, strict=True):
        listener.taps.add(recorder)
    inbound, outbound = recorders
    client = await Client.open(pair)
    try:
        client.send(request("GET", "/flaky"))
        assert (await client.response()).body == b"got 0"
        client.send(request("POST", "/flaky", body=pattern(20_000), chunked=True))
        assert (await client.response()).body == b"got 20000"
        client.send(request("GET", "/slow"))
        rsp = await client.response()
        assert rsp.status == 504 and "l5d-proxy-error" in rsp.headers
    finally:
        client.close()
        await pair.close()
    # Each request reached the app twice, its body replayed intact; the client saw one answer.
    assert [len(body) for body in bodies] == [0, 0, 20_000, 20_000]
    assert bodies[3] == pattern(20_000)
    found = samples(pair)
    flaky = {"direction": "outbound", "dst": DST, "rt_route": "flaky"}
    assert total(found, "route_response_total", classification="success", **flaky) == 2
    assert total(found, "route_actual_response_total", status_code="503", **flaky) == 2
    slow = {"direction": "outbound", "rt_route": "slow"}
    assert total(found, "route_response_total", status_code="504", error="timeout", **slow) == 1
    # The client's proxy taps one request per client request, as HTTP/1; the server's proxy,
    # each attempt, as the HTTP/1 request its app got (no l5d-orig-proto, a Host).
    route = {"route": "flaky"}
    assert [event for event in outbound.seen if event[0] == "request"] == [
        ("request", "GET", "http", "/flaky", route, ["host"]),
        ("request", "POST", "http", "/flaky", route, ["host"]),
        ("request", "GET", "http", "/slow", {"route": "slow"}, ["host"]),
    ]
    assert [event[1] for event in outbound.seen if event[0] == "response"] == [200, 200, 504]
    seen_inbound = [event for event in inbound.seen if event[0] == "request"]
    assert [event[1:4] for event in seen_inbound] == [
        ("GET", "http", "/flaky"),
        ("GET", "http", "/flaky"),
        ("POST", "http", "/flaky"),
        ("POST", "http", "/flaky"),
        ("GET", "http", "/slow"),
    ]
    assert all("host" in event[5] and "l5d-orig-proto" not in event[5] for event in seen_inbound)


@pytest.fixture
async def one_write_app() -> AsyncIterator[tuple[Addr, list[str]]]:
    """An HTTP/1.1 app that writes each response, head and body, in one piece (as nginx does
    for small ones): the body is ``<method> <path>``, empty for ``/empty``, absent for ``HEAD``
    (whose head is GET's); it logs ``<method> <path> <body length>`` per request."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                method, path, _ = head.split(" ", 2)
                length = re.search(r"(?i)\r\ncontent-length: *(\d+)", head)
                body = await reader.readexactly(int(length.group(1)) if length else 0)
                seen.append(f"{method} {path} {len(body)}")
                payload = b"" if path == "/empty" else f"GET {path}".encode()
                out = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-App: one\r\n\r\n" % len(payload)
                writer.write(out if method == "HEAD" else out + payload)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield ("127.0.0.1", server.sockets[0].getsockname()[1]), seen
    finally:
        server.close()
        await server.wait_closed()


async def test_heads_seen_before_are_taken_again_as_the_parser_took_them(
    one_write_app: tuple[Addr, list[str]],
) -> None:
    """Repeated request heads (client side) and response heads (app side) skip the parser; what
    the client and the app get is the same as the first time, whatever comes around them."""
    addr, seen = one_write_app
    pair = await ProxyPair(addr, mtls=True, h2=True).start()
    client = await Client.open(pair)
    try:
        get = request("GET", "/a")
        for _ in range(3):
            client.send(get)
            rsp = await client.response()
            assert (rsp.status, rsp.body, rsp.headers["x-app"]) == (200, b"GET /a", "one")
        assert get in h1head.SEEN_REQUESTS  # the later two were taken without the parser
        assert any(k.startswith(b"HTTP/1.1 200 OK\r\n") for k in downgrade._seen_responses)
        # GET's response head again, for a HEAD: no body follows it.
        client.send(request("HEAD", "/a"))
        rsp = await client.response(head_request=True)
        assert (rsp.status, rsp.headers["content-length"]) == (200, "6")
        for _ in range(2):  # an empty body, twice
            client.send(request("GET", "/empty"))
            rsp = await client.response()
            assert (rsp.status, rsp.framing, rsp.body) == (200, "length", b"")
        # A seen head pipelined with another, then one with a body, then the seen one again.
        client.send(get + get)
        assert [(await client.response()).body for _ in range(2)] == [b"GET /a"] * 2
        client.send(request("POST", "/a", body=b"12345") + get)
        assert [(await client.response()).body for _ in range(2)] == [b"GET /a"] * 2
        assert seen == [
            *["GET /a 0"] * 3, "HEAD /a 0", *["GET /empty 0"] * 2,
            *["GET /a 0"] * 2, "POST /a 5", "GET /a 0",
        ]  # fmt: skip
    finally:
        client.close()
        await pair.close()


async def test_seen_and_new_heads_in_any_mix_and_pieces_reach_the_app_in_order(
    one_write_app: tuple[Addr, list[str]],
) -> None:
    """Requests drawn from a few heads (bodiless or not, pipelined or not, written whole or cut
    anywhere) are answered in order and reach the app as sent, whichever reads the proxy gets."""
    addr, seen = one_write_app
    pair = await ProxyPair(addr, mtls=True, h2=True).start()
    client = await Client.open(pair)
    pool = [
        ("GET", "/a", b""), ("GET", "/b", b""), ("HEAD", "/a", b""), ("GET", "/empty", b""),
        ("POST", "/a", b"xyz"), ("GET", "/a?q=1", b""),
    ]  # fmt: skip
    rnd = random.Random(1604)
    expected: list[str] = []
    try:
        for _ in range(80):
            batch = [rnd.choice(pool) for _ in range(rnd.randint(1, 3))]
            raw = b"".join(
                request(m, p, body=b) if m == "POST" else request(m, p) for m, p, b in batch
            )
            cut = rnd.randrange(1, len(raw) + 1)
            client.send(raw[:cut])
            await client.writer.drain()
            client.send(raw[cut:])
            for method, path, body in batch:
                rsp = await client.response(head_request=method == "HEAD")
                want = b"" if path == "/empty" else f"GET {path}".encode()
                assert rsp.status == 200
                assert rsp.body == (b"" if method == "HEAD" else want)
                assert rsp.headers["content-length"] == str(len(want))
                expected.append(f"{method} {path} {len(body)}")
        assert seen == expected
    finally:
        client.close()
        await pair.close()
