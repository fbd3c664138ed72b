//! `GET /api/v1/models/{name}/forecast`: a model's demand forecast, its back-test and its capacity.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunmo_auth::Action;
use yunmo_forecast::{Forecast, Method};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Query;

/// The forecast routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/models/{name}/forecast", get(forecast))
}

/// How far ahead.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ForecastQuery {
    /// Hours ahead, 1 to 168 (default 24).
    pub hours: Option<usize>,
}

/// A model's demand forecast.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastDto {
    /// The model, as the caller names it.
    pub model: String,
    /// The hourly history it was made from (up to 14 days, to the hour before the current one).
    pub history: SeriesDto,
    /// The forecast, from the current hour on.
    pub forecast: SeriesDto,
    /// How the requests forecast was made: `holt_winters` (additive, daily season; with two days of
    /// history or more), `recent_mean` (less), `no_history`.
    pub method: String,
    /// Its smoothing parameters (Holt-Winters).
    pub parameters: Option<ParametersDto>,
    /// The requests forecast's back-test on the last day of history (with three days or more).
    pub backtest: Option<BacktestDto>,
    /// The serving version's measured capacity (when it served requests in the last day and is loaded).
    pub capacity: Option<CapacityDto>,
    /// The first forecast hour whose requests pass the capacity, Unix seconds.
    pub exceeds_capacity_at: Option<i64>,
}

/// Hourly columns.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesDto {
    /// Start of each hour, Unix seconds.
    pub t: Vec<i64>,
    /// Requests in (or forecast for) each hour.
    pub requests: Vec<f64>,
    /// Tokens in (or forecast for) each hour.
    pub tokens: Vec<f64>,
}

/// Holt-Winters smoothing parameters.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParametersDto {
    /// Level.
    pub alpha: f64,
    /// Trend.
    pub beta: f64,
    /// Season.
    pub gamma: f64,
}

/// How the forecast did on the last day of history.
#[derive(Debug, Serialize, ToSchema)]
pub struct BacktestDto {
    /// Hours compared.
    pub hours: usize,
    /// Mean absolute error, requests per hour.
    pub mae: f64,
    /// Mean absolute percentage error over hours with requests.
    pub mape: Option<f64>,
    /// The error of repeating the day before, for comparison.
    pub naive_mae: f64,
}

/// Measured capacity.
#[derive(Debug, Serialize, ToSchema)]
pub struct CapacityDto {
    /// The version measured (the one the model serves).
    pub version: u64,
    /// Requests computed at once: instances, or sequences for LLMs.
    pub parallel: u64,
    /// Mean compute time per request over the last day, milliseconds.
    pub mean_compute_ms: f64,
    /// Requests per hour it can take.
    pub requests_per_hour: f64,
}

fn seconds(ms: &[i64]) -> Vec<i64> {
    ms.iter().map(|ms| ms / 1000).collect()
}

fn backtest(forecast: &Forecast) -> Option<BacktestDto> {
    forecast.backtest.map(|b| BacktestDto { hours: b.hours, mae: b.mae, mape: b.mape, naive_mae: b.naive_mae })
}

/// A model's demand forecast: requests and tokens per hour from its usage history (additive Holt-Winters
/// with a daily season), the back-test error, the serving version's measured capacity and when the forecast
/// passes it (needs read access).
#[utoipa::path(get, path = "/api/v1/models/{name}/forecast", params(ForecastQuery), responses((status = 200, body = ForecastDto), (status = 404, body = crate::schema::ErrorBody)))]
pub async fn forecast(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<ForecastQuery>,
) -> Result<Json<ForecastDto>, ApiError> {
    let target = caller.target(&state, &name, Action::Read).await.map_err(ApiError::admin)?;
    let hours = query.hours.unwrap_or(24);
    let report = state.service.forecast(&caller.call, &target, hours).await.map_err(ApiError::admin)?;
    let ahead: Vec<i64> = (0..hours as i64).map(|i| report.first_hour + i * 3_600_000).collect();
    let parameters = match report.requests.method {
        Method::HoltWinters { alpha, beta, gamma } => Some(ParametersDto { alpha, beta, gamma }),
        _ => None,
    };
    Ok(Json(ForecastDto {
        model: yunmo_registry::name_for(&report.model, &caller.principal().tenant).to_string(),
        history: SeriesDto { t: seconds(&report.history_hours), requests: report.history_requests, tokens: report.history_tokens },
        forecast: SeriesDto { t: seconds(&ahead), requests: report.requests.values.clone(), tokens: report.tokens.values.clone() },
        method: report.requests.method.as_str().to_string(),
        parameters,
        backtest: backtest(&report.requests),
        capacity: report.capacity.map(|c| CapacityDto {
            version: c.version,
            parallel: c.parallel,
            mean_compute_ms: c.mean_compute_ms,
            requests_per_hour: c.requests_per_hour,
        }),
        exceeds_capacity_at: report.exceeds_at.map(|ms| ms / 1000),
    }))
}
