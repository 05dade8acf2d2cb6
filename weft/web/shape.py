"""The dashboard's JSON, shaped from what the metrics API, Prometheus and tap answer (pure).

Rates are computed here as Linkerd's web and CLI compute them: success rate = S/(S+F), RPS =
(S+F)/window seconds, TCP byte rates = totals/window. Counts may arrive as numbers or, as
protobuf's JSON mapping writes 64-bit integers, as strings; both are read.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from weft.controller.tap.enrich import address_ip
from weft.web.queries import QUANTILES, SeriesPlan

Obj = dict[str, Any]

# Trust anchors and issuers this close to expiry get a warning (the identity service logs
# TRUST ATTENTION from the same point).
CERT_WARNING_SECONDS = 60 * 86400
_DURATION = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?)s")


def _obj(value: Any) -> Obj:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities and junk."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def resource(data: Any) -> Obj:
    """``{"namespace", "type", "name"}`` of a metrics-API resource (missing fields ``""``)."""
    data = data if isinstance(data, dict) else {}
    return {k: str(data.get(k) or "") for k in ("namespace", "type", "name")}


def node_id(res: Mapping[str, str]) -> str:
    """A stable id for a resource in the graph: ``<namespace>/<type>/<name>``."""
    return f"{res['namespace']}/{res['type']}/{res['name']}"


# -- StatSummary ----------------------------------------------------------------------------------


def stat_row(row: Obj, seconds: float) -> Obj:
    """One StatSummary row as the dashboard shows it."""
    out: Obj = {
        **resource(row.get("resource")),
        "status": str(row.get("status") or ""),
        "meshed": _int(row.get("meshedPodCount")),
        "running": _int(row.get("runningPodCount")),
        "failed": _int(row.get("failedPodCount")),
        "requests": 0,
        "successRate": None,
        "rps": None,
        "p50": None,
        "p95": None,
        "p99": None,
        "tcp": None,
        "split": None,
    }
    stats = row.get("stats")
    if isinstance(stats, dict):
        success, failure = _int(stats.get("successCount")), _int(stats.get("failureCount"))
        total = success + failure
        out["requests"] = total
        out["successRate"] = success / total if total else None
        out["rps"] = total / seconds
        for key in QUANTILES:
            out[key] = _float(stats.get(f"latencyMs{key.upper()}"))
    tcp = row.get("tcpStats")
    if isinstance(tcp, dict):
        out["tcp"] = {
            "connections": _int(tcp.get("openConnections")),
            "readRate": _int(tcp.get("readBytesTotal")) / seconds,
            "writeRate": _int(tcp.get("writeBytesTotal")) / seconds,
        }
    split = row.get("trafficSplitStats")
    if isinstance(split, dict):
        out["split"] = {k: str(split.get(k) or "") for k in ("apex", "leaf", "weight")}
    return out


def stat_rows(response: Obj, seconds: float) -> list[Obj]:
    """Every row of a StatSummary answer (all its tables), shaped."""
    tables = ((response.get("ok") or {}).get("statTables")) or []
    return [
        stat_row(row, seconds)
        for table in tables
        for row in ((table or {}).get("podGroup") or {}).get("rows") or []
    ]


# -- Edges ----------------------------------------------------------------------------------------


def edge(data: Obj) -> Obj:
    """One Edges answer entry: who calls whom, with which identities, and whether it is mTLS."""
    client_id = str(data.get("clientId") or "")
    server_id = str(data.get("serverId") or "")
    no_identity = str(data.get("noIdentityMsg") or "")
    return {
        "src": resource(data.get("src")),
        "dst": resource(data.get("dst")),
        "clientId": client_id,
        "serverId": server_id,
        "noIdentityMsg": no_identity,
        "secured": not no_identity and bool(client_id or server_id),
    }


def edges(response: Obj) -> list[Obj]:
    """Every edge of an Edges answer."""
    return [edge(e) for e in ((response.get("ok") or {}).get("edges")) or [] if isinstance(e, dict)]


def involving(found: Iterable[Obj], res: Mapping[str, str]) -> list[Obj]:
    """The edges whose source or destination is ``res``."""
    key = node_id(res)
    return [e for e in found if key in (node_id(e["src"]), node_id(e["dst"]))]


def graph(
    namespace: str,
    workloads: Sequence[Obj],
    found: Sequence[Obj],
    outbound: Mapping[str, Sequence[Obj]],
) -> Obj:
    """The namespace's topology: its workloads as nodes; an edge for every pair the Edges API
    knows or that carried HTTP requests, with the pair's success rate, RPS, p99 and mTLS.

    ``outbound`` maps a source's node id to its StatSummary rows ``--from`` it (one per
    destination). Destinations outside the namespace become nodes marked ``external``.
    """
    nodes: dict[str, Obj] = {}
    for row in workloads:
        if row["namespace"] == namespace:
            nodes[node_id(row)] = {**_node(row, external=False), **_stats(row)}
    links: dict[tuple[str, str], Obj] = {}

    def link(src: Obj, dst: Obj) -> Obj:
        for end in (src, dst):
            key = node_id(end)
            if key not in nodes:
                nodes[key] = _node(end, external=end["namespace"] != namespace)
        pair = (node_id(src), node_id(dst))
        if pair not in links:
            links[pair] = {
                "id": f"{pair[0]}>{pair[1]}",
                "source": pair[0],
                "target": pair[1],
                "successRate": None,
                "rps": None,
                "p99": None,
                "secured": False,
                "clientId": "",
                "serverId": "",
                "noIdentityMsg": "",
            }
        return links[pair]

    for e in found:
        entry = link(e["src"], e["dst"])
        entry.update({k: e[k] for k in ("secured", "clientId", "serverId", "noIdentityMsg")})
    for source, rows in outbound.items():
        namespace_of, type_, name = source.split("/", 2)
        src = {"namespace": namespace_of, "type": type_, "name": name}
        for row in rows:
            if not row["requests"]:
                continue
            entry = link(src, row)
            entry.update({k: row[k] for k in ("successRate", "rps", "p99")})
    return {
        "nodes": sorted(nodes.values(), key=lambda n: n["id"]),
        "edges": sorted(links.values(), key=lambda e: e["id"]),
    }


def _node(res: Mapping[str, Any], external: bool) -> Obj:
    return {
        "id": node_id(res),
        "namespace": res["namespace"],
        "type": res["type"],
        "name": res["name"],
        "external": external,
        "successRate": None,
        "rps": None,
        "p99": None,
        "meshed": None,
        "running": None,
    }


def _stats(row: Mapping[str, Any]) -> Obj:
    return {k: row[k] for k in ("successRate", "rps", "p99", "meshed", "running")}


# -- TopRoutes ------------------------------------------------------------------------------------


def routes(response: Obj, seconds: float) -> list[Obj]:
    """The rows of a TopRoutes answer: route, authority, effective and actual rates, latencies."""
    out = []
    for table in ((response.get("ok") or {}).get("routes")) or []:
        for row in (table or {}).get("rows") or []:
            stats = _obj(row.get("stats"))
            success, failure = _int(stats.get("successCount")), _int(stats.get("failureCount"))
            actual_s = _int(stats.get("actualSuccessCount"))
            actual_f = _int(stats.get("actualFailureCount"))
            entry: Obj = {
                "route": str(row.get("route") or "[DEFAULT]"),
                "authority": str(row.get("authority") or ""),
                "resource": str((table or {}).get("resource") or ""),
                "requests": success + failure,
                "successRate": success / (success + failure) if success + failure else None,
                "rps": (success + failure) / seconds,
                "actualSuccessRate": actual_s / (actual_s + actual_f)
                if actual_s + actual_f
                else None,
                "actualRps": (actual_s + actual_f) / seconds,
            }
            for key in QUANTILES:
                entry[key] = _float(stats.get(f"latencyMs{key.upper()}"))
            out.append(entry)
    return out


# -- ListPods -------------------------------------------------------------------------------------


def pod(data: Obj) -> Obj:
    """One ListPods entry: where it runs, who owns it, whether and how it is meshed."""
    namespace, _, name = str(data.get("name") or "").rpartition("/")
    owner = _obj(data.get("owner"))
    return {
        "namespace": namespace,
        "name": name,
        "ip": str(data.get("podIP") or ""),
        "status": str(data.get("status") or ""),
        "meshed": bool(data.get("added")),
        "proxyReady": bool(data.get("proxyReady")),
        "proxyVersion": str(data.get("proxyVersion") or ""),
        "controlPlane": bool(data.get("controlPlane")),
        "uptime": str(data.get("uptime") or ""),
        "owner": {"type": str(owner.get("type") or ""), "name": str(owner.get("name") or "")},
    }


def pods(response: Obj) -> list[Obj]:
    """Every pod of a ListPods answer, by namespace and name."""
    found = [pod(p) for p in response.get("pods") or [] if isinstance(p, dict)]
    return sorted(found, key=lambda p: (p["namespace"], p["name"]))


def proxies_by_namespace(found: Iterable[Obj]) -> list[Obj]:
    """Per namespace: pods, meshed pods, and how many proxies run each version."""
    table: dict[str, Obj] = {}
    for p in found:
        entry = table.setdefault(
            p["namespace"], {"namespace": p["namespace"], "pods": 0, "meshed": 0, "versions": {}}
        )
        entry["pods"] += 1
        if p["meshed"]:
            entry["meshed"] += 1
            version = p["proxyVersion"] or "unknown"
            entry["versions"][version] = entry["versions"].get(version, 0) + 1
    return [table[ns] for ns in sorted(table)]


# -- control plane ----------------------------------------------------------------------------


def _vector(result: Any) -> list[tuple[dict[str, str], float | None]]:
    """A Prometheus instant vector as (labels, value) pairs."""
    out = []
    for sample in result if isinstance(result, list) else []:
        metric = sample.get("metric") or {}
        value = sample.get("value") or [None, None]
        out.append(({str(k): str(v) for k, v in metric.items()}, _float(value[1])))
    return out


def components(control_pods: Iterable[Obj], up: Any) -> list[Obj]:
    """Each control-plane component (its Deployment) with its pods, whether Prometheus scrapes
    each pod's admin server (``up``; None when unknown), and whether all of it is healthy."""
    scraped = {labels.get("pod", ""): value == 1 for labels, value in _vector(up)}
    grouped: dict[str, list[Obj]] = {}
    for p in control_pods:
        name = p["owner"]["name"] or p["name"]
        grouped.setdefault(name, []).append(
            {
                "name": p["name"],
                "status": p["status"],
                "uptime": p["uptime"],
                "scraped": scraped.get(p["name"]),
            }
        )
    return [
        {
            "name": name,
            "pods": members,
            "healthy": bool(members)
            and all(m["status"] == "Running" and m["scraped"] is not False for m in members),
        }
        for name, members in sorted(grouped.items())
    ]


