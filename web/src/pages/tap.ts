// Tap: the query form, start/stop, and the live event table with expandable details.

import { getJson, type Overview } from "../api";
import { tapCommand } from "../cli";
import { h, replace } from "../dom";
import { navigateQuietly, showCli } from "../nav";
import type { Page } from "../page";
import { type TapQuery, type View, viewUrl } from "../route";
import { type TapHandle, openTap } from "../tapsocket";
import { TapTracker } from "../tapmodel";
import { eventTable } from "../tapviews";
import { section } from "../ui";

const METHODS = ["", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
const SCHEMES = ["", "http", "https"];

function field(label: string, control: HTMLElement): HTMLElement {
  return h("label", { class: "field" }, h("span", {}, label), control);
}

export function tapPage(view: Extract<View, { page: "tap" }>, content: HTMLElement): Page {
  const query: TapQuery = { ...view.query };
  const input = (name: keyof TapQuery, placeholder: string) => {
    const el = h("input", { name, placeholder, value: String(query[name]), autocomplete: "off" });
    el.addEventListener("input", () => update(name, el.value));
    return el;
  };
  const select = (name: keyof TapQuery, options: string[]) => {
    const el = h(
      "select",
      { name },
      options.map((o) => h("option", { value: o, selected: o === query[name] }, o || "any")),
    );
    el.addEventListener("change", () => update(name, el.value));
    return el;
  };
  const namespaces = h("datalist", { id: "tap-namespaces" });
  const namespaceInput = input("namespace", "default");
  namespaceInput.setAttribute("list", "tap-namespaces");
  const extract = h("input", { type: "checkbox", name: "extract", checked: query.extract });
  extract.addEventListener("change", () => update("extract", extract.checked));
  const start = h("button", { type: "submit", class: "primary" }, "Start");
  const stop = h("button", { type: "button", disabled: true }, "Stop");
  const status = h("span", { class: "muted", "data-testid": "tap-status" }, "Not running.");
  const events = h("div", {});
  const warnings = h("div", {});
  const tracker = new TapTracker(500);
  const expanded = new Set<string>();
  let handle: TapHandle | null = null;
  let count = 0;
  let pending = false;

  function update(name: keyof TapQuery, value: string | boolean): void {
    (query as unknown as Record<string, string | boolean>)[name] = value;
    showCli([tapCommand(query)]);
    navigateQuietly(viewUrl({ page: "tap", query }));
  }

  const draw = () => {
    if (pending) return;
    pending = true;
    window.setTimeout(() => {
      pending = false;
      replace(events, eventTable(tracker.rows().slice(0, 200), expanded, toggle));
    }, 200);
  };
  const toggle = (key: string) => {
    if (expanded.has(key)) expanded.delete(key);
    else expanded.add(key);
    draw();
  };

  const running = (on: boolean) => {
    start.disabled = on;
    stop.disabled = !on;
  };

  const form = h(
    "form",
    { class: "tap-form", "data-testid": "tap-form" },
    field("Resource", input("resource", "deploy/web or ns/emojivoto")),
    field("Namespace", namespaceInput),
    field("To resource", input("toResource", "deploy/emoji")),
    field("To namespace", input("toNamespace", "same")),
    field("Method", select("method", METHODS)),
    field("Path prefix", input("path", "/api")),
    field("Authority", input("authority", "web-svc.emojivoto:80")),
    field("Scheme", select("scheme", SCHEMES)),
    field("Max RPS", input("maxRps", "100")),
    h("label", { class: "field check" }, extract, h("span", {}, "show headers")),
    h("div", { class: "buttons" }, start, stop, status),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    handle?.stop();
    count = 0;
    running(true);
    replace(status, "Connecting…");
    replace(warnings);
    const body: Record<string, unknown> = { ...query, maxRps: Number(query.maxRps || "100") };
    handle = openTap(body, {
      onStart: () => replace(status, "Tapping: waiting for requests…"),
      onEvent(ev) {
        const added = tracker.add(ev);
        if (added && ev.kind === "req") {
          count += 1;
          replace(status, `Tapping: ${count} requests seen.`);
        }
        draw();
      },
      onError(message) {
        replace(status, h("span", { class: "error-text", role: "alert" }, message));
      },
      onWarning(message) {
        replace(warnings, h("p", { class: "warning" }, message));
      },
      onEnd() {
        handle = null;
        running(false);
        if (status.textContent?.startsWith("Tapping") || status.textContent === "Connecting…") {
          replace(status, `Stopped after ${count} requests.`);
        }
      },
    });
  });
  stop.addEventListener("click", () => handle?.stop());
  replace(content, namespaces, section("Query", form), warnings, section("Requests", events));
  draw();

  return {
    title: "Tap",
    autoRefresh: false,
    async refresh(signal) {
      try {
        const overview = await getJson<Overview>("/api/overview", signal);
        replace(namespaces, overview.namespaces.map((n) => h("option", { value: n.name })));
      } catch (err) {
        if (err instanceof DOMException && err.name === "AbortError") throw err;
        // The list only helps typing; the form works without it.
      }
    },
    dispose() {
      handle?.stop();
    },
  };
}
