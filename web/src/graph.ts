// The namespace topology as graph elements (pure): nodes and edges with the classes the
// stylesheet in topology.ts draws (mTLS or plaintext, failing, external).

import type { Graph, GraphEdge, GraphNode } from "./api";
import { formatRps, formatSuccessRate, health, shortType } from "./format";

export interface Element {
  group: "nodes" | "edges";
  data: Record<string, string | number | boolean | null>;
  classes: string;
}

/** The label under a node: its name, then success rate and RPS when it served requests. */
export function nodeLabel(node: GraphNode): string {
  const name = node.external ? `${node.namespace}/${node.name}` : node.name;
  if (node.rps === null || node.rps === undefined) return name;
  return `${name}\n${formatSuccessRate(node.successRate)} · ${formatRps(node.rps)}`;
}

/** The label on an edge: mTLS or plaintext, then success rate and RPS when it carried requests. */
export function edgeLabel(edge: GraphEdge): string {
  const security = edge.secured ? "mTLS" : "plaintext";
  if (edge.rps === null || edge.rps === undefined) return security;
  return `${security} · ${formatSuccessRate(edge.successRate)} · ${formatRps(edge.rps)}`;
}

/** The classes of an edge: `mtls` or `plaintext`, and its health (`poor` edges are failing). */
export function edgeClasses(edge: GraphEdge): string {
  const classes = [edge.secured ? "mtls" : "plaintext", `health-${health(edge.successRate)}`];
  if (health(edge.successRate) === "poor") classes.push("failing");
  return classes.join(" ");
}

/** Cytoscape elements for a namespace's graph, in a stable order. */
export function graphElements(graph: Graph): Element[] {
  const ids = new Set(graph.nodes.map((n) => n.id));
  const nodes: Element[] = graph.nodes.map((node) => ({
    group: "nodes",
    data: {
      id: node.id,
      label: nodeLabel(node),
      name: node.name,
      type: node.type,
      kind: shortType(node.type),
      namespace: node.namespace,
    },
    classes: [node.external ? "external" : "local", `health-${health(node.successRate)}`].join(" "),
  }));
  const edges: Element[] = graph.edges
    .filter((e) => ids.has(e.source) && ids.has(e.target))
    .map((edge) => ({
      group: "edges",
      data: {
        id: edge.id,
        source: edge.source,
        target: edge.target,
        label: edgeLabel(edge),
        secured: edge.secured,
      },
      classes: edgeClasses(edge),
    }));
  return [...nodes, ...edges];
}

/** Whether two element lists have the same nodes and edges (then only labels need updating). */
export function sameShape(a: Element[], b: Element[]): boolean {
  if (a.length !== b.length) return false;
  const key = (e: Element) => `${e.group}:${String(e.data.id)}`;
  const left = new Set(a.map(key));
  return b.every((e) => left.has(key(e)));
}