def certificates(result: Any, now: float) -> list[Obj]:
    """The trust anchors' and the issuer's expiry (from the identity component's metrics), with a
    warning when one expires within :data:`CERT_WARNING_SECONDS` (or has expired)."""
    out = []
    for labels, value in _vector(result):
        if value is None:
            continue
        cert = labels.get("cert", "")
        kind, _, subject = cert.partition(":")
        left = value - now
        out.append(
            {
                "kind": "trust anchor" if kind == "anchor" else kind or "certificate",
                "subject": subject,
                "expires": value,
                "secondsLeft": left,
                "warning": left < CERT_WARNING_SECONDS,
            }
        )
    order = {"trust anchor": 0, "issuer": 1}
    return sorted(out, key=lambda c: (order.get(c["kind"], 2), c["subject"]))


# -- time series ----------------------------------------------------------------------------------


def _matrix(result: Any) -> list[tuple[dict[str, str], dict[int, float | None]]]:
    out = []
    for series in result if isinstance(result, list) else []:
        metric = {str(k): str(v) for k, v in (series.get("metric") or {}).items()}
        points = {round(float(t)): _float(v) for t, v in series.get("values") or []}
        out.append((metric, points))
    return out


def series(plan: SeriesPlan, results: Mapping[str, Any]) -> Obj:
    """Aligned arrays for the charts: ``timestamps`` and, per point, success rate, RPS and the
    latency quantiles (``None`` where there was nothing to measure)."""
    grid = plan.timestamps()
    success = dict.fromkeys(grid, 0.0)
    failure = dict.fromkeys(grid, 0.0)
    seen: set[int] = set()
    for metric, points in _matrix(results.get("requests")):
        into = success if metric.get("classification") == "success" else failure
        for t, v in points.items():
            if t in into and v is not None:
                into[t] += v
                seen.add(t)
    out: Obj = {
        "step": plan.step,
        "timestamps": grid,
        "successRate": [
            success[t] / (success[t] + failure[t]) if success[t] + failure[t] > 0 else None
            for t in grid
        ],
        "rps": [success[t] + failure[t] if t in seen else None for t in grid],
    }
    for key in QUANTILES:
        quantile: dict[int, float | None] = {}
        for _, found in _matrix(results.get(key)):
            quantile.update(found)
        out[key] = [quantile.get(t) for t in grid]
    return out


