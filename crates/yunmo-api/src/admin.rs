//! The management API (`/api/v1`): models, versions, uploads, load and unload. JSON in and out; errors are
//! `{"error": {"code", "message"}}`. Documented by the OpenAPI description in [`crate::openapi`].

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yunmo_registry::{ModelPatch, ModelRecord, NewModel, StagedArtifact, VersionRecord};
use yunmo_service::{Code, ServiceError, Target, UploadOptions};
use yunmo_types::{ModelRef, VersionConfig, VersionPolicy};

use crate::AppState;
use crate::auth::Caller;
use crate::body::LazyJson;
use crate::error::ApiError;
use crate::extract::Query;
use yunmo_auth::Action;
use yunmo_types::{Price, Scope, Sharing};

/// The management routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/models", get(list_models).post(create_model))
        .route("/api/v1/models/{name}", get(get_model).patch(update_model).delete(delete_model))
        .route("/api/v1/models/{name}/versions", get(list_versions).post(upload_version))
        .route("/api/v1/models/{name}/versions/{version}", get(get_version).delete(delete_version))
        .route("/api/v1/models/{name}/versions/{version}/config", axum::routing::put(set_config))
        .route("/api/v1/models/{name}/versions/{version}/tokenizer", axum::routing::put(set_tokenizer))
        .route("/api/v1/models/{name}/versions/{version}/load", post(load_version))
        .route("/api/v1/models/{name}/versions/{version}/unload", post(unload_version))
        .route("/api/v1/models/{name}/sharing", axum::routing::put(set_sharing))
        .route("/api/v1/openapi.json", get(openapi_json))
}

type AdminResult<T> = Result<T, ApiError>;

fn admin(error: ServiceError) -> ApiError {
    ApiError::admin(error)
}

/// Which version serves requests that name none.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VersionPolicyDto {
    /// The highest version.
    Latest,
    /// One fixed version.
    Pinned {
        /// The version served.
        version: u64,
    },
    /// Versions sharing the requests by weight (see `PUT /api/v1/models/{name}/route`).
    Routed(crate::route_types::RouteDto),
}

impl From<VersionPolicyDto> for VersionPolicy {
    fn from(policy: VersionPolicyDto) -> Self {
        match policy {
            VersionPolicyDto::Latest => VersionPolicy::Latest,
            VersionPolicyDto::Pinned { version } => VersionPolicy::Pinned { version },
            VersionPolicyDto::Routed(route) => VersionPolicy::Routed(route.into()),
        }
    }
}

impl From<VersionPolicy> for VersionPolicyDto {
    fn from(policy: VersionPolicy) -> Self {
        match policy {
            VersionPolicy::Latest => VersionPolicyDto::Latest,
            VersionPolicy::Pinned { version } => VersionPolicyDto::Pinned { version },
            VersionPolicy::Routed(route) => VersionPolicyDto::Routed(route.into()),
        }
    }
}

/// A model to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    /// Name, unique within the owning tenant: 1–128 characters from `[A-Za-z0-9._-]`. Other tenants that
    /// the model is shared with call it `tenant/name`.
    #[schema(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// What the model does (`classification`, `regression`, …).
    #[serde(default)]
    pub task: String,
    /// String labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form JSON.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Version policy (default: latest).
    #[serde(default)]
    pub version_policy: Option<VersionPolicyDto>,
    /// Owning tenant (admin keys only; default: the caller's tenant).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Who else may see and call it (default: nobody).
    #[serde(default)]
    pub sharing: Option<SharingDto>,
}

/// Who besides the owning tenant may see and call a model.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SharingDto {
    /// Every tenant.
    #[serde(default)]
    pub public: bool,
    /// These tenants.
    #[serde(default)]
    pub tenants: Vec<String>,
}

impl From<SharingDto> for Sharing {
    fn from(dto: SharingDto) -> Self {
        Sharing { public: dto.public, tenants: dto.tenants }
    }
}

impl From<Sharing> for SharingDto {
    fn from(sharing: Sharing) -> Self {
        SharingDto { public: sharing.public, tenants: sharing.tenants }
    }
}

/// Changes to a model; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateModel {
    /// New description.
    pub description: Option<String>,
    /// New task.
    pub task: Option<String>,
    /// New labels (replacing all).
    pub labels: Option<BTreeMap<String, String>>,
    /// New metadata (replacing all).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// New version policy.
    pub version_policy: Option<VersionPolicyDto>,
}

