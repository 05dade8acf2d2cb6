// Time-series charts drawn by uPlot: success rate, RPS and latency quantiles.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Series } from "./api";

interface Line {
  label: string;
  stroke: string;
  values: (number | null)[];
}

interface ChartSpec {
  title: string;
  unit: (v: number) => string;
  lines: (s: Series) => Line[];
  range?: uPlot.Scale.Range;
}

const SPECS: ChartSpec[] = [
  {
    title: "Success rate",
    unit: (v) => `${(v * 100).toFixed(v >= 0.999 || v === 0 ? 0 : 1)}%`,
    lines: (s) => [{ label: "success rate", stroke: "#2e7d32", values: s.successRate }],
    range: (_u, min, max) => [Math.min(min ?? 0, 0.9), Math.max(max ?? 1, 1)],
  },
  {
    title: "Requests per second",
    unit: (v) => `${v.toFixed(v < 10 ? 1 : 0)}`,
    lines: (s) => [{ label: "RPS", stroke: "#1565c0", values: s.rps }],
    range: (_u, _min, max) => [0, Math.max(max ?? 1, 0.1) * 1.1],
  },
  {
    title: "Latency",
    unit: (v) => (v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${v < 10 ? v.toFixed(1) : v.toFixed(0)} ms`),
    lines: (s) => [
      { label: "p50", stroke: "#43a047", values: s.p50 },
      { label: "p95", stroke: "#fb8c00", values: s.p95 },
      { label: "p99", stroke: "#e53935", values: s.p99 },
    ],
    range: (_u, _min, max) => [0, Math.max(max ?? 1, 1) * 1.1],
  },
];

/** How many points of a series have a value. */
export function points(values: (number | null)[]): number {
  return values.reduce<number>((n, v) => (v === null ? n : n + 1), 0);
}

/** The three charts of a workload; `update` feeds them new data. */
export class Charts {
  private readonly plots: uPlot[] = [];
  private readonly boxes: HTMLElement[] = [];
  private readonly observer: ResizeObserver;

  constructor(private readonly container: HTMLElement) {
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(container);
  }

  private width(): number {
    const columns = this.container.clientWidth >= 900 ? 3 : 1;
    return Math.max(240, Math.floor(this.container.clientWidth / columns) - 24);
  }

  /** Draw `series` (the first call creates the charts). */
  update(series: Series): void {
    const x = series.timestamps;
    SPECS.forEach((spec, i) => {
      const lines = spec.lines(series);
      const data: uPlot.AlignedData = [x, ...lines.map((l) => l.values)];
      const count = lines.reduce((n, l) => n + points(l.values), 0);
      if (this.plots[i] === undefined) {
        const box = document.createElement("div");
        box.className = "chart";
        box.dataset.testid = `chart-${i}`;
        this.container.appendChild(box);
        this.boxes[i] = box;
        const options: uPlot.Options = {
          title: spec.title,
          width: this.width(),
          height: 200,
          scales: { x: { time: true }, y: spec.range ? { range: spec.range } : {} },
          axes: [{}, { values: (_u, ticks) => ticks.map(spec.unit), size: 64 }],
          // A missed scrape is bridged; every measured point is marked, so a young series shows.
          series: [
            {},
            ...lines.map((l) => ({
              label: l.label,
              stroke: l.stroke,
              width: 2,
              spanGaps: true,
              points: { show: true, size: 4, fill: l.stroke },
              value: (_u: uPlot, v: number | null) => (v === null ? "-" : spec.unit(v)),
            })),
          ],
          legend: { live: true },
        };
        this.plots[i] = new uPlot(options, data, box);
      } else {
        this.plots[i].setData(data);
      }
      this.boxes[i].dataset.points = String(count);
    });
  }

  private resize(): void {
    const width = this.width();
    for (const plot of this.plots) plot.setSize({ width, height: 200 });
  }

  /** Free the charts. */
  destroy(): void {
    this.observer.disconnect();
    for (const plot of this.plots) plot.destroy();
  }
}
