"""The node agent's HTTP API on a unix socket: apply, delete, list, watch, logs, tokens, and a
proxy to Services (``/api/v1/namespaces/<ns>/services/<name>:<port>/proxy/<path>``, as
kube-apiserver's, so the CLI reaches control-plane components the host has no route to).

JSON in and out; ``/v1/watch`` streams one JSON event per line. Errors are
``{"error": "<one line>"}`` with status 400 (bad input), 404 (not found) or 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiohttp
from aiohttp import web

from weft.local import api_proxy
from weft.local import apply as apply_mod
from weft.local.cluster_config import ClusterConfig
from weft.local.kinds import KINDS
from weft.local.store import CLUSTER_SCOPED, ObjectStore
from weft.local.tokens import Claims, UserClaims, mint, verify
from weft.resources import ManifestError

log = logging.getLogger("weft.local.api")

ADMIN_USER = "admin"  # the user a token minted through the (root-only) socket is for


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ApiServer:
    """Serves the store of one cluster."""

    def __init__(self, cfg: ClusterConfig, store: ObjectStore, token_key: bytes) -> None:
        self.cfg = cfg
        self.store = store
        self.token_key = token_key
        self.service_ips = apply_mod.ServiceIPs(cfg.service_cidr)
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/v1/cluster", self.cluster),
                web.post("/v1/apply", self.apply),
                web.post("/v1/delete", self.delete),
                web.get("/v1/objects", self.objects),
                web.get("/v1/watch", self.watch),
                web.get("/v1/logs", self.logs),
                web.post("/v1/tokens", self.tokens),
                web.post("/v1/tokenreviews", self.token_reviews),
                web.route(
                    "*",
                    "/api/v1/namespaces/{namespace}/services/{service}/proxy/{path:.*}",
                    self.service_proxy,
                ),
            ]
        )
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self, socket_path: Path) -> None:
        """Listen on ``socket_path`` (mode 0600: the API is root's)."""
        socket_path.unlink(missing_ok=True)
        # A caller that goes away cancels its handler, so proxied streams (tap) end with it.
        self._runner = web.AppRunner(
            self.app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.UnixSite(self._runner, str(socket_path))
        await site.start()
        socket_path.chmod(0o600)

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- handlers -------------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def cluster(self, _request: web.Request) -> web.Response:
        cfg = self.cfg
        return web.json_response(
            {
                "name": cfg.name,
                "podCIDR": cfg.pod_cidr,
                "serviceCIDR": cfg.service_cidr,
                "clusterDomain": cfg.cluster_domain,
                "nodeNetns": cfg.node_netns,
                "gateway": str(cfg.gateway.ip),
            }
        )

    async def apply(self, request: web.Request) -> web.Response:
        body = await request.json()
        sources = [apply_mod.Source(s["name"], s["text"]) for s in body.get("sources", [])]
        try:
            resources = apply_mod.parse(sources, body.get("namespace"))
            if not resources:
                return _error(400, "no objects passed to apply")
            results = apply_mod.apply(self.store, resources, self.service_ips)
        except ManifestError as exc:
            return _error(400, str(exc))
        return web.json_response({"results": results})

    async def delete(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            refs: list[tuple[str, str, str]] = [
                (r["kind"], r.get("namespace") or "default", r["name"])
                for r in body.get("refs", [])
            ]
            sources = [apply_mod.Source(s["name"], s["text"]) for s in body.get("sources", [])]
            for resource in apply_mod.parse(sources, body.get("namespace")):
                refs.append(
                    (resource.kind, resource.metadata.namespace or "", resource.metadata.name)
                )
            results = apply_mod.delete(self.store, refs)
        except ManifestError as exc:
            status = 404 if "not found" in str(exc) else 400
            return _error(status, str(exc))
        return web.json_response({"results": results})

    def _kind(self, request: web.Request) -> str | None:
        kind = request.query.get("kind", "")
        return kind if kind in KINDS else None

    async def objects(self, request: web.Request) -> web.Response:
        kind = self._kind(request)
        if kind is None:
            return _error(400, f"unknown kind {request.query.get('kind', '')!r}")
        namespace = request.query.get("namespace") or None
        if kind in CLUSTER_SCOPED:
            namespace = None
        items = self.store.list(kind, namespace)
        name = request.query.get("name")
        if name is not None:
            items = [o for o in items if o["metadata"]["name"] == name]
            if not items:
                return _error(404, f'{kind.lower()} "{name}" not found')
        return web.json_response({"items": items, "revision": self.store.revision})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        kind = self._kind(request)
        if kind is None:
            return _error(400, f"unknown kind {request.query.get('kind', '')!r}")
        namespace = request.query.get("namespace") or None
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        watcher = self.store.subscribe(kind, namespace)
        try:
            while True:
                event = await watcher.queue.get()
                line = json.dumps({"type": event.type, "object": event.object}) + "\n"
                await response.write(line.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unsubscribe(watcher)
        return response

    async def logs(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        namespace, pod_name = q.get("namespace", "default"), q.get("pod", "")
        pod = self.store.get("Pod", namespace, pod_name)
        if pod is None:
            return _error(404, f'pod "{pod_name}" not found in namespace "{namespace}"')
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        names += [c["name"] for c in pod["spec"].get("initContainers", [])]
        container = q.get("container") or (names[0] if len(pod["spec"]["containers"]) == 1 else "")
        if container not in names:
            choose = ", ".join(names)
            return _error(
                400, f"a container name must be given for pod {pod_name}: one of [{choose}]"
            )
        path = self.cfg.state / "logs" / namespace / pod_name / f"{container}.log"
        text = path.read_bytes() if path.exists() else b""
        tail = q.get("tail")
        if tail is not None and tail.isdigit():
            lines = text.splitlines(keepends=True)
            text = b"".join(lines[-int(tail) :]) if int(tail) else b""
        if q.get("follow") != "1":
            return web.Response(body=text, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(text)
        offset = path.stat().st_size if path.exists() else 0
        try:
            while self.store.get("Pod", namespace, pod_name) is not None:
                size = path.stat().st_size if path.exists() else 0
                if size > offset:
                    with path.open("rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read(size - offset)
                    offset = size
                    await response.write(chunk)
                await asyncio.sleep(0.2)  # polling interval of a file tail
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    async def tokens(self, request: web.Request) -> web.Response:
        body = await request.json()
        user = body.get("user")
        if user is not None:  # the socket is root's: whoever asks is the cluster's admin
            if user != ADMIN_USER:
                return _error(400, f"unknown user {user!r}: only {ADMIN_USER!r} has a token")
            return web.json_response({"token": mint(self.token_key, UserClaims(user))})
        namespace, pod_name = body.get("namespace", ""), body.get("pod", "")
        pod = self.store.get("Pod", namespace, pod_name)
        if pod is None:
            return _error(404, f'pod "{pod_name}" not found in namespace "{namespace}"')
        sa = pod["spec"].get("serviceAccountName") or "default"
        if body.get("serviceAccount", sa) != sa:
            return _error(400, f"pod {pod_name} runs as service account {sa}")
        token = mint(self.token_key, Claims(namespace, sa, pod_name, pod["metadata"]["uid"]))
        return web.json_response({"token": token})

    async def token_reviews(self, request: web.Request) -> web.Response:
        body = await request.json()
        claims = verify(self.token_key, str(body.get("token", "")))
        if claims is None:
            return web.json_response({"authenticated": False, "reason": "invalid token"})
        if isinstance(claims, UserClaims):
            return web.json_response({"authenticated": True, "user": claims.user})
        pod = self.store.get("Pod", claims.namespace, claims.pod)
        if pod is None or pod["metadata"]["uid"] != claims.pod_uid:
            return web.json_response(
                {"authenticated": False, "reason": f"pod {claims.pod} no longer exists"}
            )
        return web.json_response(
            {
                "authenticated": True,
                "namespace": claims.namespace,
                "serviceAccount": claims.service_account,
                "pod": claims.pod,
            }
        )

    async def service_proxy(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        name, port = api_proxy.split_service(request.match_info["service"])
        service = self.store.get("Service", namespace, name)
        if service is None:
            return _error(404, f'service "{name}" not found in namespace "{namespace}"')
        try:
            target = api_proxy.pick_endpoint(
                service, self.store.get("Endpoints", namespace, name), port
            )
        except api_proxy.ProxyTargetError as exc:
            return _error(exc.status, str(exc))
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=None)
            self._session = aiohttp.ClientSession(timeout=timeout, trust_env=False)
        return await api_proxy.forward(self._session, request, target, request.match_info["path"])
