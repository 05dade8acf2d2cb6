"""Tap on a real proxy process: ``Tap/Observe`` over mTLS on its control port, and the events of
real HTTP/1.1 (aiohttp) and gRPC (grpcio) requests through it.

The identity service runs in-process on loopback (``running`` from harness/identity_service.py) and
certifies the proxy (as ``web``) and tap clients of any identity. The proxy forwards inbound to an
aiohttp backend and outbound to a grpcio backend, so both directions are tapped. The proxy binds
its control port to port 0 and the test reads the bound port from its log.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
from aiohttp import web

from harness.identity_service import (
    IDENTITY_SVC,
    NS,
    TAP,
    VOTING,
    WEB,
    Running,
    client_certificate,
    eventually,
    running,
)
from harness.loopback import LoopbackProxy
from weft.api import http_types_pb2, tap_pb2, tap_pb2_grpc
from weft.controller.tap.query import TapQuery
from weft.controller.tap.session import TapFailed, TapSession, TlsMaterial
from weft.controller.tap.targets import TapTarget
from weft.viz.resources import Resource

TIMEOUT = 15.0
Match = tap_pb2.ObserveRequest.Match
TapEvent = tap_pb2.TapEvent
HELLO = b"hello, tap\n"
LOCALHOST = 0x7F000001  # 127.0.0.1 as TcpAddress holds it


# -- backends -------------------------------------------------------------------------------


async def _hello(request: web.Request) -> web.Response:
    return web.Response(body=HELLO, headers={"x-backend": "h1"})


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"a" * 100)
    await response.write(b"b" * 50)
    await response.write_eof()
    return response


async def _echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


async def _fail(request: web.Request) -> web.Response:
    return web.Response(status=503, body=b"no\n")


@asynccontextmanager
async def h1_backend() -> AsyncIterator[int]:
    """An aiohttp app on a port it bound itself."""
    app = web.Application()
    app.router.add_get("/hello{tail:.*}", _hello)
    app.router.add_get("/stream", _stream)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/fail", _fail)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


class _Echo:
    """``weft.test.Echo``: Say echoes, Fail fails, Slow says it ``arrived`` and waits for
    ``release``."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def say(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    async def fail(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(grpc.StatusCode.NOT_FOUND, "nothing here")
        raise AssertionError("abort returns no more")

    async def slow(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.arrived.set()
        await self.release.wait()
        return request


@asynccontextmanager
async def grpc_backend() -> AsyncIterator[tuple[int, _Echo]]:
    """A grpcio server with raw-bytes methods, on a port it bound itself."""
    echo = _Echo()
    handlers = {
        "Say": grpc.unary_unary_rpc_method_handler(echo.say),
        "Fail": grpc.unary_unary_rpc_method_handler(echo.fail),
        "Slow": grpc.unary_unary_rpc_method_handler(echo.slow),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("weft.test.Echo", handlers),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port, echo
    finally:
        echo.release.set()
        await server.stop(0)


# -- the proxy and tap clients --------------------------------------------------------------


@dataclass
class Mesh:
    """The running pieces of one test."""

    identity: Running
    proxy: LoopbackProxy
    control: int
    h1_port: int
    grpc_port: int
    echo: _Echo
    http: aiohttp.ClientSession
    app_channel: grpc.aio.Channel
    tmp_path: Path

    def url(self, path: str) -> str:
        """``path`` through the proxy's inbound listener (to the HTTP/1.1 backend)."""
        return f"http://127.0.0.1:{self.proxy.inbound}{path}"

    async def grpc_call(self, method: str, message: bytes, timeout: float = TIMEOUT) -> bytes:
        """A unary call through the proxy's outbound listener (to the gRPC backend)."""
        call = self.app_channel.unary_unary(f"/weft.test.Echo/{method}")
        return await call(message, timeout=timeout)  # type: ignore[no-any-return]

    async def gauge(self) -> float:
        """``tap_observe_streams`` from the proxy's /metrics."""
        async with self.http.get(self.proxy.admin_url("/metrics")) as rsp:
            text = await rsp.text()
        found = re.search(r"^tap_observe_streams (\S+)$", text, re.M)
        assert found, "no tap_observe_streams in /metrics"
        return float(found.group(1))

    async def wait_gauge(self, value: float) -> None:
        """Wait until ``value`` taps are being served."""
        await eventually(
            lambda: _equals(self.gauge(), value), f"tap_observe_streams {value}", TIMEOUT
        )

    async def tap_channel(
        self, identity: str | None = TAP, key_and_chain: tuple[bytes, bytes] | None = None
    ) -> grpc.aio.Channel:
        """An mTLS channel to the control port with a certificate for ``identity`` (None: no
        client certificate), verifying the proxy as ``web``."""
        if identity is not None and key_and_chain is None:
            key_and_chain = await client_certificate(self.identity, identity)
        key, chain = key_and_chain or (None, None)
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.identity.anchors_pem, private_key=key, certificate_chain=chain
        )
        options = [("grpc.ssl_target_name_override", WEB)]
        return grpc.aio.secure_channel(f"127.0.0.1:{self.control}", creds, options=options)


async def _equals(value: Awaitable[float], expected: float) -> bool:
    return await value == expected


def refused_port() -> socket.socket:
    """A bound TCP socket that does not listen: connections to its port are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def mesh(
    tmp_path: Path, inbound_forward: tuple[str, int] | None = None
) -> AsyncIterator[Mesh]:
    """Identity service, backends and a proxy with identity and tap on, until the block ends."""
    async with AsyncExitStack() as stack:
        r = await stack.enter_async_context(running(tmp_path))
        h1_port = await stack.enter_async_context(h1_backend())
        grpc_port, echo = await stack.enter_async_context(grpc_backend())
        token_file = tmp_path / "web-token"
        token_file.write_bytes(r.token(NS, "web"))
        proxy = LoopbackProxy(
            inbound_forward or ("127.0.0.1", h1_port),
            tmp_path,
            host="127.0.0.1",
            LINKERD2_PROXY_OUTBOUND_FORWARD=f"127.0.0.1:{grpc_port}",
            LINKERD2_PROXY_IDENTITY_LOCAL_NAME=WEB,
            LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS=r.anchors_pem.decode(),
            LINKERD2_PROXY_IDENTITY_TOKEN_FILE=str(token_file),
            LINKERD2_PROXY_IDENTITY_SVC_ADDR=f"127.0.0.1:{r.port}",
            LINKERD2_PROXY_IDENTITY_SVC_NAME=IDENTITY_SVC,
            LINKERD2_PROXY_CONTROL_LISTEN_ADDR="127.0.0.1:0",
            LINKERD2_PROXY_TAP_SVC_NAME=TAP,
            LINKERD2_PROXY_LOG="warn,weft=info",
        )
        del proxy.env["LINKERD2_PROXY_IDENTITY_DISABLED"]
        stack.callback(proxy.stop)
        # The proxy certifies with the identity service on this loop: wait for it off the loop.
        await asyncio.to_thread(proxy.start)
        bound: list[int] = []

        async def control_port() -> bool:
            found = re.search(r"tap server on 127\.0\.0\.1:(\d+)", proxy.log_path.read_text())
            if found:
                bound.append(int(found.group(1)))
            return bool(found)

        await eventually(control_port, "the proxy's tap server", TIMEOUT)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        channel = await stack.enter_async_context(
            grpc.aio.insecure_channel(f"127.0.0.1:{proxy.outbound}")
        )
        yield Mesh(r, proxy, bound[0], h1_port, grpc_port, echo, http, channel, tmp_path)


class Observer:
    """One Observe call, read in the background."""

    def __init__(self, channel: grpc.aio.Channel, request: tap_pb2.ObserveRequest) -> None:
        stub = tap_pb2_grpc.TapStub(channel)  # type: ignore[no-untyped-call]
        self.call: Any = stub.Observe(request)
        self.events: list[TapEvent] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.call:
            self.events.append(event)

    async def ended(self) -> grpc.StatusCode:
        """Wait for the stream to end; its status."""
        async with asyncio.timeout(TIMEOUT):
            await self.task
        code: grpc.StatusCode = await self.call.code()
        return code

    def requests(self) -> dict[tuple[int, int], list[TapEvent]]:
        """Events by stream id, in arrival order."""
        out: dict[tuple[int, int], list[TapEvent]] = {}
        for event in self.events:
            sid = part(event).id
            out.setdefault((sid.base, sid.stream), []).append(event)
        return out


def part(event: TapEvent) -> Any:
    """The RequestInit, ResponseInit or ResponseEnd of ``event``."""
    kind = event.http.WhichOneof("event")
    assert kind is not None
    return getattr(event.http, kind)


def kinds(events: list[TapEvent]) -> list[str]:
    return [str(e.http.WhichOneof("event")) for e in events]


def seconds(d: Any) -> float:
    return float(d.seconds + d.nanos / 1e9)


def observe_all(limit: int, match: Match | None = None, extract: bool = False) -> Any:
    request = tap_pb2.ObserveRequest(limit=limit)
    if match is not None:
        request.match.CopyFrom(match)
    if extract:
        request.extract.http.headers.SetInParent()
    return request


def http_match(**kwargs: Any) -> Match:
    return Match(http=Match.Http(**kwargs))


def prefix(text: str) -> Match.Http.StringMatch:
    return Match.Http.StringMatch(prefix=text)


# -- tests ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_events_of_http1_and_grpc_requests(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m:
        assert await m.gauge() == 0
        channel = await m.tap_channel()
        observer = Observer(channel, observe_all(5))
        await m.wait_gauge(1)

        async with m.http.get(m.url("/hello")) as rsp:
            assert rsp.status == 200 and await rsp.read() == HELLO
        async with m.http.get(m.url("/stream")) as rsp:
            assert rsp.status == 200 and len(await rsp.read()) == 150
        assert await m.grpc_call("Say", b"ping" * 10) == b"ping" * 10
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await m.grpc_call("Fail", b"x")
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        slow = m.app_channel.unary_unary("/weft.test.Echo/Slow")(b"x")
        async with asyncio.timeout(TIMEOUT):
            await m.echo.arrived.wait()
        slow.cancel()  # the client gives up: RST_STREAM(CANCEL)
        with pytest.raises(asyncio.CancelledError):
            await slow

        assert await observer.ended() == grpc.StatusCode.OK  # the limit of 5 was reached
        await m.wait_gauge(0)
        await channel.close()

    requests = observer.requests()
    assert len(requests) == 5
    assert len({base for base, _ in requests}) == 1
    by_path = {part(events[0]).path: events for events in requests.values()}
    assert set(by_path) == {
        "/hello",
        "/stream",
        "/weft.test.Echo/Say",
        "/weft.test.Echo/Fail",
        "/weft.test.Echo/Slow",
    }
    for path, events in by_path.items():
        expected = (
            ["request_init", "response_end"]
            if path.endswith("Slow")
            else [
                "request_init",
                "response_init",
                "response_end",
            ]
        )
        assert kinds(events) == expected, path
        init, end = part(events[0]), part(events[-1])
        assert seconds(end.since_request_init) > 0
        if len(events) == 3:
            rsp = part(events[1])
            assert 0 < seconds(rsp.since_request_init) <= seconds(end.since_request_init)
            assert seconds(end.since_response_init) > 0
            assert rsp.http_status == 200
        inbound = not path.startswith("/weft.test")
        for event in events:
            assert event.proxy_direction == (TapEvent.INBOUND if inbound else TapEvent.OUTBOUND)
            assert event.source.ip.ipv4 == LOCALHOST and event.source.port > 0
            assert event.destination.ip.ipv4 == LOCALHOST
            assert event.destination.port == (m.h1_port if inbound else m.grpc_port)
            assert dict(event.source_meta.labels) == {
                "tls": "no_identity",
                "no_tls_reason": "loopback",
            }
            reason = "loopback" if inbound else "not_provided_by_service_discovery"
            assert dict(event.destination_meta.labels) == {
                "tls": "no_identity",
                "no_tls_reason": reason,
            }
            assert dict(event.route_meta.labels) == {}
        port = m.proxy.inbound if inbound else m.proxy.outbound
        assert init.authority == f"127.0.0.1:{port}"
        assert init.scheme == http_types_pb2.Scheme(registered=http_types_pb2.Scheme.HTTP)
        method = http_types_pb2.HttpMethod.GET if inbound else http_types_pb2.HttpMethod.POST
        assert init.method == http_types_pb2.HttpMethod(registered=method)
        assert len(init.headers.headers) == 0  # not asked for

    hello_end = part(by_path["/hello"][-1])
    assert hello_end.response_bytes == len(HELLO)
    assert not hello_end.HasField("eos")
    assert part(by_path["/stream"][-1]).response_bytes == 150
    say_end = part(by_path["/weft.test.Echo/Say"][-1])
    assert say_end.response_bytes == 5 + 40  # the gRPC prefix and the message
    assert say_end.eos.WhichOneof("end") == "grpc_status_code" and say_end.eos.grpc_status_code == 0
    fail_end = part(by_path["/weft.test.Echo/Fail"][-1])
    assert fail_end.eos.grpc_status_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert fail_end.response_bytes == 0
    slow_end = part(by_path["/weft.test.Echo/Slow"][-1])
    assert slow_end.eos.WhichOneof("end") == "reset_error_code"
    assert slow_end.eos.reset_error_code == 8  # CANCEL


@pytest.mark.anyio
async def test_match_filters_select_only_their_requests(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m:
        channel = await m.tap_channel()
        hello_gets = Match(
            all=Match.Seq(
                matches=[
                    http_match(method=http_types_pb2.HttpMethod(registered="GET")),
                    http_match(path=prefix("/hello")),
                ]
            )
        )
        to_grpc = Match(
            destination=Match.Tcp(ports=Match.Tcp.PortRange(min=m.grpc_port, max=m.grpc_port))
        )
        hellos = Observer(channel, observe_all(2, hello_gets))
        grpcs = Observer(channel, observe_all(1, to_grpc))
        await m.wait_gauge(2)

        async with m.http.post(m.url("/echo"), data=b"hello") as rsp:
            assert rsp.status == 200
        assert await m.grpc_call("Say", b"x") == b"x"
        async with m.http.get(m.url("/hello")) as rsp:
            assert rsp.status == 200
        async with m.http.get(m.url("/goodbye")) as rsp:
            assert rsp.status == 404
        async with m.http.get(m.url("/hello/again?q=1")) as rsp:
            assert rsp.status == 200

        assert await hellos.ended() == grpc.StatusCode.OK
        assert await grpcs.ended() == grpc.StatusCode.OK
        await m.wait_gauge(0)
        # Nobody taps any more: requests go through untouched.
        async with m.http.get(m.url("/hello")) as rsp:
            assert rsp.status == 200
        await channel.close()

    hello_requests = hellos.requests()
    paths = sorted(part(events[0]).path for events in hello_requests.values())
    assert paths == ["/hello", "/hello/again"]  # the query is not part of the path
    assert {kinds(events)[-1] for events in hello_requests.values()} == {"response_end"}
    grpc_requests = grpcs.requests()
    assert [part(events[0]).path for events in grpc_requests.values()] == ["/weft.test.Echo/Say"]
    bases = {base for base, _ in hello_requests} | {base for base, _ in grpc_requests}
    assert len(bases) == 2  # each Observe call has its own id
    assert sorted(stream for _, stream in hello_requests) == [0, 1]


@pytest.mark.anyio
async def test_extract_headers_and_trailers(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m:
        channel = await m.tap_channel()
        observer = Observer(channel, observe_all(2, extract=True))
        await m.wait_gauge(1)
        async with m.http.get(m.url("/hello"), headers={"X-Tap-Test": "yes"}) as rsp:
            assert rsp.status == 200
        assert await m.grpc_call("Say", b"x") == b"x"
        assert await observer.ended() == grpc.StatusCode.OK
        await channel.close()

    def headers(h: Any) -> dict[str, bytes]:
        return {header.name: header.value for header in h.headers}

    by_path = {part(events[0]).path: events for events in observer.requests().values()}
    h1 = by_path["/hello"]
    assert headers(part(h1[0]).headers)["x-tap-test"] == b"yes"
    assert headers(part(h1[1]).headers)["x-backend"] == b"h1"
    assert not part(h1[2]).trailers.headers
    grpc_events = by_path["/weft.test.Echo/Say"]
    request_headers = headers(part(grpc_events[0]).headers)
    assert request_headers["content-type"] == b"application/grpc"
    assert not any(name.startswith(":") for name in request_headers)
    assert headers(part(grpc_events[1]).headers)["content-type"] == b"application/grpc"
    assert headers(part(grpc_events[2]).trailers)["grpc-status"] == b"0"


@pytest.mark.anyio
async def test_requests_the_proxy_answers_itself_are_tapped(tmp_path: Path) -> None:
    closed = refused_port()
    port = closed.getsockname()[1]
    try:
        async with mesh(tmp_path, inbound_forward=("127.0.0.1", port)) as m:
            channel = await m.tap_channel()
            observer = Observer(channel, observe_all(1))
            await m.wait_gauge(1)
            async with m.http.get(m.url("/hello")) as rsp:
                assert rsp.status == 502
                assert "refused" in rsp.headers["l5d-proxy-error"]
            assert await observer.ended() == grpc.StatusCode.OK
            await channel.close()
    finally:
        closed.close()
    [events] = observer.requests().values()
    assert kinds(events) == ["request_init", "response_init", "response_end"]
    assert part(events[1]).http_status == 502
    assert events[0].destination.port == port
    assert part(events[2]).response_bytes == 0


@pytest.mark.anyio
async def test_inbound_mtls_client_is_named_in_the_source_metadata(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m:
        key, chain = await client_certificate(m.identity, VOTING)
        (tmp_path / "voting.pem").write_bytes(chain + key)
        ctx = ssl.create_default_context(cadata=m.identity.anchors_pem.decode())
        ctx.load_cert_chain(tmp_path / "voting.pem")
        channel = await m.tap_channel()
        observer = Observer(channel, observe_all(1))
        await m.wait_gauge(1)
        url = f"https://127.0.0.1:{m.proxy.inbound}/hello"
        async with m.http.get(url, ssl=ctx, server_hostname=WEB) as rsp:
            assert rsp.status == 200 and await rsp.read() == HELLO
        assert await observer.ended() == grpc.StatusCode.OK
        await channel.close()
    [events] = observer.requests().values()
    for event in events:
        assert dict(event.source_meta.labels) == {"tls": "true", "client_id": VOTING}


@pytest.mark.anyio
async def test_another_identity_is_denied(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m:
        channel = await m.tap_channel(VOTING)
        observer = Observer(channel, observe_all(10))
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await observer.ended()
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert denied.value.details() == f"tap: client identity {VOTING} is not {TAP}"
        assert observer.events == []
        assert await m.gauge() == 0
        # Any method: the identity is checked first.
        nope = channel.unary_stream("/io.linkerd.proxy.tap.Tap/Nope")
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            async for _ in nope(b""):
                pass
        assert unknown.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await channel.close()
        assert "refused a call from" in m.proxy.log_path.read_text()


@pytest.mark.anyio
async def test_unknown_method_is_unimplemented(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m:
        channel = await m.tap_channel()
        nope = channel.unary_stream("/io.linkerd.proxy.tap.Tap/Nope")
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            async for _ in nope(b""):
                pass
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        bad = Observer(channel, tap_pb2.ObserveRequest(limit=0))
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await bad.ended()
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        negated = Match()
        getattr(negated, "not").SetInParent()  # "not" of an empty match
        empty = Observer(channel, tap_pb2.ObserveRequest(limit=1, match=negated))
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await empty.ended()
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "match.not: empty match" in (invalid.value.details() or "")
        await channel.close()


@pytest.mark.anyio
async def test_a_client_without_a_certificate_fails_the_handshake(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m:
        channel = await m.tap_channel(None)
        observer = Observer(channel, observe_all(10))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await observer.ended()
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await m.gauge() == 0
        await channel.close()

        async def refused() -> bool:
            return "tap server: refused TLS from" in m.proxy.log_path.read_text()

        await eventually(refused, "the proxy to log the refused handshake", TIMEOUT)


@pytest.mark.anyio
async def test_cancelling_the_client_frees_the_tap(tmp_path: Path) -> None:
    async with mesh(tmp_path) as m:
        channel = await m.tap_channel()
        observer = Observer(channel, observe_all(1000))
        await m.wait_gauge(1)
        async with m.http.get(m.url("/hello")) as rsp:
            assert rsp.status == 200

        async def reported() -> bool:
            return len(observer.events) == 3

        await eventually(reported, "the request's three events", TIMEOUT)
        observer.call.cancel()
        await m.wait_gauge(0)
        async with m.http.get(m.url("/hello")) as rsp:
            assert rsp.status == 200
        assert len(observer.events) == 3
        await channel.close()


# -- the tap controller's session against the real proxy ------------------------------------


def session_for(m: Mesh, key_and_chain: tuple[bytes, bytes], max_rps: float) -> TapSession:
    """A tap controller session for the proxy of ``m``, dialling with ``key_and_chain``."""
    key, chain = key_and_chain
    target = TapTarget(NS, "web-1", "127.0.0.1", m.control, WEB)
    query = TapQuery(Resource("deployment", "web", NS), path="/hello", max_rps=max_rps)
    index = {"127.0.0.1": {"pod": "web-1", "namespace": NS, "deployment": "web"}}
    return TapSession([target], query, TlsMaterial(chain, key, m.identity.anchors_pem), index)


@pytest.mark.anyio
async def test_the_controllers_session_streams_a_proxys_events_with_pod_labels(
    tmp_path: Path,
) -> None:
    async with mesh(tmp_path) as m:
        session = session_for(m, await client_certificate(m.identity, TAP), max_rps=100)
        assert await session.start() == []
        events = session.events()
        try:
            async with m.http.get(m.url("/hello")) as rsp:
                assert rsp.status == 200
            async with asyncio.timeout(TIMEOUT):
                first = await anext(events)
        finally:
            await session.close()
        assert first["http"]["requestInit"]["path"] == "/hello"  # protobuf JSON mapping
        assert first["proxyDirection"] == "INBOUND"
        assert first["destinationMeta"]["labels"]["deployment"] == "web"
        await m.wait_gauge(0)  # closing the session ended the proxy's stream


@pytest.mark.anyio
async def test_a_proxy_refusing_the_controller_fails_the_session_with_its_reason(
    tmp_path: Path,
) -> None:
    async with mesh(tmp_path) as m:
        session = session_for(m, await client_certificate(m.identity, VOTING), max_rps=100)
        with pytest.raises(TapFailed) as failed:
            await session.start()
        message = str(failed.value)
        assert message.startswith(f"no proxy accepted the tap: pod {NS}/web-1: PERMISSION_DENIED")
        assert VOTING in message
        assert await m.gauge() == 0
