// Control plane: each component's health, the trust anchor's and issuer's expiry, proxies per
// namespace and their versions, and the metrics API's own checks.

import { type Certificate, type Check, type Component, type ControlPlane, getJson, type NamespaceProxies } from "../api";
import { h, replace } from "../dom";
import { count, formatDate, formatExpiry, formatUptime } from "../format";
import type { Page } from "../page";
import { link, section, sectionErrors, table } from "../ui";

function healthBadge(ok: boolean): HTMLElement {
  return h("span", { class: `badge ${ok ? "ok" : "bad"}` }, ok ? "healthy" : "unhealthy");
}

export function controlPlanePage(content: HTMLElement): Page {
  return {
    title: "Control plane",
    autoRefresh: true,
    async refresh(signal) {
      const data = await getJson<ControlPlane>("/api/controlplane", signal);
      const warnings = data.certificates.filter((c) => c.warning);
      const meshed = data.proxies.reduce((n, p) => n + p.meshed, 0);
      replace(
        content,
        sectionErrors(data.errors),
        h(
          "p",
          { class: "summary" },
          `${count(data.components.length, "component")} in namespace ${data.namespace} · ${count(meshed, "meshed pod")} in ${count(data.proxies.filter((p) => p.meshed).length, "namespace")}`,
        ),
        warnings.map((c) =>
          h("div", { class: "warning", role: "alert" }, `The ${c.kind} ${c.subject} expires ${formatExpiry(c.secondsLeft)} (${formatDate(c.expires)}): rotate it before then.`),
        ),
        section(
          "Components",
          table<Component>(
            [
              { title: "Component", cell: (c) => c.name },
              { title: "Health", cell: (c) => healthBadge(c.healthy) },
              { title: "Pods", cell: (c) => c.pods.map((p) => h("div", {}, p.name)) },
              { title: "Status", cell: (c) => c.pods.map((p) => h("div", {}, p.status)) },
              { title: "Uptime", cell: (c) => c.pods.map((p) => h("div", {}, formatUptime(p.uptime))) },
              {
                title: "Scraped by Prometheus",
                cell: (c) => c.pods.map((p) => h("div", {}, p.scraped === null ? "-" : p.scraped ? "yes" : "no")),
              },
            ],
            data.components,
            "No control-plane pods found.",
            { "data-testid": "components" },
          ),
        ),
        section(
          "Certificates",
          table<Certificate>(
            [
              { title: "Certificate", cell: (c) => c.kind },
              { title: "Subject", cell: (c) => c.subject || "-" },
              { title: "Expires", cell: (c) => formatDate(c.expires) },
              {
                title: "",
                cell: (c) => h("span", { class: c.warning ? "badge bad" : "badge ok" }, formatExpiry(c.secondsLeft)),
              },
            ],
            data.certificates,
            "The identity component's certificate metrics are not in Prometheus (yet).",
            { "data-testid": "certificates" },
          ),
        ),
        section(
          "Data plane",
          table<NamespaceProxies>(
            [
              { title: "Namespace", cell: (p) => link(`/namespaces/${encodeURIComponent(p.namespace)}`, p.namespace) },
              { title: "Meshed pods", cell: (p) => `${p.meshed}/${p.pods}`, numeric: true },
              {
                title: "Proxy versions",
                cell: (p) =>
                  Object.entries(p.versions)
                    .map(([v, n]) => `${v} (${n})`)
                    .join(", ") || "-",
              },
            ],
            data.proxies,
            "No pods.",
            { "data-testid": "proxies" },
          ),
        ),
        section(
          "Checks",
          table<Check>(
            [
              { title: "Subsystem", cell: (c) => c.subsystem ?? "" },
              { title: "Check", cell: (c) => c.checkDescription ?? "" },
              { title: "Status", cell: (c) => h("span", { class: `badge ${c.status === "OK" ? "ok" : "bad"}` }, c.status ?? "?") },
              { title: "Message", cell: (c) => c.friendlyMessageToUser ?? "" },
            ],
            data.checks,
            "No self-check results.",
          ),
        ),
      );
    },
    dispose() {},
  };
}