/// A tensor's name, datatype and shape (-1: any size).
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorSpecDto {
    /// Name.
    pub name: String,
    /// V2 datatype name.
    pub datatype: String,
    /// Dimensions.
    pub shape: Vec<i64>,
}

/// Serving options of a version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionConfigDto {
    /// Largest first dimension one call may carry; above 0, requests are merged along the first
    /// dimension up to this size (dynamic batching). 0: not batched.
    #[serde(default)]
    #[schema(maximum = 1_048_576)]
    pub max_batch_size: u32,
    /// How long a request may wait for its batch to fill once a worker is free, in microseconds
    /// (0: dispatch what is waiting at once). At most 10 s.
    #[serde(default)]
    #[schema(maximum = 10_000_000)]
    pub max_queue_delay_us: u64,
    /// Instances (sessions and worker threads), 1 to 64.
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 64)]
    pub instance_count: u32,
    /// Class labels for the classification extension, by index.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Serve `/v1/embeddings` from this ONNX encoder: `{"pooling": "mean"|"cls"|"none", "normalize": true,
    /// "max_tokens": 256, "truncate": false, "max_batch_tokens": 16384, "output": "", "task": "embed"}` (all
    /// optional); `"task": "rerank"` serves `/v1/rerank` and `/v1/score` from a cross-encoder (one logit per
    /// pair) instead. Needs a `tokenizer.json` stored with the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub embedding: Option<yunmo_types::EmbeddingConfig>,
    /// Jinja chat template for `/v1/chat/completions`, replacing the one in the GGUF file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// A GGUF model's KV-cache element type: `f16` (the default), `q8_0` or `q4_0` (llama.cpp's quantised
    /// caches, with flash attention): about 1.9x and 3.6x the tokens of f16 in the same memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub kv_cache_type: Option<yunmo_types::KvCacheType>,
    /// A GGUF model's attention: `auto` (the default: llama.cpp's choice, flash attention on the CPU, Yunmo's
    /// kernel for an f16 cache), `on`, or `off` (llama.cpp's plain attention: short contexts decode slower;
    /// needs `kv_cache_type` f16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub flash_attention: Option<yunmo_types::FlashAttention>,
    /// Price of a request: `{"per_1k_input_tokens", "per_1k_output_tokens", "per_request",
    /// "per_compute_second"}` (all optional, default 0). Usage reports cost requests by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub price: Option<Price>,
    /// Drift monitoring of this version, replacing the server's `[drift]` defaults field by field:
    /// `{"enabled", "sampling", "baseline_rows", "window_s", "min_count", "bins", "top_values", "max_columns",
    /// "features", "psi_warn", "psi_alert", "js_warn", "js_alert", "cosine_warn", "cosine_alert"}` (all optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub drift: Option<serde_json::Map<String, serde_json::Value>>,
    /// BYTES inputs whose elements must be one of the listed values, e.g. a recommender's
    /// `{"user": [...], "item": [...]}`; anything else is a 400 naming it. At most 2,000,000 values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub known_values: BTreeMap<String, Vec<String>>,
}

fn one() -> u32 {
    1
}

impl From<VersionConfigDto> for VersionConfig {
    fn from(dto: VersionConfigDto) -> Self {
        VersionConfig {
            max_batch_size: dto.max_batch_size,
            max_queue_delay_us: dto.max_queue_delay_us,
            instance_count: dto.instance_count,
            labels: dto.labels,
            embedding: dto.embedding,
            chat_template: dto.chat_template,
            kv_cache_type: dto.kv_cache_type,
            flash_attention: dto.flash_attention,
            price: dto.price,
            drift: dto.drift,
            known_values: dto.known_values,
            provenance: None,
        }
    }
}

/// A model version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDto {
    /// Model name.
    pub model: String,
    /// Version number.
    pub version: u64,
    /// Artifact format (`onnx`).
    pub format: String,
    /// sha256 of the file.
    pub sha256: String,
    /// File size.
    pub size_bytes: u64,
    /// Inputs.
    pub inputs: Vec<TensorSpecDto>,
    /// Outputs.
    pub outputs: Vec<TensorSpecDto>,
    /// Serving options.
    pub config: VersionConfigDto,
    /// How a Yunmo job made this version (training or optimisation): `{"job", "kind", "method",
    /// "parent_version", "training_file", "validation_file", "metrics", "details"}`; absent for uploads.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub provenance: Option<yunmo_types::Provenance>,
    /// Whether a `tokenizer.json` is stored with the version.
    pub has_tokenizer: bool,
    /// Whether it is loaded now.
    pub loaded: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// A model and its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDto {
    /// Name as the caller uses it: its own models by name, other tenants' as `tenant/name`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Task.
    pub task: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Free-form JSON.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Version policy.
    pub version_policy: VersionPolicyDto,
    /// Owning tenant.
    pub tenant: String,
    /// Who else may see and call it.
    pub sharing: SharingDto,
    /// Versions, lowest first.
    pub versions: Vec<VersionDto>,
    /// Unix seconds.
    pub created_at: i64,
}

