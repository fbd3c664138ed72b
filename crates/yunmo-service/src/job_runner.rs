//! Runs jobs: each worker claims a job from the metadata store under a lease, runs it in a child process
//! of the server's own binary (so a crash or a cancel cannot take the server down), renews the lease while
//! the child runs, records its progress and events, and ends the job: on success the child's file becomes
//! a new version of the job's model. A job whose replica dies is claimed again once its lease runs out;
//! the version it makes carries the job's id, so a run that had already registered it does not register a
//! second one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use yunmo_auth::{Action, Principal};
use yunmo_registry::{JobEnd, JobRecord, NewModel, RegistryError, UsageEvent};
use yunmo_types::{Code, ModelRef, Provenance, Scope, ServiceError, VersionConfig};

use crate::job_task::{JobKind, TaskMessage, TaskSpec};
use crate::jobs::{StoredParams, now_ms};
use crate::{Call, InferenceService, UploadOptions};

/// The workers of one replica; [`JobRunner::stop`] ends them.
pub struct JobRunner {
    stop: Arc<watch::Sender<bool>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl JobRunner {
    /// Starts `jobs.workers` workers; `replica` names this process in leases and events. What earlier runs
    /// of this server left in `jobs.work_dir` (plaintext copies of datasets, after a crash) is removed
    /// first: the folder is this server's own.
    pub fn start(service: &InferenceService, replica: &str) -> JobRunner {
        let work_dir = &service.jobs_config().work_dir;
        match std::fs::remove_dir_all(work_dir) {
            Ok(()) => tracing::info!(folder = %work_dir.display(), "Removed what earlier job runs left."),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(folder = %work_dir.display(), %error, "Could not clear the jobs' working folder."),
        }
        let (stop, stopped) = watch::channel(false);
        let workers = (0..service.jobs_config().workers)
            .map(|index| {
                let worker = Worker { service: service.clone(), owner: format!("{replica}/{index}"), stop: stopped.clone() };
                tokio::spawn(worker.run())
            })
            .collect();
        JobRunner { stop: Arc::new(stop), workers }
    }

    /// What tells the workers to stop (claim nothing more, kill their children and hand their jobs back);
    /// the server sends it as soon as it begins to shut down.
    pub fn stopper(&self) -> Arc<watch::Sender<bool>> {
        Arc::clone(&self.stop)
    }

    /// Stops the workers: running children are killed and their jobs handed back (their leases end now,
    /// the run not counted as an attempt), so the next server to start claims them again.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for worker in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
        }
    }
}

struct Worker {
    service: InferenceService,
    owner: String,
    stop: watch::Receiver<bool>,
}

/// How a child's run ended.
enum Outcome {
    Done {
        artifact: std::path::PathBuf,
        message: TaskMessage,
    },
    Failed(String),
    Cancelled,
    /// The lease was lost or the server is stopping: the job is not ended here.
    Abandoned,
    /// A store the job needs is unavailable: the job is handed back to run again later.
    Unavailable(String),
}

