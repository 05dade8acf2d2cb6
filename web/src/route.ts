// The dashboard's URL state: which view, window and query a URL means, and back (pure).

import { pluralType, singularType } from "./format";

export const STAT_WINDOWS = ["10s", "1m", "10m", "1h"];
export const CHART_WINDOWS = ["5m", "15m", "30m", "1h", "3h", "6h"];
export const DEFAULT_WINDOW = "1m";
export const DEFAULT_CHART = "15m";
export const WORKLOAD_TYPES = ["deployment", "job", "pod", "service"];

export interface TapQuery {
  resource: string;
  namespace: string;
  toResource: string;
  toNamespace: string;
  method: string;
  path: string;
  authority: string;
  scheme: string;
  maxRps: string;
  extract: boolean;
}

export type View =
  | { page: "overview"; window: string }
  | { page: "namespace"; namespace: string; window: string }
  | { page: "workload"; namespace: string; type: string; name: string; window: string; chart: string }
  | { page: "tap"; query: TapQuery }
  | { page: "controlplane" }
  | { page: "notfound"; path: string };

export const EMPTY_TAP: TapQuery = {
  resource: "",
  namespace: "default",
  toResource: "",
  toNamespace: "",
  method: "",
  path: "",
  authority: "",
  scheme: "",
  maxRps: "100",
  extract: false,
};

const TAP_FIELDS = ["resource", "namespace", "toResource", "toNamespace", "method", "path", "authority", "scheme", "maxRps"] as const;

function choose(value: string | null, allowed: string[], fallback: string): string {
  return value !== null && allowed.includes(value) ? value : fallback;
}

/** The view a location (path and query string) shows. */
export function parseView(pathname: string, search: string): View {
  const params = new URLSearchParams(search);
  const window = choose(params.get("window"), STAT_WINDOWS, DEFAULT_WINDOW);
  const parts = pathname.split("/").filter((p) => p !== "").map(decodeURIComponent);
  if (parts.length === 0 || (parts.length === 1 && parts[0] === "namespaces")) {
    return { page: "overview", window };
  }
  if (parts[0] === "namespaces" && parts.length === 2) {
    return { page: "namespace", namespace: parts[1], window };
  }
  if (parts[0] === "namespaces" && parts.length === 4) {
    const type = singularType(parts[2]);
    if (WORKLOAD_TYPES.includes(type)) {
      const chart = choose(params.get("chart"), CHART_WINDOWS, DEFAULT_CHART);
      return { page: "workload", namespace: parts[1], type, name: parts[3], window, chart };
    }
  }
  if (parts.length === 1 && parts[0] === "tap") {
    const query: TapQuery = { ...EMPTY_TAP };
    for (const field of TAP_FIELDS) {
      const value = params.get(field);
      if (value !== null) query[field] = value;
    }
    query.extract = params.get("extract") === "true";
    return { page: "tap", query };
  }
  if (parts.length === 1 && parts[0] === "controlplane") return { page: "controlplane" };
  return { page: "notfound", path: pathname };
}

function withQuery(path: string, params: Record<string, string>): string {
  const search = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "")).toString();
  return search ? `${path}?${search}` : path;
}

/** The shareable URL of a view (defaults are left out). */
export function viewUrl(view: View): string {
  const window = (w: string) => (w === DEFAULT_WINDOW ? "" : w);
  switch (view.page) {
    case "overview":
      return withQuery("/", { window: window(view.window) });
    case "namespace":
      return withQuery(`/namespaces/${encodeURIComponent(view.namespace)}`, { window: window(view.window) });
    case "workload":
      return withQuery(
        `/namespaces/${encodeURIComponent(view.namespace)}/${pluralType(view.type)}/${encodeURIComponent(view.name)}`,
        { window: window(view.window), chart: view.chart === DEFAULT_CHART ? "" : view.chart },
      );
    case "tap": {
      const params: Record<string, string> = {};
      for (const field of TAP_FIELDS) {
        if (view.query[field] !== EMPTY_TAP[field]) params[field] = view.query[field];
      }
      if (view.query.extract) params.extract = "true";
      return withQuery("/tap", params);
    }
    case "controlplane":
      return "/controlplane";
    case "notfound":
      return view.path;
  }
}

/** The URL of a workload's page. */
export function workloadUrl(namespace: string, type: string, name: string): string {
  return viewUrl({ page: "workload", namespace, type, name, window: DEFAULT_WINDOW, chart: DEFAULT_CHART });
}
