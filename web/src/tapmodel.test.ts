import { describe, expect, it } from "vitest";
import type { Peer, TapEvent } from "./api";
import { latencyUs, peerName, succeeded, TapTracker, TopTable, topSuccessRate } from "./tapmodel";

const WEB: Peer = { ip: "10.244.0.5", port: 41000, labels: { deployment: "vote-bot", pod: "vote-bot-1", namespace: "emojivoto" } };
const EMOJI: Peer = { ip: "10.244.0.6", port: 8080, labels: { deployment: "web", pod: "web-1", namespace: "emojivoto", tls: "true" } };

function ev(kind: TapEvent["kind"], id: string, extra: Partial<TapEvent> = {}): TapEvent {
  return { id, kind, direction: "inbound", source: WEB, destination: EMOJI, route: {}, ...extra };
}

function request(tracker: TapTracker, id: string, path: string, status: number, totalUs: number, grpcStatus: number | null = null) {
  tracker.add(ev("req", id, { method: "GET", path }));
  tracker.add(ev("rsp", id, { status, latencyUs: totalUs / 2 }));
  return tracker.add(ev("end", id, { totalUs, durationUs: totalUs / 2, grpcStatus, bytes: 10 }));
}

describe("tap model", () => {
  it("names peers by owner, pod, then address", () => {
    expect(peerName(WEB)).toBe("deploy/vote-bot");
    expect(peerName({ ip: "10.0.0.1", port: 80, labels: { pod: "x" } })).toBe("po/x");
    expect(peerName({ ip: "10.0.0.1", port: 80, labels: { k8s_job: "j" } })).toBe("job/j");
    expect(peerName({ ip: "10.0.0.1", port: 80, labels: {} })).toBe("10.0.0.1:80");
  });

  it("joins request, response and end by stream", () => {
    const tracker = new TapTracker();
    expect(tracker.add(ev("req", "1:0", { method: "GET", path: "/a" }))?.finished).toBe(false);
    tracker.add(ev("req", "1:1", { method: "GET", path: "/b" }));
    tracker.add(ev("rsp", "1:0", { status: 200, latencyUs: 500 }));
    const done = tracker.add(ev("end", "1:0", { totalUs: 900, grpcStatus: null }));
    expect(done?.finished).toBe(true);
    expect(done?.row.req.path).toBe("/a");
    expect(latencyUs(done!.row)).toBe(900);
    expect(tracker.rows().map((r) => r.req.path)).toEqual(["/b", "/a"]);
  });

  it("ignores responses whose request it never saw and keeps a bounded number of rows", () => {
    const tracker = new TapTracker(2);
    expect(tracker.add(ev("rsp", "9:9", { status: 200 }))).toBeNull();
    for (const id of ["1:1", "1:2", "1:3"]) tracker.add(ev("req", id, { path: id }));
    expect(tracker.rows().map((r) => r.req.path)).toEqual(["1:3", "1:2"]);
  });

  it("keeps the streams of different connections apart", () => {
    const tracker = new TapTracker();
    tracker.add(ev("req", "1:0", { path: "/one" }));
    tracker.add(ev("req", "1:0", { path: "/two", source: { ...WEB, port: 41001 } }));
    expect(tracker.rows()).toHaveLength(2);
  });

  it("classifies failures as Linkerd does", () => {
    const tracker = new TapTracker();
    expect(succeeded(request(tracker, "1:0", "/", 200, 100)!.row)).toBe(true);
    expect(succeeded(request(tracker, "1:1", "/", 500, 100)!.row)).toBe(false);
    expect(succeeded(request(tracker, "1:2", "/", 200, 100, 14)!.row)).toBe(false);
    expect(succeeded(request(tracker, "1:3", "/", 200, 100, 0)!.row)).toBe(true);
  });

  it("aggregates finished requests into a top table", () => {
    const tracker = new TapTracker();
    const top = new TopTable();
    for (const [id, path, status, us] of [
      ["1:0", "/api/list", 200, 800],
      ["1:1", "/api/list", 200, 300],
      ["1:2", "/api/vote", 500, 2000],
      ["1:3", "/api/list", 200, 500],
    ] as const) {
      top.add(request(tracker, id, path, status, us)!.row);
    }
    const rows = top.rows();
    expect(rows.map((r) => [r.path, r.count])).toEqual([
      ["/api/list", 3],
      ["/api/vote", 1],
    ]);
    expect(rows[0]).toMatchObject({ source: "deploy/vote-bot", destination: "deploy/web", bestUs: 300, worstUs: 800, lastUs: 500 });
    expect(topSuccessRate(rows[0])).toBe(1);
    expect(topSuccessRate(rows[1])).toBe(0);
  });
});