impl Worker {
    async fn run(mut self) {
        let inner = Arc::clone(&self.service.inner);
        let hub = &inner.jobs;
        loop {
            if *self.stop.borrow() {
                return;
            }
            let now = now_ms();
            let lease = hub.config.lease.as_millis() as i64;
            match self.service.inner.registry.jobs().claim_job(&self.owner, now, now + lease).await {
                Ok(Some(job)) => self.run_job(job).await,
                Ok(None) => {
                    tokio::select! {
                        _ = hub.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        changed = self.stop.changed() => if changed.is_err() { return },
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Could not claim a job; retrying.");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    async fn event(&self, job: &str, level: &str, message: &str, data: &str) {
        if let Err(error) = self.service.inner.registry.jobs().append_job_event(job, now_ms(), level, message, data).await {
            tracing::warn!(job, %error, "Could not record a job event.");
        }
    }

    /// Records the job's end; false when this worker no longer holds it (or the store failed).
    async fn finish(&self, job: &JobRecord, end: &JobEnd) -> bool {
        match self.service.inner.registry.jobs().finish_job(&job.id, &self.owner, end, now_ms()).await {
            Ok(true) => {
                tracing::info!(job = %job.id, end = ?end, "Job ended.");
                true
            }
            Ok(false) => {
                tracing::warn!(job = %job.id, "Job ended here, but another worker holds it now; its end is theirs.");
                false
            }
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "Could not record a job's end; it runs again after its lease.");
                false
            }
        }
    }

    /// Hands the job back to be claimed again (the server stops, or a store it needs is unavailable).
    async fn release(&self, job: &JobRecord) {
        if let Err(error) = self.service.inner.registry.jobs().release_job(&job.id, &self.owner).await {
            tracing::warn!(job = %job.id, %error, "Could not hand a job back; it runs again after its lease.");
        }
    }

    /// Whether this worker still holds the job and it is not being cancelled, just before its result
    /// becomes a version.
    async fn still_ours(&self, job: &JobRecord) -> Option<Outcome> {
        let lease = self.service.inner.jobs.config.lease.as_millis() as i64;
        match self.service.inner.registry.jobs().renew_job(&job.id, &self.owner, 1.0, now_ms() + lease).await {
            Ok(Some(record)) if record.cancel_requested => Some(Outcome::Cancelled),
            Ok(Some(_)) => None,
            Ok(None) => Some(Outcome::Abandoned),
            Err(error) => Some(Outcome::Unavailable(error.to_string())),
        }
    }

    async fn run_job(&mut self, job: JobRecord) {
        let config = &self.service.inner.jobs.config;
        if job.attempts > config.max_attempts {
            let error = format!("gave up after {} attempts (the server stopped or crashed during each)", config.max_attempts);
            self.event(&job.id, "error", &format!("Failed: {error}."), "").await;
            self.finish(&job, &JobEnd::Failed { error }).await;
            return;
        }
        self.event(&job.id, "info", &format!("Attempt {} started on {}.", job.attempts, self.owner), "").await;
        let dir = config.work_dir.join(format!("{}-{}", job.id, job.attempts));
        let started = Instant::now();
        let mut outcome = match self.prepare(&job, &dir).await {
            Ok(spec) => self.supervise(&job, &spec).await,
            Err(error) if error.code == Code::Unavailable => Outcome::Unavailable(error.message),
            Err(error) => Outcome::Failed(error.message),
        };
        if matches!(outcome, Outcome::Done { .. })
            && let Some(changed) = self.still_ours(&job).await
        {
            outcome = changed;
        }
        let compute_ms = started.elapsed().as_millis() as u64;
        let (end, version) = match outcome {
            Outcome::Done { artifact, message } => match self.register(&job, &artifact, message).await {
                Ok((version, metrics)) => (Some(JobEnd::Succeeded { result_version: Some(version), metrics }), version),
                Err(error) if error.code == Code::Unavailable => {
                    self.unavailable(&job, &error.message).await;
                    (None, 0)
                }
                Err(error) => (Some(JobEnd::Failed { error: format!("registering the version failed: {}", error.message) }), 0),
            },
            Outcome::Failed(error) => (Some(JobEnd::Failed { error }), 0),
            Outcome::Cancelled => (Some(JobEnd::Cancelled), 0),
            Outcome::Abandoned => (None, 0),
            Outcome::Unavailable(error) => {
                self.unavailable(&job, &error).await;
                (None, 0)
            }
        };
        if let Some(end) = end
            && self.finish(&job, &end).await
        {
            let (level, message) = match &end {
                JobEnd::Succeeded { result_version, .. } => {
                    ("info", format!("Succeeded: version {} of '{}'.", result_version.unwrap_or(0), job.model))
                }
                JobEnd::Failed { error } => ("error", format!("Failed: {error}")),
                JobEnd::Cancelled => ("info", "Cancelled; the child process was stopped and no version was made.".to_string()),
            };
            self.event(&job.id, level, &message, "").await;
            self.meter(&job, version, compute_ms, &end).await;
        }
        if let Err(error) = tokio::fs::remove_dir_all(&dir).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(job = %job.id, %error, "Could not remove a job's working folder.");
        }
    }

    /// A store was unavailable: the job is handed back (and runs again, as another attempt, once a worker
    /// claims it after a pause).
    async fn unavailable(&self, job: &JobRecord, error: &str) {
        self.event(&job.id, "warning", &format!("A store is unavailable ({error}); the job runs again later."), "").await;
        let _ = self.service.inner.registry.jobs().renew_job(&job.id, &self.owner, 0.0, now_ms() + 5_000).await;
    }

    /// Writes the job's inputs in plaintext into `dir` and describes the task.
    async fn prepare(&self, job: &JobRecord, dir: &std::path::Path) -> Result<TaskSpec, ServiceError> {
        let io = |error: std::io::Error| ServiceError::internal(format!("preparing the job's folder: {error}"));
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let kind = JobKind::parse(&job.kind).ok_or_else(|| ServiceError::invalid(format!("unknown job kind '{}'", job.kind)))?;
        let StoredParams { params, validation_file, calibration_file } = StoredParams::read(job);
        let copy = async |id: &str, name: &str| -> Result<std::path::PathBuf, ServiceError> {
            let jobs = self.service.inner.registry.jobs();
            let record = jobs.get_file(id).await?.ok_or_else(|| ServiceError::invalid(format!("the file '{id}' was deleted")))?;
            let bytes = self.service.inner.registry.file_bytes(&record).await?;
            let path = dir.join(name);
            tokio::fs::copy(bytes.path(), &path).await.map_err(io)?;
            Ok(path)
        };
        let training = match &job.training_file {
            Some(id) => Some(copy(id, "training.csv").await?),
            None => None,
        };
        let validation = match &validation_file {
            Some(id) => Some(copy(id, "validation.csv").await?),
            None => None,
        };
        let calibration = match &calibration_file {
            Some(id) => Some(copy(id, "calibration.json").await?),
            None => None,
        };
        let (mut parent, mut probe, mut probe_target) = (None, None, None);
        if let Some(version) = job.parent_version {
            let registry = &self.service.inner.registry;
            let record = registry.get_version(&job.model, version).await?;
            let readable = registry.readable_artifact(&record).await?;
            let path = dir.join(format!("parent.{}", record.format));
            tokio::fs::copy(readable.path(), &path).await.map_err(io)?;
            parent = Some(path);
            // A parent trained here is probed with its own data (validation rows first), if still stored.
            let provenance = record.config.provenance.as_ref();
            let files = provenance.map(|p| [p.validation_file.clone(), p.training_file.clone()]).unwrap_or_default();
            for id in files.into_iter().flatten() {
                if let Ok(Some(file)) = self.service.inner.registry.jobs().get_file(&id).await
                    && file.tenant == job.tenant
                {
                    probe = Some(copy(&id, "probe.csv").await?);
                    probe_target = provenance.and_then(|p| p.details.get("target")).and_then(|target| target.as_str()).map(str::to_string);
                    break;
                }
            }
        }
        let config = &self.service.inner.jobs.config;
        let spec = TaskSpec {
            job: job.id.clone(),
            kind,
            params,
            training,
            validation,
            parent,
            probe,
            probe_target,
            calibration,
            onnx_library: config.onnx_library.clone(),
            output: dir.join("output"),
            max_rows: config.max_rows,
            max_columns: config.max_columns,
        };
        tokio::fs::create_dir_all(&spec.output).await.map_err(io)?;
        let text = serde_json::to_vec(&spec).map_err(|error| ServiceError::internal(error.to_string()))?;
        tokio::fs::write(dir.join("spec.json"), text).await.map_err(io)?;
        Ok(spec)
    }

    /// Runs the child and follows it until it ends, the job is cancelled, the lease is lost or the server
    /// stops.
    async fn supervise(&mut self, job: &JobRecord, spec: &TaskSpec) -> Outcome {
        let config = self.service.inner.jobs.config.clone();
        let spec_path = spec.output.parent().map(|dir| dir.join("spec.json")).unwrap_or_default();
        let mut child = match Command::new(&config.program)
            .arg("job-run")
            .arg(&spec_path)
            .env(PARENT_VARIABLE, std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(error) => return Outcome::Failed(format!("could not start the job's process {}: {error}", config.program.display())),
        };
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let stderr = tokio::spawn(tail(child.stderr.take().expect("stderr is piped")));
        let deadline = tokio::time::Instant::now() + config.max_runtime;
        let mut renew = tokio::time::interval(Duration::from_millis(500));
        let mut progress = Progress::default();
        let mut last: Option<TaskMessage> = None;
        let hub = Arc::clone(&self.service.inner);
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => match serde_json::from_str::<TaskMessage>(&line) {
                        Ok(TaskMessage::Progress { fraction, message, loss }) => {
                            progress.fraction = fraction.clamp(0.0, 1.0);
                            if progress.should_log(&message) {
                                let data = loss.map(|loss| serde_json::json!({ "loss": loss }).to_string()).unwrap_or_default();
                                self.event(&job.id, "info", &message, &data).await;
                            }
                        }
                        Ok(message) => last = Some(message),
                        Err(error) if line.starts_with("{\"type\"") => {
                            last = Some(TaskMessage::Failed { error: format!("the job's process wrote a message this server cannot read: {error}") });
                        }
                        Err(_) => tracing::debug!(job = %job.id, line, "Job output that is not a message."),
                    },
                    Ok(None) | Err(_) => break,
                },
                _ = renew.tick() => {
                    if let Some(outcome) = self.check(job, progress.fraction, &mut child).await {
                        return outcome;
                    }
                }
                _ = hub.jobs.cancelled.notified() => {
                    if let Some(outcome) = self.check(job, progress.fraction, &mut child).await {
                        return outcome;
                    }
                }
                _ = self.stop.changed() => {
                    stop_child(&mut child).await;
                    self.event(&job.id, "warning", "Interrupted: the server is stopping; the job runs again when a server claims it.", "").await;
                    self.release(job).await;
                    return Outcome::Abandoned;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    stop_child(&mut child).await;
                    return Outcome::Failed(format!("ran longer than jobs.max_runtime_s ({} s)", config.max_runtime.as_secs()));
                }
            }
        }
        let status = child.wait().await;
        let stderr = stderr.await.unwrap_or_default();
        match last {
            Some(TaskMessage::Done { ref artifact, .. }) => {
                Outcome::Done { artifact: spec.output.join(artifact), message: last.clone().expect("matched") }
            }
            Some(TaskMessage::Failed { error }) => Outcome::Failed(error),
            _ => {
                let status = status.map_or_else(|error| error.to_string(), |status| status.to_string());
                let tail = if stderr.trim().is_empty() { String::new() } else { format!("; its last output: {}", stderr.trim()) };
                Outcome::Failed(format!("the job's process ended without a result ({status}){tail}"))
            }
        }
    }

    /// Renews the lease; ends the run when the lease is lost or a cancel was asked for.
    async fn check(&self, job: &JobRecord, fraction: f64, child: &mut Child) -> Option<Outcome> {
        let lease = self.service.inner.jobs.config.lease.as_millis() as i64;
        match self.service.inner.registry.jobs().renew_job(&job.id, &self.owner, fraction, now_ms() + lease).await {
            Ok(Some(record)) if record.cancel_requested => {
                stop_child(child).await;
                Some(Outcome::Cancelled)
            }
            Ok(Some(_)) => None,
            Ok(None) => {
                stop_child(child).await;
                tracing::warn!(job = %job.id, "Lost the lease of a running job (another replica claimed it); stopped it here.");
                Some(Outcome::Abandoned)
            }
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "Could not renew a job's lease; retrying.");
                None
            }
        }
    }

    /// Adds the child's file as a new version (or finds the one an earlier run of this job added).
    async fn register(&self, job: &JobRecord, artifact: &std::path::Path, message: TaskMessage) -> Result<(u64, String), ServiceError> {
        let TaskMessage::Done { metrics, labels, details, known_values, .. } = message else {
            return Err(ServiceError::internal("no result"));
        };
        let metrics_text = serde_json::to_string(&metrics).unwrap_or_else(|_| "{}".into());
        let registry = &self.service.inner.registry;
        if let Err(RegistryError::ResourceNotFound(_)) = registry.get_tenant(&job.tenant).await {
            return Err(ServiceError::invalid(format!("the job's tenant '{}' was deleted", job.tenant)));
        }
        let StoredParams { params, validation_file, .. } = StoredParams::read(job);
        let method = params.get("family").and_then(|family| family.as_str()).unwrap_or_default().to_string();
        match registry.get_model(&job.model).await {
            Ok(_) => {
                for version in registry.list_versions(&job.model).await? {
                    if version.config.provenance.as_ref().is_some_and(|provenance| provenance.job == job.id) {
                        return Ok((version.version, metrics_text));
                    }
                }
            }
            Err(RegistryError::NotFound(_)) if job.parent_version.is_some() => {
                return Err(ServiceError::invalid(format!("the model '{}' was deleted while the job ran", job.model)));
            }
            Err(RegistryError::NotFound(_)) => {
                let short = yunmo_registry::name_for(&job.model, &job.tenant).to_string();
                let task = if labels.is_empty() { "regression" } else { "classification" };
                let task = match method.as_str() {
                    "kmeans" => "clustering",
                    "matrix_factorization" => "recommendation",
                    _ => task,
                };
                let model = NewModel {
                    name: short,
                    tenant: job.tenant.clone(),
                    task: task.into(),
                    description: format!("Trained by job {} ({method}).", job.id),
                    ..NewModel::default()
                };
                match registry.create_model(model).await {
                    Ok(_) | Err(RegistryError::AlreadyExists(_)) => {}
                    Err(error) => return Err(error.into()),
                }
                self.service.invalidate(&job.model);
            }
            Err(error) => return Err(error.into()),
        }
        let method = params.get("method").and_then(|method| method.as_str()).map_or(method, str::to_string);
        let provenance = Provenance {
            job: job.id.clone(),
            kind: job.kind.clone(),
            method,
            parent_version: job.parent_version,
            training_file: job.training_file.clone(),
            validation_file,
            metrics,
            details,
        };
        let (config, tokenizer) = match job.parent_version {
            // An optimised version serves as its parent did (batching, labels, embedding, price...) and keeps
            // naming the data the parent learnt from (a later optimisation probes with it).
            Some(version) => {
                let parent = registry.get_version(&job.model, version).await?;
                let tokenizer = registry.tokenizer(&job.model, version).await?;
                let mut provenance = provenance;
                if let Some(learnt) = &parent.config.provenance {
                    provenance.training_file = provenance.training_file.or_else(|| learnt.training_file.clone());
                    provenance.validation_file = provenance.validation_file.or_else(|| learnt.validation_file.clone());
                }
                (VersionConfig { provenance: Some(provenance), ..parent.config }, tokenizer)
            }
            None => (
                VersionConfig { max_batch_size: 1024, labels, known_values, provenance: Some(provenance), ..VersionConfig::default() },
                None,
            ),
        };
        let staged = stage(registry, artifact).await?;
        let principal = Principal {
            key_id: format!("job:{}", job.id),
            tenant: job.tenant.clone(),
            scopes: vec![Scope::ModelsWrite],
            ..Principal::local()
        };
        let call = Call::new(Arc::new(principal), job.id.as_str());
        let target = self.service.authorize(&call, &ModelRef::new(job.model.as_str(), None), Action::Write).await?;
        let record =
            self.service.add_version(&call, &target, staged, UploadOptions { config, tokenizer, ..UploadOptions::default() }).await?;
        Ok((record.version, metrics_text))
    }

    /// Records the job's compute time as usage of its tenant (key `job:<id>`, protocol `job`).
    async fn meter(&self, job: &JobRecord, version: u64, compute_ms: u64, end: &JobEnd) {
        let outcome = match end {
            JobEnd::Succeeded { .. } => "ok",
            JobEnd::Failed { .. } => Code::InferenceFailed.as_str(),
            JobEnd::Cancelled => "cancelled",
        };
        let event = UsageEvent {
            at_ms: now_ms(),
            tenant: job.tenant.clone(),
            key_id: format!("job:{}", job.id),
            model: job.model.clone(),
            version,
            protocol: "job",
            outcome,
            input_tokens: 0,
            output_tokens: 0,
            input_elements: 0,
            output_elements: 0,
            queue_ms: 0,
            compute_ms,
            bytes_in: 0,
            bytes_out: 0,
            cost: 0.0,
        };
        if let Err(error) = self.service.inner.registry.insert_usage(&[event]).await {
            tracing::warn!(job = %job.id, %error, "Could not record a job's compute time.");
        }
    }
}