# -- tap ------------------------------------------------------------------------------------------


def _seconds_us(value: Any) -> int | None:
    """A protobuf Duration in JSON (``"0.001234s"``) in whole microseconds."""
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    return round(float(match.group(1)) * 1e6) if match else None


def _named(value: Any) -> str:
    """``{"registered": "GET"}`` / ``{"unregistered": "PURGE"}`` → the name."""
    if isinstance(value, dict):
        return str(value.get("registered") or value.get("unregistered") or "")
    return ""


def _headers(value: Any) -> list[list[str]]:
    out = []
    for header in (value or {}).get("headers") or [] if isinstance(value, dict) else []:
        try:
            text = base64.b64decode(str(header.get("value") or "")).decode("utf-8", "replace")
        except ValueError:
            text = ""
        out.append([str(header.get("name") or ""), text])
    return out


def _peer(address: Any, meta: Any) -> Obj:
    ip = address_ip(address)
    port = _int(address.get("port")) if isinstance(address, dict) else 0
    labels = (meta or {}).get("labels") if isinstance(meta, dict) else None
    return {
        "ip": ip or "",
        "port": port,
        "labels": {str(k): str(v) for k, v in (labels or {}).items()},
    }


def tap_event(event: Obj) -> Obj:
    """A TapEvent (protobuf JSON) flattened for the browser: ``kind`` is ``req``, ``rsp`` or
    ``end`` as in ``weft tap``'s lines; ``{"error": ...}`` and ``{"warning": ...}`` (a note about
    one proxy) lines stay as they are."""
    if "error" in event:
        return {"error": str(event["error"])}
    if "warning" in event:
        return {"warning": str(event["warning"])}
    http = _obj(event.get("http"))
    direction = str(event.get("proxyDirection") or "UNKNOWN").lower()
    out: Obj = {
        "direction": direction,
        "source": _peer(event.get("source"), event.get("sourceMeta")),
        "destination": _peer(event.get("destination"), event.get("destinationMeta")),
        "route": {
            str(k): str(v) for k, v in _obj(_obj(event.get("routeMeta")).get("labels")).items()
        },
    }
    if "requestInit" in http:
        init = _obj(http["requestInit"])
        out.update(
            kind="req",
            method=_named(init.get("method")),
            scheme=_named(init.get("scheme")).lower(),
            authority=str(init.get("authority") or ""),
            path=str(init.get("path") or ""),
            headers=_headers(init.get("headers")),
        )
    elif "responseInit" in http:
        init = _obj(http["responseInit"])
        out.update(
            kind="rsp",
            status=_int(init.get("httpStatus")),
            latencyUs=_seconds_us(init.get("sinceRequestInit")),
            headers=_headers(init.get("headers")),
        )
    elif "responseEnd" in http:
        end = _obj(http["responseEnd"])
        eos = _obj(end.get("eos"))
        out.update(
            kind="end",
            durationUs=_seconds_us(end.get("sinceResponseInit")),
            totalUs=_seconds_us(end.get("sinceRequestInit")),
            bytes=_int(end.get("responseBytes")),
            grpcStatus=_int(eos["grpcStatusCode"]) if "grpcStatusCode" in eos else None,
            resetError=_int(eos["resetErrorCode"]) if "resetErrorCode" in eos else None,
            trailers=_headers(end.get("trailers")),
        )
    else:
        out["kind"] = "unknown"
    http_id = next((v.get("id") for v in http.values() if isinstance(v, dict)), None)
    ident = http_id if isinstance(http_id, dict) else {}
    out["id"] = f"{_int(ident.get('base'))}:{_int(ident.get('stream'))}"
    return out
