// The dashboard server's JSON (weft/web/shape.py writes it) and how to fetch it.

export interface Resource {
  namespace: string;
  type: string;
  name: string;
}

export interface Tcp {
  connections: number;
  readRate: number;
  writeRate: number;
}

export interface StatRow extends Resource {
  status: string;
  meshed: number;
  running: number;
  failed: number;
  requests: number;
  successRate: number | null;
  rps: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  tcp: Tcp | null;
  split: { apex: string; leaf: string; weight: string } | null;
}

export interface SectionError {
  section: string;
  error: string;
}

export interface Overview {
  window: string;
  namespaces: StatRow[];
}

export interface GraphNode extends Resource {
  id: string;
  external: boolean;
  successRate: number | null;
  rps: number | null;
  p99: number | null;
  meshed: number | null;
  running: number | null;
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  successRate: number | null;
  rps: number | null;
  p99: number | null;
  secured: boolean;
  clientId: string;
  serverId: string;
  noIdentityMsg: string;
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export interface NamespacePage {
  namespace: string;
  window: string;
  tables: Record<string, StatRow[]>;
  graph: Graph;
  errors: SectionError[];
}

export interface Edge {
  src: Resource;
  dst: Resource;
  clientId: string;
  serverId: string;
  noIdentityMsg: string;
  secured: boolean;
}

export interface RouteRow {
  route: string;
  authority: string;
  resource: string;
  requests: number;
  successRate: number | null;
  rps: number | null;
  actualSuccessRate: number | null;
  actualRps: number | null;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export interface Pod {
  namespace: string;
  name: string;
  ip: string;
  status: string;
  meshed: boolean;
  proxyReady: boolean;
  proxyVersion: string;
  controlPlane: boolean;
  uptime: string;
  owner: { type: string; name: string };
  stats?: StatRow | null;
}

export interface WorkloadPage {
  resource: Resource;
  window: string;
  stats: StatRow | null;
  upstreams: StatRow[];
  downstreams: StatRow[];
  routes: RouteRow[];
  pods: Pod[];
  edges: Edge[];
  errors: SectionError[];
}

export interface Series {
  resource: Resource;
  window: string;
  step: number;
  timestamps: number[];
  successRate: (number | null)[];
  rps: (number | null)[];
  p50: (number | null)[];
  p95: (number | null)[];
  p99: (number | null)[];
}

export interface Component {
  name: string;
  healthy: boolean;
  pods: { name: string; status: string; uptime: string; scraped: boolean | null }[];
}

export interface Certificate {
  kind: string;
  subject: string;
  expires: number;
  secondsLeft: number;
  warning: boolean;
}

export interface NamespaceProxies {
  namespace: string;
  pods: number;
  meshed: number;
  versions: Record<string, number>;
}

export interface Check {
  subsystem?: string;
  checkDescription?: string;
  status?: string;
  friendlyMessageToUser?: string;
}

export interface ControlPlane {
  namespace: string;
  components: Component[];
  certificates: Certificate[];
  proxies: NamespaceProxies[];
  checks: Check[];
  errors: SectionError[];
}

export interface Peer {
  ip: string;
  port: number;
  labels: Record<string, string>;
}

/** One tap event as the server flattens it (weft/web/shape.py tap_event). */
export interface TapEvent {
  id: string;
  kind: "req" | "rsp" | "end" | "unknown";
  direction: string;
  source: Peer;
  destination: Peer;
  route: Record<string, string>;
  method?: string;
  scheme?: string;
  authority?: string;
  path?: string;
  headers?: [string, string][];
  status?: number;
  latencyUs?: number | null;
  durationUs?: number | null;
  totalUs?: number | null;
  bytes?: number;
  grpcStatus?: number | null;
  resetError?: number | null;
  trailers?: [string, string][];
}

/** An error answer of the API, with its status and one-line message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** GET a JSON document of the API; errors carry the server's `{"error": ...}` message. */
export async function getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, signal });
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, `the dashboard server does not answer (${String(err)})`);
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message =
      body && typeof body === "object" && "error" in body
        ? String((body as { error: unknown }).error)
        : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  if (body === null) throw new ApiError(response.status, `${path} did not answer JSON`);
  return body as T;
}
