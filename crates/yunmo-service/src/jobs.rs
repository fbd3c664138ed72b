//! Jobs and dataset files through the service: who may create, see and cancel them, and what is checked
//! before a job is queued (the file exists and is the caller's, the options parse and name columns the
//! file has, the model is the caller's to write). The runner ([`crate::job_runner`]) does the work.

use std::path::PathBuf;
use std::time::Duration;

use yunmo_auth::{Action, Principal};
use yunmo_registry::{FileRecord, JobEvent, JobFilter, JobRecord, JobStatus, NewJob, ReadableArtifact, StagedArtifact};
use yunmo_types::{Code, ModelRef, Scope, ServiceError};

use crate::job_task::JobKind;
use crate::{Call, InferenceService};

/// The `[jobs]` settings.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// Jobs one replica runs at once (0: this replica runs none, only queues them).
    pub workers: usize,
    /// How long a claim on a running job lasts without renewal; a replica that dies loses its jobs to
    /// another (or to itself after a restart) this long after its last renewal.
    pub lease: Duration,
    /// Runs of one job before it is failed for good (a restart or a crash of the server starts another).
    pub max_attempts: u32,
    /// Longest a job may run.
    pub max_runtime: Duration,
    /// Largest dataset file, bytes (the transport stops reading past it).
    pub max_file_bytes: u64,
    /// Most data rows of a dataset file.
    pub max_rows: usize,
    /// Most columns of a dataset file.
    pub max_columns: usize,
    /// Where jobs keep their working files (each job's folder is removed when it ends).
    pub work_dir: PathBuf,
    /// The ONNX Runtime library (optimisation jobs measure with it).
    pub onnx_library: Option<PathBuf>,
    /// The program a job's child process runs (`yunmo`, with `job-run SPEC`).
    pub program: PathBuf,
}

impl Default for JobsConfig {
    /// `config/default.toml`'s values, with working files under `./yunmo-data/jobs` and children running
    /// this program.
    fn default() -> Self {
        JobsConfig {
            workers: 1,
            lease: Duration::from_secs(30),
            max_attempts: 3,
            max_runtime: Duration::from_secs(86_400),
            max_file_bytes: 256 << 20,
            max_rows: 10_000_000,
            max_columns: 1000,
            work_dir: PathBuf::from("yunmo-data/jobs"),
            onnx_library: None,
            program: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("yunmo")),
        }
    }
}

/// A new job as asked for.
#[derive(Clone, Debug)]
pub struct JobRequest {
    /// What to do.
    pub kind: JobKind,
    /// The model that gets the new version (created in the caller's tenant when it does not exist).
    pub model: String,
    /// The dataset to learn from (training).
    pub training_file: Option<String>,
    /// A separate dataset to validate on.
    pub validation_file: Option<String>,
    /// The version to optimise (optimisation; default: the model's newest).
    pub version: Option<u64>,
    /// Sample inputs to calibrate static quantisation with (a file of purpose `calibration`).
    pub calibration_file: Option<String>,
    /// The job's options.
    pub params: serde_json::Value,
}

/// What the job row's `params` column holds: the options and the extra files.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct StoredParams {
    /// The job's options.
    pub params: serde_json::Value,
    /// The validation file (training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_file: Option<String>,
    /// The calibration file (static quantisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration_file: Option<String>,
}

impl StoredParams {
    /// The stored form of a job's options (an unreadable one reads as empty options).
    pub fn read(record: &JobRecord) -> StoredParams {
        serde_json::from_str::<StoredParams>(&record.params)
            .unwrap_or_else(|_| StoredParams { params: serde_json::Value::Object(Default::default()), ..StoredParams::default() })
    }
}

/// Purposes a file may be uploaded for: `train` and `validation` (CSV datasets), `calibration` (sample
/// inputs for static quantisation: V2 inference requests in JSON, see [`crate::calibration`]).
pub const FILE_PURPOSES: [&str; 3] = ["train", "validation", "calibration"];

