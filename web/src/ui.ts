// Pieces every page uses: headers, tables, the CLI box, errors, window pickers.

import type { SectionError, StatRow } from "./api";
import { type Child, h } from "./dom";
import {
  formatByteRate,
  formatLatency,
  formatMeshed,
  formatRps,
  formatSuccessRate,
  health,
  pluralType,
} from "./format";
import { DEFAULT_CHART, viewUrl } from "./route";

export interface Column<T> {
  title: string;
  cell: (row: T) => Child;
  numeric?: boolean;
  wrap?: boolean;
}

/** A link handled by the app's router (no page reload). */
export function link(href: string, ...children: Child[]): HTMLAnchorElement {
  return h("a", { href, "data-link": true }, ...children);
}

/** The URL of a workload's page, keeping the stat window. */
export function workloadHref(ns: string, type: string, name: string, window: string): string {
  return viewUrl({ page: "workload", namespace: ns, type, name, window, chart: DEFAULT_CHART });
}

/** A coloured dot for a success rate. */
export function healthDot(rate: number | null | undefined): HTMLElement {
  const state = health(rate);
  return h("span", { class: `dot health-${state}`, title: state === "none" ? "no traffic" : state });
}

/** A success rate with its health dot. */
export function successCell(rate: number | null | undefined): Child {
  return h("span", { class: "sr" }, healthDot(rate), formatSuccessRate(rate));
}

/** A table, or a line saying there is nothing to show. */
export function table<T>(columns: Column<T>[], rows: T[], empty: string, attrs: Record<string, string> = {}): HTMLElement {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.numeric ? "num" : "" }, c.title)))),
      h(
        "tbody",
        {},
        rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.numeric ? "num" : c.wrap ? "wrap" : "" }, c.cell(row))))),
      ),
    ),
  );
}

/** A section with a heading. */
export function section(title: string, ...children: Child[]): HTMLElement {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

/** The equivalent CLI commands. */
export function cliBox(commands: string[]): HTMLElement {
  return h(
    "div",
    { class: "cli", "data-testid": "cli" },
    h("span", { class: "cli-label" }, "CLI"),
    h("pre", {}, commands.map((c) => h("code", {}, `$ ${c}\n`))),
  );
}

/** The errors of a page's sections, in the page. */
export function sectionErrors(errors: SectionError[]): HTMLElement | null {
  if (errors.length === 0) return null;
  return h(
    "div",
    { class: "error", role: "alert" },
    h("strong", {}, "Some data could not be loaded:"),
    h("ul", {}, errors.map((e) => h("li", {}, `${e.section}: ${e.error}`))),
  );
}

/** A row of buttons to choose a window; the current one is pressed. */
export function windowPicker(label: string, windows: string[], current: string, href: (w: string) => string): HTMLElement {
  return h(
    "div",
    { class: "picker", role: "group", "aria-label": label },
    h("span", { class: "picker-label" }, label),
    windows.map((w) => {
      const a = link(href(w), w);
      if (w === current) a.setAttribute("aria-current", "true");
      return a;
    }),
  );
}

/** Columns of a stat table: name (a link to its page when it has one), pods and golden metrics. */
export function statColumns(window: string, opts: { namespace?: boolean; linked?: boolean } = {}): Column<StatRow>[] {
  const columns: Column<StatRow>[] = [];
  if (opts.namespace) {
    columns.push({ title: "Namespace", cell: (r) => link(viewUrl({ page: "namespace", namespace: r.namespace, window }), r.namespace) });
  }
  columns.push({
    title: "Name",
    cell: (r) =>
      opts.linked === false || r.type === "trafficsplit"
        ? r.name
        : link(workloadHref(r.namespace, r.type, r.name, window), r.name),
  });
  columns.push(
    { title: "Meshed", cell: (r) => (r.type === "authority" ? "-" : formatMeshed(r.meshed, r.running)), numeric: true },
    { title: "Success rate", cell: (r) => successCell(r.successRate), numeric: true },
    { title: "RPS", cell: (r) => formatRps(r.rps), numeric: true },
    { title: "P50", cell: (r) => formatLatency(r.p50), numeric: true },
    { title: "P95", cell: (r) => formatLatency(r.p95), numeric: true },
    { title: "P99", cell: (r) => formatLatency(r.p99), numeric: true },
  );
  return columns;
}

/** Columns of a TCP table. */
export function tcpColumns(): Column<StatRow>[] {
  return [
    { title: "Name", cell: (r) => `${r.type}/${r.name}` },
    { title: "Connections", cell: (r) => String(r.tcp?.connections ?? "-"), numeric: true },
    { title: "Read", cell: (r) => formatByteRate(r.tcp?.readRate), numeric: true },
    { title: "Write", cell: (r) => formatByteRate(r.tcp?.writeRate), numeric: true },
  ];
}

/** The heading of a table of some kind: `Deployments`. */
export function kindTitle(type: string): string {
  const plural = type === "trafficsplit" ? "traffic splits" : pluralType(type);
  return plural.charAt(0).toUpperCase() + plural.slice(1);
}
