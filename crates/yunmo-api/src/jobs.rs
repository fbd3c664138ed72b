//! Background jobs and their dataset files: `/api/v1/files` (CSV uploads, checked and size-limited) and
//! `/api/v1/jobs` (create, list, get, events, cancel), shaped after OpenAI's files and fine-tuning jobs.

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use yunmo_registry::{FileRecord, JobEvent, JobRecord, JobStatus, StagedArtifact};
use yunmo_service::job_task::JobKind;
use yunmo_service::{Code, FileUpload, JobRequest, ServiceError};

use crate::AppState;
use crate::auth::Caller;
use crate::body::LazyJson;
use crate::error::ApiError;
use crate::extract::Query;

/// The jobs and files routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/files", get(list_files).post(upload_file))
        .route("/api/v1/files/{file}", get(get_file).delete(delete_file))
        .route("/api/v1/files/{file}/content", get(file_content))
        .route("/api/v1/jobs", get(list_jobs).post(create_job))
        .route("/api/v1/jobs/{job}", get(get_job))
        .route("/api/v1/jobs/{job}/events", get(job_events))
        .route("/api/v1/jobs/{job}/cancel", post(cancel_job))
}

type Answer<T> = Result<T, ApiError>;

/// A dataset file.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileDto {
    /// `file-` and 24 hex characters.
    pub id: String,
    /// Always `file`.
    pub object: &'static str,
    /// Owning tenant.
    pub tenant: String,
    /// The name it was uploaded with.
    pub filename: String,
    /// `train` or `validation` (CSV datasets), `calibration` (sample inputs: V2 inference requests in JSON).
    pub purpose: String,
    /// Size.
    pub bytes: u64,
    /// sha256 of the bytes.
    pub sha256: String,
    /// Data rows (the header not counted); samples of a calibration file.
    pub rows: u64,
    /// Column names from the header; input names of a calibration file.
    pub columns: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

fn file_dto(record: FileRecord) -> FileDto {
    FileDto {
        columns: serde_json::from_str(&record.columns).unwrap_or_default(),
        id: record.id,
        object: "file",
        tenant: record.tenant,
        filename: record.filename,
        purpose: record.purpose,
        bytes: record.bytes,
        sha256: record.sha256,
        rows: record.rows,
        created_at: record.created_at / 1000,
    }
}

/// A list of files.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    /// Always `list`.
    pub object: &'static str,
    /// Newest first.
    pub data: Vec<FileDto>,
}

/// The query of an upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The file's name, for a raw-body upload (default `upload.csv`).
    pub filename: Option<String>,
    /// `train` (default) or `validation`.
    pub purpose: Option<String>,
}

/// Uploads a CSV dataset: the raw file as the body (`text/csv`), or `multipart/form-data` with a `file`
/// part and an optional `purpose` part (as OpenAI's files API). It must be UTF-8 with a header row of
/// unique names and rows as wide as it, within `jobs.max_file_bytes`, `jobs.max_rows` and
/// `jobs.max_columns`; a refused file stores nothing and the message names the line. With purpose
/// `calibration` the file is sample inputs for static quantisation instead: one or more V2 inference
/// requests in JSON (JSON Lines), each input's first dimension counting samples.
#[utoipa::path(post, path = "/api/v1/files", params(FileQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 201, body = FileDto), (status = 400, body = crate::schema::ErrorBody), (status = 413, body = crate::schema::ErrorBody)))]
pub async fn upload_file(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<FileQuery>,
    request: Request,
) -> Answer<Response> {
    let limit = state.service.jobs_config().max_file_bytes;
    let is_multipart =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("multipart/form-data"));
    if crate::body::content_length(request.headers())
        .is_some_and(|length| length > limit.saturating_add(if is_multipart { 1 << 16 } else { 0 }))
    {
        return Err(too_large(limit));
    }
    let mut upload = FileUpload {
        filename: query.filename.unwrap_or_else(|| "upload.csv".into()),
        purpose: query.purpose.unwrap_or_else(|| "train".into()),
    };
    let artifact = if is_multipart {
        let mut multipart =
            Multipart::from_request(request, &state).await.map_err(|e| ApiError::admin(ServiceError::invalid(e.body_text())))?;
        let mut artifact = None;
        while let Some(field) =
            multipart.next_field().await.map_err(|e| ApiError::admin(ServiceError::invalid(format!("malformed multipart body: {e}"))))?
        {
            match field.name() {
                Some("file") => {
                    if let Some(name) = field.file_name() {
                        upload.filename = name.to_string();
                    }
                    let stream = field.map(|chunk| chunk.map_err(|e| e.to_string()));
                    artifact = Some(stage(&state, &caller, stream, limit).await?);
                }
                Some("purpose") => {
                    let mut field = field;
                    let mut text = Vec::new();
                    while let Some(chunk) =
                        field.chunk().await.map_err(|e| ApiError::admin(ServiceError::invalid(format!("purpose part: {e}"))))?
                    {
                        text.extend_from_slice(&chunk);
                        if text.len() > 64 {
                            return Err(ApiError::admin(ServiceError::invalid("the purpose part is longer than 64 bytes")));
                        }
                    }
                    upload.purpose = String::from_utf8_lossy(&text).trim().to_string();
                }
                other => {
                    return Err(ApiError::admin(ServiceError::invalid(format!(
                        "unexpected multipart part {other:?}: expected 'file' and optionally 'purpose'"
                    ))));
                }
            }
        }
        artifact.ok_or_else(|| ApiError::admin(ServiceError::invalid("multipart upload has no 'file' part")))?
    } else {
        let stream = request.into_body().into_data_stream().map(|chunk| chunk.map_err(|e| e.to_string()));
        stage(&state, &caller, stream, limit).await?
    };
    let record = state.service.add_file(&caller.call, upload, artifact).await.map_err(ApiError::admin)?;
    Ok((StatusCode::CREATED, Json(file_dto(record))).into_response())
}

