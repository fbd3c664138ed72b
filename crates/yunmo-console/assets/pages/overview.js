// Overview: live figures of every loaded version the key can see, from GET /api/v1/stats every 2 s.

import { api, withQuery } from "../api.js";
import { h, replace, num, failureBox } from "../ui.js";
import { lineChart } from "../charts.js";

/** Seconds of history the charts show. */
const WINDOW = 300;
const REFRESH_MS = 2000;

const sum = (values) => values.reduce((total, value) => total + value, 0);
const last = (values, span) => values.slice(Math.max(0, values.length - span));

function tile(label, value, testid) {
  return h("div", { class: "tile" }, h("div", { class: "tile-value", "data-testid": testid }, value), h("div", { class: "tile-label" }, label));
}

/** The live panel of one version: its tiles and charts, updated in place on each refresh. */
class VersionPanel {
  constructor(container, stats, idPrefix) {
    this.key = `${stats.model}:${stats.version}`;
    this.id = `${idPrefix}${this.key}`;
    this.tiles = h("div", { class: "tiles" });
    this.charts = [];
    this.llmSamples = { t: [], running: [], waiting: [], kv: [] };
    const plots = h("div", { class: "charts" });
    this.element = h("section", { class: "card", "data-testid": `version-${this.key}` },
      h("h2", {}, h("a", { href: `#/model/${encodeURIComponent(stats.model)}` }, stats.model), ` v${stats.version} `, h("span", { class: "badge" }, stats.kind)),
      this.tiles, plots);
    container.append(this.element);
    const box = () => { const div = h("div", { class: "chart" }); plots.append(div); return div; };
    const series = stats.series;
    this.charts.push(["requests", lineChart(box(), { id: `requests:${this.id}`, title: "Requests / s", series: ["requests", "failed"], unit: "req/s", data: [series.t, series.requests, series.failed] })]);
    const kinds = Object.keys(series.failures);
    this.charts.push(["failures", lineChart(box(), { id: `failures:${this.id}`, title: "Errors by kind / s", series: kinds, unit: "req/s", data: [series.t, ...kinds.map((kind) => series.failures[kind])] })]);
    this.charts.push(["latency", lineChart(box(), { id: `latency:${this.id}`, title: "Latency", series: ["p50", "p99"], unit: "ms", points: true, data: [series.t, series.p50_ms, series.p99_ms] })]);
    if (stats.kind === "generate") {
      this.charts.push(["tokens", lineChart(box(), { id: `tokens:${this.id}`, title: "Tokens / s", series: ["tokens"], unit: "tok/s", data: [series.t, series.tokens] })]);
      this.charts.push(["token-latency", lineChart(box(), { id: `token-latency:${this.id}`, title: "Time to first token, between tokens (p50)", series: ["first token", "inter-token"], unit: "ms", points: true, data: [series.t, series.first_token_p50_ms, series.inter_token_p50_ms] })]);
      this.charts.push(["sequences", lineChart(box(), { id: `sequences:${this.id}`, title: "Sequences, KV cache", series: ["running", "waiting", "KV cache %"], unit: "", data: [[], [], [], []] })]);
    }
    this.update(stats);
  }