/// List of models.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Models by name.
    pub models: Vec<ModelDto>,
}

/// Upload query parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Version number to create (default: the next one).
    pub version: Option<u64>,
    /// Serving options as JSON (raw-body uploads; multipart uploads may send a `config` part instead).
    pub config: Option<String>,
}

fn specs(specs: &[yunmo_types::TensorSpec]) -> Vec<TensorSpecDto> {
    specs
        .iter()
        .map(|spec| TensorSpecDto { name: spec.name.clone(), datatype: spec.datatype.as_str().to_string(), shape: spec.shape.clone() })
        .collect()
}

/// A version as `caller` sees it (its model named as the caller calls it).
fn version_dto(state: &AppState, caller: &Caller, record: VersionRecord) -> VersionDto {
    let loaded = state.service.is_loaded(&record);
    VersionDto {
        inputs: specs(&record.signature.inputs),
        outputs: specs(&record.signature.outputs),
        config: VersionConfigDto {
            max_batch_size: record.config.max_batch_size,
            max_queue_delay_us: record.config.max_queue_delay_us,
            instance_count: record.config.instance_count,
            labels: record.config.labels,
            embedding: record.config.embedding,
            chat_template: record.config.chat_template,
            kv_cache_type: record.config.kv_cache_type,
            flash_attention: record.config.flash_attention,
            price: record.config.price,
            drift: record.config.drift,
            known_values: record.config.known_values,
        },
        provenance: record.config.provenance,
        has_tokenizer: record.has_tokenizer,
        loaded,
        model: yunmo_registry::name_for(&record.model, &caller.principal().tenant).to_string(),
        version: record.version,
        format: record.format,
        sha256: record.sha256,
        size_bytes: record.size_bytes,
        created_at: record.created_at,
    }
}

/// A model as `caller` may see it: who else it is shared with is shown to its owner and admins only; a
/// tenant it is shared with sees itself in the list and nobody else.
pub(crate) async fn model_dto(state: &AppState, caller: &Caller, record: ModelRecord) -> AdminResult<ModelDto> {
    let target = caller.target(state, &record.name, Action::Read).await.map_err(admin)?;
    let versions = state.service.list_versions(&caller.call, &target).await.map_err(admin)?;
    Ok(model_dto_with(state, caller, record, versions))
}

/// A model as the caller of `caller` sees it (another tenant's sharing list shows only the caller's tenant).
fn model_dto_with(state: &AppState, caller: &Caller, record: ModelRecord, versions: Vec<VersionRecord>) -> ModelDto {
    let principal = caller.principal();
    let mut sharing: SharingDto = record.sharing.clone().into();
    if !principal.is_admin() && principal.tenant != record.tenant {
        sharing.tenants.retain(|tenant| *tenant == principal.tenant);
    }
    ModelDto {
        versions: versions.into_iter().map(|v| version_dto(state, caller, v)).collect(),
        name: record.name_for(&principal.tenant).to_string(),
        description: record.description,
        task: record.task,
        labels: record.labels,
        // Models created before metadata had to be an object may hold null.
        metadata: if record.metadata.is_null() { serde_json::json!({}) } else { record.metadata },
        version_policy: record.version_policy.into(),
        tenant: record.tenant,
        sharing,
        created_at: record.created_at,
    }
}

/// Lists models with their versions.
#[utoipa::path(get, path = "/api/v1/models", responses((status = 200, body = ModelList)))]
pub async fn list_models(State(state): State<AppState>, caller: Caller) -> AdminResult<Json<ModelList>> {
    let listed = state.service.models_with_versions(&caller.call).await.map_err(admin)?;
    let models = listed.into_iter().map(|(record, versions)| model_dto_with(&state, &caller, record, versions)).collect();
    Ok(Json(ModelList { models }))
}

/// Creates a model (without versions).
#[utoipa::path(post, path = "/api/v1/models", request_body = CreateModel,
    responses((status = 201, body = ModelDto), (status = 400), (status = 409)))]
