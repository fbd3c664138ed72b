//! Management of tenants, keys, usage reports and the audit log (`/api/v1/tenants`, `/api/v1/keys`,
//! `/api/v1/usage`, `/api/v1/audit`). Tenants and keys are admin-only; usage and audit show admins every
//! tenant and other keys their own tenant.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunmo_auth::{KeyRequest, calendar};
use yunmo_registry::{AuditEntry, KeyRecord, TenantRecord, UsageGroup, UsageRow};
use yunmo_service::ServiceError;
use yunmo_types::{Limits, Scope};

use crate::AppState;
use crate::auth::Caller;
use crate::body::LazyJson;
use crate::error::ApiError;
use crate::extract::Query;
use crate::schema::{AuditSchema, CreatedKeySchema, ErrorBody, KeySchema, LimitsSchema, TenantSchema, UsageReportSchema, WhoamiSchema};

/// The tenancy routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/api/v1/tenants/{name}", get(get_tenant).delete(delete_tenant))
        .route("/api/v1/tenants/{name}/limits", put(set_tenant_limits))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{id}", delete(revoke_key))
        .route("/api/v1/usage", get(usage))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/whoami", get(whoami))
}

type AdminResult<T> = Result<T, ApiError>;

fn admin(error: impl Into<ServiceError>) -> ApiError {
    ApiError::admin(error.into())
}

/// A tenant to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique name: 1–128 characters from `[A-Za-z0-9._-]`.
    #[schema(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    /// Limits shared by all the tenant's keys: `requests_per_second`, `requests_burst`,
    /// `tokens_per_minute`, `monthly_requests`, `monthly_tokens`, `monthly_compute_seconds`.
    #[serde(default)]
    #[schema(value_type = LimitsSchema)]
    pub limits: Limits,
}

