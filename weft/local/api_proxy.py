"""The node agent's proxy to Services, as kube-apiserver's ``services/<name>:<port>/proxy``.

The host has no route into a local cluster, but the agent runs in the node namespace, so it can
carry a request from the CLI (through its root-only socket) to a control-plane component such as
the metrics API or the tap controller. Picking the endpoint is pure (:func:`pick_endpoint`);
:func:`forward` streams the request there and the answer back, chunk by chunk.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiohttp import web

Obj = dict[str, Any]

# Request headers not passed on (hop-by-hop, or describing the client's connection to the agent).
_DROPPED = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade", "content-length"}
)
CHUNK = 64 * 1024


class ProxyTargetError(Exception):
    """The service cannot be proxied to; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def split_service(spec: str) -> tuple[str, str]:
    """``name:port`` (a port name or number; empty for the only port) → (name, port)."""
    name, _, port = spec.partition(":")
    return name, port


def _service_port(service: Obj, port: str) -> Obj:
    ports: Sequence[Obj] = service["spec"].get("ports") or []
    meta = service["metadata"]
    where = f"service {meta['namespace']}/{meta['name']}"
    if not port:
        if len(ports) == 1:
            return ports[0]
        raise ProxyTargetError(400, f"{where} has {len(ports)} ports: name one (name:port)")
    for entry in ports:
        if port == entry.get("name") or (port.isdigit() and int(port) == entry["port"]):
            return entry
    raise ProxyTargetError(404, f"{where} has no port {port}")


def pick_endpoint(
    service: Obj, endpoints: Obj | None, port: str, rng: random.Random | None = None
) -> tuple[str, int]:
    """A ready (IP, target port) behind ``service``'s ``port``; raises :class:`ProxyTargetError`."""
    wanted = _service_port(service, port)
    name = wanted.get("name", "")
    choices: list[tuple[str, int]] = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = subset.get("ports") or []
        match = next((p for p in ports if p.get("name", "") == name), None)
        if match is None:
            continue
        choices += [(a["ip"], int(match["port"])) for a in subset.get("addresses") or []]
    if not choices:
        meta = service["metadata"]
        raise ProxyTargetError(
            503, f"service {meta['namespace']}/{meta['name']} has no ready endpoints"
        )
    return (rng or random).choice(choices)


async def forward(
    session: aiohttp.ClientSession, request: web.Request, target: tuple[str, int], path: str
) -> web.StreamResponse:
    """Send ``request`` to ``http://<target>/<path>`` and stream the answer back."""
    host, port = target
    url = f"http://{host}:{port}/{path}"
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
    body = await request.read()
    try:
        upstream = await session.request(
            request.method,
            url,
            params=request.query,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        )
    except (aiohttp.ClientError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        return web.json_response({"error": f"cannot reach {host}:{port}: {reason}"}, status=502)
    async with upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for key in ("Content-Type", "Cache-Control"):
            if key in upstream.headers:
                response.headers[key] = upstream.headers[key]
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientError, ConnectionResetError):
            pass  # either side went away: the stream just ends
        return response