pub async fn create_model(State(state): State<AppState>, caller: Caller, body: LazyJson<CreateModel>) -> AdminResult<Response> {
    caller.principal().require(Scope::ModelsWrite).map_err(admin)?;
    let body = body.read(&state).await.map_err(admin)?;
    let new_model = NewModel {
        tenant: body.tenant.unwrap_or_default(),
        sharing: body.sharing.map(Into::into).unwrap_or_default(),
        name: body.name,
        description: body.description,
        task: body.task,
        labels: body.labels,
        metadata: metadata_object(Some(body.metadata))?.unwrap_or_else(|| serde_json::json!({})),
        version_policy: body.version_policy.map(Into::into).unwrap_or_default(),
    };
    let record = state.service.create_model(&caller.call, new_model).await.map_err(admin)?;
    Ok((StatusCode::CREATED, Json(model_dto(&state, &caller, record).await?)).into_response())
}

/// One model with its versions.
#[utoipa::path(get, path = "/api/v1/models/{name}", responses((status = 200, body = ModelDto), (status = 404)))]
pub async fn get_model(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> AdminResult<Json<ModelDto>> {
    let target = caller.target(&state, &name, Action::Read).await.map_err(admin)?;
    Ok(Json(model_dto(&state, &caller, ModelRecord::clone(target.record())).await?))
}

/// Changes a model's description, task, labels, metadata or version policy.
#[utoipa::path(patch, path = "/api/v1/models/{name}", request_body = UpdateModel,
    responses((status = 200, body = ModelDto), (status = 400), (status = 404)))]
pub async fn update_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: LazyJson<UpdateModel>,
) -> AdminResult<Json<ModelDto>> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(admin)?;
    let body = body.read(&state).await.map_err(admin)?;
    let patch = ModelPatch {
        sharing: None,
        description: body.description,
        task: body.task,
        labels: body.labels,
        metadata: metadata_object(body.metadata)?,
        version_policy: body.version_policy.map(Into::into),
    };
    let record = state.service.update_model(&caller.call, &target, patch).await.map_err(admin)?;
    Ok(Json(model_dto(&state, &caller, record).await?))
}

/// Deletes a model, all its versions and their files.
#[utoipa::path(delete, path = "/api/v1/models/{name}", responses((status = 204), (status = 404)))]
pub async fn delete_model(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> AdminResult<StatusCode> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(admin)?;
    state.service.delete_model(&caller.call, &target).await.map_err(admin)?;
    tracing::info!(model = %target.name(), "Model deleted.");
    Ok(StatusCode::NO_CONTENT)
}

/// Versions of a model.
#[utoipa::path(get, path = "/api/v1/models/{name}/versions", responses((status = 200, body = Vec<VersionDto>), (status = 404)))]
pub async fn list_versions(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> AdminResult<Json<Vec<VersionDto>>> {
    let target = caller.target(&state, &name, Action::Read).await.map_err(admin)?;
    let versions = state.service.list_versions(&caller.call, &target).await.map_err(admin)?;
    Ok(Json(versions.into_iter().map(|v| version_dto(&state, &caller, v)).collect()))
}

fn parse_version(text: &str) -> AdminResult<u64> {
    crate::kserve::parse_version(text).map_err(admin)
}

/// One version.
#[utoipa::path(get, path = "/api/v1/models/{name}/versions/{version}", responses((status = 200, body = VersionDto), (status = 404)))]
pub async fn get_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> AdminResult<Json<VersionDto>> {
    let target = caller.target(&state, &name, Action::Read).await.map_err(admin)?;
    let record = state.service.get_version(&caller.call, &target, parse_version(&version)?).await.map_err(admin)?;
    Ok(Json(version_dto(&state, &caller, record)))
}

/// Deletes a version (and its file unless another version shares it).
#[utoipa::path(delete, path = "/api/v1/models/{name}/versions/{version}", responses((status = 204), (status = 400), (status = 404)))]
pub async fn delete_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> AdminResult<StatusCode> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(admin)?;
    state.service.delete_version(&caller.call, &target, parse_version(&version)?).await.map_err(admin)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a version's serving options (a loaded version reloads with them on its next request).
#[utoipa::path(put, path = "/api/v1/models/{name}/versions/{version}/config", request_body = VersionConfigDto,
    responses((status = 200, body = VersionDto), (status = 400), (status = 404)))]
