"""The destination service on a real gRPC server, fed by an in-memory platform.

The platform here is a test double: it holds a dict of objects and pushes WatchEvents to its
watchers. The real platforms are exercised by the local-runtime e2e tests.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from harness.loopback import reserved_port
from weft.api import destination_pb2 as pb
from weft.api import destination_pb2_grpc
from weft.controller.destination.addresses import MeshSettings
from weft.controller.destination.convert import tcp_address_to_str
from weft.controller.destination.service import DestinationService, serve
from weft.platform import EventType, PlatformError, TokenReview, WatchEvent

Obj = dict[str, Any]
ObjKey = tuple[str, str, str]

TIMEOUT = 5.0
NS = "emojivoto"
WEB = "web.emojivoto.svc.cluster.local:80"
WEB_IP = "10.96.0.30"
WEB_ID = "web.emojivoto.serviceaccount.identity.weft.cluster.local"


class MemoryPlatform:
    """An in-memory :class:`weft.platform.Platform` whose objects the test edits."""

    def __init__(self) -> None:
        self.objects: dict[ObjKey, Obj] = {}
        self.watchers: dict[str, list[asyncio.Queue[WatchEvent | PlatformError]]] = {}
        self.lists: Counter[str] = Counter()
        # Lists (and so watches) wait for this; clear it to hold the platform back.
        self.open = asyncio.Event()
        self.open.set()

    @staticmethod
    def key(obj: Obj) -> ObjKey:
        meta = obj["metadata"]
        return str(obj["kind"]), str(meta["namespace"]), str(meta["name"])

    async def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """The current objects of ``kind``."""
        await self.open.wait()
        self.lists[kind] += 1
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in sorted(self.objects.items())
            if k == kind and namespace in (None, ns)
        ]

    async def watch(self, kind: str, namespace: str | None = None) -> AsyncIterator[WatchEvent]:
        """ADDED for the current objects, then what :meth:`put` and :meth:`delete` push."""
        queue: asyncio.Queue[WatchEvent | PlatformError] = asyncio.Queue()
        self.watchers.setdefault(kind, []).append(queue)
        try:
            for obj in await self.list(kind, namespace):
                yield WatchEvent("ADDED", obj)
            while True:
                item = await queue.get()
                if isinstance(item, PlatformError):
                    raise item
                if namespace in (None, item.object["metadata"]["namespace"]):
                    yield item
        finally:
            self.watchers[kind].remove(queue)

    async def mint_token(self, namespace: str, service_account: str, pod: str) -> str:
        """Not used by the destination service."""
        raise PlatformError("no tokens here")

    async def verify_token(self, token: str) -> TokenReview:
        """Not used by the destination service."""
        return TokenReview(False, reason="no tokens here")

    def _push(self, kind: str, event: WatchEvent | PlatformError) -> None:
        for queue in self.watchers.get(kind, []):
            queue.put_nowait(event)

    def put(self, obj: Obj, *, notify: bool = True) -> None:
        """Create or replace ``obj`` (silently when ``notify`` is False)."""
        key = self.key(obj)
        change: EventType = "MODIFIED" if key in self.objects else "ADDED"
        self.objects[key] = copy.deepcopy(obj)
        if notify:
            self._push(key[0], WatchEvent(change, copy.deepcopy(obj)))

    def delete(self, kind: str, namespace: str, name: str, *, notify: bool = True) -> None:
        """Remove an object (silently when ``notify`` is False)."""
        obj = self.objects.pop((kind, namespace, name))
        if notify:
            self._push(kind, WatchEvent("DELETED", obj))

    def break_watches(self, kind: str) -> None:
        """Make the open watches of ``kind`` fail."""
        self._push(kind, PlatformError("watch broken"))


# -- objects ------------------------------------------------------------------------------


def web_pod(name: str, ip: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"app": "web", "pod-template-hash": "abc123"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "controller": True}
            ],
        },
        "spec": {
            "serviceAccountName": "web",
            "initContainers": [
                {"name": "linkerd-init"},
                {"name": "linkerd-proxy", "restartPolicy": "Always", "env": []},
            ],
            "containers": [{"name": "web-svc"}],
        },
        "status": {"phase": "Running", "podIP": ip},
    }


def web_service() -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "clusterIP": WEB_IP,
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def web_endpoints(*pods: tuple[str, str]) -> Obj:
    subset: Obj = {"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    if pods:
        subset["addresses"] = [
            {"ip": ip, "targetRef": {"kind": "Pod", "name": name, "namespace": NS}}
            for name, ip in pods
        ]
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": NS},
        "subsets": [subset],
    }


WEB_1 = ("web-1", "10.1.0.5")
WEB_2 = ("web-2", "10.1.0.6")
WEB_3 = ("web-3", "10.1.0.7")


def emojivoto() -> MemoryPlatform:
    platform = MemoryPlatform()
    platform.put(web_service())
    for name, ip in (WEB_1, WEB_2):
        platform.put(web_pod(name, ip))
    platform.put(web_endpoints(WEB_1, WEB_2))
    return platform


# -- reading updates ----------------------------------------------------------------------


def address_summary(addr: pb.WeightedAddr) -> tuple[str, int, dict[str, str], str, bool]:
    ip, port = tcp_address_to_str(addr.addr)
    identity = addr.tls_identity.dns_like_identity.name
    return ip, port, dict(addr.metric_labels), identity, addr.protocol_hint.HasField("h2")


def summary(update: pb.Update) -> tuple[Any, ...]:
    """An update as plain data: ``("add", addrs, labels)``, ``("remove", addrs)`` ..."""
    which = update.WhichOneof("update")
    if which == "add":
        addrs = [address_summary(a) for a in update.add.addrs]
        return "add", addrs, dict(update.add.metric_labels)
    if which == "remove":
        return "remove", [tcp_address_to_str(a) for a in update.remove.addrs]
    return "no_endpoints", update.no_endpoints.exists


def added(pod: tuple[str, str]) -> tuple[str, int, dict[str, str], str, bool]:
    name, ip = pod
    labels = {
        "control_plane_ns": "weft",
        "deployment": "web",
        "pod": name,
        "pod_template_hash": "abc123",
        "serviceaccount": "web",
    }
    return ip, 8080, labels, WEB_ID, True


SET_LABELS = {"namespace": NS, "service": "web"}


async def next_update(call: Any) -> tuple[Any, ...]:
    async with asyncio.timeout(TIMEOUT):
        message = await call.read()
    assert isinstance(message, pb.Update), f"stream ended: {message!r}"
    return summary(message)


async def eventually(check: Callable[[], object], what: str) -> None:
    """Wait until ``check()`` is truthy, failing after :data:`TIMEOUT`."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not check():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


