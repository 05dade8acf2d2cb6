"""Canned answers of the metrics API and the tap controller, shaped as the design specifies
(protobuf's JSON mapping: camelCase, 64-bit integers as strings, zero values left out), for the
viz CLI's tests."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

JSON = dict[str, Any]


def resource(kind: str, name: str, namespace: str = "emojivoto") -> JSON:
    """A Resource message."""
    return {"namespace": namespace, "type": kind, "name": name}


def row(
    kind: str,
    name: str,
    namespace: str = "emojivoto",
    *,
    meshed: tuple[int, int] = (1, 1),
    stats: JSON | None = None,
    tcp: JSON | None = None,
    status: str = "",
    split: JSON | None = None,
) -> JSON:
    """A StatSummary row."""
    data: JSON = {
        "resource": resource(kind, name, namespace),
        "timeWindow": "1m",
        "status": status,
        "meshedPodCount": meshed[0],
        "runningPodCount": meshed[1],
        "failedPodCount": 0,
        "stats": stats,
        "tcpStats": tcp,
        "trafficSplitStats": split,
    }
    return data


def stats(
    success: int, failure: int, p50: float | None, p95: float | None, p99: float | None
) -> JSON:
    """BasicStats; counts as protobuf's JSON writes uint64 (strings)."""
    data: JSON = {"latencyMsP50": p50, "latencyMsP95": p95, "latencyMsP99": p99}
    if success:
        data["successCount"] = str(success)
    if failure:
        data["failureCount"] = str(failure)
    return data


def stat_answer(*rows_by_table: list[JSON]) -> JSON:
    """A StatSummary answer with one table per argument."""
    return {"ok": {"statTables": [{"podGroup": {"rows": rows}} for rows in rows_by_table]}}


DEPLOYMENTS = stat_answer(
    [
        row(
            "deployment",
            "web",
            stats=stats(95, 5, 12.0, 48.5, 97.0),
            tcp={"openConnections": 3, "readBytesTotal": "6000", "writeBytesTotal": "12000"},
        ),
        row(
            "deployment",
            "emoji",
            meshed=(2, 2),
            stats=stats(600, 0, 1.0, 2.0, 4.9),
            tcp={"openConnections": 2, "readBytesTotal": "30000", "writeBytesTotal": "90000"},
        ),
        row("deployment", "vote-bot"),
        row("deployment", "voting", meshed=(0, 1), stats=stats(0, 0, None, None, None), tcp={}),
    ]
)

PODS = stat_answer(
    [
        row(
            "pod",
            "web-5d8f9",
            status="Running",
            stats=stats(30, 0, 3.0, 9.0, 10.0),
            tcp={"openConnections": 1},
        ),
        row("pod", "vote-bot-77c4", status="Running"),
        row("pod", "migrate-abcde", status="Succeeded", meshed=(0, 0)),
    ]
)

AUTHORITIES = stat_answer(
    [
        row(
            "authority",
            "web-svc.emojivoto.svc.cluster.local:80",
            meshed=(0, 0),
            stats=stats(60, 0, 5.0, 9.0, 9.9),
        ),
    ]
)

SPLITS = stat_answer(
    [
        row(
            "trafficsplit",
            "web-split",
            split={"apex": "web-svc", "leaf": "web-v2", "weight": "100m"},
            stats=stats(12, 0, 2.0, 3.0, 4.0),
            meshed=(0, 0),
        ),
        row(
            "trafficsplit",
            "web-split",
            split={"apex": "web-svc", "leaf": "web-v1", "weight": "900m"},
            stats=stats(108, 12, 2.0, 5.0, 8.0),
            meshed=(0, 0),
        ),
    ]
)

ALL_NAMESPACES = stat_answer(
    [
        row("deployment", "web", stats=stats(60, 0, 2.0, 3.0, 4.0), tcp={"openConnections": 1}),
        row("deployment", "weft-destination", "weft", stats=stats(0, 0, None, None, None)),
        row("deployment", "weft-identity", "weft"),
    ]
)

ROUTES = {
    "ok": {
        "routes": [
            {
                "resource": "deployment/web",
                "rows": [
                    {
                        "route": "[DEFAULT]",
                        "authority": "web-svc.emojivoto.svc.cluster.local:80",
                        "timeWindow": "1m",
                        "stats": stats(6, 0, 1.0, 2.0, 2.0),
                    },
                    {
                        "route": "GET /api/vote",
                        "authority": "web-svc.emojivoto.svc.cluster.local:80",
                        "timeWindow": "1m",
                        "stats": {
                            **stats(54, 6, 10.0, 19.0, 25.0),
                            "actualSuccessCount": "54",
                            "actualFailureCount": "9",
                        },
                    },
                    {
                        "route": "GET /api/list",
                        "authority": "web-svc.emojivoto.svc.cluster.local:80",
                        "timeWindow": "1m",
                        "stats": {**stats(120, 0, 3.0, 7.0, 9.0), "actualSuccessCount": "120"},
                    },
                    {
                        "route": "POST /api/annotations",
                        "authority": "web-svc.emojivoto.svc.cluster.local:80",
                        "timeWindow": "1m",
                        "stats": {},
                    },
                ],
            }
        ]
    }
}

