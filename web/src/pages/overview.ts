// Overview: every namespace with meshed/total pods, success rate, RPS and latencies.

import { getJson, type Overview, type StatRow } from "../api";
import { h, replace } from "../dom";
import { count } from "../format";
import type { Page } from "../page";
import { STAT_WINDOWS, type View, viewUrl } from "../route";
import { type Column, link, section, statColumns, table, windowPicker } from "../ui";

export function overviewPage(view: Extract<View, { page: "overview" }>, content: HTMLElement): Page {
  return {
    title: "Overview",
    autoRefresh: true,
    async refresh(signal) {
      const data = await getJson<Overview>(`/api/overview?window=${encodeURIComponent(view.window)}`, signal);
      const columns: Column<StatRow>[] = [
        { title: "Namespace", cell: (r) => link(viewUrl({ page: "namespace", namespace: r.name, window: view.window }), r.name) },
        ...statColumns(view.window).slice(1),
      ];
      const meshed = data.namespaces.reduce((n, r) => n + r.meshed, 0);
      const running = data.namespaces.reduce((n, r) => n + r.running, 0);
      replace(
        content,
        windowPicker("Window", STAT_WINDOWS, view.window, (w) => viewUrl({ ...view, window: w })),
        h(
          "p",
          { class: "summary" },
          `${count(data.namespaces.length, "namespace")} · ${meshed} of ${count(running, "running pod")} meshed`,
        ),
        section(
          "Namespaces",
          table(columns, data.namespaces, "No namespaces.", { "data-testid": "namespaces" }),
        ),
      );
    },
    dispose() {},
  };
}