@dataclass
class Running:
    platform: MemoryPlatform
    service: DestinationService
    stub: Any


@asynccontextmanager
async def running(platform: MemoryPlatform) -> AsyncIterator[Running]:
    """The service over ``platform`` on a gRPC server on 127.0.0.1, and a client stub."""
    service = DestinationService(platform, MeshSettings())
    await service.start()
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = destination_pb2_grpc.DestinationStub(channel)  # type: ignore[no-untyped-call]
    try:
        yield Running(platform, service, stub)
    finally:
        await channel.close()
        await server.stop(None)
        await service.stop()


# -- tests --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_get_streams_endpoint_changes() -> None:
    async with running(emojivoto()) as r:
        call = r.stub.Get(pb.GetDestination(scheme="k8s", path=WEB))
        assert await next_update(call) == ("add", [added(WEB_1), added(WEB_2)], SET_LABELS)

        r.platform.put(web_endpoints(WEB_2))
        assert await next_update(call) == ("remove", [("10.1.0.5", 8080)])

        r.platform.delete("Pod", NS, "web-1")
        r.platform.put(web_pod(*WEB_3))
        await eventually(lambda: (NS, "web-3") in r.service.state.pods, "pod web-3")
        r.platform.put(web_endpoints(WEB_2, WEB_3))
        assert await next_update(call) == ("add", [added(WEB_3)], SET_LABELS)

        r.platform.put(web_endpoints())
        assert await next_update(call) == ("remove", [("10.1.0.6", 8080), ("10.1.0.7", 8080)])
        assert await next_update(call) == ("no_endpoints", True)

        # Nothing else was queued: the next update is the one this change causes.
        r.platform.put(web_endpoints(WEB_2))
        assert await next_update(call) == ("add", [added(WEB_2)], SET_LABELS)
        call.cancel()


@pytest.mark.anyio
async def test_unknown_names_do_not_exist() -> None:
    async with running(emojivoto()) as r:
        for path in ("nope.emojivoto.svc.cluster.local:80", "example.com:443", "not a path"):
            call = r.stub.Get(pb.GetDestination(path=path))
            assert await next_update(call) == ("no_endpoints", False)
            call.cancel()


