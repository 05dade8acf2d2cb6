// Tables of live tap data: the event stream (tap page) and the top table (live calls).

import type { TapEvent } from "./api";
import { type Child, h } from "./dom";
import { formatMicros, formatSuccessRate, grpcStatusName } from "./format";
import { peerName, type TapRow, type TopRow, topSuccessRate } from "./tapmodel";
import { healthDot, table } from "./ui";

function detail(title: string, ev: TapEvent | undefined): Child {
  if (ev === undefined) return null;
  const fields: [string, string][] = [];
  if (ev.kind === "req") {
    fields.push([":method", ev.method ?? ""], [":authority", ev.authority ?? ""], [":path", ev.path ?? ""], ["scheme", ev.scheme ?? ""]);
  } else if (ev.kind === "rsp") {
    fields.push([":status", String(ev.status ?? "")], ["latency", formatMicros(ev.latencyUs)]);
  } else if (ev.kind === "end") {
    fields.push(
      ["duration", formatMicros(ev.durationUs)],
      ["response-length", `${ev.bytes ?? 0} B`],
      ["grpc-status", ev.grpcStatus === null || ev.grpcStatus === undefined ? "-" : grpcStatusName(ev.grpcStatus)],
      ["reset-error", ev.resetError === null || ev.resetError === undefined ? "-" : String(ev.resetError)],
    );
  }
  for (const [name, value] of [...(ev.headers ?? []), ...(ev.trailers ?? [])]) fields.push([name, value]);
  return h("div", { class: "detail" }, h("h4", {}, title), h("dl", {}, fields.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
}

function peer(row: TapRow, which: "source" | "destination"): string {
  const p = row[which];
  const tls = p.labels.tls === "true" ? " (mTLS)" : "";
  return `${peerName(p)}${tls}`;
}

/** The stream of tapped requests, newest first; a click on a row shows its details. */
export function eventTable(rows: TapRow[], expanded: Set<string>, toggle: (key: string) => void): HTMLElement {
  if (rows.length === 0) return h("p", { class: "empty" }, "No requests yet.");
  const head = ["Direction", "Source", "Destination", "Method", "Path", "Latency", "HTTP status", "gRPC status"];
  const body: HTMLElement[] = [];
  for (const row of rows) {
    const status = row.rsp?.status;
    const failed = (status !== undefined && status >= 500) || (row.end?.grpcStatus ?? 0) !== 0;
    body.push(
      h(
        "tr",
        { class: `event ${failed ? "failed" : ""}`, onclick: () => toggle(row.key), "aria-expanded": expanded.has(row.key) ? "true" : "false" },
        h("td", {}, row.direction === "inbound" ? "IN" : row.direction === "outbound" ? "OUT" : "-"),
        h("td", {}, peer(row, "source")),
        h("td", {}, peer(row, "destination")),
        h("td", {}, row.req.method ?? ""),
        h("td", { class: "path" }, row.req.path ?? ""),
        h("td", { class: "num" }, formatMicros(row.end?.totalUs ?? row.rsp?.latencyUs)),
        h("td", { class: "num" }, status === undefined ? "…" : String(status)),
        h("td", {}, row.end ? grpcStatusName(row.end.grpcStatus) : ""),
      ),
    );
    if (expanded.has(row.key)) {
      body.push(
        h(
          "tr",
          { class: "details" },
          h("td", { colspan: head.length }, h("div", { class: "details-grid" }, detail("Request", row.req), detail("Response", row.rsp), detail("End of stream", row.end))),
        ),
      );
    }
  }
  return h(
    "div",
    { class: "table-wrap" },
    h("table", { "data-testid": "tap-events" }, h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))), h("tbody", {}, body)),
  );
}

/** `weft top`'s table: requests by source, destination, method and path. */
export function topTable(rows: TopRow[]): HTMLElement {
  return table<TopRow>(
    [
      { title: "Source", cell: (r) => r.source },
      { title: "Destination", cell: (r) => r.destination },
      { title: "Method", cell: (r) => r.method },
      { title: "Path", cell: (r) => r.path },
      { title: "Count", cell: (r) => String(r.count), numeric: true },
      { title: "Best", cell: (r) => formatMicros(r.bestUs), numeric: true },
      { title: "Worst", cell: (r) => formatMicros(r.worstUs), numeric: true },
      { title: "Last", cell: (r) => formatMicros(r.lastUs), numeric: true },
      { title: "Success rate", cell: (r) => h("span", {}, healthDot(topSuccessRate(r)), formatSuccessRate(topSuccessRate(r))), numeric: true },
    ],
    rows,
    "No calls seen yet.",
    { "data-testid": "top" },
  );
}