fn too_large(limit: u64) -> ApiError {
    ApiError::admin(ServiceError::new(Code::PayloadTooLarge, format!("the file is larger than jobs.max_file_bytes = {limit}")))
}

async fn stage<S>(state: &AppState, caller: &Caller, mut stream: S, limit: u64) -> Answer<StagedArtifact>
where
    S: futures::Stream<Item = Result<bytes::Bytes, String>> + Unpin,
{
    let io = |e: std::io::Error| ApiError::admin(ServiceError::internal(format!("cannot stage the upload: {e}")));
    let mut staging = state.service.stage_file(&caller.call).await.map_err(ApiError::admin)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::admin(ServiceError::invalid(format!("the upload was cut off: {e}"))))?;
        if staging.size() + chunk.len() as u64 > limit {
            return Err(too_large(limit));
        }
        staging.write(&chunk).await.map_err(io)?;
    }
    staging.finish().await.map_err(io)
}

/// The caller's tenant's files (every tenant's for an admin), newest first.
#[utoipa::path(get, path = "/api/v1/files", responses((status = 200, body = FileList)))]
pub async fn list_files(State(state): State<AppState>, caller: Caller) -> Answer<Json<FileList>> {
    let files = state.service.list_files(&caller.call).await.map_err(ApiError::admin)?;
    Ok(Json(FileList { object: "list", data: files.into_iter().map(file_dto).collect() }))
}

/// One file.
#[utoipa::path(get, path = "/api/v1/files/{file}", params(("file" = String, Path, description = "The file's id")),
    responses((status = 200, body = FileDto), (status = 404, body = crate::schema::ErrorBody)))]
pub async fn get_file(State(state): State<AppState>, caller: Caller, Path(file): Path<String>) -> Answer<Json<FileDto>> {
    Ok(Json(file_dto(state.service.get_file(&caller.call, &file).await.map_err(ApiError::admin)?)))
}

/// The file's bytes (`text/csv`; `application/json` for a calibration file).
#[utoipa::path(get, path = "/api/v1/files/{file}/content", params(("file" = String, Path, description = "The file's id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = crate::schema::ErrorBody)))]
pub async fn file_content(State(state): State<AppState>, caller: Caller, Path(file): Path<String>) -> Answer<Response> {
    let (record, bytes) = state.service.file_bytes(&caller.call, &file).await.map_err(ApiError::admin)?;
    let body = tokio::fs::read(bytes.path())
        .await
        .map_err(|e| ApiError::admin(ServiceError::internal(format!("reading file {}: {e}", record.id))))?;
    let kind = if record.purpose == "calibration" { "application/json" } else { "text/csv; charset=utf-8" };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

/// Deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// The id.
    pub id: String,
    /// `file`.
    pub object: &'static str,
    /// Always true.
    pub deleted: bool,
}

/// Deletes a file (jobs that used it keep naming it).
#[utoipa::path(delete, path = "/api/v1/files/{file}", params(("file" = String, Path, description = "The file's id")),
    responses((status = 200, body = Deleted), (status = 404, body = crate::schema::ErrorBody)))]
