//! The one service layer of Yunmo, under every transport.
//!
//! [`InferenceService`] resolves a [`ModelRef`] through the registry, loads the version on first use
//! ([`ModelManager`]), checks the request against the model's signature, queues it for a worker
//! thread, post-processes (classification) and records metrics. The management operations (upload, delete,
//! load, unload) also live here, so that REST, gRPC and the CLI share one behaviour.
//! It knows no wire format and no HTTP status: errors carry a [`Code`] that transports map.

pub mod alerts;
mod batching;
pub mod calibration;
mod call;
mod classify;
mod cluster;
pub mod drift;
mod drift_sync;
pub mod embed;
mod embed_input;
mod embed_own;
pub mod forecast;
pub mod generate;
pub mod job_runner;
pub mod job_task;
pub mod jobs;
mod load;
mod loaded;
mod manage;
pub mod metrics;
pub mod pipeline;
mod residency;
pub mod responses;
pub mod routing;
pub mod stats;
mod tenancy;
pub mod totals;
mod validate;
mod workers;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use yunmo_backend::BackendFactory;
use yunmo_registry::{Registry, VersionRecord};
use yunmo_types::{InferInput, InferOutput, ModelRef, Signature, VersionConfig};

pub use call::{Call, Target};
pub use embed::{EmbedInput, Embeddings};
pub use generate::{Generation, Prompt, PromptInput, ToolFormat};
pub use job_runner::JobRunner;
pub use jobs::{FileUpload, JobRequest, JobsConfig};
pub use loaded::{LoadSpec, LoadedModel, WorkerConfig};
pub use residency::ModelManager;

/// Key of a loaded version: model name and version.
pub type VersionKey = (String, u64);
pub use tenancy::{MAX_AUDIT_ENTRIES, UsageQuery};
pub use yunmo_auth::{Action, UsageCell};
pub use yunmo_pipeline::vision::ImageLimits;
pub use yunmo_types::{Code, ServiceError};

/// Service-wide options.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Per-model worker options.
    pub workers: WorkerConfig,
    /// How long a request may take from admission to its result; past it the answer is `timeout`.
    pub request_timeout: std::time::Duration,
    /// Drift monitoring defaults (`[drift]`), which a version's config may override.
    pub drift: yunmo_drift::DriftSettings,
    /// The built-in alert rules' bounds (`[alerts]`).
    pub alerts: alerts::AlertRules,
    /// Background jobs (`[jobs]`).
    pub jobs: jobs::JobsConfig,
    /// Bounds on the images pipelines decode (`[pipelines]`).
    pub image_limits: ImageLimits,
    /// How long stored responses (Responses API) are kept; zero: none is stored.
    pub responses_retention: std::time::Duration,
}

/// Model metadata as the V2 protocol reports it.
#[derive(Debug, Clone)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// All version numbers.
    pub versions: Vec<u64>,
    /// The version described.
    pub version: u64,
    /// Runtime platform string.
    pub platform: String,
    /// Inputs and outputs.
    pub signature: Signature,
    /// The file's format (`onnx`, `gguf`, `pipeline`).
    pub format: String,
    /// The version's serving options.
    pub config: VersionConfig,
}

/// State of one version in the repository index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// `READY` (loaded), `AVAILABLE` (loads on first request) or `UNAVAILABLE` (unloaded).
    pub state: &'static str,
    /// Why it is in that state.
    pub reason: String,
}

/// A new version to add from an uploaded file.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// Version number to use; `None` assigns the next.
    pub version: Option<u64>,
    /// Serving options.
    pub config: VersionConfig,
    /// A `tokenizer.json` to store with the version.
    pub tokenizer: Option<String>,
}

/// Short names whose models are cached; past it the cache is emptied (unknown names are cached too, as
/// empty lists, so that made-up names cost one database read per flush of the cache).
const MAX_CACHED_NAMES: usize = 10_000;

/// Largest `tokenizer.json` accepted (bytes).
pub const MAX_TOKENIZER_BYTES: usize = 64 << 20;

/// The service layer. Cheap to clone.
#[derive(Clone)]
pub struct InferenceService {
    inner: Arc<Inner>,
}

