//! Demand forecasts per model from its hourly usage history ([`yunmo_forecast`]), the measured capacity of
//! the version it serves, and the hour (if any) the forecast passes it.

use std::collections::HashMap;
use std::sync::Mutex;

use yunmo_forecast::Forecast;

use yunmo_auth::Action;

use crate::{Call, InferenceService, ServiceError, Target};

/// Hours of history a forecast reads.
pub const HISTORY_HOURS: usize = 14 * 24;
/// Most hours ahead a forecast may look.
pub const MAX_HORIZON: usize = 7 * 24;
const HOUR_MS: i64 = 3_600_000;

/// What the version a model serves can take, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// The version.
    pub version: u64,
    /// Requests it computes at once: instances (tensor versions) or sequences (LLMs).
    pub parallel: u64,
    /// Mean compute time of a request over the last day of history, milliseconds.
    pub mean_compute_ms: f64,
    /// `parallel` × 3,600,000 / `mean_compute_ms`.
    pub requests_per_hour: f64,
}

/// A model's demand forecast.
#[derive(Debug, Clone)]
pub struct ForecastReport {
    /// The model (qualified name).
    pub model: String,
    /// Start of each history hour, Unix milliseconds (the last is the hour before the current one).
    pub history_hours: Vec<i64>,
    /// Requests in each history hour.
    pub history_requests: Vec<f64>,
    /// Tokens in each history hour.
    pub history_tokens: Vec<f64>,
    /// Requests per hour ahead, from the current hour on.
    pub requests: Forecast,
    /// Tokens per hour ahead.
    pub tokens: Forecast,
    /// Start of the first forecast hour (the current one), Unix milliseconds.
    pub first_hour: i64,
    /// The serving version's capacity, when it has served requests in the last day and is loaded.
    pub capacity: Option<Capacity>,
    /// The first forecast hour whose requests pass the capacity.
    pub exceeds_at: Option<i64>,
}

/// The latest forecasts of loaded models, for gauges and the capacity alert.
#[derive(Debug, Default)]
pub(crate) struct ForecastCache {
    pub computed_at: u64,
    pub by_model: HashMap<String, ForecastReport>,
}

/// Hours between refreshes of the cached forecasts (they change with each hour of history).
pub(crate) const CACHE_SECONDS: u64 = 600;

pub(crate) type SharedCache = Mutex<ForecastCache>;

impl InferenceService {
    /// The demand forecast of the target model for the next `hours` (1 to 168; needs read access).
    pub async fn forecast(&self, call: &Call, target: &Target, hours: usize) -> Result<ForecastReport, ServiceError> {
        target.permits(call, Action::Read)?;
        if !(1..=MAX_HORIZON).contains(&hours) {
            return Err(ServiceError::invalid(format!("hours must be between 1 and {MAX_HORIZON}, got {hours}")));
        }
        self.forecast_model(target.name(), hours).await
    }

    /// The forecast of `model` (qualified name), without an access check.
    pub(crate) async fn forecast_model(&self, model: &str, hours: usize) -> Result<ForecastReport, ServiceError> {
        self.inner.registry.get_model(model).await?;
        let now_ms = crate::stats::unix_second() as i64 * 1000;
        let first_hour = now_ms - now_ms.rem_euclid(HOUR_MS);
        // From the first hour with usage, at most two weeks back: hours before the model was used are not
        // demand that was absent.
        let from = first_hour - HISTORY_HOURS as i64 * HOUR_MS;
        let buckets = self.inner.registry.usage_series(model, from, HOUR_MS).await?;
        let start = buckets.first().map_or(first_hour, |bucket| bucket.start_ms.max(from));
        let count = ((first_hour - start) / HOUR_MS).max(0) as usize;
        let history_hours: Vec<i64> = (0..count).map(|i| start + i as i64 * HOUR_MS).collect();
        let (mut requests, mut tokens, mut compute) = (vec![0.0; count], vec![0.0; count], vec![0.0; count]);
        for bucket in buckets.iter().filter(|bucket| bucket.start_ms < first_hour) {
            let i = ((bucket.start_ms - start) / HOUR_MS) as usize;
            if i < count {
                (requests[i], tokens[i], compute[i]) = (bucket.requests as f64, bucket.tokens as f64, bucket.compute_ms as f64);
            }
        }
        let requests_forecast = yunmo_forecast::forecast(&requests, hours);
        let tokens_forecast = yunmo_forecast::forecast(&tokens, hours);
        let capacity = self.capacity(model, &requests, &compute).await;
        let exceeds_at = capacity.as_ref().and_then(|capacity| {
            requests_forecast.values.iter().position(|value| *value > capacity.requests_per_hour).map(|i| first_hour + i as i64 * HOUR_MS)
        });
        Ok(ForecastReport {
            model: model.to_string(),
            history_hours,
            history_requests: requests,
            history_tokens: tokens,
            requests: requests_forecast,
            tokens: tokens_forecast,
            first_hour,
            capacity,
            exceeds_at,
        })
    }

