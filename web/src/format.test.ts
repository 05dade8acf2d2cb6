import { describe, expect, it } from "vitest";
import {
  count,
  formatByteRate,
  formatDate,
  formatExpiry,
  formatLatency,
  formatMeshed,
  formatMicros,
  formatRps,
  formatSuccessRate,
  formatUptime,
  grpcStatusName,
  health,
  pluralType,
  resourceName,
  singularType,
} from "./format";

describe("format", () => {
  it("prints success rates as weft stat does, dash without traffic", () => {
    expect(formatSuccessRate(0.98765)).toBe("98.77%");
    expect(formatSuccessRate(1)).toBe("100.00%");
    expect(formatSuccessRate(0)).toBe("0.00%");
    expect(formatSuccessRate(null)).toBe("-");
    expect(formatSuccessRate(Number.NaN)).toBe("-");
  });

  it("keeps slow request rates visible", () => {
    expect(formatRps(2.345)).toBe("2.3 rps");
    expect(formatRps(0.05)).toBe("0.05 rps");
    expect(formatRps(0)).toBe("0.0 rps");
    expect(formatRps(null)).toBe("-");
  });

  it("rounds latencies by size", () => {
    expect(formatLatency(0.5)).toBe("0.5 ms");
    expect(formatLatency(9.94)).toBe("9.9 ms");
    expect(formatLatency(12.6)).toBe("13 ms");
    expect(formatLatency(undefined)).toBe("-");
    expect(formatMicros(850)).toBe("850 µs");
    expect(formatMicros(1234)).toBe("1.2 ms");
    expect(formatMicros(2_500_000)).toBe("2.50 s");
  });

  it("scales byte rates", () => {
    expect(formatByteRate(12)).toBe("12.0 B/s");
    expect(formatByteRate(12_345)).toBe("12.35 kB/s");
    expect(formatByteRate(3_000_000)).toBe("3.00 MB/s");
  });

  it("classifies health with Linkerd's thresholds", () => {
    expect(health(0.999)).toBe("good");
    expect(health(0.95)).toBe("good");
    expect(health(0.93)).toBe("warning");
    expect(health(0.5)).toBe("poor");
    expect(health(null)).toBe("none");
  });

  it("names resources as the CLI does", () => {
    expect(resourceName("deployment", "web")).toBe("deploy/web");
    expect(pluralType("deployment")).toBe("deployments");
    expect(singularType("deployments")).toBe("deployment");
    expect(singularType("deploy")).toBe("deployment");
    expect(singularType("po")).toBe("pod");
    expect(formatMeshed(3, 4)).toBe("3/4");
    expect(grpcStatusName(14)).toBe("Unavailable");
    expect(grpcStatusName(0)).toBe("OK");
  });

  it("counts nouns", () => {
    expect(count(1, "namespace")).toBe("1 namespace");
    expect(count(0, "meshed pod")).toBe("0 meshed pods");
  });

  it("shortens uptimes", () => {
    expect(formatUptime("46s")).toBe("46s");
    expect(formatUptime("754s")).toBe("12m34s");
    expect(formatUptime("11100s")).toBe("3h5m");
    expect(formatUptime("187200s")).toBe("2d4h");
    expect(formatUptime("")).toBe("-");
    expect(formatUptime("soon")).toBe("soon");
  });

  it("says when certificates expire", () => {
    expect(formatExpiry(365 * 86400 + 100)).toBe("in 365 days");
    expect(formatExpiry(5 * 3600)).toBe("in 5 hours");
    expect(formatExpiry(-3 * 86400)).toBe("expired 3 days ago");
    expect(formatDate(0)).toBe("1970-01-01 00:00 UTC");
  });
});