/// Resolved versions by model name, then by the version asked for (`None`: the policy's).
type Resolutions = std::collections::HashMap<String, std::collections::HashMap<Option<u64>, Arc<VersionRecord>>>;

struct Inner {
    registry: Registry,
    /// Access, admission, metering and keys: the service calls it for every request.
    gate: yunmo_auth::Gate,
    /// Which version each (name, explicit version) resolved to. Every registry write goes through this
    /// service and drops the model's entries, so a hit is never stale within this process.
    /// Keyed by name, then by the version asked for, so a lookup allocates nothing; shared, not copied.
    resolved: std::sync::RwLock<Resolutions>,
    /// Model records by name (owner and sharing, for access checks), dropped with the resolutions.
    records: std::sync::RwLock<std::collections::HashMap<String, Arc<yunmo_registry::ModelRecord>>>,
    /// The models of every tenant with a given short name (to resolve a name a caller gives), dropped with them.
    named: std::sync::RwLock<std::collections::HashMap<String, Arc<[Arc<yunmo_registry::ModelRecord>]>>>,
    /// Bumped by every invalidation: a lookup that read the database before a concurrent change does not
    /// cache what it read.
    generation: std::sync::atomic::AtomicU64,
    models: ModelManager,
    factories: Vec<Arc<dyn BackendFactory>>,
    request_timeout: std::time::Duration,
    /// Drift watches and their worker.
    drift: drift::DriftHub,
    /// The alert rules and what they fired.
    alerts: alerts::AlertState,
    /// The latest forecasts of loaded models (gauges, the capacity alert).
    forecasts: forecast::SharedCache,
    /// Jobs settings and the runner's wake-ups.
    jobs: jobs::JobsHub,
    /// Shadow slots and when each route was last judged.
    routing: routing::RoutingState,
    /// Bounds on the images pipelines decode.
    image_limits: ImageLimits,
    /// How long stored responses are kept (zero: not stored).
    responses_retention: std::time::Duration,
}

