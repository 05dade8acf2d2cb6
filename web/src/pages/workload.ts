// Workload (deployment, job, pod, service): golden metrics, the octopus of callers and callees,
// charts from Prometheus, routes, live calls from tap, inbound/outbound, pods, TCP and edges.

import { ApiError, type Edge, getJson, type Pod, type RouteRow, type Series, type StatRow, type WorkloadPage } from "../api";
import type { Charts } from "../charts";
import { type Child, h, replace } from "../dom";
import {
  formatLatency,
  formatMeshed,
  formatRps,
  formatSuccessRate,
  formatUptime,
  health,
  resourceName,
  shortType,
} from "../format";
import { navigate } from "../nav";
import type { Page } from "../page";
import { CHART_WINDOWS, STAT_WINDOWS, type View, viewUrl } from "../route";
import { type TapHandle, openTap } from "../tapsocket";
import { TapTracker, TopTable } from "../tapmodel";
import { topTable } from "../tapviews";
import {
  link,
  section,
  sectionErrors,
  statColumns,
  successCell,
  table,
  tcpColumns,
  windowPicker,
  workloadHref,
} from "../ui";

type WorkloadView = Extract<View, { page: "workload" }>;
const OCTOPUS_MAX = 6;
const LIVE_ROWS = 20;

function card(row: StatRow | null, label: Child, window: string, centre = false): HTMLElement {
  const rate = row?.successRate ?? null;
  const name =
    row && !centre && row.type !== "authority" ? link(workloadHref(row.namespace, row.type, row.name, window), label) : label;
  return h(
    "div",
    { class: `octo-card health-${health(rate)} ${centre ? "centre" : ""}` },
    h("div", { class: "octo-name" }, name),
    h(
      "dl",
      {},
      h("dt", {}, "SR"),
      h("dd", {}, formatSuccessRate(rate)),
      h("dt", {}, "RPS"),
      h("dd", {}, formatRps(row?.rps)),
      h("dt", {}, "P99"),
      h("dd", {}, formatLatency(row?.p99)),
    ),
  );
}

function neighbourCards(rows: StatRow[], window: string, view: WorkloadView): HTMLElement[] {
  const sorted = [...rows].sort((a, b) => (b.rps ?? 0) - (a.rps ?? 0));
  const shown = sorted.slice(0, OCTOPUS_MAX).map((r) => {
    const label = r.namespace === view.namespace ? resourceName(r.type, r.name) : `${resourceName(r.type, r.name)} (${r.namespace})`;
    return card(r, label, window);
  });
  if (sorted.length > OCTOPUS_MAX) shown.push(h("div", { class: "octo-more" }, `and ${sorted.length - OCTOPUS_MAX} more`));
  return shown;
}

function octopus(data: WorkloadPage, view: WorkloadView): HTMLElement {
  const left = data.upstreams.length ? neighbourCards(data.upstreams, view.window, view) : [h("p", { class: "empty" }, "no meshed callers")];
  const right = data.downstreams.length ? neighbourCards(data.downstreams, view.window, view) : [h("p", { class: "empty" }, "no calls out")];
  return h(
    "div",
    { class: "octopus", "data-testid": "octopus" },
    h("div", { class: "octo-col" }, h("div", { class: "octo-head" }, "Callers"), left),
    h("div", { class: "octo-arrow", "aria-hidden": "true" }, "→"),
    h("div", { class: "octo-col" }, card(data.stats, resourceName(view.type, view.name), view.window, true)),
    h("div", { class: "octo-arrow", "aria-hidden": "true" }, "→"),
    h("div", { class: "octo-col" }, h("div", { class: "octo-head" }, "Callees"), right),
  );
}

function summary(stats: StatRow | null, type: string): HTMLElement {
  const item = (label: string, value: string, extra = "") => h("div", { class: `metric ${extra}` }, h("div", { class: "metric-label" }, label), h("div", { class: "metric-value" }, value));
  return h(
    "div",
    { class: "metrics", "data-testid": "summary" },
    item("Success rate", formatSuccessRate(stats?.successRate), `health-${health(stats?.successRate)}`),
    item("RPS", formatRps(stats?.rps)),
    item("P50", formatLatency(stats?.p50)),
    item("P95", formatLatency(stats?.p95)),
    item("P99", formatLatency(stats?.p99)),
    type === "service" ? null : item("Meshed pods", formatMeshed(stats?.meshed, stats?.running)),
  );
}