/// The environment variable that gives a child its parent's process id (it exits if its parent is gone
/// before it asked to die with it).
pub const PARENT_VARIABLE: &str = "YUNMO_JOB_PARENT";

/// Progress events are kept at most every two seconds, and whenever the step's name changes.
#[derive(Default)]
struct Progress {
    fraction: f64,
    logged_at: Option<Instant>,
    logged_stem: String,
}

impl Progress {
    fn should_log(&mut self, message: &str) -> bool {
        let stem: String = message.chars().take_while(|ch| !ch.is_ascii_digit()).collect();
        let due = self.logged_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(2));
        if due || stem != self.logged_stem {
            self.logged_at = Some(Instant::now());
            self.logged_stem = stem;
            return true;
        }
        false
    }
}

async fn stop_child(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// The last 2 KiB a child wrote to its standard error.
async fn tail(mut stderr: tokio::process::ChildStderr) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buffer[..n]);
        if kept.len() > 2048 {
            kept.drain(..kept.len() - 2048);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

async fn stage(registry: &yunmo_registry::Registry, path: &std::path::Path) -> Result<yunmo_registry::StagedArtifact, ServiceError> {
    let io = |error: std::io::Error| ServiceError::internal(format!("staging the job's result: {error}"));
    let mut staging = registry.stage().await.map_err(io)?;
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).await.map_err(io)?;
        if n == 0 {
            break;
        }
        staging.write(&buffer[..n]).await.map_err(io)?;
    }
    staging.finish().await.map_err(io)
}
