// A version's drift panel: GET /api/v1/models/{m}/versions/{v}/drift, with each feature's statistic, value,
// thresholds, state and window counts, and its bins' shares of the baseline and the window.

import { api, modelPath } from "../api.js";
import { h, replace, table, num, when, attempt, toast, failureBox } from "../ui.js";

const STATE_CLASS = { ok: "badge ok", warn: "badge warn", alert: "badge bad" };

function badge(state, testid) {
  return h("span", { class: STATE_CLASS[state] ?? "badge", "data-testid": testid }, state.replace(/_/g, " "));
}

function bins(feature) {
  if (!feature.bins.length) return "";
  return h("details", {}, h("summary", {}, `${feature.bins.length} bins`), table([
    { title: "Bin", value: (bin) => bin.label },
    { title: "Baseline %", value: (bin) => num(100 * bin.baseline), numeric: true },
    { title: "Window %", value: (bin) => num(100 * bin.window), numeric: true },
  ], feature.bins));
}

/** Renders the drift of `model` version `version` into `container`; `canWrite` offers a baseline reset. */
export async function driftPanel(container, model, version, canWrite) {
  const path = `${modelPath(model)}/versions/${version}/drift`;
  let report;
  try {
    report = await api(path);
  } catch (error) {
    replace(container, failureBox(error));
    return;
  }
  const baseline = report.baseline;
  const windows = report.window;
  const summary = [
    h("strong", {}, `v${version} drift `), badge(report.state, `drift-state-${version}`),
    baseline ? ` · baseline: ${baseline.source.replace("_", " ")}, ${num(baseline.rows)}${baseline.frozen_at ? ` rows, frozen ${when(baseline.frozen_at)}` : ` of ${num(baseline.target_rows)} rows`}` : "",
    windows ? ` · window ${num(windows.seconds)} s, judged from ${num(windows.min_count)} rows; now ${num(windows.current.rows)} rows` : "",
    report.dropped ? ` · ${num(report.dropped)} samples dropped` : "",
  ];
  const reset = canWrite && report.enabled ? h("button", {
    type: "button", class: "small",
    onclick: async () => {
      if (!globalThis.confirm(`Start v${version}'s drift baseline over from its next requests?`)) return;
      const done = await attempt(() => api(`${path}/baseline`, { method: "DELETE" }));
      if (done !== undefined) { toast(`v${version}: collecting a new baseline`); driftPanel(container, model, version, canWrite); }
    },
  }, "New baseline") : "";
  replace(container, h("p", {}, summary, " ", reset), table([
    { title: "Feature", value: (feature) => h("code", {}, feature.name) },
    { title: "Source", value: (feature) => feature.source },
    { title: "Statistic", value: (feature) => feature.statistic.replace("_", " ") },
    { title: "Value", value: (feature) => (feature.value === null ? "–" : feature.value.toFixed(3)), numeric: true },
    { title: "Warn / alert", value: (feature) => `${feature.warn} / ${feature.alert}`, numeric: true },
    { title: "State", value: (feature) => badge(feature.state, `drift-${version}-${feature.name}`) },
    { title: "Window rows", value: (feature) => `${num(feature.window_count)} (${feature.window})`, numeric: true },
    { title: "Baseline rows", value: (feature) => num(feature.baseline_count), numeric: true },
    { title: "", value: bins },
  ], report.features, { testid: `drift-${version}`, empty: report.state === "not_loaded" ? "Not loaded since the server started." : "No features yet: the baseline is collecting." }));
}
