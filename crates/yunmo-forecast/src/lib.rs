//! Demand forecasts from an hourly series (requests or tokens per hour, oldest first, zeros where nothing
//! happened): additive Holt-Winters with a daily season of 24 hours, its smoothing parameters chosen by a
//! grid search on one-step-ahead squared error, and a back-test on the last day (fit on what came before,
//! forecast the day, compare). Pure functions, no IO.
//!
//! With less than two days of history there is no season to fit: the forecast is then the mean of the last
//! (up to 24) hours, and says so.

/// Hours in a season (one day).
pub const SEASON: usize = 24;

/// How a forecast was made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Additive Holt-Winters with a daily season and these smoothing parameters.
    HoltWinters {
        /// Level.
        alpha: f64,
        /// Trend.
        beta: f64,
        /// Season.
        gamma: f64,
    },
    /// The mean of the last hours (less than two days of history).
    RecentMean,
    /// No history at all: nothing is forecast.
    NoHistory,
}

impl Method {
    /// Its name in the API: `holt_winters`, `recent_mean`, `no_history`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::HoltWinters { .. } => "holt_winters",
            Method::RecentMean => "recent_mean",
            Method::NoHistory => "no_history",
        }
    }
}

/// How the method did on the last day of history, forecast from what came before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backtest {
    /// Hours compared.
    pub hours: usize,
    /// Mean absolute error per hour.
    pub mae: f64,
    /// Mean absolute percentage error over the hours with demand (`None` when none had any).
    pub mape: Option<f64>,
    /// The mean absolute error of repeating the day before (seasonal naive), for comparison.
    pub naive_mae: f64,
}

/// A forecast of the next hours.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// How it was made.
    pub method: Method,
    /// One value per hour ahead (never negative).
    pub values: Vec<f64>,
    /// Its back-test (with at least three days of history).
    pub backtest: Option<Backtest>,
}

#[derive(Debug, Clone)]
struct Fit {
    level: f64,
    trend: f64,
    season: Vec<f64>,
    sse: f64,
}

/// Runs Holt-Winters over `history` (at least two seasons) and returns its state after the last point.
fn fit(history: &[f64], alpha: f64, beta: f64, gamma: f64) -> Fit {
    let first = &history[..SEASON];
    let second = &history[SEASON..2 * SEASON];
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let mut level = mean(first);
    let mut trend = (mean(second) - mean(first)) / SEASON as f64;
    let mut season: Vec<f64> = first.iter().map(|value| value - level).collect();
    let mut sse = 0.0;
    for (t, &value) in history.iter().enumerate().skip(SEASON) {
        let s = season[t % SEASON];
        let predicted = level + trend + s;
        sse += (value - predicted).powi(2);
        let previous = level;
        level = alpha * (value - s) + (1.0 - alpha) * (level + trend);
        trend = beta * (level - previous) + (1.0 - beta) * trend;
        season[t % SEASON] = gamma * (value - level) + (1.0 - gamma) * s;
    }
    Fit { level, trend, season, sse }
}

fn holt_winters(history: &[f64], horizon: usize) -> (Method, Vec<f64>) {
    const ALPHAS: [f64; 6] = [0.05, 0.1, 0.2, 0.3, 0.5, 0.8];
    const BETAS: [f64; 4] = [0.0, 0.01, 0.05, 0.1];
    const GAMMAS: [f64; 4] = [0.05, 0.1, 0.2, 0.4];
    let mut best: Option<(f64, f64, f64, Fit)> = None;
    for alpha in ALPHAS {
        for beta in BETAS {
            for gamma in GAMMAS {
                let candidate = fit(history, alpha, beta, gamma);
                if best.as_ref().is_none_or(|(.., fitted)| candidate.sse < fitted.sse) {
                    best = Some((alpha, beta, gamma, candidate));
                }
            }
        }
    }
    let (alpha, beta, gamma, state) = best.expect("the grid is not empty");
    let n = history.len();
    let values = (1..=horizon).map(|h| (state.level + h as f64 * state.trend + state.season[(n + h - 1) % SEASON]).max(0.0)).collect();
    (Method::HoltWinters { alpha, beta, gamma }, values)
}

