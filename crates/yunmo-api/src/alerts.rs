//! `GET /api/v1/alerts`: the built-in alerts firing now and the history of changes.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunmo_alerts::Alert;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Query;

/// The alert routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/alerts", get(alerts))
}

/// Which history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    /// Most history entries, newest first: 1 to 1,000 (default 100).
    pub limit: Option<usize>,
}

/// The alerts a key may see.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsDto {
    /// Firing now.
    pub firing: Vec<AlertDto>,
    /// Changes (fired, resolved), newest first.
    pub history: Vec<AlertDto>,
}

/// One alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDto {
    /// The rule: `YunmoHighErrorRate`, `YunmoLatencyObjective`, `YunmoQueueSaturated`, `YunmoDrift`,
    /// `YunmoQuotaRunningOut`.
    pub name: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// Its labels (`alertname`, `severity`, `model`, `version`, `tenant`, `feature`, `quota`).
    pub labels: BTreeMap<String, String>,
    /// One line for people.
    pub summary: String,
    /// The measured value and the bound it passed.
    pub description: String,
    /// The measured value.
    pub value: f64,
    /// When it started firing, Unix seconds.
    pub starts_at: u64,
    /// When it resolved, Unix seconds.
    pub ends_at: Option<u64>,
    /// A stable id of its labels.
    pub fingerprint: String,
}

fn dto(alert: Alert, tenant: &str) -> AlertDto {
    let mut labels = alert.labels;
    // A model is named as the caller names it, as everywhere in the API.
    if let Some(model) = labels.get_mut("model") {
        *model = yunmo_registry::name_for(model, tenant).to_string();
    }
    AlertDto {
        name: labels.get("alertname").cloned().unwrap_or_default(),
        status: alert.status.as_str().to_string(),
        severity: labels.get("severity").cloned().unwrap_or_default(),
        labels,
        summary: alert.summary,
        description: alert.description,
        value: alert.value,
        starts_at: alert.starts_at,
        ends_at: alert.ends_at,
        fingerprint: alert.fingerprint,
    }
}

/// The built-in alerts firing now and the history of changes: admins every alert, other keys those about
/// models their tenant can see or about their tenant.
#[utoipa::path(get, path = "/api/v1/alerts", params(AlertsQuery), responses((status = 200, body = AlertsDto)))]
pub async fn alerts(State(state): State<AppState>, caller: Caller, Query(query): Query<AlertsQuery>) -> Result<Json<AlertsDto>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::admin(yunmo_service::ServiceError::invalid(format!("limit must be between 1 and 1000, got {limit}"))));
    }
    let (firing, history) = state.service.alerts(&caller.call, limit).await.map_err(ApiError::admin)?;
    let tenant = caller.principal().tenant.clone();
    Ok(Json(AlertsDto {
        firing: firing.into_iter().map(|alert| dto(alert, &tenant)).collect(),
        history: history.into_iter().map(|alert| dto(alert, &tenant)).collect(),
    }))
}
