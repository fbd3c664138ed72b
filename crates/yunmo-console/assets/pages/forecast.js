// A model's demand forecast panel: GET /api/v1/models/{m}/forecast, the last three days of hourly requests,
// the next day's forecast and the measured capacity of the version it serves.

import { api, modelPath } from "../api.js";
import { h, replace, num, when, failureBox } from "../ui.js";
import { lineChart } from "../charts.js";

const SHOWN_HISTORY = 72;

/** Renders the forecast of `model` into `container`; returns the chart (to destroy) or null. */
export async function forecastPanel(container, model) {
  let report;
  try {
    report = await api(`${modelPath(model)}/forecast?hours=24`);
  } catch (error) {
    replace(container, failureBox(error));
    return null;
  }
  const history = report.history;
  const from = Math.max(0, history.t.length - SHOWN_HISTORY);
  const pastT = history.t.slice(from);
  const past = history.requests.slice(from);
  const t = [...pastT, ...report.forecast.t];
  const actual = [...past, ...report.forecast.t.map(() => null)];
  // The forecast line starts at the last hour of history, so the two lines meet.
  const ahead = [...past.map((_, i) => (i === past.length - 1 ? past[i] : null)), ...report.forecast.requests];
  // Capacity far above demand would flatten the demand lines: it is drawn only within 3× of the busiest hour.
  const busiest = Math.max(1, ...past, ...report.forecast.requests);
  const limit = report.capacity?.requests_per_hour ?? null;
  const capacity = t.map(() => (limit !== null && limit <= 3 * busiest ? limit : null));
  const backtest = report.backtest;
  const facts = [
    `method: ${report.method.replace("_", " ")}`,
    report.parameters ? ` (α ${report.parameters.alpha}, β ${report.parameters.beta}, γ ${report.parameters.gamma})` : "",
    backtest ? ` · back-test on the last day: MAE ${num(backtest.mae)} req/h${backtest.mape === null ? "" : `, MAPE ${num(100 * backtest.mape)} %`} (repeating the day before: MAE ${num(backtest.naive_mae)})` : " · no back-test (needs three days of history)",
    report.capacity ? ` · capacity of v${report.capacity.version}: ${num(report.capacity.requests_per_hour)} req/h (${report.capacity.parallel} parallel, ${num(report.capacity.mean_compute_ms)} ms per request)` : " · capacity: not measured (needs requests in the last day and the version loaded)",
  ];
  const warning = report.exceeds_capacity_at
    ? h("p", { class: "failure", "data-testid": "forecast-exceeds" }, `Forecast demand passes capacity at ${when(report.exceeds_capacity_at)} UTC.`)
    : "";
  const box = h("div", { class: "chart wide" });
  replace(container, h("p", { class: "muted", "data-testid": "forecast-method" }, facts), warning, box);
  if (report.method === "no_history") {
    box.replaceWith(h("p", { class: "muted" }, "No usage yet: nothing to forecast."));
    return null;
  }
  return lineChart(box, { id: `forecast:${model}`, title: "Requests per hour: last 3 days, next 24 hours", series: ["requests", "forecast", "capacity"], unit: "req/h", data: [t, actual, ahead, capacity] });
}