/// Creates a tenant (admin).
#[utoipa::path(post, path = "/api/v1/tenants", request_body = CreateTenant, responses((status = 201, body = TenantSchema), (status = 409, body = ErrorBody)))]
pub async fn create_tenant(State(state): State<AppState>, caller: Caller, body: LazyJson<CreateTenant>) -> AdminResult<Response> {
    caller.principal().require(Scope::Admin).map_err(admin)?;
    let body = body.read(&state).await.map_err(admin)?;
    let record = state.service.create_tenant(&caller.call, &body.name, &body.limits).await.map_err(admin)?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// Lists tenants (admin).
#[utoipa::path(get, path = "/api/v1/tenants", responses((status = 200, body = Vec<TenantSchema>)))]
pub async fn list_tenants(State(state): State<AppState>, caller: Caller) -> AdminResult<Json<Vec<TenantRecord>>> {
    Ok(Json(state.service.list_tenants(&caller.call).await.map_err(admin)?))
}

/// One tenant (admin, or a key of that tenant).
#[utoipa::path(get, path = "/api/v1/tenants/{name}", responses((status = 200, body = TenantSchema)))]
pub async fn get_tenant(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> AdminResult<Json<TenantRecord>> {
    Ok(Json(state.service.get_tenant(&caller.call, &name).await.map_err(admin)?))
}

/// Options of a tenant deletion.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteTenantQuery {
    /// Also delete the models the tenant owns (with their versions and files). Without it, a tenant that
    /// owns models is refused with 409 naming them.
    pub delete_models: Option<bool>,
}

/// Deletes a tenant (admin): its keys are deleted (refused from the next request on), it is removed from
/// every model's sharing list, and with `delete_models=true` its models are deleted. Its usage and audit
/// records stay. The `default` tenant cannot be deleted.
#[utoipa::path(delete, path = "/api/v1/tenants/{name}", params(DeleteTenantQuery),
    responses((status = 204), (status = 409, body = ErrorBody)))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<DeleteTenantQuery>,
) -> AdminResult<StatusCode> {
    state.service.delete_tenant(&caller.call, &name, query.delete_models.unwrap_or(false)).await.map_err(admin)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a tenant's limits (admin).
#[utoipa::path(put, path = "/api/v1/tenants/{name}/limits", request_body = LimitsSchema, responses((status = 200, body = TenantSchema)))]
pub async fn set_tenant_limits(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    limits: LazyJson<Limits>,
) -> AdminResult<Json<TenantRecord>> {
    caller.principal().require(Scope::Admin).map_err(admin)?;
    let limits = limits.read(&state).await.map_err(admin)?;
    Ok(Json(state.service.set_tenant_limits(&caller.call, &name, &limits).await.map_err(admin)?))
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Owning tenant (default: the caller's).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Label.
    #[serde(default)]
    pub name: String,
    /// Scopes: `admin`, `models:write`, `models:read`, `infer`, `metrics`, `keys:write` (create and revoke keys of the
    /// own tenant).
    #[schema(value_type = Vec<String>)]
    pub scopes: Vec<Scope>,
    /// Models the key may use (default: all its tenant can see).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// The key's own limits (as a tenant's).
    #[serde(default)]
    #[schema(value_type = LimitsSchema)]
    pub limits: Limits,
    /// Unix seconds after which the key is refused.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// A new key: the only time `key` is shown.
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    /// The key to send as `Authorization: Bearer <key>`. Not stored; cannot be shown again.
    pub key: String,
    /// The stored record.
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// Creates a key (admin; or `keys:write` for a key of the caller's own tenant with scopes and models the caller holds, never `admin`). The response holds the key itself, once.
#[utoipa::path(post, path = "/api/v1/keys", request_body = CreateKey, responses((status = 201, body = CreatedKeySchema)))]
pub async fn create_key(State(state): State<AppState>, caller: Caller, body: LazyJson<CreateKey>) -> AdminResult<Response> {
    if !caller.principal().has_any(&[Scope::Admin, Scope::KeysWrite]) {
        return Err(admin(caller.principal().lacks(Scope::KeysWrite)));
    }
    let body = body.read(&state).await.map_err(admin)?;
    let request = KeyRequest {
        tenant: body.tenant.unwrap_or_else(|| caller.principal().tenant.clone()),
        name: body.name,
        scopes: body.scopes,
        models: body.models,
        limits: body.limits,
        expires_at: body.expires_at,
    };
    let (record, key) = state.service.create_key(&caller.call, request).await.map_err(admin)?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, record })).into_response())
}

/// Which tenant's keys to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    /// One tenant (admins; others always see their own).
    pub tenant: Option<String>,
}

/// Which audit entries to read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// One tenant (admins; others always see their own).
    pub tenant: Option<String>,
    /// Most entries, newest first: 1 to 10,000 (default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// Lists keys (never their secrets): admins all or `?tenant=`, others their tenant's.
#[utoipa::path(get, path = "/api/v1/keys", params(TenantQuery), responses((status = 200, body = Vec<KeySchema>)))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<TenantQuery>,
) -> AdminResult<Json<Vec<KeyRecord>>> {
    Ok(Json(state.service.list_keys(&caller.call, query.tenant.as_deref()).await.map_err(admin)?))
}

