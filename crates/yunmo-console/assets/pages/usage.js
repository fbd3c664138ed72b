// Usage and cost: GET /api/v1/usage by model, key or day, its CSV, and the monthly quotas' burn-down.

import { api, withQuery } from "../api.js";
import { h, replace, table, num, field, failureBox, saveFile, attempt } from "../ui.js";
import { lineChart } from "../charts.js";

const DAY_MS = 86_400_000;
const COLUMNS = ["requests", "failed", "input_tokens", "output_tokens", "input_elements", "output_elements", "compute_ms", "bytes_in", "bytes_out", "cost"];

function monthStart(now) {
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
}

function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

/**
 * When a monthly quota runs out at the pace so far this month: `used` of `quota` after `elapsed` ms of
 * the month. Returns the day (ms) or null when the pace does not reach it before the month ends.
 */
export function projectedRunOut(used, quota, elapsedMs, monthStartMs, monthEndMs) {
  if (!quota) return null;
  if (used >= quota) return monthStartMs + elapsedMs;
  if (used <= 0 || elapsedMs <= 0) return null;
  const at = monthStartMs + (quota * elapsedMs) / used;
  return at < monthEndMs ? at : null;
}

async function burnDown(container, tenant) {
  if (!tenant) return;
  const now = new Date();
  const start = monthStart(now);
  const end = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
  let record;
  let days;
  try {
    record = await api(`/api/v1/tenants/${encodeURIComponent(tenant)}`);
    days = (await api(withQuery("/api/v1/usage", { group_by: "day", tenant, from: isoDay(start) }))).rows;
  } catch (error) {
    replace(container, failureBox(error));
    return;
  }
  const limits = record.limits ?? {};
  const used = {
    monthly_requests: days.reduce((total, row) => total + row.requests, 0),
    monthly_tokens: days.reduce((total, row) => total + row.input_tokens + row.output_tokens, 0),
    monthly_compute_seconds: days.reduce((total, row) => total + row.compute_ms, 0) / 1000,
  };
  const rows = Object.entries(used).filter(([quota]) => limits[quota]).map(([quota, value]) => {
    const runOut = projectedRunOut(value, limits[quota], Date.now() - start, start, end);
    return { quota, limit: limits[quota], value, runOut };
  });
  replace(container, h("h2", {}, `Quotas of ${tenant} this month`), table([
    { title: "Quota", value: (row) => row.quota },
    { title: "Limit", value: (row) => num(row.limit), numeric: true },
    { title: "Used", value: (row) => num(row.value), numeric: true },
    { title: "Used %", value: (row) => `${num((100 * row.value) / row.limit)} %`, numeric: true },
    { title: "Runs out (at this month's pace)", value: (row) => h("span", { "data-testid": `runout-${row.quota}` }, row.runOut === null ? "not this month" : isoDay(row.runOut)) },
  ], rows, { testid: "quotas", empty: "No monthly quotas set for this tenant." }));
}

export async function render(root, ctx) {
  const now = new Date();
  const from = h("input", { type: "date", name: "from", value: isoDay(monthStart(now)), "data-testid": "usage-from" });
  const to = h("input", { type: "date", name: "to", value: isoDay(Date.now() + DAY_MS), "data-testid": "usage-to" });
  const group = h("select", { name: "group_by", "data-testid": "usage-group" }, ["model", "key", "day"].map((value) => h("option", { value }, value)));
  const tenant = h("input", { name: "tenant", placeholder: ctx.isAdmin ? "all tenants" : ctx.who?.tenant, disabled: !ctx.isAdmin, "data-testid": "usage-tenant" });
  const download = h("button", { type: "button", "data-testid": "usage-csv" }, "Download CSV");
  const form = h("form", { class: "row" }, field("From", from), field("To (exclusive)", to), field("Group by", group), field("Tenant", tenant), h("button", { type: "submit" }, "Show"), download);
  const result = h("div", {});
  const chartBox = h("div", { class: "chart wide" });
  const quotas = h("div", { class: "card" });
  replace(root, h("h1", {}, "Usage and cost"), form, chartBox, result, quotas);
  const query = (format) => ({ from: from.value, to: to.value, group_by: group.value, tenant: tenant.value.trim(), format });
  let chart = null;
  async function show() {
    let report;
    try {
      report = await api(withQuery("/api/v1/usage", query()));
    } catch (error) {
      replace(result, failureBox(error));
      return;
    }
    const rows = report.rows;
    replace(result, h("p", { class: "muted" }, `${report.from} to ${report.to}, by ${report.group_by}`), table([
      { title: "Tenant", value: (row) => row.tenant },
      { title: report.group_by, value: (row) => row.group },
      ...COLUMNS.map((name) => ({ title: name.replace(/_/g, " "), value: (row) => num(row[name]), numeric: true })),
    ], rows, { testid: "usage", empty: "No usage in this range." }));
    result.dataset.rows = String(rows.length);
    if (chart) { chart.destroy(); chart = null; }
    chartBox.replaceChildren();
    if (report.group_by === "day" && rows.length > 0) {
      const byDay = new Map();
      for (const row of rows) {
        const entry = byDay.get(row.group) ?? { requests: 0, cost: 0 };
        entry.requests += row.requests;
        entry.cost += row.cost;
        byDay.set(row.group, entry);
      }
      const daysSorted = [...byDay.keys()].sort();
      const xs = daysSorted.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000);
      chart = lineChart(chartBox, { id: "usage-by-day", title: "Requests and cost by day", series: ["requests", "cost"], data: [xs, daysSorted.map((day) => byDay.get(day).requests), daysSorted.map((day) => byDay.get(day).cost)] });
    }
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); show(); });
  download.addEventListener("click", async () => {
    const text = await attempt(() => api(withQuery("/api/v1/usage", query("csv")), { text: true }));
    if (text !== undefined) saveFile(`yunmo-usage-${from.value}-${to.value}-${group.value}.csv`, text, "text/csv");
  });
  await show();
  await burnDown(quotas, ctx.isAdmin ? tenant.value.trim() || ctx.who?.tenant : ctx.who?.tenant);
  return () => chart?.destroy();
}
