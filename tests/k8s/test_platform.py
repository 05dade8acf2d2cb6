"""The control plane on the Kubernetes platform, against a real API server and controller-manager.

The destination and identity services run in the test process on real gRPC servers (ports
bound at 0) with :class:`~weft.k8s.platform.KubernetesPlatform`; a grpcio client reads them.
The platform reaches the API server through a relay, so a test can cut its watch connections
or hold it away while etcd is compacted past its resourceVersion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509

from tests.k8s.cluster import API_PORT, KubeCluster
from tests.k8s.relay import Relay
from weft.api import destination_pb2 as pb
from weft.api import destination_pb2_grpc, identity_pb2, identity_pb2_grpc
from weft.controller.destination.addresses import MeshSettings
from weft.controller.destination.convert import tcp_address_to_str
from weft.controller.destination.service import DestinationService
from weft.controller.identity.authority import Authority, AuthorityConfig
from weft.controller.identity.service import IdentityService
from weft.identity import certs
from weft.k8s.install.crds import service_profile_crd, traffic_split_crd
from weft.k8s.platform import KubernetesPlatform
from weft.platform import PlatformError

pytestmark = [pytest.mark.k8s, pytest.mark.anyio]

Obj = dict[str, Any]
TIMEOUT = 30.0


def deployment(namespace: str, name: str, replicas: int, account: str = "default") -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": account,
                    "containers": [{"name": "app", "image": "weft:test", "command": ["true"]}],
                },
            },
        },
    }


def service(namespace: str, name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


async def pods_of(kube: KubeCluster, ns: str, app: str, count: int) -> list[str]:
    """The names of ``count`` pods of ``app`` once the ReplicaSet made and the scheduler bound
    them (oldest first)."""

    def found() -> list[str]:
        pods = kube.kubectl_json("get", "pods", "-n", ns, "-l", f"app={app}")["items"]
        bound = [
            p
            for p in pods
            if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
        ]
        bound.sort(key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
        return [p["metadata"]["name"] for p in bound] if len(bound) >= count else []

    async with asyncio.timeout(TIMEOUT):
        while not (names := await asyncio.to_thread(found)):
            await asyncio.sleep(0.2)
    return names


@dataclass
class Endpoints:
    """What one Destination.Get stream has said so far: the current addresses."""

    addrs: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    seen: set[str] = field(default_factory=set)

    def apply(self, update: pb.Update) -> None:
        which = update.WhichOneof("update")
        if which == "add":
            for addr in update.add.addrs:
                ip, _ = tcp_address_to_str(addr.addr)
                self.addrs.add(ip)
                self.seen.add(ip)
        elif which == "remove":
            for raw in update.remove.addrs:
                self.addrs.discard(tcp_address_to_str(raw)[0])
        else:
            self.addrs.clear()
        self.changed.set()

    async def wait(self, expected: set[str], what: str) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                while self.addrs != expected:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            pytest.fail(f"{what}: Get says {sorted(self.addrs)}, expected {sorted(expected)}")


@contextlib.asynccontextmanager
async def destination(kubeconfig: Path) -> AsyncIterator[tuple[Any, KubernetesPlatform]]:
    """A destination service on the Kubernetes platform, and a stub for it."""
    platform = KubernetesPlatform(str(kubeconfig))
    service = DestinationService(platform, MeshSettings())
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await service.start()
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield destination_pb2_grpc.DestinationStub(channel), platform  # type: ignore[no-untyped-call]
    finally:
        await channel.close()
        await server.stop(0)
        await service.stop()
        await platform.close()


@contextlib.asynccontextmanager
async def following(stub: Any, path: str) -> AsyncIterator[Endpoints]:
    """A Get stream for ``path`` whose updates a background task applies."""
    state = Endpoints()
    call = stub.Get(pb.GetDestination(path=path))

    async def read() -> None:
        async for update in call:
            state.apply(update)

    task = asyncio.create_task(read())
    try:
        yield state
    finally:
        call.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def relayed(kube: KubeCluster) -> AsyncIterator[tuple[Relay, Path]]:
    relay = Relay((kube.address, API_PORT))
    await relay.start()
    try:
        yield relay, kube.kubeconfig_via(f"https://127.0.0.1:{relay.port}", f"relay{relay.port}")
    finally:
        await relay.close()


async def test_get_sees_exactly_the_ready_pods_then_each_add_and_remove(
    kube: KubeCluster,
) -> None:
    ns = "dst-ready"
    await asyncio.to_thread(
        kube.apply, [namespace(ns), service(ns, "web"), deployment(ns, "web", 3)]
    )
    first, second, third = await pods_of(kube, ns, "web", 3)
    async with (
        relayed(kube) as (_, kubeconfig),
        destination(kubeconfig) as (stub, _),
        following(stub, f"web.{ns}.svc.cluster.local:80") as get,
    ):
        await asyncio.to_thread(kube.mark_pod, ns, first, "192.0.2.11")
        await asyncio.to_thread(kube.mark_pod, ns, second, "192.0.2.12")
        await asyncio.to_thread(kube.mark_pod, ns, third, "192.0.2.13", False)
        await get.wait({"192.0.2.11", "192.0.2.12"}, "two ready pods")
        await asyncio.to_thread(kube.mark_pod, ns, third, "192.0.2.13")
        await get.wait({"192.0.2.11", "192.0.2.12", "192.0.2.13"}, "the third turned ready")
        await asyncio.to_thread(kube.kubectl, "delete", "pod", first, "-n", ns, "--wait=false")
        await get.wait({"192.0.2.12", "192.0.2.13"}, "the first pod deleted")
    # The not-ready pod was never announced before it turned ready, and only these three were.
    assert get.seen == {"192.0.2.11", "192.0.2.12", "192.0.2.13"}


async def test_watches_survive_cut_connections_and_compaction(kube: KubeCluster) -> None:
    ns = "dst-resilient"
    await asyncio.to_thread(
        kube.apply, [namespace(ns), service(ns, "api"), deployment(ns, "api", 3)]
    )
    first, second, third = await pods_of(kube, ns, "api", 3)
    async with (
        relayed(kube) as (relay, kubeconfig),
        destination(kubeconfig) as (stub, platform),
        following(stub, f"api.{ns}.svc.cluster.local:80") as get,
    ):
        await asyncio.to_thread(kube.mark_pod, ns, first, "192.0.2.21")
        await get.wait({"192.0.2.21"}, "the first ready pod")
        slices = platform.informers["EndpointSlice"]
        # The destination service follows the informer's watch (not repeated lists).
        assert slices.subscribers >= 1
        assert all(platform.informers[k].subscribers >= 1 for k in ("Pod", "Service"))

        # The watch connections die; the change made meanwhile still arrives.
        connections = relay.accepted
        relay.cut()
        await asyncio.to_thread(kube.mark_pod, ns, second, "192.0.2.22")
        await get.wait({"192.0.2.21", "192.0.2.22"}, "a change after a cut connection")
        assert relay.accepted > connections  # it reconnected

        # Held away while a pod turns ready and etcd is compacted past the informer's
        # resourceVersion: the watch gets 410 Gone, relists, and reports the change.
        relists = slices.relists
        relay.hold()
        await asyncio.to_thread(kube.mark_pod, ns, third, "192.0.2.23")
        await asyncio.to_thread(kube.kubectl, "create", "configmap", "bump", "-n", ns)
        await asyncio.to_thread(kube.etcd_compact)
        relay.release()
        await get.wait(
            {"192.0.2.21", "192.0.2.22", "192.0.2.23"}, "a change hidden by a compaction"
        )
        assert slices.relists > relists


def profile(ns: str, routes: list[str]) -> Obj:
    return {
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": f"web.{ns}.svc.cluster.local", "namespace": ns},
        "spec": {
            "routes": [
                {"name": r, "condition": {"method": "GET", "pathRegex": f"/{r}"}} for r in routes
            ]
        },
    }


async def test_get_profile_follows_service_profile_changes(kube: KubeCluster) -> None:
    ns = "dst-profile"
    crds = [service_profile_crd({}), traffic_split_crd({})]
    await asyncio.to_thread(kube.apply, crds)
    await asyncio.to_thread(
        kube.kubectl, "wait", "--for=condition=Established", "crd/serviceprofiles.linkerd.io"
    )
    await asyncio.to_thread(kube.apply, [namespace(ns), service(ns, "web")])
    async with destination(kube.kubeconfig) as (stub, _):
        call = stub.GetProfile(pb.GetDestination(path=f"web.{ns}.svc.cluster.local:80"))
        routes: asyncio.Queue[list[str]] = asyncio.Queue()

        async def read() -> None:
            async for message in call:
                routes.put_nowait([r.metrics_labels["route"] for r in message.routes])

        task = asyncio.create_task(read())

        async def until(expected: list[str]) -> None:
            async with asyncio.timeout(TIMEOUT):
                while (got := await routes.get()) != expected:
                    pass
            assert got == expected

        try:
            await until([])
            await asyncio.to_thread(kube.apply, profile(ns, ["list"]))
            await until(["list"])
            await asyncio.to_thread(kube.apply, profile(ns, ["list", "vote"]))
            await until(["list", "vote"])
            await asyncio.to_thread(
                kube.kubectl, "delete", "serviceprofile", f"web.{ns}.svc.cluster.local", "-n", ns
            )
            await until([])
        finally:
            call.cancel()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def forged(token: str) -> str:
    """The same claims, signed by nobody the API server trusts."""
    import base64

    header, claims, _ = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert payload["kubernetes.io"]["serviceaccount"]["name"] == "web"
    return f"{header}.{claims}.{base64.urlsafe_b64encode(b'not a signature').decode().rstrip('=')}"


async def test_identity_accepts_a_service_account_token_and_refuses_a_forged_one(
    kube: KubeCluster, tmp_path: Path
) -> None:
    ns = "id-test"
    await asyncio.to_thread(
        kube.apply,
        [
            namespace(ns),
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "web", "namespace": ns},
            },
            deployment(ns, "web", 1, account="web"),
        ],
    )
    (pod,) = await pods_of(kube, ns, "web", 1)
    platform = KubernetesPlatform(str(kube.kubeconfig))
    authority = Authority.in_directory(tmp_path / "identity", AuthorityConfig(), datetime.now(UTC))
    service = IdentityService(authority, platform)
    server = grpc.aio.server()
    service.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = identity_pb2_grpc.IdentityStub(channel)  # type: ignore[no-untyped-call]
        name = f"web.{ns}.serviceaccount.identity.weft.cluster.local"
        csr = certs.make_csr(certs.new_key(), name)
        token = await platform.mint_token(ns, "web", pod)
        answer = await stub.Certify(
            identity_pb2.CertifyRequest(
                identity=name, token=token.encode(), certificate_signing_request=csr
            )
        )
        leaf = x509.load_der_x509_certificate(answer.leaf_certificate)
        assert certs.dns_names(leaf) == [name]

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Certify(
                identity_pb2.CertifyRequest(
                    identity=name, token=forged(token).encode(), certificate_signing_request=csr
                )
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not authenticated" in str(refused.value.details())

        other = f"other.{ns}.serviceaccount.identity.weft.cluster.local"
        with pytest.raises(grpc.aio.AioRpcError) as mismatched:
            await stub.Certify(
                identity_pb2.CertifyRequest(
                    identity=other,
                    token=token.encode(),
                    certificate_signing_request=certs.make_csr(certs.new_key(), other),
                )
            )
        assert mismatched.value.code() == grpc.StatusCode.PERMISSION_DENIED
        review = await platform.verify_token(token)
        assert (review.namespace, review.service_account, review.pod) == (ns, "web", pod)
    finally:
        await channel.close()
        await server.stop(0)
        await platform.close()


async def test_list_fails_fast_while_the_api_is_unreachable_then_recovers(
    kube: KubeCluster,
) -> None:
    async with relayed(kube) as (relay, kubeconfig):
        relay.hold()
        platform = KubernetesPlatform(str(kubeconfig))
        try:
            async with asyncio.timeout(TIMEOUT):
                with pytest.raises(PlatformError, match="cannot list Namespace"):
                    await platform.list("Namespace")
            relay.release()
            async with asyncio.timeout(TIMEOUT):
                while True:
                    try:
                        names = [n["metadata"]["name"] for n in await platform.list("Namespace")]
                        break
                    except PlatformError:
                        await asyncio.sleep(0.2)  # the informer retries with back-off
            assert "default" in names
        finally:
            await platform.close()