impl InferenceService {
    /// A service over `registry`, running artifacts with `factories` (one per format), checking every call
    /// with `gate`.
    pub fn new(registry: Registry, mut factories: Vec<Arc<dyn BackendFactory>>, config: ServiceConfig, gate: yunmo_auth::Gate) -> Self {
        metrics::describe();
        factories.push(Arc::new(pipeline::PipelineFormat));
        let models = ModelManager::new(config.workers);
        let request_timeout = config.request_timeout;
        let (resolved, records, named, generation) = Default::default();
        let drift = drift::DriftHub::new(config.drift, registry.clone());
        let alerts = alerts::AlertState::new(config.alerts);
        let jobs = jobs::JobsHub { config: config.jobs, wake: Default::default(), cancelled: Default::default() };
        let inner = Inner {
            registry,
            gate,
            resolved,
            records,
            named,
            generation,
            models,
            factories,
            request_timeout,
            drift,
            alerts,
            forecasts: Default::default(),
            jobs,
            routing: Default::default(),
            image_limits: config.image_limits,
            responses_retention: config.responses_retention,
        };
        let service = InferenceService { inner: Arc::new(inner) };
        if let Some(interval) = service.inner.models.idle_check_interval() {
            let weak = Arc::downgrade(&service.inner);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(interval).await;
                    let Some(inner) = weak.upgrade() else { break };
                    inner.models.unload_idle();
                }
            });
        }
        service
    }

    /// Sets the gauges read from running engines (sequences, KV cache); call before rendering metrics.
    pub fn refresh_gauges(&self) {
        for loaded in self.inner.models.loaded() {
            if let Some(generator) = loaded.generator() {
                let stats = generator.stats();
                let labels = [("model", loaded.key.0.clone()), ("version", loaded.key.1.to_string())];
                ::metrics::gauge!(metrics::LLM_SEQUENCES_RUNNING, &labels).set(stats.running as f64);
                ::metrics::gauge!(metrics::LLM_SEQUENCES_WAITING, &labels).set(stats.waiting as f64);
                let ratio = if stats.kv_cells_total == 0 { 0.0 } else { stats.kv_cells_used as f64 / stats.kv_cells_total as f64 };
                ::metrics::gauge!(metrics::LLM_KV_CACHE_USAGE_RATIO, &labels).set(ratio);
            }
        }
        self.inner.drift.refresh_gauges();
        self.refresh_forecast_gauges();
    }

    /// Embeds texts or token lists with an encoder that has an embedding config.
    pub async fn embed(
        &self,
        call: &Call,
        target: &Target,
        input: EmbedInput,
        dimensions: Option<usize>,
    ) -> Result<Embeddings, ServiceError> {
        target.permits(call, Action::Infer)?;
        let started = Instant::now();
        let version = self.resolve(target.name(), target.version()).await?;
        let loaded = self.loaded(&version).await?;
        let embedder = loaded.embedder.as_ref().ok_or_else(|| {
            let hint = if loaded.generator().is_some() {
                "it generates text".to_string()
            } else {
                format!("set 'embedding' in its version config (PUT /api/v1/models/{}/versions/{}/config)", version.model, version.version)
            };
            ServiceError::invalid(format!("model '{}' does not serve embeddings: {hint}", version.model))
        })?;
        if let (Some(wanted), Some(native)) = (dimensions, embedder.dimensions())
            && wanted != native
        {
            return Err(ServiceError::invalid(format!(
                "dimensions must be {native} for model '{}' (its embeddings are not truncatable), got {wanted}",
                version.model
            )));
        }
        let embedded = embedder.embed(&version.model, input).await;
        loaded.stats.record(stats::Ending::of_result(&embedded), started.elapsed(), 0);
        if let Ok((vectors, _)) = &embedded {
            loaded.stats.totals.embedded(vectors.len() as u64);
        }
        let (vectors, prompt_tokens) = embedded?;
        if let Some(watch) = loaded.drift.as_ref().filter(|watch| watch.sampled()) {
            watch.submit_sample(yunmo_drift::extract::embeddings(&vectors, prompt_tokens));
        }
        call.record_served(&version.model, version.version, 0, started.elapsed().as_micros() as u64);
        if let Some(usage) = &call.usage {
            usage.add_tokens(prompt_tokens, 0);
        }
        tracing::info!(target: "yunmo::usage", model = %version.model, version = version.version, inputs = vectors.len(), prompt_tokens, "Embeddings computed.");
        Ok(Embeddings { model: version.model.clone(), version: version.version, vectors, prompt_tokens })
    }

    /// Names of every model whose resolved version generates text or serves embeddings, with its format,
    /// for `/v1/models`.
    pub async fn list_served(&self, call: &Call) -> Result<Vec<(yunmo_registry::ModelRecord, Option<VersionRecord>)>, ServiceError> {
        let mut served = Vec::new();
        for model in self.visible_models(call).await? {
            let version = self.resolve(&model.name, None).await.ok().map(|version| (*version).clone());
            served.push((model, version));
        }
        Ok(served)
    }

    /// The table of loaded models.
    pub(crate) fn models(&self) -> &ModelManager {
        &self.inner.models
    }

    /// Whether `version` is loaded now.
    pub fn is_loaded(&self, version: &VersionRecord) -> bool {
        self.inner.models.is_loaded(&(version.model.clone(), version.version))
    }

    fn factory(&self, format: &str) -> Result<Arc<dyn BackendFactory>, ServiceError> {
        self.inner
            .factories
            .iter()
            .find(|factory| factory.format() == format)
            .cloned()
            .ok_or_else(|| ServiceError::not_ready(format!("no runtime for format '{format}' is enabled")))
    }

    async fn resolve(&self, name: &str, version: Option<u64>) -> Result<Arc<VersionRecord>, ServiceError> {
        if let Some(hit) = self.inner.resolved.read().expect("resolve cache lock").get(name).and_then(|versions| versions.get(&version)) {
            return Ok(hit.clone());
        }
        let generation = self.generation();
        let (_, record) = self.inner.registry.resolve(&ModelRef::new(name.to_string(), version)).await?;
        let record = Arc::new(record);
        let mut resolved = self.inner.resolved.write().expect("resolve cache lock");
        if self.generation() == generation {
            resolved.entry(name.to_string()).or_default().insert(version, record.clone());
        }
        Ok(record)
    }

    /// The stored record of model `name`, cached like resolutions (access checks read it on every request).
    pub(crate) async fn model_record(&self, name: &str) -> Result<Arc<yunmo_registry::ModelRecord>, ServiceError> {
        if let Some(hit) = self.inner.records.read().expect("record cache lock").get(name) {
            return Ok(hit.clone());
        }
        let generation = self.generation();
        let record = Arc::new(self.inner.registry.get_model(name).await?);
        let mut records = self.inner.records.write().expect("record cache lock");
        if self.generation() == generation {
            records.insert(name.to_string(), record.clone());
        }
        Ok(record)
    }

    /// Every model, of any tenant, whose name within its tenant is `short` (cached like records), for
    /// resolving the name a caller gives.
    pub(crate) async fn models_named(&self, short: &str) -> Result<Arc<[Arc<yunmo_registry::ModelRecord>]>, ServiceError> {
        if let Some(hit) = self.inner.named.read().expect("name cache lock").get(short) {
            return Ok(hit.clone());
        }
        let generation = self.generation();
        let records: Arc<[Arc<yunmo_registry::ModelRecord>]> =
            self.inner.registry.models_named(short).await?.into_iter().map(Arc::new).collect();
        let mut named = self.inner.named.write().expect("name cache lock");
        if self.generation() == generation {
            if named.len() >= MAX_CACHED_NAMES {
                named.clear();
            }
            named.insert(short.to_string(), records.clone());
        }
        Ok(records)
    }

    fn generation(&self) -> u64 {
        self.inner.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Forgets cached resolutions and the record of `name` (after any change to the model or its versions).
    pub(crate) fn invalidate(&self, name: &str) {
        let mut resolved = self.inner.resolved.write().expect("resolve cache lock");
        let mut records = self.inner.records.write().expect("record cache lock");
        let mut named = self.inner.named.write().expect("name cache lock");
        self.inner.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        resolved.remove(name);
        records.remove(name);
        named.remove(name.rsplit('/').next().unwrap_or(name));
    }

    /// Returns the loaded version, loading it unless it was explicitly unloaded.
    async fn loaded(&self, version: &VersionRecord) -> Result<Arc<LoadedModel>, ServiceError> {
        let key = (version.model.clone(), version.version);
        if let Some(loaded) = self.inner.models.get(&key) {
            return Ok(loaded);
        }
        if self.inner.models.is_unloaded(&key) {
            return Err(ServiceError::not_ready(format!(
                "model '{}' version {} is unloaded; load it first",
                version.model, version.version
            )));
        }
        self.load_version(version).await
    }

    async fn load_version(&self, version: &VersionRecord) -> Result<Arc<LoadedModel>, ServiceError> {
        let tokenizer = if version.has_tokenizer && (version.config.embedding.is_some() || version.format == pipeline::FORMAT) {
            self.inner.registry.tokenizer(&version.model, version.version).await?
        } else {
            None
        };
        let artifact = self.inner.registry.readable_artifact(version).await.map_err(|error| {
            let (model, number) = (&version.model, version.version);
            // Object storage that cannot be reached now (a cold load with S3 down) is worth a retry, and its
            // message names no address; other failures are the server's, with the details.
            if error.is_unavailable() {
                let unavailable = ServiceError::from(error);
                ServiceError { message: format!("model '{model}' version {number} cannot be read: {}", unavailable.message), ..unavailable }
            } else {
                ServiceError::not_ready(format!("model '{model}' version {number} cannot be read: {error}"))
            }
        })?;
        let pipeline = match version.format == pipeline::FORMAT {
            true => {
                let bytes = tokio::fs::read(artifact.path())
                    .await
                    .map_err(|error| ServiceError::internal(format!("reading the pipeline: {error}")))?;
                let opened = self.open_pipeline(&bytes, tokenizer.as_deref()).await.map_err(|error| {
                    ServiceError::not_ready(format!(
                        "pipeline '{}' version {} cannot run: {}",
                        version.model, version.version, error.message
                    ))
                })?;
                Some(Arc::new(opened))
            }
            false => None,
        };
        let spec = loaded::LoadSpec {
            key: (version.model.clone(), version.version),
            pipeline,
            artifact,
            factory: self.factory(&version.format)?,
            config: version.config.clone(),
            signature: version.signature.clone(),
            tokenizer,
            size_bytes: version.size_bytes,
            drift: self.drift_watch(version).await,
        };
        self.inner.models.get_or_load(spec).await.map_err(|error| match error.code {
            // A stored file that no longer loads is the server's problem, not the request's.
            Code::InvalidRequest => {
                ServiceError::not_ready(format!("model '{}' version {} failed to load: {}", version.model, version.version, error.message))
            }
            _ => error,
        })
    }

    /// Counts an inference request refused before it reached a model (unknown or not permitted), as
    /// [`InferenceService::infer`] counts one for a model that does not exist.
    pub(crate) fn count_refused(&self, error: &ServiceError) {
        metrics::count_failed("", "", error.code);
    }

    /// Runs one inference request.
    pub async fn infer(&self, call: &Call, target: &Target, input: InferInput) -> Result<InferOutput, ServiceError> {
        target.permits(call, Action::Infer)?;
        let started = Instant::now();
        let routed = routing::choose(call, target);
        let version = match self.resolve(target.name(), routed.version).await {
            Ok(version) => version,
            Err(error) => {
                self.count_refused(&error);
                return Err(error);
            }
        };
        let input_elements = elements(&input.inputs);
        let loading = Instant::now();
        let loaded = match self.loaded(&version).await {
            Ok(loaded) => loaded,
            Err(error) => {
                metrics::count_failed(&version.model, &version.version.to_string(), error.code);
                return Err(error);
            }
        };
        // The time a lazy load took does not count against the request (as before the deadline moved to
        // admission): only reading, decoding, queueing and compute do.
        let deadline = call.deadline.unwrap_or_else(|| started + self.inner.request_timeout) + loading.elapsed();
        // A sampled request's tensors (reference-counted bytes) go to the drift worker with its answer.
        let watched = loaded.drift.as_ref().filter(|watch| watch.sampled()).map(|watch| (watch.clone(), input.inputs.clone()));
        if let Some(shadow) = routed.shadow {
            self.shadow(target, shadow, input.clone());
        }
        let result = self.infer_loaded(&version, &loaded, input, deadline).await;
        if let Ok(output) = &result {
            if let Some((watch, inputs)) = watched {
                watch.submit(drift::Job::Tensors { watch: watch.clone(), inputs, outputs: output.outputs.clone() });
            }
            call.record_served(&version.model, output.model_version, output.queue_us, output.compute_us);
            if let Some(usage) = &call.usage {
                usage.add_elements(input_elements, elements(&output.outputs));
            }
        }
        loaded.record_ending(&result, started.elapsed());
        if routed.canary {
            self.judge(target);
        }
        result
    }

    /// The answer of a request past its deadline.
    fn timed_out(&self) -> ServiceError {
        ServiceError::new(
            Code::Timeout,
            format!("the request took longer than request_timeout = {} ms", self.inner.request_timeout.as_millis()),
        )
    }

    /// Queues `input` for `loaded` and waits for its answer until `deadline` (the call's, from admission).
    async fn infer_loaded(
        &self,
        version: &VersionRecord,
        loaded: &LoadedModel,
        input: InferInput,
        deadline: Instant,
    ) -> Result<InferOutput, ServiceError> {
        let checks =
            validate::Checks { model: &version.model, signature: &loaded.signature, config: &loaded.config, known: &loaded.known_values };
        let output_names = validate::check_request(&checks, &input)?;
        if let loaded::Runtime::Pipeline(pipeline) = &loaded.runtime {
            // Boxed: the pipeline's state stays out of every tensor request's future.
            return Box::pin(self.run_pipeline(version, pipeline, input, output_names, deadline)).await;
        }
        let InferInput { id, inputs, outputs: requested } = input;
        let (reply, receiver) = oneshot::channel();
        if Instant::now() >= deadline {
            return Err(self.timed_out());
        }
        loaded.submit(batching::Job { inputs, outputs: output_names, enqueued: Instant::now(), reply, request: true })?;
        // On timeout the receiver is dropped, so a request still queued is skipped before compute.
        let done = tokio::time::timeout_at(deadline.into(), receiver)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|_| ServiceError::new(Code::InferenceFailed, "the model worker failed while running this request"))?;
        loaded.metrics.queue.record(done.queue_time.as_secs_f64());
        loaded.metrics.compute.record(done.compute_time.as_secs_f64());
        let mut tensors = done.result?;
        for (tensor, request) in tensors.iter_mut().zip(&requested) {
            if let Some(class_count) = request.class_count {
                *tensor = classify::classify(tensor, class_count, &loaded.config.labels)?;
            }
        }
        Ok(InferOutput {
            model_version: version.version,
            id,
            outputs: tensors,
            queue_us: done.queue_time.as_micros() as u64,
            compute_us: done.compute_time.as_micros() as u64,
        })
    }

    /// The signature of the version `target` resolves to (a route's stable one: every version of a route
    /// takes the same inputs).
    pub async fn signature(&self, call: &Call, target: &Target) -> Result<Signature, ServiceError> {
        target.permits(call, Action::Read)?;
        Ok(self.resolve(target.name(), target.version()).await?.signature.clone())
    }

    /// The class labels of the version `target` resolves to (its config's `labels`; empty if none).
    pub async fn labels(&self, call: &Call, target: &Target) -> Result<Vec<String>, ServiceError> {
        target.permits(call, Action::Read)?;
        Ok(self.resolve(target.name(), target.version()).await?.config.labels.clone())
    }

    /// Metadata of the version `target` resolves to.
    pub async fn model_metadata(&self, call: &Call, target: &Target) -> Result<ModelMetadata, ServiceError> {
        target.permits(call, Action::Read)?;
        let version = self.resolve(target.name(), target.version()).await?;
        let versions = self.inner.registry.list_versions(&version.model).await?;
        Ok(ModelMetadata {
            name: version.model.clone(),
            versions: versions.iter().map(|v| v.version).collect(),
            version: version.version,
            platform: self.factory(&version.format).map(|f| f.platform().to_string()).unwrap_or(version.format.clone()),
            signature: version.signature.clone(),
            format: version.format.clone(),
            config: version.config.clone(),
        })
    }

    /// Whether the version `model_ref` resolves to can serve: loaded, or loadable now (a lazy load is
    /// triggered and awaited). An explicitly unloaded version is not ready.
    pub async fn model_ready(&self, call: &Call, target: &Target) -> Result<bool, ServiceError> {
        target.permits(call, Action::Read)?;
        let version = self.resolve(target.name(), target.version()).await?;
        match self.loaded(&version).await {
            Ok(_) => Ok(true),
            Err(error) if error.code == Code::ModelNotReady => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Whether the version `model_ref` resolves to serves without being loaded for the question: loaded,
    /// or loadable on its first request (not explicitly unloaded). KServe V1's readiness on OpenAI's model
    /// route, where a read must not load a model.
    pub async fn model_available(&self, call: &Call, target: &Target) -> Result<bool, ServiceError> {
        target.permits(call, Action::Read)?;
        let version = self.resolve(target.name(), target.version()).await?;
        Ok(!self.inner.models.is_unloaded(&(version.model.clone(), version.version)))
    }

    /// Checks the parameters of a repository-extension load: model files and configs are uploaded through
    /// the management API, so `file:*` and `config` are refused with a pointer to it.
    pub fn check_repository_load<'a>(name: &str, mut keys: impl Iterator<Item = &'a str>) -> Result<(), ServiceError> {
        match keys.find(|key| key.starts_with("file:") || *key == "config") {
            Some(key) => Err(ServiceError::invalid(format!(
                "parameter '{key}' is not supported: upload model files through POST /api/v1/models/{name}/versions"
            ))),
            None => Ok(()),
        }
    }
}

/// Refuses a `tokenizer.json` that is too large or that the tokenizers library cannot read.
pub(crate) fn check_tokenizer(tokenizer: &str) -> Result<(), ServiceError> {
    if tokenizer.len() > MAX_TOKENIZER_BYTES {
        return Err(ServiceError::invalid(format!("tokenizer.json must be at most {MAX_TOKENIZER_BYTES} bytes, got {}", tokenizer.len())));
    }
    yunmo_text::embed::EmbedTokenizer::from_json(tokenizer.as_bytes()).map_err(|error| ServiceError::invalid(error.to_string()))?;
    Ok(())
}

/// Elements in `tensors`, for the usage record.
fn elements(tensors: &[yunmo_types::Tensor]) -> u64 {
    tensors.iter().map(|tensor| tensor.element_count() as u64).sum()
}