pub async fn delete_file(State(state): State<AppState>, caller: Caller, Path(file): Path<String>) -> Answer<Json<Deleted>> {
    let record = state.service.delete_file(&caller.call, &file).await.map_err(ApiError::admin)?;
    Ok(Json(Deleted { id: record.id, object: "file", deleted: true }))
}

/// A new job.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// `train`: learn a model from `training_file` into a new version of `model`; `optimise`: make a new,
    /// smaller version of `model` from `version` (`params.method`: `dynamic_int8`, `static_int8` (with
    /// `calibration_file`), `prune` or `ort_optimize` for ONNX, `requantize` for GGUF).
    #[schema(value_type = String, example = "train")]
    pub kind: JobKind,
    /// The model that gets the new version; created in the caller's tenant when it does not exist.
    pub model: String,
    /// The CSV file to learn from (`file-...`).
    #[serde(default)]
    pub training_file: Option<String>,
    /// A CSV file to validate on, with the same columns (default: a share of the training rows).
    #[serde(default)]
    pub validation_file: Option<String>,
    /// `optimise`: the version to optimise (default: the model's newest).
    #[serde(default)]
    pub version: Option<u64>,
    /// `optimise` with `static_int8`: the file of sample inputs to calibrate with (uploaded with purpose
    /// `calibration`: V2 inference requests in JSON).
    #[serde(default)]
    pub calibration_file: Option<String>,
    /// The trainer's options: `{"family": "linear_regression" | "logistic_regression" | "mlp_classifier" |
    /// "mlp_regressor" | "kmeans", "target", "features", "categorical", "encoding", "validation_fraction",
    /// "seed", "l2", "max_iter", "epochs", "learning_rate", "batch_size", "hidden_layers", "clusters",
    /// "restarts", "user_column", "item_column", "factors", "top_k"}`; for `optimise`: `{"method", "keep_fraction",
    /// "min_elements", "min_cosine", "min_top1", "force", "probe_batch", "type", "max_perplexity_increase",
    /// "text"}` (docs/lifecycle.md).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDto {
    /// `job-` and 24 hex characters.
    pub id: String,
    /// Always `job`.
    pub object: &'static str,
    /// `train`.
    pub kind: String,
    /// Owning tenant.
    pub tenant: String,
    /// The model it writes, as the caller names it.
    pub model: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Share done, 0 to 1.
    pub progress: f64,
    /// The options.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// The training file.
    pub training_file: Option<String>,
    /// The validation file.
    pub validation_file: Option<String>,
    /// The calibration file (static quantisation).
    pub calibration_file: Option<String>,
    /// The version it starts from (optimisation).
    pub parent_version: Option<u64>,
    /// The version it made (when succeeded).
    pub result_version: Option<u64>,
    /// Evaluation metrics of the version it made.
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
    /// Why it failed.
    pub error: Option<String>,
    /// A cancel was asked for and the job has not stopped yet.
    pub cancel_requested: bool,
    /// Runs started (a server restart during a run starts another).
    pub attempts: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub started_at: Option<i64>,
    /// Unix seconds.
    pub finished_at: Option<i64>,
}

fn job_dto(caller: &Caller, record: JobRecord) -> JobDto {
    let yunmo_service::jobs::StoredParams { params, validation_file, calibration_file } = yunmo_service::jobs::StoredParams::read(&record);
    JobDto {
        model: yunmo_registry::name_for(&record.model, &caller.principal().tenant).to_string(),
        object: "job",
        kind: record.kind,
        tenant: record.tenant,
        status: record.status.as_str().to_string(),
        progress: record.progress,
        params,
        training_file: record.training_file,
        validation_file,
        calibration_file,
        parent_version: record.parent_version,
        result_version: record.result_version,
        metrics: serde_json::from_str(&record.metrics).unwrap_or_default(),
        error: record.error,
        cancel_requested: record.cancel_requested,
        attempts: record.attempts,
        created_at: record.created_at / 1000,
        started_at: record.started_at.map(|at| at / 1000),
        finished_at: record.finished_at.map(|at| at / 1000),
        id: record.id,
    }
}

/// Queues a job. The options, files and columns are checked first: a bad one is a 400 naming it, and
/// nothing is queued. Needs `models:write` (and write access to `model` when it exists).
#[utoipa::path(post, path = "/api/v1/jobs", request_body = CreateJob,
    responses((status = 201, body = JobDto), (status = 400, body = crate::schema::ErrorBody)))]
