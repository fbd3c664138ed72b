// Line charts on the vendored uPlot. Every chart is registered in `window.yunmo.charts` by its id, so that
// its data (what it plots) can be read by a person in the devtools or by the browser tests.

window.yunmo = window.yunmo ?? { charts: {} };

const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];

/**
 * A chart in `container`: `series` are the labels of the y columns; `data` is `[xs, ys1, ys2, ...]` with
 * x in Unix seconds. `unit` labels the y axis; `points` draws every point (for sparse series with gaps).
 */
export function lineChart(container, { id, title, series, unit = "", data, points = false }) {
  const width = Math.max(280, container.clientWidth || 420);
  const options = {
    title,
    width,
    height: 180,
    scales: { x: { time: true } },
    axes: [{}, { label: unit, size: 60 }],
    // Sparse series (latency quantiles, null in seconds without requests) draw their points, which a line alone would hide.
    series: [{}, ...series.map((label, i) => ({ label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false, points: points ? { show: true, size: 5, fill: COLOURS[i % COLOURS.length] } : {} }))],
    legend: { live: false },
  };
  const plot = new window.uPlot(options, data, container);
  window.yunmo.charts[id] = plot;
  return {
    id,
    plot,
    update(next) { plot.setData(next); },
    destroy() { plot.destroy(); delete window.yunmo.charts[id]; },
  };
}

/** Per-second counts as a rate averaged over `span` seconds (a smoother line than raw seconds). */
export function rate(values, span = 1) {
  if (span <= 1) return values.slice();
  return values.map((_, i) => {
    const from = Math.max(0, i - span + 1);
    let sum = 0;
    for (let j = from; j <= i; j += 1) sum += values[j];
    return sum / (i - from + 1);
  });
}