  update(stats) {
    const series = stats.series;
    const kinds = Object.keys(series.failures);
    const recent = last(series.requests, 10);
    const saturation = stats.queue_capacity ? (100 * stats.queue_depth) / stats.queue_capacity : null;
    const tiles = [
      tile(`requests (${WINDOW / 60} min)`, num(stats.totals.requests), `requests-${this.key}`),
      tile("requests/s (10 s)", num(sum(recent) / Math.max(1, recent.length)), `rate-${this.key}`),
      tile("failed", num(stats.totals.failed), `failed-${this.key}`),
      tile("queue", stats.queue_capacity ? `${stats.queue_depth} / ${stats.queue_capacity}` : num(stats.queue_depth), `queue-${this.key}`),
    ];
    if (saturation !== null) tiles.push(tile("saturation", `${num(saturation)} %`, `saturation-${this.key}`));
    if (stats.kind === "generate") {
      tiles.push(tile("tokens/s (10 s)", num(sum(last(series.tokens, 10)) / 10), `tokens-${this.key}`));
      tiles.push(tile("running", num(stats.running), `running-${this.key}`));
      tiles.push(tile("KV cache", stats.kv_cache_usage === null ? "–" : `${num(100 * stats.kv_cache_usage)} %`, `kv-${this.key}`));
      const samples = this.llmSamples;
      samples.t.push(series.t[series.t.length - 1]);
      samples.running.push(stats.running);
      samples.waiting.push(stats.queue_depth);
      samples.kv.push(stats.kv_cache_usage === null ? null : 100 * stats.kv_cache_usage);
      for (const values of Object.values(samples)) if (values.length > WINDOW / 2) values.shift();
    }
    replace(this.tiles, tiles);
    for (const [name, chart] of this.charts) {
      if (name === "requests") chart.update([series.t, series.requests, series.failed]);
      if (name === "failures") chart.update([series.t, ...kinds.map((kind) => series.failures[kind])]);
      if (name === "latency") chart.update([series.t, series.p50_ms, series.p99_ms]);
      if (name === "tokens") chart.update([series.t, series.tokens]);
      if (name === "token-latency") chart.update([series.t, series.first_token_p50_ms, series.inter_token_p50_ms]);
      if (name === "sequences") chart.update([this.llmSamples.t, this.llmSamples.running, this.llmSamples.waiting, this.llmSamples.kv]);
    }
  }

  destroy() {
    for (const [, chart] of this.charts) chart.destroy();
    this.element.remove();
  }
}

/**
 * Live panels for the versions `/api/v1/stats` returns (of `model` only, when given), refreshed every 2 s
 * into `container`; returns the function that stops it.
 */
export function livePanels(container, { model, idPrefix = "" } = {}) {
  const panels = new Map();
  const totals = h("div", { class: "tiles" });
  const list = h("div", {});
  const empty = h("p", { class: "muted", "data-testid": "no-loaded" }, "No loaded versions: a version loads on its first request, or with Load on the Models page.");
  container.append(totals, list);
  let stopped = false;
  let timer = null;
  async function refresh() {
    try {
      const stats = await api(withQuery("/api/v1/stats", { seconds: WINDOW, model }));
      if (stopped) return;
      const seen = new Set();
      for (const version of stats.versions) {
        const key = `${version.model}:${version.version}`;
        seen.add(key);
        if (panels.has(key)) panels.get(key).update(version);
        else panels.set(key, new VersionPanel(list, version, idPrefix));
      }
      for (const [key, panel] of panels) if (!seen.has(key)) { panel.destroy(); panels.delete(key); }
      const requests = sum(stats.versions.map((version) => version.totals.requests));
      const failed = sum(stats.versions.map((version) => version.totals.failed));
      const tokens = sum(stats.versions.map((version) => version.totals.tokens));
      replace(totals,
        tile(`requests (${WINDOW / 60} min)`, num(requests), "total-requests"),
        tile("failed", num(failed), "total-failed"),
        tile("tokens", num(tokens), "total-tokens"),
        tile("loaded versions", num(stats.versions.length), "total-versions"));
      if (stats.versions.length === 0) list.replaceChildren(empty); else empty.remove();
      container.dataset.updated = String(stats.now);
    } catch (error) {
      replace(totals, failureBox(error));
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    for (const panel of panels.values()) panel.destroy();
  };
}

export async function render(root) {
  const live = h("div", { "data-testid": "live" });
  replace(root, h("h1", {}, "Overview"), h("p", { class: "muted" }, `Live, every ${REFRESH_MS / 1000} s, over the last ${WINDOW / 60} minutes: every loaded version your key can see.`), live);
  return livePanels(live);
}