TWO_ROUTE_TABLES = {
    "ok": {
        "routes": [
            {
                "resource": "pod/web-5d8f9",
                "rows": [
                    {
                        "route": "GET /api/list",
                        "authority": "web-svc.emojivoto.svc.cluster.local:80",
                        "stats": stats(60, 0, 3.0, 7.0, 9.0),
                    }
                ],
            },
            {
                "resource": "pod/web-6e9a0",
                "rows": [
                    {
                        "route": "GET /api/list",
                        "authority": "10.96.0.12:80",
                        "stats": stats(30, 30, 3.0, 7.0, 9.0),
                    }
                ],
            },
        ]
    }
}

IDENTITY = "{}.emojivoto.serviceaccount.identity.weft.cluster.local"

EDGES = {
    "ok": {
        "edges": [
            {
                "src": resource("deployment", "web"),
                "dst": resource("deployment", "voting"),
                "clientId": IDENTITY.format("web"),
                "serverId": IDENTITY.format("voting"),
            },
            {
                "src": resource("deployment", "web"),
                "dst": resource("deployment", "emoji"),
                "clientId": IDENTITY.format("web"),
                "serverId": IDENTITY.format("emoji"),
            },
            {
                "src": resource("deployment", "vote-bot"),
                "dst": resource("deployment", "web"),
                "clientId": IDENTITY.format("default"),
                "serverId": IDENTITY.format("web"),
            },
            {
                "src": resource("deployment", "weft-prometheus", "weft"),
                "dst": resource("deployment", "web"),
                "noIdentityMsg": "no_tls_from_remote",
            },
        ]
    }
}


# -- tap events -------------------------------------------------------------------------------


def address(ip: str, port: int) -> JSON:
    """A TcpAddress as protobuf's JSON writes it (IPv4 as its uint32, IPv6 as two strings)."""
    parsed = ipaddress.ip_address(ip)
    if parsed.version == 4:
        return {"ip": {"ipv4": int(parsed)}, "port": port}
    value = int(parsed)
    return {
        "ip": {"ipv6": {"first": str(value >> 64), "last": str(value & (2**64 - 1))}},
        "port": port,
    }


def headers(*pairs: tuple[str, bytes]) -> JSON:
    """A Headers message."""
    return {"headers": [{"name": n, "value": base64.b64encode(v).decode()} for n, v in pairs]}


def tap_event(
    kind: str,
    body: JSON,
    *,
    stream: int = 1,
    inbound: bool = True,
    src: tuple[str, int] = ("10.244.0.7", 41000),
    dst: tuple[str, int] = ("10.244.0.5", 8080),
    src_labels: dict[str, str] | None = None,
    dst_labels: dict[str, str] | None = None,
    route: dict[str, str] | None = None,
) -> JSON:
    """A TapEvent: ``kind`` is requestInit, responseInit or responseEnd."""
    event: JSON = {
        "source": address(*src),
        "destination": address(*dst),
        "sourceMeta": {"labels": src_labels if src_labels is not None else {"tls": "true"}},
        "destinationMeta": {"labels": dst_labels if dst_labels is not None else {}},
        "proxyDirection": "INBOUND" if inbound else "OUTBOUND",
        "http": {kind: {"id": {"stream": str(stream)}, **body}},
    }
    if stream == 0:
        del event["http"][kind]["id"]
    if route is not None:
        event["routeMeta"] = {"labels": route}
    return event


WEB_SRC = {
    "tls": "true",
    "pod": "vote-bot-77c4",
    "namespace": "emojivoto",
    "deployment": "vote-bot",
    "serviceaccount": "default",
}
WEB_DST = {
    "pod": "web-5d8f9",
    "namespace": "emojivoto",
    "deployment": "web",
    "serviceaccount": "web",
}


def request(stream: int, path: str = "/api/list", method: str = "GET", **kw: Any) -> JSON:
    """A RequestInit event."""
    body = {
        "method": {"registered": method},
        "scheme": {"registered": "HTTP"},
        "authority": "web-svc.emojivoto.svc.cluster.local:80",
        "path": path,
    }
    return tap_event("requestInit", body, stream=stream, **kw)


def response(stream: int, status: int = 200, latency: str = "0.002500s", **kw: Any) -> JSON:
    """A ResponseInit event."""
    return tap_event(
        "responseInit", {"sinceRequestInit": latency, "httpStatus": status}, stream=stream, **kw
    )


def end(
    stream: int,
    total: str = "0.003000s",
    body: str = "0.000500s",
    size: int = 42,
    eos: JSON | None = None,
    **kw: Any,
) -> JSON:
    """A ResponseEnd event."""
    data: JSON = {"sinceRequestInit": total, "sinceResponseInit": body, "responseBytes": str(size)}
    if eos is not None:
        data["eos"] = eos
    return tap_event("responseEnd", data, stream=stream, **kw)