pub async fn set_config(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    body: LazyJson<VersionConfigDto>,
) -> AdminResult<Json<VersionDto>> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(admin)?;
    let body = body.read(&state).await.map_err(admin)?;
    let record = state.service.set_version_config(&caller.call, &target, parse_version(&version)?, body.into()).await.map_err(admin)?;
    Ok(Json(version_dto(&state, &caller, record)))
}

/// Loads a version now.
#[utoipa::path(post, path = "/api/v1/models/{name}/versions/{version}/load", responses((status = 200, body = VersionDto), (status = 404), (status = 503)))]
pub async fn load_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> AdminResult<Json<VersionDto>> {
    let model_ref = ModelRef::new(name, Some(parse_version(&version)?));
    let target = caller.target_ref(&state, &model_ref, Action::Write).await.map_err(admin)?;
    let record = state.service.load(&caller.call, &target).await.map_err(admin)?;
    Ok(Json(version_dto(&state, &caller, record)))
}

/// Unloads a version; it is not loaded lazily again until loaded explicitly.
#[utoipa::path(post, path = "/api/v1/models/{name}/versions/{version}/unload", responses((status = 200, body = VersionDto), (status = 404)))]
pub async fn unload_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> AdminResult<Json<VersionDto>> {
    let version = parse_version(&version)?;
    let target = caller.target_ref(&state, &ModelRef::new(name, Some(version)), Action::Write).await.map_err(admin)?;
    state.service.unload(&caller.call, &target).await.map_err(admin)?;
    let record = state.service.get_version(&caller.call, &target, version).await.map_err(admin)?;
    Ok(Json(version_dto(&state, &caller, record)))
}

/// Stores the `tokenizer.json` (Hugging Face tokenizers format) of a version, for embedding encoders.
/// The body is the file; it is parsed before it is stored. A loaded version reloads with it.
#[utoipa::path(put, path = "/api/v1/models/{name}/versions/{version}/tokenizer",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = VersionDto), (status = 400), (status = 404), (status = 413)))]
pub async fn set_tokenizer(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> AdminResult<Json<VersionDto>> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(admin)?;
    let version = parse_version(&version)?;
    let (parts, body) = request.into_parts();
    let limit = crate::body::Limit { bytes: yunmo_service::MAX_TOKENIZER_BYTES, setting: "the tokenizer limit" };
    let (bytes, _charge) = crate::body::read_body(&state, &parts.headers, body, limit).await.map_err(admin)?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| admin(ServiceError::invalid("tokenizer.json is not UTF-8")))?;
    let record = state.service.set_tokenizer(&caller.call, &target, version, text).await.map_err(admin)?;
    Ok(Json(version_dto(&state, &caller, record)))
}

/// Uploads a model file as a new version: the raw file as the body (`application/octet-stream`), or
/// `multipart/form-data` with a `file` part, an optional `config` part (JSON) and an optional
/// `tokenizer` part (`tokenizer.json`, for embedding encoders). The file is checked by
/// its runtime before anything is stored; a rejected or cut-off upload stores nothing.
#[utoipa::path(post, path = "/api/v1/models/{name}/versions", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = VersionDto), (status = 400), (status = 404), (status = 409), (status = 413)))]
pub async fn upload_version(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> AdminResult<Response> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(admin)?;
    // Unknown models and taken versions fail before the body is read.
    state.service.check_new_version(&caller.call, &target, query.version).await.map_err(admin)?;
    let mut config = match &query.config {
        Some(text) => Some(parse_config(text)?),
        None => None,
    };
    let limit = state.config.max_upload_bytes;
    let is_multipart =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("multipart/form-data"));
    // A declared length past the limit is refused before a byte is read (with room for multipart framing
    // and the small parts beside the file).
    let allowed = if is_multipart { limit.saturating_add(MULTIPART_OVERHEAD) } else { limit };
    if crate::body::content_length(request.headers()).is_some_and(|length| length > allowed) {
        return Err(admin(ServiceError::new(Code::PayloadTooLarge, format!("the upload is larger than max_upload_bytes = {limit}"))));
    }
    let artifact = if is_multipart {
        let mut multipart = Multipart::from_request(request, &state).await.map_err(|e| admin(ServiceError::invalid(e.body_text())))?;
        let mut artifact = None;
        let mut tokenizer = None;
        while let Some(field) =
            multipart.next_field().await.map_err(|e| admin(ServiceError::invalid(format!("malformed multipart body: {e}"))))?
        {
            match field.name() {
                Some("file") => {
                    let stream = field.map(|chunk| chunk.map_err(|e| e.to_string()));
                    artifact = Some(stage(&state, &caller, &target, stream, limit).await?);
                }
                Some("config") => {
                    let text = field_text(field, "config", state.config.max_json_bytes).await?;
                    config = Some(parse_config(&text)?);
                }
                Some("tokenizer") => {
                    tokenizer = Some(field_text(field, "tokenizer", yunmo_service::MAX_TOKENIZER_BYTES).await?);
                }
                other => {
                    return Err(admin(ServiceError::invalid(format!(
                        "unexpected multipart part {other:?}: expected 'file' and optionally 'config' and 'tokenizer'"
                    ))));
                }
            }
        }
        let artifact = artifact.ok_or_else(|| admin(ServiceError::invalid("multipart upload has no 'file' part")))?;
        (artifact, tokenizer)
    } else {
        let stream = request.into_body().into_data_stream().map(|chunk| chunk.map_err(|e| e.to_string()));
        (stage(&state, &caller, &target, stream, limit).await?, None)
    };
    let (artifact, tokenizer) = artifact;
    let options = UploadOptions { version: query.version, config: config.map(Into::into).unwrap_or_default(), tokenizer };
    let record = state.service.add_version(&caller.call, &target, artifact, options).await.map_err(admin)?;
    Ok((StatusCode::CREATED, Json(version_dto(&state, &caller, record))).into_response())
}

