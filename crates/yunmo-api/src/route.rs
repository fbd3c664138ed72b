//! Traffic control of a model (`/api/v1/models/{name}/route`): weighted versions for canary and A/B
//! tests, sticky per key or header, a shadow, a guard that rolls canaries back; promotion.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunmo_auth::Action;

use crate::AppState;
use crate::admin::{ModelDto, VersionPolicyDto};
use crate::auth::Caller;
use crate::body::LazyJson;
use crate::error::ApiError;
pub use crate::route_types::{GuardDto, RouteDto, WeightedDto};

/// The routing routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/models/{name}/route", get(get_route).put(set_route))
        .route("/api/v1/models/{name}/route/promote", post(promote))
}

fn admin(error: yunmo_service::ServiceError) -> ApiError {
    ApiError::admin(error)
}

/// A model's route and how its versions compare on the replica that answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteStatusDto {
    /// The model's version policy (`routed`, or what replaced the route: `pinned` after a promotion).
    pub version_policy: VersionPolicyDto,
    /// The route's versions, on this replica since the route was set (within the guard's window).
    pub versions: Vec<RouteVersionDto>,
}

/// One version of a route.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteVersionDto {
    /// The version.
    pub version: u64,
    /// Its weight (the shadow's: 0).
    pub weight: u32,
    /// `stable`, `canary` or `shadow`.
    pub role: String,
    /// Requests it ended.
    pub requests: u64,
    /// Of them, failed for the server's or the load's reasons.
    pub failed: u64,
    /// Failed / requests (0 without requests).
    pub error_rate: f64,
    /// p99 latency in milliseconds (upper bound of its histogram bucket).
    pub p99_ms: Option<f64>,
}

/// The version to send every request to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteDto {
    /// The version.
    pub version: u64,
}

fn status_dto(status: yunmo_service::routing::RouteStatus) -> RouteStatusDto {
    RouteStatusDto {
        version_policy: status.policy.into(),
        versions: status
            .versions
            .into_iter()
            .map(|entry| RouteVersionDto {
                version: entry.version,
                weight: entry.weight,
                role: entry.role.to_string(),
                requests: entry.requests,
                failed: entry.failed,
                error_rate: entry.failed as f64 / entry.requests.max(1) as f64,
                p99_ms: entry.p99_ms,
            })
            .collect(),
    }
}

/// The model's route and each version's requests, failures and p99 on this replica.
#[utoipa::path(get, path = "/api/v1/models/{name}/route", responses((status = 200, body = RouteStatusDto), (status = 404)))]
pub async fn get_route(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> Result<Json<RouteStatusDto>, ApiError> {
    let target = caller.target(&state, &name, Action::Read).await.map_err(admin)?;
    let status = state.service.route_status(&caller.call, &target).await.map_err(admin)?;
    Ok(Json(status_dto(status)))
}

/// Routes the model's requests that name no version by weight (the model's version policy becomes
/// `routed`). Every version must exist and take the stable version's inputs. Audited.
#[utoipa::path(put, path = "/api/v1/models/{name}/route", request_body = RouteDto,
    responses((status = 200, body = RouteStatusDto), (status = 400), (status = 403), (status = 404)))]
pub async fn set_route(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: LazyJson<RouteDto>,
) -> Result<Json<RouteStatusDto>, ApiError> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(admin)?;
    let route = body.read(&state).await.map_err(admin)?;
    state.service.set_route(&caller.call, &target, route.into()).await.map_err(admin)?;
    let target = caller.target(&state, &name, Action::Read).await.map_err(admin)?;
    let status = state.service.route_status(&caller.call, &target).await.map_err(admin)?;
    Ok(Json(status_dto(status)))
}

/// Sends every request to one version (the version policy becomes `pinned`): a canary promoted. Audited.
#[utoipa::path(post, path = "/api/v1/models/{name}/route/promote", request_body = PromoteDto,
    responses((status = 200, body = ModelDto), (status = 400), (status = 403), (status = 404)))]
pub async fn promote(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: LazyJson<PromoteDto>,
) -> Result<Json<ModelDto>, ApiError> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(admin)?;
    let body = body.read(&state).await.map_err(admin)?;
    let record = state.service.promote(&caller.call, &target, body.version).await.map_err(admin)?;
    Ok(Json(crate::admin::model_dto(&state, &caller, record).await?))
}