pub async fn create_job(State(state): State<AppState>, caller: Caller, body: LazyJson<CreateJob>) -> Answer<Response> {
    let body = body.read(&state).await.map_err(ApiError::admin)?;
    let request = JobRequest {
        kind: body.kind,
        model: body.model,
        training_file: body.training_file,
        validation_file: body.validation_file,
        version: body.version,
        calibration_file: body.calibration_file,
        params: body.params,
    };
    let record = state.service.create_job(&caller.call, request).await.map_err(ApiError::admin)?;
    Ok((StatusCode::CREATED, Json(job_dto(&caller, record))).into_response())
}

/// A list of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Always `list`.
    pub object: &'static str,
    /// Newest first.
    pub data: Vec<JobDto>,
}

/// Which jobs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Only jobs with this status.
    pub status: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// The caller's tenant's jobs (every tenant's for an admin), newest first.
#[utoipa::path(get, path = "/api/v1/jobs", params(JobQuery), responses((status = 200, body = JobList)))]
pub async fn list_jobs(State(state): State<AppState>, caller: Caller, Query(query): Query<JobQuery>) -> Answer<Json<JobList>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(JobStatus::parse(text).ok_or_else(|| {
            ApiError::admin(ServiceError::invalid(format!("status must be queued, running, succeeded, failed or cancelled, got '{text}'")))
        })?),
    };
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::admin(ServiceError::invalid(format!("limit must be between 1 and 1000, got {limit}"))));
    }
    let jobs = state.service.list_jobs(&caller.call, status, limit).await.map_err(ApiError::admin)?;
    Ok(Json(JobList { object: "list", data: jobs.into_iter().map(|job| job_dto(&caller, job)).collect() }))
}

/// One job.
#[utoipa::path(get, path = "/api/v1/jobs/{job}", params(("job" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobDto), (status = 404, body = crate::schema::ErrorBody)))]
pub async fn get_job(State(state): State<AppState>, caller: Caller, Path(job): Path<String>) -> Answer<Json<JobDto>> {
    Ok(Json(job_dto(&caller, state.service.get_job(&caller.call, &job).await.map_err(ApiError::admin)?)))
}

/// A job's event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDto {
    /// Increasing; pass the last one seen as `after` to read on.
    pub id: u64,
    /// Always `job.event`.
    pub object: &'static str,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// `info`, `warning` or `error`.
    pub level: String,
    /// What happened.
    pub message: String,
    /// Figures that go with it (e.g. `{"loss": 0.31}`).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// Always `list`.
    pub object: &'static str,
    /// Oldest first.
    pub data: Vec<EventDto>,
    /// More events follow the page.
    pub has_more: bool,
}

/// Which events to read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events after this id.
    pub after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

fn event_dto(event: JobEvent) -> EventDto {
    EventDto {
        id: event.seq,
        object: "job.event",
        created_at_ms: event.at,
        level: event.level,
        message: event.message,
        data: serde_json::from_str(&event.data).unwrap_or(serde_json::Value::Null),
    }
}

/// A job's events (its log: created, started, progress with the loss, the end), oldest first.
#[utoipa::path(get, path = "/api/v1/jobs/{job}/events", params(("job" = String, Path, description = "The job's id"), EventQuery),
    responses((status = 200, body = EventList), (status = 404, body = crate::schema::ErrorBody)))]
pub async fn job_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
    Query(query): Query<EventQuery>,
) -> Answer<Json<EventList>> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > 1000 {
        return Err(ApiError::admin(ServiceError::invalid(format!("limit must be between 1 and 1000, got {limit}"))));
    }
    let mut events = state.service.job_events(&caller.call, &job, query.after.unwrap_or(0), limit + 1).await.map_err(ApiError::admin)?;
    let has_more = events.len() > limit as usize;
    events.truncate(limit as usize);
    Ok(Json(EventList { object: "list", data: events.into_iter().map(event_dto).collect(), has_more }))
}

/// Cancels a job: a queued one at once; a running one's process is stopped within a second and it makes
/// no version. A finished job is answered as it is.
#[utoipa::path(post, path = "/api/v1/jobs/{job}/cancel", params(("job" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobDto), (status = 404, body = crate::schema::ErrorBody)))]
pub async fn cancel_job(State(state): State<AppState>, caller: Caller, Path(job): Path<String>) -> Answer<Json<JobDto>> {
    Ok(Json(job_dto(&caller, state.service.cancel_job(&caller.call, &job).await.map_err(ApiError::admin)?)))
}
