"""The Kubernetes implementation of :class:`weft.platform.Platform`.

Lists and watches are served from one :class:`~weft.k8s.informer.Informer` per kind (all
namespaces), started on first use. ``Endpoints`` are built from EndpointSlices
(:mod:`weft.k8s.endpointslices`), so the destination service reads what the EndpointSlice
controller writes. Tokens are Kubernetes service-account tokens: minted with TokenRequest for
the audience ``identity.l5d.io`` and bound to the pod, checked with TokenReview.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from typing import Any

from weft.k8s.client import KubeClient, KubeError
from weft.k8s.endpointslices import EndpointsView
from weft.k8s.informer import Informer
from weft.k8s.kinds import api_kind
from weft.platform import WATCHABLE_KINDS, PlatformError, TokenReview, WatchEvent

Obj = dict[str, Any]

IDENTITY_AUDIENCE = "identity.l5d.io"
TOKEN_SECONDS = 3600
SA_PREFIX = "system:serviceaccount:"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


def review_from_status(status: Obj) -> TokenReview:
    """A :class:`TokenReview` from a Kubernetes TokenReview's ``status``."""
    if not status.get("authenticated"):
        return TokenReview(False, reason=str(status.get("error") or "not authenticated"))
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if username.startswith(SA_PREFIX):
        namespace, _, account = username.removeprefix(SA_PREFIX).partition(":")
        pods = (user.get("extra") or {}).get(POD_NAME_EXTRA) or [""]
        return TokenReview(True, namespace=namespace, service_account=account, pod=str(pods[0]))
    return TokenReview(True, user=username)


class KubernetesPlatform:
    """Lists, watches and reviews tokens through the Kubernetes API.

    It connects on first use (with the kubeconfig at ``kubeconfig``, or the in-cluster service
    account when None), so it can be made before the event loop runs.
    """

    def __init__(self, kubeconfig: str | None = None, client: KubeClient | None = None) -> None:
        self.kubeconfig = kubeconfig
        self._client = client
        self._lock = asyncio.Lock()
        self.informers: dict[str, Informer] = {}

    async def client(self) -> KubeClient:
        """The API client, connected on first use."""
        async with self._lock:
            if self._client is None:
                self._client = await KubeClient.connect(self.kubeconfig)
            return self._client

    async def close(self) -> None:
        """Stop every informer and close the connections."""
        await asyncio.gather(*(i.stop() for i in self.informers.values()))
        self.informers.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def informer(self, kind: str) -> Informer:
        """The running informer of ``kind`` (started on first use)."""
        client = await self.client()
        found = self.informers.get(kind)
        if found is None:
            found = self.informers[kind] = Informer(client, api_kind(kind))
            found.start()
        return found

    @staticmethod
    def _source(kind: str) -> str:
        if kind not in WATCHABLE_KINDS:
            raise PlatformError(f"the platform does not serve {kind}")
        return "EndpointSlice" if kind == "Endpoints" else kind

    async def list(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """The current objects of ``kind`` (from the informer, once it has listed; a
        :class:`PlatformError` while it cannot list, e.g. a CRD not installed)."""
        informer = await self.informer(self._source(kind))
        await informer.wait_synced()
        if kind != "Endpoints":
            return informer.cache.items(namespace)
        view = EndpointsView()
        for obj in informer.cache.items(namespace):
            view.apply(WatchEvent("ADDED", obj))
        return view.items(namespace)

    async def watch(self, kind: str, namespace: str | None = None) -> AsyncIterator[WatchEvent]:
        """``ADDED`` for every current object, then every change, until cancelled."""
        informer = await self.informer(self._source(kind))
        await informer.wait_synced()
        current, sub = informer.subscribe()
        view = EndpointsView() if kind == "Endpoints" else None

        def visible(event: WatchEvent) -> WatchEvent | None:
            if view is not None:
                derived = view.apply(event)
                if derived is None:
                    return None
                event = derived
            meta = event.object.get("metadata") or {}
            if namespace is not None and meta.get("namespace") != namespace:
                return None
            return event

        try:
            for obj in current:
                event = visible(WatchEvent("ADDED", obj))
                if event is not None:
                    yield event
            while True:
                item = await sub.queue.get()
                if item is None:
                    return
                event = visible(item)
                if event is not None:
                    yield event
        finally:
            informer.unsubscribe(sub)

    async def mint_token(self, namespace: str, service_account: str, pod: str) -> str:
        """A TokenRequest for the identity audience, bound to ``pod`` when one is named."""
        spec: Obj = {"audiences": [IDENTITY_AUDIENCE], "expirationSeconds": TOKEN_SECONDS}
        if pod:
            found = await (await self.client()).get(api_kind("Pod").path(namespace, pod))
            uid = str((found.get("metadata") or {}).get("uid") or "")
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": uid}
        path = api_kind("ServiceAccount").path(namespace, service_account) + "/token"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        answer = await (await self.client()).request("POST", path, body=body)
        token = (answer.get("status") or {}).get("token")
        if not token:
            raise KubeError(0, f"TokenRequest for {namespace}/{service_account} gave no token")
        return str(token)

    async def _review(self, token: str, audiences: builtins.list[str] | None) -> Obj:
        spec: Obj = {"token": token}
        if audiences:
            spec["audiences"] = audiences
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        answer = await (await self.client()).request("POST", TOKEN_REVIEWS, body=body)
        return dict(answer.get("status") or {})

    async def verify_token(self, token: str) -> TokenReview:
        """TokenReview for the identity audience; a token for the API server's own audience (a
        plain service-account or user token) is accepted too, as Linkerd's identity does."""
        status = await self._review(token, [IDENTITY_AUDIENCE])
        if not status.get("authenticated"):
            fallback = await self._review(token, None)
            if fallback.get("authenticated"):
                status = fallback
        return review_from_status(status)
