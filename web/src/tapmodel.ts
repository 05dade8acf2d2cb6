// Live tap events joined into requests, and requests aggregated into a "top" table (pure).

import type { Peer, TapEvent } from "./api";

/** One request seen by tap: its request event, and its response events once they come. */
export interface TapRow {
  key: string;
  seq: number;
  direction: string;
  source: Peer;
  destination: Peer;
  req: TapEvent;
  rsp?: TapEvent;
  end?: TapEvent;
}

/** The aggregate of one (source, destination, method, path) in the top table. */
export interface TopRow {
  key: string;
  source: string;
  destination: string;
  method: string;
  path: string;
  count: number;
  successes: number;
  failures: number;
  bestUs: number | null;
  worstUs: number | null;
  lastUs: number | null;
}

/** A peer by what owns it (`deploy/web`), else its pod, else its address. */
export function peerName(peer: Peer): string {
  const labels = peer.labels ?? {};
  for (const [label, short] of [
    ["deployment", "deploy"],
    ["k8s_job", "job"],
    ["statefulset", "sts"],
    ["daemonset", "ds"],
  ] as const) {
    if (labels[label]) return `${short}/${labels[label]}`;
  }
  if (labels.pod) return `po/${labels.pod}`;
  return peer.ip ? `${peer.ip}:${peer.port}` : "-";
}

function eventKey(ev: TapEvent): string {
  const addr = (p: Peer) => `${p.ip}:${p.port}`;
  return `${ev.direction}|${addr(ev.source)}|${addr(ev.destination)}|${ev.id}`;
}

/** Whether a finished request succeeded, as Linkerd classifies it: no 5xx, gRPC status OK
 * when there is one, and no reset. */
export function succeeded(row: TapRow): boolean {
  const status = row.rsp?.status ?? 0;
  if (status >= 500) return false;
  if (row.end?.resetError !== null && row.end?.resetError !== undefined) return false;
  const grpc = row.end?.grpcStatus;
  return grpc === null || grpc === undefined || grpc === 0;
}

/** The request's latency: from request to the end of the response (else to its headers). */
export function latencyUs(row: TapRow): number | null {
  return row.end?.totalUs ?? row.rsp?.latencyUs ?? null;
}

/** Joins events into rows by stream id; keeps the newest `limit` rows. */
export class TapTracker {
  private readonly byKey = new Map<string, TapRow>();
  private seq = 0;

  constructor(private readonly limit = 500) {}

  /** Add an event; returns its row and whether the request just finished. */
  add(ev: TapEvent): { row: TapRow; finished: boolean } | null {
    const key = eventKey(ev);
    let row = this.byKey.get(key);
    if (ev.kind === "req") {
      row = { key, seq: this.seq++, direction: ev.direction, source: ev.source, destination: ev.destination, req: ev };
      this.byKey.delete(key);
      this.byKey.set(key, row);
      this.trim();
      return { row, finished: false };
    }
    if (row === undefined) return null; // its request came before the tap started
    if (ev.kind === "rsp") row.rsp = ev;
    if (ev.kind === "end") row.end = ev;
    return { row, finished: ev.kind === "end" };
  }

  /** Newest first. */
  rows(): TapRow[] {
    return [...this.byKey.values()].reverse();
  }

  private trim(): void {
    while (this.byKey.size > this.limit) {
      const oldest = this.byKey.keys().next().value;
      if (oldest === undefined) return;
      this.byKey.delete(oldest);
    }
  }
}

/** Aggregates finished requests by source, destination, method and path (`weft top`). */
export class TopTable {
  private readonly byKey = new Map<string, TopRow>();

  /** Count a finished request. */
  add(row: TapRow): void {
    const source = peerName(row.source);
    const destination = peerName(row.destination);
    const method = row.req.method ?? "";
    const path = row.req.path ?? "";
    const key = `${source}|${destination}|${method}|${path}`;
    let top = this.byKey.get(key);
    if (top === undefined) {
      top = { key, source, destination, method, path, count: 0, successes: 0, failures: 0, bestUs: null, worstUs: null, lastUs: null };
      this.byKey.set(key, top);
    }
    top.count += 1;
    if (succeeded(row)) top.successes += 1;
    else top.failures += 1;
    const latency = latencyUs(row);
    if (latency !== null) {
      top.lastUs = latency;
      top.bestUs = top.bestUs === null ? latency : Math.min(top.bestUs, latency);
      top.worstUs = top.worstUs === null ? latency : Math.max(top.worstUs, latency);
    }
  }

  /** Busiest first, then by name. */
  rows(): TopRow[] {
    return [...this.byKey.values()].sort((a, b) => b.count - a.count || a.key.localeCompare(b.key));
  }
}

/** A top row's success rate (0–1). */
export function topSuccessRate(row: TopRow): number | null {
  return row.count ? row.successes / row.count : null;
}
