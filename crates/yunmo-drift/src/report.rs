//! A version's drift as the API reports it (yunmo-api turns it into JSON): each feature's statistic, value, thresholds, state and window counts.

use crate::feature::{Frozen, Tally};
use crate::monitor::{BaselineSource, Monitor, Window};
use crate::score;

/// A feature's or a version's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    /// The baseline is still being collected.
    CollectingBaseline,
    /// No window has reached `min_count` rows yet.
    InsufficientData,
    /// Within the warning threshold.
    Ok,
    /// Past the warning threshold.
    Warn,
    /// Past the alert threshold.
    Alert,
}

impl State {
    /// Its name in the API and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::CollectingBaseline => "collecting_baseline",
            State::InsufficientData => "insufficient_data",
            State::Ok => "ok",
            State::Warn => "warn",
            State::Alert => "alert",
        }
    }

    fn of(value: f64, threshold: Threshold) -> State {
        if value >= threshold.alert {
            State::Alert
        } else if value >= threshold.warn {
            State::Warn
        } else {
            State::Ok
        }
    }
}

/// The thresholds a statistic is judged by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// At or above: warn.
    pub warn: f64,
    /// At or above: alert.
    pub alert: f64,
}

/// A version's drift.
#[derive(Debug, Clone)]
pub struct Report {
    /// The worst state of its features (or the baseline's collecting state).
    pub state: State,
    /// The baseline.
    pub baseline: BaselineReport,
    /// The windows.
    pub window: WindowReport,
    /// Each feature, by name.
    pub features: Vec<FeatureReport>,
}

/// The baseline.
#[derive(Debug, Clone)]
pub struct BaselineReport {
    /// `first_requests` or `reference`.
    pub source: &'static str,
    /// Rows in it (so far, while collecting).
    pub rows: u64,
    /// Rows it freezes at (`baseline_rows`; first requests only).
    pub target_rows: u64,
    /// When it froze (Unix seconds).
    pub frozen_at: Option<u64>,
}

/// The tumbling windows.
#[derive(Debug, Clone)]
pub struct WindowReport {
    /// Length, seconds.
    pub seconds: u64,
    /// Rows a window needs before it is judged.
    pub min_count: u64,
    /// The window now filling.
    pub current: WindowSpan,
    /// The window before it, if one ended since the baseline froze.
    pub last: Option<WindowSpan>,
}

/// One window.
#[derive(Debug, Clone)]
pub struct WindowSpan {
    /// Start, Unix seconds.
    pub start: u64,
    /// End (exclusive), Unix seconds.
    pub end: u64,
    /// Rows counted.
    pub rows: u64,
}

/// One feature.
#[derive(Debug, Clone)]
pub struct FeatureReport {
    /// Name: `X[2]` (column 2 of input X), `X.mean` (each row's mean), `text` (a BYTES input),
    /// `probabilities.class` (the class an output's scores pick), `completion_tokens`, `finish_reason`, `embedding`.
    pub name: String,
    /// `input`, `output`, `generation` or `embedding`.
    pub source: &'static str,
    /// `numeric`, `categorical` or `vector`.
    pub kind: &'static str,
    /// `psi` (numeric), `js_distance` (categorical) or `cosine_distance` (vector: between mean vectors).
    pub statistic: &'static str,
    /// The statistic on the judged window (`None` before any row).
    pub value: Option<f64>,
    /// Its thresholds.
    pub threshold: Threshold,
    /// Its state.
    pub state: State,
    /// Jensen-Shannon distance too (numeric and categorical).
    pub js_distance: Option<f64>,
    /// Largest difference of one bin's share (categorical).
    pub linf: Option<f64>,
    /// `current` or `last`: the window judged (the current one once it has `min_count` rows).
    pub window: &'static str,
    /// Rows of this feature in that window.
    pub window_count: u64,
    /// Rows of this feature in the baseline.
    pub baseline_count: u64,
    /// Each bin's share of the baseline and of the window (numeric and categorical).
    pub bins: Vec<BinShare>,
}

/// One bin.
#[derive(Debug, Clone)]
pub struct BinShare {
    /// What falls in it.
    pub label: String,
    /// Its share of the baseline.
    pub baseline: f64,
    /// Its share of the window.
    pub window: f64,
}

fn span(window: &Window, seconds: u64) -> WindowSpan {
    WindowSpan { start: window.index * seconds, end: (window.index + 1) * seconds, rows: window.rows }
}

