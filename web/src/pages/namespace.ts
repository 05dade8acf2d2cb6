// Namespace: the live topology of who calls whom, and a table per workload kind.

import { getJson, type GraphEdge, type NamespacePage } from "../api";
import { h, replace } from "../dom";
import { formatLatency, formatRps, shortType } from "../format";
import { graphElements } from "../graph";
import { navigate } from "../nav";
import type { Page } from "../page";
import { STAT_WINDOWS, type View, viewUrl } from "../route";
import type { Topology } from "../topology";
import {
  kindTitle,
  section,
  sectionErrors,
  statColumns,
  successCell,
  table,
  tcpColumns,
  windowPicker,
  workloadHref,
} from "../ui";

const KINDS = ["deployment", "job", "pod", "trafficsplit"];

function nodeName(id: string, current: string): string {
  const [namespace, type, name] = id.split("/");
  const prefix = type === "deployment" ? "" : `${shortType(type)}/`;
  return namespace === current ? `${prefix}${name}` : `${prefix}${name} (${namespace})`;
}

export function namespacePage(view: Extract<View, { page: "namespace" }>, content: HTMLElement): Page {
  const errors = h("div", {});
  const graphBox = h("div", { class: "graph", "data-testid": "topology" });
  const edgeList = h("div", {});
  const tables = h("div", {});
  let topology: Topology | null = null;
  let disposed = false;
  replace(
    content,
    windowPicker("Window", STAT_WINDOWS, view.window, (w) => viewUrl({ ...view, window: w })),
    errors,
    section(
      "Topology",
      h(
        "p",
        { class: "legend" },
        h("span", { class: "legend-mtls" }, "mTLS"),
        h("span", { class: "legend-plain" }, "plaintext"),
        h("span", { class: "legend-failing" }, "failing (success < 90%)"),
        "Click a workload to open it.",
      ),
      graphBox,
      edgeList,
    ),
    tables,
  );

  const open = (node: { type: string; name: string; namespace: string }) =>
    navigate(workloadHref(node.namespace, node.type, node.name, view.window));

  return {
    title: `Namespace ${view.namespace}`,
    autoRefresh: true,
    async refresh(signal) {
      const data = await getJson<NamespacePage>(
        `/api/namespaces/${encodeURIComponent(view.namespace)}?window=${encodeURIComponent(view.window)}`,
        signal,
      );
      replace(errors, sectionErrors(data.errors));
      const elements = graphElements(data.graph);
      if (topology === null) {
        const { Topology } = await import("../topology");
        if (disposed) return;
        topology = new Topology(graphBox, open);
      }
      topology.update(elements);
      replace(
        edgeList,
        table<GraphEdge>(
          [
            { title: "From", cell: (e) => nodeName(e.source, view.namespace) },
            { title: "To", cell: (e) => nodeName(e.target, view.namespace) },
            { title: "Success rate", cell: (e) => successCell(e.successRate), numeric: true },
            { title: "RPS", cell: (e) => formatRps(e.rps), numeric: true },
            { title: "P99", cell: (e) => formatLatency(e.p99), numeric: true },
            {
              title: "Secured",
              cell: (e) =>
                e.secured
                  ? h("span", { class: "secured", title: `${e.clientId} → ${e.serverId}` }, "✔ mTLS")
                  : h("span", { class: "plain" }, e.noIdentityMsg || "plaintext"),
            },
          ],
          data.graph.edges,
          "No calls between workloads seen yet.",
          { "data-testid": "edges", class: "compact" },
        ),
      );
      const sections = KINDS.filter((kind) => kind === "deployment" || (data.tables[kind] ?? []).length > 0).map((kind) =>
        section(
          kindTitle(kind),
          table(statColumns(view.window), data.tables[kind] ?? [], `No ${kindTitle(kind).toLowerCase()} in ${view.namespace}.`, {
            "data-testid": `table-${kind}`,
          }),
        ),
      );
      const tcp = KINDS.flatMap((kind) => data.tables[kind] ?? []).filter((r) => r.tcp && r.type !== "pod");
      if (tcp.length) sections.push(section("TCP", table(tcpColumns(), tcp, "")));
      replace(tables, sections);
      graphBox.setAttribute("aria-label", `topology: ${data.graph.nodes.length} workloads, ${data.graph.edges.length} edges`);
    },
    dispose() {
      disposed = true;
      topology?.destroy();
    },
  };
}
