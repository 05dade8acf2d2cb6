// The app shell: navigation, the router, auto-refresh with "last updated", errors in the page.

import "./style.css";
import { ApiError, getJson, type Overview } from "./api";
import { cliCommands } from "./cli";
import { h, replace } from "./dom";
import { formatClock } from "./format";
import { setNavigator } from "./nav";
import type { Page } from "./page";
import { controlPlanePage } from "./pages/controlplane";
import { namespacePage } from "./pages/namespace";
import { overviewPage } from "./pages/overview";
import { tapPage } from "./pages/tap";
import { workloadPage } from "./pages/workload";
import { parseView, type View, viewUrl } from "./route";
import { cliBox, link } from "./ui";

const REFRESH_MS = 5000;
const SIDEBAR_REFRESH_MS = 30000;

function makePage(view: View, content: HTMLElement): Page {
  switch (view.page) {
    case "overview":
      return overviewPage(view, content);
    case "namespace":
      return namespacePage(view, content);
    case "workload":
      return workloadPage(view, content);
    case "tap":
      return tapPage(view, content);
    case "controlplane":
      return controlPlanePage(content);
    case "notfound":
      return {
        title: "Not found",
        autoRefresh: false,
        async refresh() {
          replace(content, h("p", {}, `There is no page at ${view.path}. `, link("/", "Go to the overview.")));
        },
        dispose() {},
      };
  }
}

class App {
  private readonly title = h("h1", {});
  private readonly status = h("span", { class: "status", "data-testid": "last-updated" });
  private readonly autoToggle = h("input", { type: "checkbox", checked: true, "aria-label": "auto-refresh" });
  private readonly autoLabel = h("label", {}, this.autoToggle, " auto-refresh");
  private readonly cli = h("div", {});
  private readonly error = h("div", { "data-testid": "page-error" });
  private readonly content = h("div", { class: "content" });
  private readonly namespaces = h("ul", { class: "nav-namespaces" });
  private readonly navLinks = new Map<string, HTMLAnchorElement>();
  private page: Page | null = null;
  private controller: AbortController | null = null;
  private timer: number | undefined;
  private generation = 0;

  constructor(root: HTMLElement) {
    const navItem = (href: string, label: string) => {
      const a = link(href, label);
      this.navLinks.set(href, a);
      return h("li", {}, a);
    };
    const nav = h(
      "nav",
      { class: "side", "aria-label": "main" },
      h("a", { class: "brand", href: "/", "data-link": true }, "weft"),
      h("ul", {}, navItem("/", "Overview"), navItem("/controlplane", "Control plane"), navItem("/tap", "Tap")),
      h("div", { class: "nav-heading" }, "Namespaces"),
      this.namespaces,
    );
    const head = h(
      "div",
      { class: "page-head" },
      this.title,
      h("div", { class: "refresh" }, this.status, this.autoLabel),
    );
    replace(root, h("div", { class: "layout" }, nav, h("main", {}, head, this.cli, this.error, this.content)));
    this.autoToggle.addEventListener("change", () => this.schedule());
    document.addEventListener("visibilitychange", () => this.schedule());
    document.addEventListener("click", (event) => this.intercept(event));
    setNavigator((url) => this.navigate(url));
    window.addEventListener("weft:cli", (event) => {
      const commands = (event as CustomEvent<string[]>).detail;
      replace(this.cli, commands.length ? cliBox(commands) : null);
    });
    window.addEventListener("popstate", () => this.show());
    void this.loadNamespaces();
    window.setInterval(() => void this.loadNamespaces(), SIDEBAR_REFRESH_MS);
  }

  /** Follow in-app links without reloading. */
  private intercept(event: MouseEvent): void {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    const anchor = (event.target as Element | null)?.closest?.("a[data-link]");
    if (!(anchor instanceof HTMLAnchorElement)) return;
    event.preventDefault();
    this.navigate(anchor.getAttribute("href") ?? "/");
  }

  /** Go to an in-app URL. */
  navigate(url: string): void {
    if (url !== location.pathname + location.search) history.pushState(null, "", url);
    this.show();
  }

  /** Show the view of the current URL. */
  show(): void {
    this.page?.dispose();
    this.controller?.abort();
    window.clearTimeout(this.timer);
    this.generation += 1;
    const view = parseView(location.pathname, location.search);
    replace(this.content);
    replace(this.error);
    replace(this.status, "Loading…");
    this.page = makePage(view, this.content);
    this.title.textContent = this.page.title;
    this.autoLabel.hidden = !this.page.autoRefresh;
    document.title = `${this.page.title} · weft`;
    const commands = cliCommands(view);
    replace(this.cli, commands.length ? cliBox(commands) : null);
    const section = view.page === "workload" || view.page === "namespace" ? `/namespaces/${view.namespace}` : viewUrl(view).split("?")[0];
    for (const [href, a] of this.navLinks) {
      a.toggleAttribute("aria-current", href === section);
    }
    for (const a of this.namespaces.querySelectorAll("a")) {
      a.toggleAttribute("aria-current", a.getAttribute("href") === section);
    }
    void this.refresh();
  }

  private async refresh(): Promise<void> {
    const page = this.page;
    if (page === null) return;
    const generation = this.generation;
    this.controller = new AbortController();
    try {
      await page.refresh(this.controller.signal);
      if (generation !== this.generation) return;
      replace(this.error);
      replace(this.status, page.autoRefresh ? `Last updated ${formatClock(new Date())}` : "");
    } catch (err) {
      if (generation !== this.generation || (err instanceof DOMException && err.name === "AbortError")) return;
      const message = err instanceof ApiError || err instanceof Error ? err.message : String(err);
      replace(this.error, h("div", { class: "error", role: "alert" }, h("strong", {}, "Could not load this page: "), message));
      replace(this.status, `Failed at ${formatClock(new Date())}`);
    }
    if (generation === this.generation) this.schedule();
  }

  private schedule(): void {
    window.clearTimeout(this.timer);
    if (this.page?.autoRefresh && this.autoToggle.checked && !document.hidden) {
      this.timer = window.setTimeout(() => void this.refresh(), REFRESH_MS);
    }
  }

  private async loadNamespaces(): Promise<void> {
    try {
      const overview = await getJson<Overview>("/api/overview");
      const current = location.pathname;
      replace(
        this.namespaces,
        overview.namespaces.map((row) => {
          const href = `/namespaces/${encodeURIComponent(row.name)}`;
          const a = link(href, row.name);
          a.toggleAttribute("aria-current", current === href || current.startsWith(`${href}/`));
          return h("li", {}, a);
        }),
      );
    } catch {
      replace(this.namespaces, h("li", { class: "muted" }, "(unavailable)"));
    }
  }
}

const root = document.getElementById("app");
if (root) new App(root).show();
