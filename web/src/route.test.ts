import { describe, expect, it } from "vitest";
import { cliCommands, shellQuote, tapCommand } from "./cli";
import { EMPTY_TAP, parseView, viewUrl, type View } from "./route";

describe("URL state", () => {
  it("reads each page from its path", () => {
    expect(parseView("/", "")).toEqual({ page: "overview", window: "1m" });
    expect(parseView("/namespaces", "?window=10m")).toEqual({ page: "overview", window: "10m" });
    expect(parseView("/namespaces/emojivoto", "")).toEqual({ page: "namespace", namespace: "emojivoto", window: "1m" });
    expect(parseView("/namespaces/emojivoto/deployments/web", "?chart=1h&window=10s")).toEqual({
      page: "workload",
      namespace: "emojivoto",
      type: "deployment",
      name: "web",
      window: "10s",
      chart: "1h",
    });
    expect(parseView("/namespaces/emojivoto/pods/web-abc", "")).toMatchObject({ page: "workload", type: "pod" });
    expect(parseView("/controlplane", "")).toEqual({ page: "controlplane" });
    expect(parseView("/nope/x", "")).toEqual({ page: "notfound", path: "/nope/x" });
    expect(parseView("/namespaces/x/widgets/y", "")).toMatchObject({ page: "notfound" });
  });

  it("ignores windows it does not offer", () => {
    expect(parseView("/", "?window=7m")).toEqual({ page: "overview", window: "1m" });
    expect(parseView("/namespaces/a/jobs/b", "?chart=2d")).toMatchObject({ chart: "15m" });
  });

  it("round-trips every view through its URL", () => {
    const views: View[] = [
      { page: "overview", window: "1m" },
      { page: "overview", window: "1h" },
      { page: "namespace", namespace: "emojivoto", window: "10s" },
      { page: "workload", namespace: "emojivoto", type: "deployment", name: "web", window: "1m", chart: "6h" },
      { page: "workload", namespace: "emojivoto", type: "service", name: "web-svc", window: "1m", chart: "15m" },
      { page: "controlplane" },
      { page: "tap", query: { ...EMPTY_TAP, resource: "deploy/web", namespace: "emojivoto", method: "GET", path: "/api", extract: true } },
    ];
    for (const view of views) {
      const url = new URL(viewUrl(view), "http://dashboard");
      expect(parseView(url.pathname, url.search)).toEqual(view);
    }
  });

  it("leaves defaults out of shared URLs", () => {
    expect(viewUrl({ page: "overview", window: "1m" })).toBe("/");
    expect(viewUrl({ page: "workload", namespace: "e", type: "job", name: "j", window: "1m", chart: "15m" })).toBe("/namespaces/e/jobs/j");
    expect(viewUrl({ page: "tap", query: { ...EMPTY_TAP, resource: "deploy/web" } })).toBe("/tap?resource=deploy%2Fweb");
  });
});

describe("equivalent CLI commands", () => {
  it("matches each view", () => {
    expect(cliCommands({ page: "overview", window: "1m" })).toEqual(["weft stat ns"]);
    expect(cliCommands({ page: "overview", window: "1h" })).toEqual(["weft stat ns -t 1h"]);
    expect(cliCommands({ page: "namespace", namespace: "emojivoto", window: "1m" })).toEqual([
      "weft stat deploy -n emojivoto",
      "weft edges deploy -n emojivoto",
    ]);
    expect(cliCommands({ page: "workload", namespace: "emojivoto", type: "deployment", name: "web", window: "10s", chart: "15m" })).toEqual([
      "weft stat deploy/web -n emojivoto -t 10s",
      "weft stat deploy --from deploy/web -n emojivoto -t 10s",
      "weft routes deploy/web -n emojivoto -t 10s",
      "weft edges deploy -n emojivoto",
      "weft top deploy/web -n emojivoto",
    ]);
    expect(cliCommands({ page: "controlplane" })).toEqual(["weft check", "weft check --proxy"]);
  });

  it("builds tap's command line from the form, quoting what needs it", () => {
    expect(tapCommand({ ...EMPTY_TAP, resource: "deploy/web", namespace: "emojivoto", toResource: "deploy/emoji", method: "POST", path: "/emojivoto.v1.EmojiService/" })).toBe(
      "weft tap deploy/web -n emojivoto --to deploy/emoji --method POST --path /emojivoto.v1.EmojiService/",
    );
    expect(tapCommand({ ...EMPTY_TAP, resource: "ns/emojivoto", maxRps: "10", extract: true })).toBe(
      "weft tap ns/emojivoto -n default --max-rps 10 -o json",
    );
    expect(shellQuote("a b")).toBe("'a b'");
    expect(shellQuote("it's")).toBe("'it'\\''s'");
  });
});
