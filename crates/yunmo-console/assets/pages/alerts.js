// Alerts: the built-in rules' alerts firing now and the history of changes (GET /api/v1/alerts), every 5 s.

import { api, withQuery } from "../api.js";
import { h, replace, table, when, failureBox } from "../ui.js";

const REFRESH_MS = 5000;

function labelsText(labels) {
  return Object.entries(labels).filter(([name]) => name !== "alertname" && name !== "severity").map(([name, value]) => `${name}=${value}`).join(" ");
}

const columns = (withEnd) => [
  { title: "Alert", value: (alert) => h("strong", {}, alert.name) },
  { title: "Severity", value: (alert) => h("span", { class: alert.severity === "critical" ? "badge bad" : "badge warn" }, alert.severity) },
  { title: "About", value: (alert) => h("code", {}, labelsText(alert.labels)) },
  { title: "Summary", value: (alert) => alert.summary },
  { title: "Detail", value: (alert) => h("span", { class: "muted" }, alert.description) },
  { title: "Since", value: (alert) => when(alert.starts_at) },
  ...(withEnd ? [{ title: "Status", value: (alert) => (alert.status === "resolved" ? `resolved ${when(alert.ends_at)}` : "fired") }] : []),
];

export async function render(root) {
  const firing = h("div", { "data-testid": "alerts-firing" });
  const history = h("div", { "data-testid": "alerts-history" });
  replace(root, h("h1", {}, "Alerts"),
    h("p", { class: "muted" }, "The server's built-in rules (error rate, p99 latency, queue saturation, drift, monthly quotas), evaluated every few seconds; notifications go to the webhooks in [alerts] in Alertmanager's format."),
    h("h2", {}, "Firing"), firing, h("h2", {}, "History"), history);
  let stopped = false;
  let timer = null;
  async function refresh() {
    try {
      const alerts = await api(withQuery("/api/v1/alerts", { limit: 200 }));
      if (stopped) return;
      replace(firing, table(columns(false), alerts.firing, { testid: "firing", empty: "Nothing is firing." }));
      replace(history, table(columns(true), alerts.history, { testid: "history", empty: "No alert has fired yet." }));
      root.dataset.updated = String(Date.now());
    } catch (error) {
      replace(firing, failureBox(error));
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }
  await refresh();
  return () => { stopped = true; clearTimeout(timer); };
}