/// A dataset upload's name and purpose.
#[derive(Clone, Debug)]
pub struct FileUpload {
    /// The client's file name (shown back, never used as a path).
    pub filename: String,
    /// `train` or `validation`.
    pub purpose: String,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Whether `principal` may see a record of `tenant` (its own tenant's, or any for an admin).
fn sees(principal: &Principal, tenant: &str) -> bool {
    !principal.tenant.is_empty() && (principal.is_admin() || principal.tenant == tenant)
}

/// Whether `principal`'s model allow-list (if it has one) covers the job's model.
fn covers(principal: &Principal, job: &JobRecord) -> bool {
    let short = yunmo_registry::name_for(&job.model, &principal.tenant);
    principal.models.as_ref().is_none_or(|models| models.iter().any(|model| model == short || model == &job.model))
}

fn require_reader(principal: &Principal) -> Result<(), ServiceError> {
    if principal.has_any(&[Scope::ModelsRead, Scope::ModelsWrite]) { Ok(()) } else { Err(principal.lacks(Scope::ModelsRead)) }
}

impl InferenceService {
    /// The jobs settings.
    pub fn jobs_config(&self) -> &JobsConfig {
        &self.inner.jobs.config
    }

    /// Checks a staged CSV file (UTF-8, a header, rows as wide as it, within the row and column bounds)
    /// and stores it for the caller's tenant. Needs `models:write`.
    pub async fn add_file(&self, call: &Call, upload: FileUpload, artifact: StagedArtifact) -> Result<FileRecord, ServiceError> {
        let principal = &call.principal;
        principal.require(Scope::ModelsWrite)?;
        if principal.tenant.is_empty() {
            return Err(ServiceError::new(Code::PermissionDenied, "a caller without a key owns no files; send an API key"));
        }
        if !FILE_PURPOSES.contains(&upload.purpose.as_str()) {
            return Err(ServiceError::invalid(format!("purpose must be one of {}, got '{}'", FILE_PURPOSES.join(", "), upload.purpose)));
        }
        if upload.filename.is_empty() || upload.filename.len() > 255 || upload.filename.chars().any(char::is_control) {
            return Err(ServiceError::invalid("filename must be 1 to 255 characters without control characters"));
        }
        let limits = yunmo_train::CsvLimits { max_rows: self.inner.jobs.config.max_rows, max_columns: self.inner.jobs.config.max_columns };
        let path = artifact.path().to_path_buf();
        let calibration = upload.purpose == "calibration";
        let (columns, rows) = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path).map_err(|error| ServiceError::internal(format!("reading the staged file: {error}")))?;
            if calibration {
                return crate::calibration::scan(&bytes, limits.max_rows).map_err(|error| ServiceError::invalid(format!("file: {error}")));
            }
            yunmo_train::dataset::scan_csv(&bytes, &limits).map_err(|error| ServiceError::invalid(format!("file: {error}")))
        })
        .await
        .map_err(|error| ServiceError::internal(format!("checking the file panicked: {error}")))??;
        let record = FileRecord {
            id: yunmo_registry::new_id("file-"),
            tenant: principal.tenant.clone(),
            filename: upload.filename,
            purpose: upload.purpose,
            bytes: 0,
            sha256: String::new(),
            rows: rows as u64,
            columns: serde_json::to_string(&columns).unwrap_or_else(|_| "[]".into()),
            created_at: now_ms(),
        };
        let record = self.inner.registry.add_file(record, artifact).await?;
        tracing::info!(file = %record.id, tenant = %record.tenant, rows = record.rows, bytes = record.bytes, "Dataset file stored.");
        Ok(record)
    }

    /// A staging file for a dataset upload (needs `models:write`).
    pub async fn stage_file(&self, call: &Call) -> Result<yunmo_registry::StagingFile, ServiceError> {
        call.principal.require(Scope::ModelsWrite)?;
        self.inner.registry.stage().await.map_err(|error| ServiceError::internal(format!("cannot stage the upload: {error}")))
    }

    /// The caller's tenant's files (every tenant's for an admin), newest first.
    pub async fn list_files(&self, call: &Call) -> Result<Vec<FileRecord>, ServiceError> {
        require_reader(&call.principal)?;
        let tenant = call.principal.tenant_filter(None)?;
        Ok(self.inner.registry.jobs().list_files(tenant.as_deref()).await?)
    }

    /// One file the caller may see; another tenant's is "not found".
    pub async fn get_file(&self, call: &Call, id: &str) -> Result<FileRecord, ServiceError> {
        require_reader(&call.principal)?;
        match self.inner.registry.jobs().get_file(id).await? {
            Some(record) if sees(&call.principal, &record.tenant) => Ok(record),
            _ => Err(ServiceError::new(Code::NotFound, format!("file '{id}' not found"))),
        }
    }

    /// A file's bytes.
    pub async fn file_bytes(&self, call: &Call, id: &str) -> Result<(FileRecord, ReadableArtifact), ServiceError> {
        let record = self.get_file(call, id).await?;
        let bytes = self.inner.registry.file_bytes(&record).await?;
        Ok((record, bytes))
    }

    /// Deletes a file (jobs that used it keep their record of it). Needs `models:write`.
    pub async fn delete_file(&self, call: &Call, id: &str) -> Result<FileRecord, ServiceError> {
        call.principal.require(Scope::ModelsWrite)?;
        self.get_file(call, id).await?;
        Ok(self.inner.registry.delete_file(id).await?)
    }

    /// Checks and queues a job. Needs `models:write` and write access to the model when it exists.
    pub async fn create_job(&self, call: &Call, request: JobRequest) -> Result<JobRecord, ServiceError> {
        let principal = &call.principal;
        principal.require(Scope::ModelsWrite)?;
        if principal.tenant.is_empty() {
            return Err(ServiceError::new(Code::PermissionDenied, "a caller without a key owns no jobs; send an API key"));
        }
        let model = self.job_model(call, &request.model).await?;
        if request.kind == JobKind::Optimise {
            return self.create_optimise_job(call, model, request).await;
        }
        if request.version.is_some() {
            return Err(ServiceError::invalid("version: a train job makes a new version; leave version out (it is for optimise jobs)"));
        }
        if request.calibration_file.is_some() {
            return Err(ServiceError::invalid("calibration_file: applies to optimise jobs with method static_int8"));
        }
        let training = request
            .training_file
            .as_deref()
            .ok_or_else(|| ServiceError::invalid("training_file: a train job needs the id of an uploaded CSV file"))?;
        let training = self.file_field(call, training, "training_file").await?;
        let params: yunmo_train::TrainParams =
            serde_json::from_value(request.params.clone()).map_err(|error| ServiceError::invalid(format!("params: {error}")))?;
        params.validate().map_err(|error| ServiceError::invalid(error.to_string()))?;
        let mut files = vec![("training_file", training)];
        if let Some(validation) = &request.validation_file {
            files.push(("validation_file", self.file_field(call, validation, "validation_file").await?));
        }
        for (field, file) in &files {
            if file.purpose == "calibration" {
                return Err(ServiceError::invalid(format!("{field}: '{}' is a calibration file, not a CSV dataset", file.id)));
            }
        }
        for (field, file) in &files {
            let columns: Vec<String> = serde_json::from_str(&file.columns).unwrap_or_default();
            for (param, column) in params.columns() {
                if !columns.iter().any(|name| name == column) {
                    return Err(ServiceError::invalid(format!(
                        "{param}: {field} '{}' has no column '{column}' (columns: {})",
                        file.id,
                        columns.join(", ")
                    )));
                }
            }
        }
        let stored = StoredParams { params: request.params, validation_file: request.validation_file, calibration_file: None };
        let job = NewJob {
            id: yunmo_registry::new_id("job-"),
            tenant: principal.tenant.clone(),
            kind: request.kind.as_str().to_string(),
            model,
            params: serde_json::to_string(&stored).map_err(|error| ServiceError::internal(error.to_string()))?,
            training_file: Some(files[0].1.id.clone()),
            parent_version: None,
            created_at: now_ms(),
        };
        self.queue(call, job).await
    }

    /// Checks and queues an optimisation of an existing ONNX version.
    async fn create_optimise_job(&self, call: &Call, model: String, request: JobRequest) -> Result<JobRecord, ServiceError> {
        let params: yunmo_optimise::OptimiseParams =
            serde_json::from_value(request.params.clone()).map_err(|error| ServiceError::invalid(format!("params: {error}")))?;
        params.validate().map_err(|error| ServiceError::invalid(error.to_string()))?;
        if request.training_file.is_some() || request.validation_file.is_some() {
            return Err(ServiceError::invalid(
                "an optimise job reads no training or validation data: leave out training_file and validation_file (static_int8 takes calibration_file)",
            ));
        }
        let registry = &self.inner.registry;
        let parent = match request.version {
            Some(version) => registry.get_version(&model, version).await?,
            None => registry
                .list_versions(&model)
                .await?
                .into_iter()
                .last()
                .ok_or_else(|| ServiceError::invalid(format!("model: '{}' has no version to optimise", request.model)))?,
        };
        if parent.format != params.method.format() {
            return Err(ServiceError::invalid(format!(
                "version: version {} of '{}' is a {} file; {} applies to {} models",
                parent.version,
                request.model,
                parent.format,
                params.method.as_str(),
                params.method.format()
            )));
        }
        let calibration_file = self.calibration_field(call, &params, &parent, request.calibration_file.as_deref()).await?;
        let stored = StoredParams { params: request.params, validation_file: None, calibration_file };
        let job = NewJob {
            id: yunmo_registry::new_id("job-"),
            tenant: call.principal.tenant.clone(),
            kind: request.kind.as_str().to_string(),
            model,
            params: serde_json::to_string(&stored).map_err(|error| ServiceError::internal(error.to_string()))?,
            training_file: None,
            parent_version: Some(parent.version),
            created_at: now_ms(),
        };
        self.queue(call, job).await
    }

    /// The calibration file of a static quantisation: required for it, refused for the other methods, and
    /// sending the parent's inputs.
    async fn calibration_field(
        &self,
        call: &Call,
        params: &yunmo_optimise::OptimiseParams,
        parent: &yunmo_registry::VersionRecord,
        id: Option<&str>,
    ) -> Result<Option<String>, ServiceError> {
        let field = "calibration_file";
        let id = match (params.method == yunmo_optimise::Method::StaticInt8, id) {
            (true, None) => {
                return Err(ServiceError::invalid(
                    "calibration_file: static_int8 measures activation ranges on sample inputs; upload them with purpose calibration (V2 inference requests in JSON) and name the file",
                ));
            }
            (false, Some(_)) => return Err(ServiceError::invalid("calibration_file: applies to method static_int8 only")),
            (false, None) => return Ok(None),
            (true, Some(id)) => id,
        };
        let file = self.file_field(call, id, field).await?;
        if file.purpose != "calibration" {
            return Err(ServiceError::invalid(format!(
                "calibration_file: '{id}' was uploaded for {}; calibration takes a file uploaded with purpose calibration",
                file.purpose
            )));
        }
        let sent: Vec<String> = serde_json::from_str(&file.columns).unwrap_or_default();
        let mut wanted: Vec<String> = parent.signature.inputs.iter().map(|input| input.name.clone()).collect();
        wanted.sort();
        if sent != wanted {
            return Err(ServiceError::invalid(format!(
                "calibration_file: '{id}' sends inputs {sent:?}; version {} takes {wanted:?}",
                parent.version
            )));
        }
        Ok(Some(file.id))
    }

    async fn queue(&self, call: &Call, job: NewJob) -> Result<JobRecord, ServiceError> {
        let record = self.inner.registry.jobs().insert_job(&job).await?;
        let message = format!("Job created by key '{}'.", call.principal.key_id);
        self.inner.registry.jobs().append_job_event(&record.id, record.created_at, "info", &message, "").await?;
        tracing::info!(job = %record.id, kind = %record.kind, model = %record.model, "Job queued.");
        self.inner.jobs.wake.notify_one();
        Ok(record)
    }

    /// The model a job writes: an existing one the caller may write, or a new name in the caller's tenant
    /// (created when the job succeeds).
    async fn job_model(&self, call: &Call, name: &str) -> Result<String, ServiceError> {
        let principal = &call.principal;
        match self.authorize(call, &ModelRef::new(name, None), Action::Write).await {
            Ok(target) if target.record().tenant != principal.tenant => Err(ServiceError::invalid(format!(
                "model: a job writes a model of the caller's own tenant ('{}'); '{name}' belongs to '{}'",
                principal.tenant,
                target.record().tenant
            ))),
            Ok(target) => Ok(target.name().to_string()),
            Err(error) if error.code == Code::ModelNotFound && !name.contains('/') => {
                yunmo_registry::validate_name(name).map_err(|error| ServiceError::invalid(format!("model: {error}")))?;
                if principal.models.as_ref().is_some_and(|models| !models.iter().any(|model| model == name)) {
                    return Err(ServiceError::new(
                        Code::PermissionDenied,
                        format!("key '{}' may not use model '{name}'", principal.key_id),
                    ));
                }
                Ok(yunmo_registry::qualified_name(&principal.tenant, name))
            }
            Err(error) => Err(error),
        }
    }

    /// Ends what a deleted tenant left running and removes its files: its queued jobs are cancelled, its
    /// running ones asked to stop (they register nothing: the tenant is gone), its dataset files deleted.
    pub(crate) async fn forget_tenant_jobs(&self, tenant: &str) -> Result<(), ServiceError> {
        let jobs = self.inner.registry.jobs();
        for job in jobs.list_jobs(JobFilter { tenant: Some(tenant), status: None, limit: 0 }).await? {
            if !job.status.is_final() {
                jobs.cancel_job(&job.id, now_ms()).await?;
            }
        }
        for file in jobs.list_files(Some(tenant)).await? {
            self.inner.registry.delete_file(&file.id).await?;
        }
        self.inner.jobs.cancelled.notify_waiters();
        Ok(())
    }

    async fn file_field(&self, call: &Call, id: &str, field: &str) -> Result<FileRecord, ServiceError> {
        match self.get_file(call, id).await {
            Ok(record) => Ok(record),
            Err(error) if error.code == Code::NotFound => Err(ServiceError::invalid(format!("{field}: there is no file '{id}'"))),
            Err(error) => Err(error),
        }
    }

    /// The caller's tenant's jobs (every tenant's for an admin), newest first.
    pub async fn list_jobs(&self, call: &Call, status: Option<JobStatus>, limit: u32) -> Result<Vec<JobRecord>, ServiceError> {
        require_reader(&call.principal)?;
        let tenant = call.principal.tenant_filter(None)?;
        let jobs = self.inner.registry.jobs().list_jobs(JobFilter { tenant: tenant.as_deref(), status, limit }).await?;
        Ok(jobs.into_iter().filter(|job| covers(&call.principal, job)).collect())
    }

    /// One job the caller may see; another tenant's is "not found".
    pub async fn get_job(&self, call: &Call, id: &str) -> Result<JobRecord, ServiceError> {
        require_reader(&call.principal)?;
        match self.inner.registry.jobs().get_job(id).await? {
            Some(record) if sees(&call.principal, &record.tenant) && covers(&call.principal, &record) => Ok(record),
            _ => Err(ServiceError::new(Code::NotFound, format!("job '{id}' not found"))),
        }
    }

    /// A job's events after `after`, oldest first.
    pub async fn job_events(&self, call: &Call, id: &str, after: u64, limit: u32) -> Result<Vec<JobEvent>, ServiceError> {
        self.get_job(call, id).await?;
        Ok(self.inner.registry.jobs().job_events(id, after, limit).await?)
    }

    /// Cancels a job: a queued one at once, a running one as soon as its replica sees the request (its
    /// child process is killed, no version is made). Needs `models:write`.
    pub async fn cancel_job(&self, call: &Call, id: &str) -> Result<JobRecord, ServiceError> {
        call.principal.require(Scope::ModelsWrite)?;
        let before = self.get_job(call, id).await?;
        let after = self.inner.registry.jobs().cancel_job(id, now_ms()).await?;
        if !before.status.is_final() && !before.cancel_requested {
            let message = format!("Cancellation asked for by key '{}'.", call.principal.key_id);
            self.inner.registry.jobs().append_job_event(id, now_ms(), "info", &message, "").await?;
        }
        self.inner.jobs.cancelled.notify_waiters();
        Ok(after)
    }
}

/// The service's part of the jobs subsystem: settings and the runner's wake-ups.
pub(crate) struct JobsHub {
    pub(crate) config: JobsConfig,
    /// Woken when a job is queued here, so an idle worker claims it without waiting for its poll.
    pub(crate) wake: tokio::sync::Notify,
    /// Woken when a job is cancelled here, so its worker checks at once.
    pub(crate) cancelled: tokio::sync::Notify,
}
