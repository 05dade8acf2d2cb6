// The namespace graph drawn by cytoscape.js, laid out by dagre (left to right).

import cytoscape from "cytoscape";
import dagre from "cytoscape-dagre";
import { type Element, sameShape } from "./graph";

cytoscape.use(dagre);

const STYLE: cytoscape.StylesheetJson = [
  {
    selector: "node",
    style: {
      shape: "round-rectangle",
      width: 44,
      height: 44,
      "background-color": "#eceff1",
      "border-width": 3,
      "border-color": "#90a4ae",
      label: "data(label)",
      "text-wrap": "wrap",
      "text-valign": "bottom",
      "text-margin-y": 6,
      "font-size": 12,
      "font-family": "system-ui, sans-serif",
      color: "#263238",
    },
  },
  { selector: "node.health-good", style: { "border-color": "#2e7d32", "background-color": "#e8f5e9" } },
  { selector: "node.health-warning", style: { "border-color": "#f9a825", "background-color": "#fff8e1" } },
  { selector: "node.health-poor", style: { "border-color": "#c62828", "background-color": "#ffebee" } },
  { selector: "node.external", style: { "border-style": "dashed", "background-color": "#fafafa" } },
  {
    selector: "edge",
    style: {
      width: 2,
      "curve-style": "bezier",
      "target-arrow-shape": "triangle",
      "line-color": "#90a4ae",
      "target-arrow-color": "#90a4ae",
      label: "data(label)",
      "font-size": 11,
      "font-family": "system-ui, sans-serif",
      "text-background-color": "#ffffff",
      "text-background-opacity": 0.9,
      "text-background-padding": "2px",
      "text-rotation": "autorotate",
      color: "#37474f",
    },
  },
  { selector: "edge.mtls", style: { "line-color": "#2e7d32", "target-arrow-color": "#2e7d32", width: 3 } },
  { selector: "edge.plaintext", style: { "line-style": "dashed", "line-dash-pattern": [6, 4] } },
  { selector: "edge.health-warning", style: { "line-color": "#f9a825", "target-arrow-color": "#f9a825" } },
  {
    selector: "edge.failing",
    style: { "line-color": "#c62828", "target-arrow-color": "#c62828", width: 5, color: "#c62828" },
  },
];

/** A live graph in `container`; clicking a node calls `open` with its data. */
export class Topology {
  private readonly cy: cytoscape.Core;
  private current: Element[] = [];

  constructor(
    private readonly container: HTMLElement,
    open: (node: { type: string; name: string; namespace: string }) => void,
  ) {
    this.cy = cytoscape({
      container,
      style: STYLE,
      minZoom: 0.3,
      maxZoom: 1.4,
      boxSelectionEnabled: false,
      autoungrabify: false,
    });
    this.cy.on("tap", "node", (event) => {
      const data = event.target.data() as { type: string; name: string; namespace: string };
      open(data);
    });
    // Where each workload is drawn (page pixels in the container), for people's tools and tests.
    this.cy.on("layoutstop viewport", () => {
      const positions: Record<string, [number, number]> = {};
      this.cy.nodes().forEach((n) => {
        const p = n.renderedPosition();
        positions[String(n.data("name"))] = [Math.round(p.x), Math.round(p.y)];
      });
      container.dataset.positions = JSON.stringify(positions);
    });
    this.cy.on("mouseover", "node", () => (container.style.cursor = "pointer"));
    this.cy.on("mouseout", "node", () => (container.style.cursor = ""));
  }

  /** Show `elements`: a new layout when nodes or edges changed, else new labels only. */
  update(elements: Element[]): void {
    if (sameShape(this.current, elements)) {
      for (const element of elements) {
        const existing = this.cy.getElementById(String(element.data.id));
        existing.data(element.data);
        existing.classes(element.classes);
      }
    } else {
      this.cy.elements().remove();
      this.cy.add(elements.map((e) => ({ group: e.group, data: { ...e.data } as cytoscape.ElementDataDefinition, classes: e.classes })));
      this.cy
        .layout({ name: "dagre", rankDir: "LR", nodeSep: 50, rankSep: 160, padding: 30, fit: true } as cytoscape.LayoutOptions)
        .run();
    }
    this.current = elements;
    this.container.dataset.nodes = String(this.cy.nodes().length);
    this.container.dataset.edges = String(this.cy.edges().length);
    this.container.dataset.nodeNames = this.cy
      .nodes()
      .map((n) => String(n.data("name")))
      .join(",");
  }

  /** Free the canvas. */
  destroy(): void {
    this.cy.destroy();
  }
}