const ROUTE_COLUMNS = [
  { title: "Route", cell: (r: RouteRow) => r.route },
  { title: "Authority", cell: (r: RouteRow) => r.authority },
  { title: "Success rate", cell: (r: RouteRow) => successCell(r.successRate), numeric: true },
  { title: "RPS", cell: (r: RouteRow) => formatRps(r.rps), numeric: true },
  { title: "Actual SR", cell: (r: RouteRow) => formatSuccessRate(r.actualSuccessRate), numeric: true },
  { title: "Actual RPS", cell: (r: RouteRow) => formatRps(r.actualRps), numeric: true },
  { title: "P50", cell: (r: RouteRow) => formatLatency(r.p50), numeric: true },
  { title: "P95", cell: (r: RouteRow) => formatLatency(r.p95), numeric: true },
  { title: "P99", cell: (r: RouteRow) => formatLatency(r.p99), numeric: true },
];

function podColumns(window: string) {
  return [
    { title: "Pod", cell: (p: Pod) => link(workloadHref(p.namespace, "pod", p.name, window), p.name) },
    { title: "Status", cell: (p: Pod) => p.status },
    { title: "Meshed", cell: (p: Pod) => (p.meshed ? (p.proxyReady ? "yes" : "proxy not ready") : "no") },
    { title: "Proxy", cell: (p: Pod) => p.proxyVersion || "-" },
    { title: "IP", cell: (p: Pod) => p.ip },
    { title: "Uptime", cell: (p: Pod) => formatUptime(p.uptime) },
    { title: "Success rate", cell: (p: Pod) => successCell(p.stats?.successRate), numeric: true },
    { title: "RPS", cell: (p: Pod) => formatRps(p.stats?.rps), numeric: true },
    { title: "P99", cell: (p: Pod) => formatLatency(p.stats?.p99), numeric: true },
  ];
}

const EDGE_COLUMNS = [
  { title: "Source", cell: (e: Edge) => `${resourceName(e.src.type, e.src.name)} (${e.src.namespace})` },
  { title: "Destination", cell: (e: Edge) => `${resourceName(e.dst.type, e.dst.name)} (${e.dst.namespace})` },
  { title: "Client identity", cell: (e: Edge) => e.clientId || "-", wrap: true },
  { title: "Server identity", cell: (e: Edge) => e.serverId || "-", wrap: true },
  {
    title: "Secured",
    cell: (e: Edge) => (e.secured ? h("span", { class: "secured" }, "✔ mTLS") : h("span", { class: "plain" }, e.noIdentityMsg || "no")),
  },
];