/// `metadata` must be a JSON object (null or absent: none given).
fn metadata_object(metadata: Option<serde_json::Value>) -> AdminResult<Option<serde_json::Value>> {
    match metadata {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(object @ serde_json::Value::Object(_)) => Ok(Some(object)),
        Some(other) => Err(admin(ServiceError::invalid(format!("metadata must be a JSON object, got {other}")))),
    }
}

/// Room for multipart framing and the small parts beside the file when checking a declared length.
const MULTIPART_OVERHEAD: u64 = 64 << 20;

/// A multipart text part, read up to `limit` bytes.
async fn field_text(mut field: axum::extract::multipart::Field<'_>, part: &str, limit: usize) -> AdminResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| admin(ServiceError::invalid(format!("{part} part: {e}"))))? {
        if bytes.len() + chunk.len() > limit {
            return Err(admin(ServiceError::new(Code::PayloadTooLarge, format!("the {part} part is larger than {limit} bytes"))));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| admin(ServiceError::invalid(format!("the {part} part is not UTF-8"))))
}

fn parse_config(text: &str) -> AdminResult<VersionConfigDto> {
    crate::body::parse_json_as(text.as_bytes(), "config").map_err(admin)
}

/// Streams an upload into a staging file, enforcing the size limit as bytes arrive.
async fn stage<S>(state: &AppState, caller: &Caller, target: &Target, mut stream: S, limit: u64) -> AdminResult<StagedArtifact>
where
    S: futures::Stream<Item = Result<bytes::Bytes, String>> + Unpin,
{
    let io = |e: std::io::Error| admin(ServiceError::internal(format!("cannot stage the upload: {e}")));
    let mut staging = state.service.stage_upload(&caller.call, target).await.map_err(admin)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| admin(ServiceError::invalid(format!("the upload was cut off: {e}"))))?;
        if staging.size() + chunk.len() as u64 > limit {
            return Err(admin(ServiceError::new(Code::PayloadTooLarge, format!("the upload is larger than max_upload_bytes = {limit}"))));
        }
        staging.write(&chunk).await.map_err(io)?;
    }
    staging.finish().await.map_err(io)
}

/// Sets who besides the owning tenant may see and call a model (owner with `models:write`, or admin).
#[utoipa::path(put, path = "/api/v1/models/{name}/sharing", request_body = SharingDto,
    responses((status = 200, body = ModelDto), (status = 400), (status = 403), (status = 404)))]
pub async fn set_sharing(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: LazyJson<SharingDto>,
) -> AdminResult<Json<ModelDto>> {
    let target = caller.target(&state, &name, Action::Write).await.map_err(admin)?;
    let body = body.read(&state).await.map_err(admin)?;
    let patch = ModelPatch { sharing: Some(body.into()), ..ModelPatch::default() };
    let record = state.service.update_model(&caller.call, &target, patch).await.map_err(admin)?;
    Ok(Json(model_dto(&state, &caller, record).await?))
}

/// This OpenAPI document (open without a key).
#[utoipa::path(get, path = "/api/v1/openapi.json", security(()), responses((status = 200, description = "The OpenAPI document.", body = serde_json::Value)))]
pub async fn openapi_json() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}