/// Revokes a key (admin; or `keys:write` for a key of the caller's own tenant); it is refused from the next request on.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", responses((status = 200, body = KeySchema)))]
pub async fn revoke_key(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> AdminResult<Json<KeyRecord>> {
    Ok(Json(state.service.revoke_key(&caller.call, &id).await.map_err(admin)?))
}

/// Usage report parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start, inclusive: `YYYY-MM-DD` (UTC) or Unix seconds (default: the start of this month).
    pub from: Option<String>,
    /// End, exclusive: `YYYY-MM-DD` (UTC) or Unix seconds (default: now).
    pub to: Option<String>,
    /// `model` (default), `key` or `day`.
    pub group_by: Option<String>,
    /// One tenant (admins; others always see their own).
    pub tenant: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

fn parse_time(field: &str, text: Option<&str>, default: i64) -> AdminResult<i64> {
    match text {
        None => Ok(default),
        Some(text) => calendar::parse_date_ms(text)
            .ok_or_else(|| admin(ServiceError::invalid(format!("{field} must be YYYY-MM-DD or Unix seconds, got '{text}'")))),
    }
}

/// Usage and cost per tenant, grouped by model, key or day, as JSON or CSV.
#[utoipa::path(get, path = "/api/v1/usage", params(UsageQuery), responses((status = 200, content((UsageReportSchema = "application/json"), (String = "text/csv"))), (status = 503, body = ErrorBody)))]
pub async fn usage(State(state): State<AppState>, caller: Caller, Query(query): Query<UsageQuery>) -> AdminResult<Response> {
    // Asking for another tenant is refused before the query is read further.
    caller.principal().tenant_filter(query.tenant.as_deref()).map_err(admin)?;
    let now = calendar::now_ms();
    let from = parse_time("from", query.from.as_deref(), calendar::month_start_ms(now))?;
    let to = parse_time("to", query.to.as_deref(), now + 1)?;
    let group = match query.group_by.as_deref() {
        None | Some("model") => UsageGroup::Model,
        Some("key") => UsageGroup::Key,
        Some("day") => UsageGroup::Day,
        Some(other) => return Err(admin(ServiceError::invalid(format!("group_by must be model, key or day, got '{other}'")))),
    };
    let usage_query = yunmo_service::UsageQuery { from_ms: from, to_ms: to, tenant: query.tenant.as_deref(), group };
    let rows = state.service.usage_report(&caller.call, usage_query).await.map_err(admin)?;
    match query.format.as_deref() {
        None | Some("json") => Ok(Json(serde_json::json!({
            "from": calendar::format_utc(from), "to": calendar::format_utc(to), "group_by": query.group_by.as_deref().unwrap_or("model"), "rows": rows,
        }))
        .into_response()),
        Some("csv") => Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv(&rows)).into_response()),
        Some(other) => Err(admin(ServiceError::invalid(format!("format must be json or csv, got '{other}'")))),
    }
}

/// The report as CSV, with a header row.
pub fn csv(rows: &[UsageRow]) -> String {
    let mut out = String::from(
        "tenant,group,requests,failed,input_tokens,output_tokens,input_elements,output_elements,compute_ms,bytes_in,bytes_out,cost\n",
    );
    for row in rows {
        let quote =
            |text: &str| if text.contains([',', '"', '\n']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            quote(&row.tenant),
            quote(&row.group),
            row.requests,
            row.failed,
            row.input_tokens,
            row.output_tokens,
            row.input_elements,
            row.output_elements,
            row.compute_ms,
            row.bytes_in,
            row.bytes_out,
            row.cost
        ));
    }
    out
}

/// The newest audit entries first: admins all or `?tenant=`, others their tenant's.
#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery), responses((status = 200, body = Vec<AuditSchema>)))]
pub async fn audit(State(state): State<AppState>, caller: Caller, Query(query): Query<AuditQuery>) -> AdminResult<Json<Vec<AuditDto>>> {
    let entries = state.service.list_audit(&caller.call, query.tenant.as_deref(), query.limit.unwrap_or(100)).await.map_err(admin)?;
    Ok(Json(entries.into_iter().map(|entry| AuditDto { at: calendar::format_utc(entry.at_ms), entry }).collect()))
}

/// An audit entry with its time as text.
#[derive(Debug, Serialize)]
pub struct AuditDto {
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub at: String,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// The caller: key id, tenant and scopes.
#[utoipa::path(get, path = "/api/v1/whoami", responses((status = 200, body = WhoamiSchema)))]
pub async fn whoami(caller: Caller) -> Json<serde_json::Value> {
    let principal = caller.call.principal;
    Json(serde_json::json!({
        "key_id": principal.key_id, "tenant": principal.tenant, "scopes": principal.scopes, "models": principal.models,
    }))
}