export function workloadPage(view: WorkloadView, content: HTMLElement): Page {
  const target = `${resourceName(view.type, view.name)}`;
  const errors = h("div", {});
  const head = h("div", {});
  const octo = h("div", {});
  const chartBox = h("div", { class: "charts", "data-testid": "charts" });
  const chartError = h("div", {});
  const live = h("div", {});
  const liveStatus = h("span", { class: "muted" });
  const liveButton = h("button", { type: "button" });
  const rest = h("div", {});
  let charts: Charts | null = null;
  let disposed = false;
  let gone = false;
  let tap: TapHandle | null = null;
  const tracker = new TapTracker(200);
  let top = new TopTable();
  let drawPending = false;

  const drawTop = () => {
    if (drawPending) return;
    drawPending = true;
    window.setTimeout(() => {
      drawPending = false;
      if (!disposed) replace(live, topTable(top.rows().slice(0, LIVE_ROWS)));
    }, 250);
  };

  const startTap = () => {
    top = new TopTable();
    drawTop();
    replace(liveStatus, "tapping…");
    liveButton.textContent = "Stop";
    tap = openTap(
      { resource: `${view.type}/${view.name}`, namespace: view.namespace, maxRps: 20 },
      {
        onEvent(ev) {
          const added = tracker.add(ev);
          if (added?.finished) {
            top.add(added.row);
            drawTop();
          }
        },
        onError(message) {
          replace(liveStatus, h("span", { class: "error-text" }, message));
        },
        onEnd() {
          tap = null;
          liveButton.textContent = "Start";
          if (liveStatus.textContent === "tapping…") replace(liveStatus, "stopped");
        },
      },
    );
  };
  liveButton.addEventListener("click", () => (tap ? tap.stop() : startTap()));

  const chartWindow = (w: string) => viewUrl({ ...view, chart: w });
  replace(
    content,
    h("div", { class: "pickers" }, windowPicker("Window", STAT_WINDOWS, view.window, (w) => viewUrl({ ...view, window: w }))),
    errors,
    head,
    octo,
    section(
      "Golden metrics over time",
      windowPicker("Chart window", CHART_WINDOWS, view.chart, chartWindow),
      chartError,
      chartBox,
    ),
    view.type === "service"
      ? null
      : section("Live calls", h("div", { class: "live-controls" }, liveButton, liveStatus), live),
    rest,
  );
  if (view.type !== "service") startTap();

  const loadSeries = async (signal: AbortSignal) => {
    const url = `/api/namespaces/${encodeURIComponent(view.namespace)}/${view.type}/${encodeURIComponent(view.name)}/series?window=${view.chart}`;
    try {
      const series = await getJson<Series>(url, signal);
      replace(chartError);
      if (charts === null) {
        const { Charts } = await import("../charts");
        if (disposed) return;
        charts = new Charts(chartBox);
      }
      charts.update(series);
    } catch (err) {
      if (err instanceof DOMException && err.name === "AbortError") throw err;
      replace(chartError, h("div", { class: "error", role: "alert" }, `Charts: ${err instanceof Error ? err.message : String(err)}`));
    }
  };

  return {
    title: `${shortType(view.type) === "svc" ? "Service" : view.type.charAt(0).toUpperCase() + view.type.slice(1)} ${view.name}`,
    autoRefresh: true,
    async refresh(signal) {
      const base = `/api/namespaces/${encodeURIComponent(view.namespace)}/${view.type}/${encodeURIComponent(view.name)}`;
      let data: WorkloadPage;
      try {
        [data] = await Promise.all([getJson<WorkloadPage>(`${base}?window=${view.window}`, signal), loadSeries(signal)]);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404 && !gone) {
          // Nothing to show for what does not exist: only the shell's error stays.
          gone = true;
          tap?.stop();
          replace(content);
        }
        throw err;
      }
      if (gone) {
        navigate(location.pathname + location.search); // it exists now: build the page anew
        return;
      }
      replace(errors, sectionErrors(data.errors));
      replace(head, h("p", { class: "summary" }, `${target} in namespace `, link(viewUrl({ page: "namespace", namespace: view.namespace, window: view.window }), view.namespace)), summary(data.stats, view.type));
      replace(octo, section("Traffic", octopus(data, view)));
      const tcpRows = [data.stats, ...data.pods.map((p) => p.stats ?? null)].filter((r): r is StatRow => r !== null && r.tcp !== null);
      replace(
        rest,
        section("Routes", table(ROUTE_COLUMNS, data.routes, "No routes: this workload's services have no ServiceProfile or no traffic yet.", { "data-testid": "routes" })),
        section("Inbound", table(statColumns(view.window), data.upstreams, "No meshed callers in this window.", { "data-testid": "inbound" })),
        view.type === "service" ? null : section("Outbound", table(statColumns(view.window), data.downstreams, "No calls out in this window.", { "data-testid": "outbound" })),
        section("Pods", table(podColumns(view.window), data.pods, "No pods.", { "data-testid": "pods" })),
        section("TCP", table(tcpColumns(), tcpRows, "No TCP connections.")),
        view.type === "service" ? null : section("Edges", table(EDGE_COLUMNS, data.edges, "No edges.", { "data-testid": "workload-edges" })),
      );
    },
    dispose() {
      disposed = true;
      tap?.stop();
      charts?.destroy();
    },
  };
}