@pytest.mark.anyio
async def test_cluster_ip_gets_the_same_addresses_as_the_name() -> None:
    async with running(emojivoto()) as r:
        by_name = r.stub.Get(pb.GetDestination(path=WEB))
        by_ip = r.stub.Get(pb.GetDestination(path=f"{WEB_IP}:80"))
        first = await next_update(by_name)
        assert await next_update(by_ip) == first
        assert first == ("add", [added(WEB_1), added(WEB_2)], SET_LABELS)
        by_name.cancel()
        by_ip.cancel()


@pytest.mark.anyio
async def test_first_answer_waits_for_the_initial_state() -> None:
    platform = emojivoto()
    platform.open.clear()
    async with running(platform) as r:
        call = r.stub.Get(pb.GetDestination(path=WEB))
        first = asyncio.create_task(next_update(call))
        await eventually(lambda: r.service.open_streams == 1, "the Get stream")
        assert not r.service.ready.is_set()
        assert not first.done()
        platform.open.set()
        assert await first == ("add", [added(WEB_1), added(WEB_2)], SET_LABELS)
        call.cancel()


@pytest.mark.anyio
async def test_broken_watch_is_reestablished_from_a_fresh_list() -> None:
    async with running(emojivoto()) as r:
        call = r.stub.Get(pb.GetDestination(path=WEB))
        assert (await next_update(call))[0] == "add"
        lists = r.platform.lists["Endpoints"]
        r.platform.break_watches("Endpoints")
        # A deletion the service misses while its watch is down; the fresh list shows it.
        r.platform.delete("Endpoints", NS, "web", notify=False)
        assert await next_update(call) == ("remove", [("10.1.0.5", 8080), ("10.1.0.6", 8080)])
        assert await next_update(call) == ("no_endpoints", True)
        assert r.platform.lists["Endpoints"] > lists
        r.platform.put(web_endpoints(WEB_1, WEB_2))
        assert await next_update(call) == ("add", [added(WEB_1), added(WEB_2)], SET_LABELS)
        call.cancel()


# -- GetProfile ---------------------------------------------------------------------------

WEB_FQN = "web.emojivoto.svc.cluster.local"
# How long a stream must stay quiet to count as having sent nothing.
QUIET = 0.5


def web_profile(route: str, *, namespace: str = NS) -> Obj:
    return {
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": WEB_FQN, "namespace": namespace},
        "spec": {
            "routes": [
                {
                    "name": route,
                    "condition": {"method": "GET", "pathRegex": "/api/.*"},
                    "responseClasses": [{"condition": {"status": {"min": 500}}, "isFailure": True}],
                    "isRetryable": True,
                }
            ]
        },
    }


def web_split() -> Obj:
    return {
        "apiVersion": "split.smi-spec.io/v1alpha1",
        "kind": "TrafficSplit",
        "metadata": {"name": "web-split", "namespace": NS},
        "spec": {
            "service": "web",
            "backends": [
                {"service": "web-v1", "weight": 1},
                {"service": "web-v2", "weight": "500m"},
            ],
        },
    }


class ProfileStream:
    """A ``GetProfile`` call whose messages a background task collects, so waiting can time out."""

    def __init__(self, stub: Any, path: str, context_token: str = "") -> None:
        self.call = stub.GetProfile(pb.GetDestination(path=path, context_token=context_token))
        self.messages: asyncio.Queue[pb.DestinationProfile] = asyncio.Queue()
        self.task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for message in self.call:
            self.messages.put_nowait(message)

    async def next(self) -> pb.DestinationProfile:
        async with asyncio.timeout(TIMEOUT):
            return await self.messages.get()

    async def assert_quiet(self) -> None:
        """Nothing arrives for :data:`QUIET` seconds."""
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.messages.get(), QUIET)

    async def close(self) -> None:
        self.call.cancel()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def profile_summary(profile: pb.DestinationProfile) -> tuple[str, list[str], list[tuple[str, int]]]:
    """A profile as (fully qualified name, route names, weighted overrides)."""
    routes = [r.metrics_labels["route"] for r in profile.routes]
    overrides = [(d.authority, d.weight) for d in profile.dst_overrides]
    return profile.fully_qualified_name, routes, overrides