fn predict(history: &[f64], horizon: usize) -> (Method, Vec<f64>) {
    if history.len() >= 2 * SEASON {
        holt_winters(history, horizon)
    } else if history.is_empty() {
        (Method::NoHistory, vec![0.0; horizon])
    } else {
        let recent = &history[history.len().saturating_sub(SEASON)..];
        let mean = recent.iter().sum::<f64>() / recent.len() as f64;
        (Method::RecentMean, vec![mean; horizon])
    }
}

/// Forecasts the next `horizon` hours after `history` (hourly, oldest first), with a back-test on its last
/// day when it holds at least three.
pub fn forecast(history: &[f64], horizon: usize) -> Forecast {
    let (method, values) = predict(history, horizon);
    let backtest = (history.len() >= 3 * SEASON).then(|| {
        let (train, actual) = history.split_at(history.len() - SEASON);
        let (_, predicted) = predict(train, SEASON);
        let naive = &train[train.len() - SEASON..];
        let mae = |guess: &[f64]| actual.iter().zip(guess).map(|(a, g)| (a - g).abs()).sum::<f64>() / SEASON as f64;
        let with_demand: Vec<f64> = actual.iter().zip(&predicted).filter(|(a, _)| **a > 0.0).map(|(a, p)| (a - p).abs() / a).collect();
        Backtest {
            hours: SEASON,
            mae: mae(&predicted),
            mape: (!with_demand.is_empty()).then(|| with_demand.iter().sum::<f64>() / with_demand.len() as f64),
            naive_mae: mae(naive),
        }
    });
    Forecast { method, values, backtest }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `days` of a daily pattern (peak at 14:00) with a slow rise and a little deterministic noise.
    fn daily(days: usize) -> Vec<f64> {
        (0..days * SEASON)
            .map(|t| {
                let hour = (t % SEASON) as f64;
                let shape = 100.0 + 80.0 * (std::f64::consts::PI * (hour - 8.0) / 12.0).sin().max(-0.5);
                let noise = ((t * 7919) % 13) as f64 - 6.0;
                shape + 0.05 * t as f64 + noise
            })
            .collect()
    }

    #[test]
    fn a_daily_pattern_is_forecast_within_a_few_percent_and_beats_the_naive_guess() {
        let history = daily(14);
        let result = forecast(&history, 24);
        assert!(matches!(result.method, Method::HoltWinters { .. }), "{:?}", result.method);
        let truth = &daily(15)[14 * SEASON..];
        let mape = truth.iter().zip(&result.values).map(|(a, p)| (a - p).abs() / a).sum::<f64>() / 24.0;
        assert!(mape < 0.06, "MAPE {mape}");
        let backtest = result.backtest.expect("14 days allow a back-test");
        assert!(backtest.mape.unwrap() < 0.06 && backtest.mae <= backtest.naive_mae * 1.2, "{backtest:?}");
        let peak = result.values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert!((12..=16).contains(&(peak % 24)), "the peak stays in the early afternoon: hour {peak}");
    }

    #[test]
    fn short_histories_fall_back_and_say_so() {
        let short = forecast(&[10.0, 20.0, 30.0], 5);
        assert_eq!((short.method, short.values), (Method::RecentMean, vec![20.0; 5]));
        assert!(short.backtest.is_none());
        assert_eq!(forecast(&[], 2).method, Method::NoHistory);
        let two_days = forecast(&daily(2), 3);
        assert!(matches!(two_days.method, Method::HoltWinters { .. }) && two_days.backtest.is_none());
        assert!(forecast(&[0.0; 72], 24).values.iter().all(|value| *value == 0.0), "never negative, zero stays zero");
    }
}