    /// The capacity of the version `model` serves, from the last day's compute time per request.
    async fn capacity(&self, model: &str, requests: &[f64], compute_ms: &[f64]) -> Option<Capacity> {
        let day = requests.len().saturating_sub(24);
        let (served, computed): (f64, f64) = (requests[day..].iter().sum(), compute_ms[day..].iter().sum());
        if served < 1.0 {
            return None;
        }
        let version = self.resolve(model, None).await.ok()?;
        let loaded = self.inner.models.get(&(version.model.clone(), version.version))?;
        let parallel = match loaded.generator() {
            Some(generator) => u64::from(generator.info().max_sequences),
            None => u64::from(loaded.config.instance_count),
        }
        .max(1);
        // Requests that took under a millisecond are metered as 0 ms: count them as a tenth of one.
        let mean_compute_ms = (computed / served).max(0.1);
        Some(Capacity {
            version: version.version,
            parallel,
            mean_compute_ms,
            requests_per_hour: parallel as f64 * 3_600_000.0 / mean_compute_ms,
        })
    }

    /// Recomputes the cached forecasts of the loaded models when they are older than ten minutes or the
    /// loaded models changed.
    pub(crate) async fn refresh_forecasts(&self, now: u64) {
        let mut models: Vec<String> = self.models().loaded().into_iter().map(|loaded| loaded.key.0.clone()).collect();
        models.sort();
        models.dedup();
        let stale = {
            let cache = self.inner.forecasts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut cached: Vec<&String> = cache.by_model.keys().collect();
            cached.sort();
            now.saturating_sub(cache.computed_at) >= CACHE_SECONDS || cache.computed_at == 0 || cached != models.iter().collect::<Vec<_>>()
        };
        if !stale {
            return;
        }
        let mut by_model = HashMap::new();
        for model in models {
            if let Ok(report) = self.forecast_model(&model, 24).await {
                by_model.insert(model, report);
            }
        }
        *self.inner.forecasts.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = ForecastCache { computed_at: now, by_model };
    }

    /// Sets the forecast and capacity gauges from the cached forecasts (at scrape time).
    pub(crate) fn refresh_forecast_gauges(&self) {
        let cache = self.inner.forecasts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (model, report) in &cache.by_model {
            let labels = [("model", model.clone())];
            let next = report.requests.values.first().copied().unwrap_or_default();
            let peak = report.requests.values.iter().copied().fold(0.0, f64::max);
            ::metrics::gauge!(crate::metrics::FORECAST_REQUESTS_PER_HOUR, &labels).set(next);
            ::metrics::gauge!(crate::metrics::FORECAST_PEAK_REQUESTS_PER_HOUR, &labels).set(peak);
            if let Some(capacity) = &report.capacity {
                let labels = [("model", model.clone()), ("version", capacity.version.to_string())];
                ::metrics::gauge!(crate::metrics::CAPACITY_REQUESTS_PER_HOUR, &labels).set(capacity.requests_per_hour);
            }
        }
    }

    /// The cached forecasts whose demand passes capacity within `horizon_hours`.
    pub(crate) fn forecasts_over_capacity(&self, horizon_hours: usize) -> Vec<ForecastReport> {
        let cache = self.inner.forecasts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .by_model
            .values()
            .filter(|report| report.exceeds_at.is_some_and(|at| at < report.first_hour + horizon_hours as i64 * HOUR_MS))
            .cloned()
            .collect()
    }
}
