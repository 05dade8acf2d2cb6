import { describe, expect, it } from "vitest";
import type { Graph, GraphEdge, GraphNode } from "./api";
import { edgeClasses, edgeLabel, graphElements, sameShape } from "./graph";

function node(name: string, extra: Partial<GraphNode> = {}): GraphNode {
  return {
    id: `emojivoto/deployment/${name}`,
    namespace: "emojivoto",
    type: "deployment",
    name,
    external: false,
    successRate: null,
    rps: null,
    p99: null,
    meshed: 1,
    running: 1,
    ...extra,
  };
}

function edge(src: string, dst: string, extra: Partial<GraphEdge> = {}): GraphEdge {
  return {
    id: `emojivoto/deployment/${src}>emojivoto/deployment/${dst}`,
    source: `emojivoto/deployment/${src}`,
    target: `emojivoto/deployment/${dst}`,
    successRate: 1,
    rps: 2,
    p99: 5,
    secured: true,
    clientId: `${src}.emojivoto.serviceaccount.identity.weft.cluster.local`,
    serverId: `${dst}.emojivoto.serviceaccount.identity.weft.cluster.local`,
    noIdentityMsg: "",
    ...extra,
  };
}

const EMOJIVOTO: Graph = {
  nodes: [node("emoji", { successRate: 1, rps: 4 }), node("vote-bot"), node("voting", { successRate: 0.99, rps: 2 }), node("web", { successRate: 0.95, rps: 2 })],
  edges: [edge("vote-bot", "web", { successRate: 0.95 }), edge("web", "emoji"), edge("web", "voting", { successRate: 0.5 })],
};

describe("graph", () => {
  it("builds a node per workload and an edge per caller/callee pair", () => {
    const elements = graphElements(EMOJIVOTO);
    const nodes = elements.filter((e) => e.group === "nodes").map((e) => e.data.name);
    const edges = elements.filter((e) => e.group === "edges").map((e) => `${e.data.source}>${e.data.target}`);
    expect(nodes).toEqual(["emoji", "vote-bot", "voting", "web"]);
    expect(edges).toEqual([
      "emojivoto/deployment/vote-bot>emojivoto/deployment/web",
      "emojivoto/deployment/web>emojivoto/deployment/emoji",
      "emojivoto/deployment/web>emojivoto/deployment/voting",
    ]);
  });

  it("marks mTLS, plaintext and failing edges differently", () => {
    expect(edgeClasses(edge("a", "b"))).toBe("mtls health-good");
    expect(edgeClasses(edge("a", "b", { secured: false }))).toBe("plaintext health-good");
    expect(edgeClasses(edge("a", "b", { successRate: 0.5 }))).toBe("mtls health-poor failing");
    expect(edgeClasses(edge("a", "b", { successRate: null, rps: null }))).toBe("mtls health-none");
  });

  it("labels edges with success rate and RPS", () => {
    expect(edgeLabel(edge("a", "b", { successRate: 0.9876, rps: 1.25 }))).toBe("mTLS · 98.76% · 1.3 rps");
    expect(edgeLabel(edge("a", "b", { secured: false, successRate: 1, rps: 0.5 }))).toBe("plaintext · 100.00% · 0.50 rps");
    expect(edgeLabel(edge("a", "b", { rps: null }))).toBe("mTLS");
  });

  it("labels nodes with their own numbers and external nodes with their namespace", () => {
    const elements = graphElements({
      nodes: [node("web", { successRate: 0.5, rps: 1 }), node("db", { id: "data/deployment/db", namespace: "data", external: true })],
      edges: [],
    });
    expect(elements[0].data.label).toBe("web\n50.00% · 1.0 rps");
    expect(elements[0].classes).toBe("local health-poor");
    expect(elements[1].data.label).toBe("data/db");
    expect(elements[1].classes).toBe("external health-none");
  });

  it("drops edges whose ends are not nodes", () => {
    const elements = graphElements({ nodes: [node("web")], edges: [edge("web", "gone")] });
    expect(elements.filter((e) => e.group === "edges")).toHaveLength(0);
  });

  it("tells a relabel from a new shape", () => {
    const before = graphElements(EMOJIVOTO);
    const after = graphElements({ ...EMOJIVOTO, edges: EMOJIVOTO.edges.map((e) => ({ ...e, rps: 9 })) });
    expect(sameShape(before, after)).toBe(true);
    expect(sameShape(before, graphElements({ ...EMOJIVOTO, edges: EMOJIVOTO.edges.slice(1) }))).toBe(false);
  });
});
