// How numbers, names and times read in the dashboard (pure; see format.test.ts).

export type Health = "good" | "warning" | "poor" | "none";

const SHORT_TYPES: Record<string, string> = {
  namespace: "ns",
  deployment: "deploy",
  job: "job",
  pod: "po",
  service: "svc",
  authority: "au",
  trafficsplit: "ts",
};

const PLURALS: Record<string, string> = {
  namespace: "namespaces",
  deployment: "deployments",
  job: "jobs",
  pod: "pods",
  service: "services",
  authority: "authorities",
  trafficsplit: "trafficsplits",
};

const GRPC_STATUS = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
];

export const DASH = "-";

/** A success rate (0–1) as a percentage with two decimals, as `weft stat` prints it. */
export function formatSuccessRate(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return DASH;
  return `${(rate * 100).toFixed(2)}%`;
}

/** Requests per second: one decimal, two under 1 rps so slow traffic does not read as 0. */
export function formatRps(rps: number | null | undefined): string {
  if (rps === null || rps === undefined || !Number.isFinite(rps)) return DASH;
  return `${rps < 1 && rps > 0 ? rps.toFixed(2) : rps.toFixed(1)} rps`;
}

/** A latency in milliseconds: one decimal under 10 ms, whole milliseconds above. */
export function formatLatency(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return DASH;
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/** A duration in microseconds (tap's latencies): µs under a millisecond, else ms or s. */
export function formatMicros(us: number | null | undefined): string {
  if (us === null || us === undefined || !Number.isFinite(us)) return DASH;
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

/** Bytes per second with a binary-free SI unit: B/s, kB/s, MB/s, GB/s. */
export function formatByteRate(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return DASH;
  const units = ["B/s", "kB/s", "MB/s", "GB/s"];
  let value = rate;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value.toFixed(1) : value.toFixed(2)} ${units[unit]}`;
}

/** Meshed pods of running pods: `3/4`. */
export function formatMeshed(meshed: number | null | undefined, running: number | null | undefined): string {
  if (meshed === null || meshed === undefined || running === null || running === undefined) return DASH;
  return `${meshed}/${running}`;
}

/** The colour class of a success rate, with Linkerd's web thresholds (90 % and 95 %). */
export function health(rate: number | null | undefined): Health {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return "none";
  if (rate < 0.9) return "poor";
  if (rate < 0.95) return "warning";
  return "good";
}

/** `deployment` → `deploy`, as the CLI abbreviates it. */
export function shortType(type: string): string {
  return SHORT_TYPES[type] ?? type;
}

/** `deployment` → `deployments` (URL paths use plurals, as Linkerd's dashboard does). */
export function pluralType(type: string): string {
  return PLURALS[type] ?? `${type}s`;
}

/** `deployments`, `deploy`, `deployment` → `deployment`; unknown names come back as given. */
export function singularType(name: string): string {
  const lowered = name.toLowerCase();
  for (const [type, plural] of Object.entries(PLURALS)) {
    if (lowered === type || lowered === plural || lowered === SHORT_TYPES[type]) return type;
  }
  return lowered;
}

/** `deploy/web`. */
export function resourceName(type: string, name: string): string {
  return `${shortType(type)}/${name}`;
}

/** A gRPC status code by name (`14` → `Unavailable`), as `weft tap` prints it. */
export function grpcStatusName(code: number | null | undefined): string {
  if (code === null || code === undefined) return DASH;
  return GRPC_STATUS[code] ?? String(code);
}

/** How long until (or since) a certificate expires: `in 364 days`, `in 5 hours`, `expired 2 days ago`. */
export function formatExpiry(secondsLeft: number): string {
  const past = secondsLeft < 0;
  const seconds = Math.abs(secondsLeft);
  const [amount, unit] =
    seconds >= 2 * 86400
      ? [Math.floor(seconds / 86400), "days"]
      : seconds >= 2 * 3600
        ? [Math.floor(seconds / 3600), "hours"]
        : [Math.floor(seconds / 60), "minutes"];
  return past ? `expired ${amount} ${unit} ago` : `in ${amount} ${unit}`;
}

/** A Unix time as an ISO date and time in UTC: `2036-11-26 07:50 UTC`. */
export function formatDate(unixSeconds: number): string {
  const iso = new Date(unixSeconds * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}

/** A wall-clock time `HH:MM:SS` (local), for "last updated". */
export function formatClock(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** A pod's uptime as the metrics API gives it (`"754s"`, a protobuf Duration) in short units:
 * `12m34s`, `3h5m`, `2d4h`; other text comes back as given. */
export function formatUptime(text: string): string {
  const match = /^(\d+)(?:\.\d+)?s$/.exec(text);
  if (match === null) return text || DASH;
  const seconds = Number(match[1]);
  const [d, h, m, s] = [Math.floor(seconds / 86400), Math.floor(seconds / 3600) % 24, Math.floor(seconds / 60) % 60, seconds % 60];
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${m}m`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** `1 namespace`, `3 namespaces`. */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}