impl Monitor {
    /// The report at `now` (Unix seconds).
    pub fn report(&self, now: u64) -> Report {
        build(self, now)
    }
}

fn build(monitor: &Monitor, now: u64) -> Report {
    let settings = &monitor.settings;
    let seconds = settings.window_s;
    // A current window that time has passed is the last one; the one now filling is empty.
    let stale = monitor.current.index != now / seconds;
    let empty = Window { index: now / seconds, ..Window::default() };
    let (current, last) = if stale { (&empty, Some(&monitor.current)) } else { (&monitor.current, monitor.last.as_ref()) };
    let features: Vec<FeatureReport> = monitor
        .features
        .iter()
        .filter_map(|(name, feature)| {
            let frozen = feature.frozen.as_ref()?;
            Some(judge(name, feature.source.as_str(), frozen, monitor, [Some(current), last]))
        })
        .collect();
    let state = if !monitor.is_frozen() {
        State::CollectingBaseline
    } else {
        features.iter().map(|feature| feature.state).max().unwrap_or(State::InsufficientData)
    };
    let collecting_rows = monitor.baseline_rows;
    Report {
        state,
        baseline: BaselineReport {
            source: match monitor.baseline_source {
                BaselineSource::FirstRequests => "first_requests",
                BaselineSource::Reference => "reference",
            },
            rows: collecting_rows,
            target_rows: settings.baseline_rows,
            frozen_at: monitor.frozen_at,
        },
        window: WindowReport {
            seconds,
            min_count: settings.min_count,
            current: span(current, seconds),
            last: last.map(|window| span(window, seconds)),
        },
        features,
    }
}

fn judge(name: &str, source: &'static str, frozen: &Frozen, monitor: &Monitor, windows: [Option<&Window>; 2]) -> FeatureReport {
    let settings = &monitor.settings;
    fn tally_of<'a>(window: Option<&'a Window>, name: &str) -> Option<&'a Tally> {
        window.and_then(|window| window.tallies.get(name))
    }
    let min = settings.min_count;
    // The current window once it has enough rows, else the last one if it had, else the current (not judged).
    let (label, tally, judged) = match (tally_of(windows[0], name), tally_of(windows[1], name)) {
        (Some(tally), _) if tally.count() >= min => ("current", Some(tally), true),
        (_, Some(tally)) if tally.count() >= min => ("last", Some(tally), true),
        (tally, _) => ("current", tally, false),
    };
    let window_count = tally.map_or(0, Tally::count);
    let (kind, statistic, threshold) = match frozen {
        Frozen::Numeric { .. } => ("numeric", "psi", Threshold { warn: settings.psi_warn, alert: settings.psi_alert }),
        Frozen::Categorical { .. } => ("categorical", "js_distance", Threshold { warn: settings.js_warn, alert: settings.js_alert }),
        Frozen::Vector { .. } => ("vector", "cosine_distance", Threshold { warn: settings.cosine_warn, alert: settings.cosine_alert }),
    };
    let mut report = FeatureReport {
        name: name.to_string(),
        source,
        kind,
        statistic,
        value: None,
        threshold,
        state: State::InsufficientData,
        js_distance: None,
        linf: None,
        window: label,
        window_count,
        baseline_count: frozen.rows(),
        bins: Vec::new(),
    };
    match (frozen, tally) {
        (Frozen::Vector { mean, .. }, Some(Tally::Vector { sum, count })) if *count > 0 => {
            let window_mean: Vec<f64> = sum.iter().map(|total| total / *count as f64).collect();
            report.value = Some(score::cosine_distance(mean, &window_mean));
        }
        (_, Some(Tally::Counts(counts))) if window_count > 0 => {
            let (baseline, window) = (score::shares(frozen.counts()), score::shares(counts));
            let js = score::js_distance(&baseline, &window);
            report.js_distance = Some(js);
            report.value = Some(if statistic == "psi" { score::psi(&baseline, &window) } else { js });
            if statistic == "js_distance" {
                report.linf = Some(score::linf(&baseline, &window));
            }
            report.bins = frozen
                .labels()
                .into_iter()
                .zip(baseline.iter().zip(&window))
                .map(|(label, (baseline, window))| BinShare { label, baseline: *baseline, window: *window })
                .collect();
        }
        _ => {}
    }
    if judged && let Some(value) = report.value {
        report.state = State::of(value, threshold);
    }
    report
}