DEFAULT_BUDGET = pb.RetryBudget(
    retry_ratio=0.2, min_retries_per_second=10, ttl=duration_pb2.Duration(seconds=10)
)
SPLIT_OVERRIDES = [
    ("web-v1.emojivoto.svc.cluster.local.:80", 10_000),
    ("web-v2.emojivoto.svc.cluster.local.:80", 5_000),
]


@pytest.mark.anyio
async def test_get_profile_follows_service_profiles_and_traffic_splits() -> None:
    async with running(emojivoto()) as r:
        streams = [ProfileStream(r.stub, WEB), ProfileStream(r.stub, f"{WEB_IP}:80")]
        try:
            for stream in streams:
                first = await stream.next()
                assert first == pb.DestinationProfile(
                    retry_budget=DEFAULT_BUDGET, fully_qualified_name=WEB_FQN
                )

            r.platform.put(web_profile("GET /api"))
            for stream in streams:
                profile = await stream.next()
                assert profile_summary(profile) == (WEB_FQN, ["GET /api"], [])
                (route,) = profile.routes
                assert route.is_retryable
                assert route.timeout == duration_pb2.Duration(seconds=10)
                assert route.condition.WhichOneof("match") == "all"
                assert [c.is_failure for c in route.response_classes] == [True]

            # Each stream got exactly one message for that change: the next one is this one's.
            r.platform.put(web_split())
            for stream in streams:
                profile = await stream.next()
                assert profile_summary(profile) == (WEB_FQN, ["GET /api"], SPLIT_OVERRIDES)

            # Changes that leave the profile as it is send nothing.
            r.platform.put(web_profile("GET /api"))
            r.platform.put(web_split())
            r.platform.put(web_endpoints(WEB_1))
            await asyncio.gather(*(stream.assert_quiet() for stream in streams))

            r.platform.delete("ServiceProfile", NS, WEB_FQN)
            for stream in streams:
                assert profile_summary(await stream.next()) == (WEB_FQN, [], SPLIT_OVERRIDES)
            r.platform.delete("TrafficSplit", NS, "web-split")
            for stream in streams:
                assert await stream.next() == first
        finally:
            for stream in streams:
                await stream.close()


@pytest.mark.anyio
async def test_get_profile_of_an_unknown_destination_is_an_anonymous_default() -> None:
    platform = emojivoto()
    platform.put(web_profile("GET /api"))
    async with running(platform) as r:
        for path in ("example.com:80", "nope.emojivoto.svc.cluster.local:80", "10.1.0.5:8080"):
            stream = ProfileStream(r.stub, path, "ns:emojivoto")
            try:
                assert await stream.next() == pb.DestinationProfile(retry_budget=DEFAULT_BUDGET)
                assert not stream.task.done()
            finally:
                await stream.close()


@pytest.mark.anyio
async def test_client_namespace_profile_takes_precedence() -> None:
    platform = emojivoto()
    platform.put(web_profile("server's"))
    platform.put(web_profile("client's", namespace="vote-bot"))
    client_tokens = ("ns:vote-bot", '{"ns":"vote-bot","nodeName":"node-1","pod":"vote-bot-1"}')
    async with running(platform) as r:
        streams = {token: ProfileStream(r.stub, WEB, token) for token in (*client_tokens, "")}
        try:
            for token, stream in streams.items():
                route = "server's" if token == "" else "client's"
                assert profile_summary(await stream.next()) == (WEB_FQN, [route], [])
            r.platform.delete("ServiceProfile", "vote-bot", WEB_FQN)
            for token in client_tokens:
                profile = await streams[token].next()
                assert profile_summary(profile) == (WEB_FQN, ["server's"], [])
        finally:
            for stream in streams.values():
                await stream.close()


@pytest.mark.anyio
async def test_serve_runs_until_the_server_stops() -> None:
    platform = emojivoto()
    with reserved_port() as port:  # gRPC binds it too (SO_REUSEPORT) and listens
        server = await serve(platform, MeshSettings(), ("127.0.0.1", port), None)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = destination_pb2_grpc.DestinationStub(channel)  # type: ignore[no-untyped-call]
            call = stub.Get(pb.GetDestination(path=WEB))
            assert (await next_update(call))[0] == "add"
            call.cancel()
    finally:
        await server.stop(None)
    # The service stops with the server: its watches are closed.
    await eventually(lambda: not any(platform.watchers.values()), "the watches to close")
