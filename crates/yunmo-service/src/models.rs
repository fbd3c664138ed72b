//! Loaded models: lazy and explicit loading, unloading, dynamic batching and the worker threads.
//!
//! Each loaded version owns an admission counter (at most `queue_capacity` requests waiting; beyond that,
//! `overloaded`), a batching task that holds a [`BatchPolicy`], and `instance_count` worker threads, each
//! with its own backend instance. The batching task forms a batch only when a worker is free (a semaphore
//! of idle instances), so under load requests that arrived while the workers were busy are merged into
//! the next call; `max_queue_delay_us` lets it wait longer for a batch to fill.
//! Requests hold an `Arc<LoadedModel>`: unloading removes the model from the table at once, queued
//! requests still complete, and the task and workers stop when the last handle is dropped.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, Semaphore, oneshot};
use yunmo_backend::{BackendError, BackendFactory, BatchBackend, GenerateBackend, LoadOptions, RuntimeKind};
use yunmo_scheduler::{BatchKey, BatchPolicy, Decision, PolicyConfig};
use yunmo_types::{Signature, Tensor, VersionConfig};

use crate::{ServiceError, metrics};

/// Key of a loaded version.
pub type VersionKey = (String, u64);

/// What the manager needs to load a version.
pub struct LoadSpec {
    /// Model name and version.
    pub key: VersionKey,
    /// Artifact file in plaintext (a decrypted copy in memory lives until the load ends).
    pub artifact: yunmo_registry::ReadableArtifact,
    /// The runtime for the artifact's format.
    pub factory: Arc<dyn BackendFactory>,
    /// Serving options.
    pub config: VersionConfig,
    /// The signature stored at upload (used as is by generate runtimes).
    pub signature: Signature,
    /// The version's `tokenizer.json`, when it serves embeddings.
    pub tokenizer: Option<String>,
    /// Size of the artifact, the first estimate of its memory.
    pub size_bytes: u64,
}

/// Options shared by every loaded model.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Requests that may wait per loaded version; beyond that the answer is `overloaded`.
    pub queue_capacity: usize,
    /// Threads ONNX Runtime may use inside one call (0 = its default).
    pub intra_op_threads: usize,
    /// Estimated bytes all loaded models may hold; past it the least recently used are unloaded (0: no limit).
    pub memory_budget_bytes: u64,
    /// Unload a model nobody used for this long (zero: never).
    pub idle_unload: Duration,
}

pub(crate) struct Job {
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<String>,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<JobResult>,
}

pub(crate) struct JobResult {
    pub result: Result<Vec<Tensor>, BackendError>,
    pub queue_time: Duration,
    pub compute_time: Duration,
}

/// A version ready to serve.
pub struct LoadedModel {
    /// Model name and version.
    pub key: VersionKey,
    /// Inputs and outputs.
    pub signature: Signature,
    /// Serving options it was loaded with.
    pub config: VersionConfig,
    /// Estimated bytes it holds (artifact size per instance, or what the runtime reports).
    pub memory_bytes: u64,
    pub(crate) runtime: Runtime,
    /// The encoder front for `/v1/embeddings`, when configured.
    pub(crate) embedder: Option<crate::embed::Embedder>,
    /// The parsed chat template of a text-generation model (or why there is none).
    pub(crate) chat_template: Result<yunmo_text::chat::ChatTemplate, String>,
    /// Its request metrics, labelled once.
    pub(crate) metrics: metrics::VersionMetrics,
    last_used_ms: AtomicU64,
    /// Order of last use (a logical clock: milliseconds are too coarse to order requests).
    last_used_order: AtomicU64,
}

pub(crate) enum Runtime {
    Tensor(TensorQueue),
    Generate(Arc<dyn GenerateBackend>),
}

/// The admission-counted queue in front of a tensor model's batching task.
#[derive(Clone)]
pub(crate) struct TensorQueue {
    key: VersionKey,
    sender: flume::Sender<Job>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl LoadedModel {
    pub(crate) fn submit(&self, job: Job) -> Result<(), ServiceError> {
        match &self.runtime {
            Runtime::Tensor(queue) => queue.submit(job),
            Runtime::Generate(_) => Err(ServiceError::invalid(format!(
                "model '{}' generates text: use /v1/chat/completions, /v1/completions or the V2 generate endpoints",
                self.key.0
            ))),
        }
    }

    /// The text-generation engine, for LLMs.
    pub fn generator(&self) -> Option<&Arc<dyn GenerateBackend>> {
        match &self.runtime {
            Runtime::Generate(backend) => Some(backend),
            Runtime::Tensor(_) => None,
        }
    }

    fn touch(&self, now_ms: u64, order: u64) {
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
        self.last_used_order.store(order, Ordering::Relaxed);
    }
}

impl TensorQueue {
    /// Requests that may wait (`queue_capacity`).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn submit(&self, job: Job) -> Result<(), ServiceError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(ServiceError::new(
                crate::Code::Overloaded,
                format!(
                    "model '{}' version {} has {} requests waiting, its queue_capacity; retry later",
                    self.key.0, self.key.1, self.capacity
                ),
            ));
        }
        self.sender.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            ServiceError::not_ready(format!("model '{}' version {} is unloading", self.key.0, self.key.1))
        })
    }
}

impl Drop for LoadedModel {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::MODELS_LOADED).decrement(1.0);
    }
}

#[derive(Default)]
struct Slot {
    cell: OnceCell<Arc<LoadedModel>>,
}

/// The table of loaded versions.
pub struct ModelManager {
    config: WorkerConfig,
    slots: Mutex<HashMap<VersionKey, Arc<Slot>>>,
    unloaded: Mutex<HashSet<VersionKey>>,
    epoch: Instant,
    uses: AtomicU64,
}

impl ModelManager {
    /// An empty table.
    pub fn new(config: WorkerConfig) -> Self {
        ModelManager { config, slots: Mutex::default(), unloaded: Mutex::default(), epoch: Instant::now(), uses: AtomicU64::new(0) }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn touch(&self, loaded: &LoadedModel) {
        loaded.touch(self.now_ms(), self.uses.fetch_add(1, Ordering::Relaxed) + 1);
    }

    /// The loaded version, if it is loaded now (and marks it used).
    pub fn get(&self, key: &VersionKey) -> Option<Arc<LoadedModel>> {
        let slot = self.slots.lock().expect("model table lock").get(key).cloned()?;
        let loaded = slot.cell.get().cloned()?;
        self.touch(&loaded);
        Some(loaded)
    }

    /// Whether the version is loaded now (without marking it used).
    pub fn is_loaded(&self, key: &VersionKey) -> bool {
        let slot = self.slots.lock().expect("model table lock").get(key).cloned();
        slot.is_some_and(|slot| slot.cell.initialized())
    }

    /// Every loaded version.
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        let slots: Vec<Arc<Slot>> = self.slots.lock().expect("model table lock").values().cloned().collect();
        slots.iter().filter_map(|slot| slot.cell.get().cloned()).collect()
    }

    /// Unloads least recently used versions (never `keep`) until `incoming` more bytes fit the memory budget.
    /// Returns the versions unloaded.
    fn make_room(&self, keep: &VersionKey, incoming: u64) -> Vec<VersionKey> {
        let budget = self.config.memory_budget_bytes;
        let mut evicted = Vec::new();
        if budget == 0 {
            return evicted;
        }
        let mut loaded: Vec<Arc<LoadedModel>> = self.loaded().into_iter().filter(|model| &model.key != keep).collect();
        loaded.sort_by_key(|model| model.last_used_order.load(Ordering::Relaxed));
        let mut total: u64 = loaded.iter().map(|model| model.memory_bytes).sum::<u64>() + incoming;
        for model in loaded {
            if total <= budget {
                break;
            }
            total -= model.memory_bytes;
            tracing::info!(model = %model.key.0, version = model.key.1, bytes = model.memory_bytes, budget, "Unloading the least recently used model to stay within the memory budget.");
            ::metrics::counter!(metrics::MODEL_EVICTIONS_TOTAL, "reason" => "memory").increment(1);
            self.forget(&model.key);
            evicted.push(model.key.clone());
        }
        evicted
    }

    /// Unloads versions unused for longer than `idle_unload` and not serving a request now.
    pub fn unload_idle(&self) -> Vec<VersionKey> {
        let idle = self.config.idle_unload;
        if idle.is_zero() {
            return Vec::new();
        }
        let now = self.now_ms();
        let mut unloaded = Vec::new();
        for model in self.loaded() {
            let unused_for = now.saturating_sub(model.last_used_ms.load(Ordering::Relaxed));
            // Two handles: the table's and ours; more means a request holds it.
            if unused_for >= idle.as_millis() as u64 && Arc::strong_count(&model) <= 2 {
                tracing::info!(model = %model.key.0, version = model.key.1, idle_seconds = unused_for / 1000, "Unloading an idle model.");
                ::metrics::counter!(metrics::MODEL_EVICTIONS_TOTAL, "reason" => "idle").increment(1);
                self.forget(&model.key);
                unloaded.push(model.key.clone());
            }
        }
        unloaded
    }

    /// How often [`ModelManager::unload_idle`] should run (`None`: never).
    pub fn idle_check_interval(&self) -> Option<Duration> {
        let idle = self.config.idle_unload;
        (!idle.is_zero()).then(|| (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10)))
    }

    /// Whether the version was explicitly unloaded (and so is not loaded lazily).
    pub fn is_unloaded(&self, key: &VersionKey) -> bool {
        self.unloaded.lock().expect("unloaded set lock").contains(key)
    }

    /// Returns the loaded version, loading it first if needed. Concurrent callers share one load; a failed
    /// load is not remembered, so the next call tries again.
    pub async fn get_or_load(&self, spec: LoadSpec) -> Result<Arc<LoadedModel>, ServiceError> {
        let key = spec.key.clone();
        self.unloaded.lock().expect("unloaded set lock").remove(&key);
        let slot = self.slots.lock().expect("model table lock").entry(key.clone()).or_default().clone();
        let result = slot
            .cell
            .get_or_try_init(|| async {
                self.make_room(&key, spec.size_bytes);
                let loaded = load(spec, self.config.clone(), self.now_ms()).await?;
                self.make_room(&key, loaded.memory_bytes);
                Ok(loaded)
            })
            .await
            .cloned();
        if let Ok(loaded) = &result {
            self.touch(loaded);
        }
        if result.is_err() {
            let mut slots = self.slots.lock().expect("model table lock");
            if slots.get(&key).is_some_and(|current| Arc::ptr_eq(current, &slot)) {
                slots.remove(&key);
            }
        }
        result
    }

    /// Unloads a version: new requests no longer reach it, and it is not loaded lazily until loaded again.
    /// Returns whether it was loaded.
    pub fn unload(&self, key: &VersionKey) -> bool {
        self.unloaded.lock().expect("unloaded set lock").insert(key.clone());
        self.forget(key)
    }

    /// Drops `loaded` from the table if it is still the loaded instance of its version (an engine that
    /// died): the next request loads the version again.
    pub fn forget_instance(&self, loaded: &Arc<LoadedModel>) {
        let mut slots = self.slots.lock().expect("model table lock");
        if slots.get(&loaded.key).and_then(|slot| slot.cell.get()).is_some_and(|current| Arc::ptr_eq(current, loaded)) {
            tracing::warn!(model = %loaded.key.0, version = loaded.key.1, "The model's engine has stopped; the next request loads it again.");
            slots.remove(&loaded.key);
        }
    }

    /// Drops a version from the table without blocking lazy loads (after its config changed or it was deleted).
    pub fn forget(&self, key: &VersionKey) -> bool {
        let slot = self.slots.lock().expect("model table lock").remove(key);
        slot.is_some_and(|slot| slot.cell.initialized())
    }
}

/// Metric labels of one version.
#[derive(Clone)]
struct Labels {
    model: String,
    version: String,
}

impl Labels {
    fn pairs(&self) -> [(&'static str, String); 2] {
        [("model", self.model.clone()), ("version", self.version.clone())]
    }
}

async fn load(spec: LoadSpec, config: WorkerConfig, now_ms: u64) -> Result<Arc<LoadedModel>, ServiceError> {
    if spec.factory.kind() == RuntimeKind::Generate {
        return load_generate(spec, now_ms).await;
    }
    let started = Instant::now();
    let labels = Labels { model: spec.key.0.clone(), version: spec.key.1.to_string() };
    let (batch_sender, batch_receiver) = flume::unbounded::<Vec<Job>>();
    let instance_count = spec.config.instance_count.max(1) as usize;
    let idle = Arc::new(Semaphore::new(instance_count));
    let mut ready = Vec::with_capacity(instance_count);
    for instance in 0..instance_count {
        let (ready_sender, ready_receiver) = oneshot::channel();
        ready.push(ready_receiver);
        let worker = Worker {
            batches: batch_receiver.clone(),
            idle: idle.clone(),
            factory: spec.factory.clone(),
            path: spec.artifact.path().to_path_buf(),
            options: LoadOptions { intra_op_threads: config.intra_op_threads },
            labels: labels.clone(),
        };
        std::thread::Builder::new()
            .name(format!("yunmo-worker-{}-{}-{instance}", spec.key.0, spec.key.1))
            .spawn(move || worker.run(ready_sender))
            .map_err(|error| ServiceError::internal(format!("cannot start a worker thread: {error}")))?;
    }
    drop(batch_receiver);
    let mut signature = None;
    for ready_receiver in ready {
        let loaded = ready_receiver
            .await
            .map_err(|_| ServiceError::internal("a worker thread died while loading"))
            .and_then(|result| result.map_err(ServiceError::from));
        match loaded {
            Ok(loaded_signature) => signature = Some(loaded_signature),
            Err(error) => {
                ::metrics::counter!(metrics::MODEL_LOAD_FAILURES_TOTAL, "model" => spec.key.0.clone()).increment(1);
                tracing::warn!(model = %spec.key.0, version = spec.key.1, %error, "Model load failed.");
                // Dropping the batch sender stops the instances that did load.
                return Err(error);
            }
        }
    }
    let signature = signature.expect("instance_count is at least 1. This is a bug.");
    let (sender, requests) = flume::unbounded::<Job>();
    let queued = Arc::new(AtomicUsize::new(0));
    let queue = TensorQueue { key: spec.key.clone(), sender, queued: queued.clone(), capacity: config.queue_capacity };
    let embedder = match &spec.config.embedding {
        Some(embedding) => Some(crate::embed::Embedder::start(&spec, embedding.clone(), &signature, queue.clone(), instance_count)?),
        None => None,
    };
    let policy = PolicyConfig {
        max_batch_size: spec.config.max_batch_size as usize,
        max_queue_delay: Duration::from_micros(spec.config.max_queue_delay_us),
    };
    let batcher = Batcher { requests, batches: batch_sender, idle, queued: queued.clone(), labels, unique: AtomicU64::new(0) };
    tokio::spawn(batcher.run(policy));
    let elapsed = started.elapsed();
    ::metrics::histogram!(metrics::MODEL_LOAD_DURATION_SECONDS, "model" => spec.key.0.clone()).record(elapsed.as_secs_f64());
    ::metrics::gauge!(metrics::MODELS_LOADED).increment(1.0);
    tracing::info!(model = %spec.key.0, version = spec.key.1, instances = instance_count, seconds = elapsed.as_secs_f64(), "Model loaded.");
    Ok(Arc::new(LoadedModel {
        metrics: metrics::VersionMetrics::new(&spec.key.0, spec.key.1),
        key: spec.key,
        signature,
        memory_bytes: spec.size_bytes * instance_count as u64,
        config: spec.config,
        runtime: Runtime::Tensor(queue),
        embedder,
        chat_template: Err("it is not a text-generation model".into()),
        last_used_ms: AtomicU64::new(now_ms),
        last_used_order: AtomicU64::new(0),
    }))
}

async fn load_generate(spec: LoadSpec, now_ms: u64) -> Result<Arc<LoadedModel>, ServiceError> {
    let started = Instant::now();
    let factory = spec.factory.clone();
    let path = spec.artifact.path().to_path_buf();
    let backend = tokio::task::spawn_blocking(move || factory.load_generate(&path))
        .await
        .map_err(|error| ServiceError::internal(format!("model loading panicked: {error}")))?
        .inspect_err(|error| {
            ::metrics::counter!(metrics::MODEL_LOAD_FAILURES_TOTAL, "model" => spec.key.0.clone()).increment(1);
            tracing::warn!(model = %spec.key.0, version = spec.key.1, %error, "Model load failed.");
        })?;
    let info = backend.info();
    let chat_template = match spec.config.chat_template.as_deref().or(info.chat_template.as_deref()) {
        Some(source) => yunmo_text::chat::ChatTemplate::new(source).map_err(|error| error.to_string()),
        None => Err("its file has no tokenizer.chat_template and its version config sets no chat_template".into()),
    };
    let elapsed = started.elapsed();
    ::metrics::histogram!(metrics::MODEL_LOAD_DURATION_SECONDS, "model" => spec.key.0.clone()).record(elapsed.as_secs_f64());
    ::metrics::gauge!(metrics::MODELS_LOADED).increment(1.0);
    tracing::info!(
        model = %spec.key.0, version = spec.key.1, architecture = %info.architecture, sequences = info.max_sequences,
        context_per_sequence = info.context_per_sequence, memory_bytes = info.memory_bytes, seconds = elapsed.as_secs_f64(),
        "Model loaded."
    );
    Ok(Arc::new(LoadedModel {
        memory_bytes: info.memory_bytes,
        metrics: metrics::VersionMetrics::new(&spec.key.0, spec.key.1),
        key: spec.key,
        signature: spec.signature,
        config: spec.config,
        runtime: Runtime::Generate(backend),
        embedder: None,
        chat_template,
        last_used_ms: AtomicU64::new(now_ms),
        last_used_order: AtomicU64::new(0),
    }))
}

/// The batching task of one loaded version.
struct Batcher {
    requests: flume::Receiver<Job>,
    batches: flume::Sender<Vec<Job>>,
    idle: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    labels: Labels,
    unique: AtomicU64,
}

impl Batcher {
    fn push(&self, policy: &mut BatchPolicy<Job>, job: Job) {
        let (key, rows) = yunmo_scheduler::batch_key(&job.inputs, &job.outputs)
            .unwrap_or_else(|| (BatchKey::unique(self.unique.fetch_add(1, Ordering::Relaxed)), 1));
        let enqueued = tokio::time::Instant::from_std(job.enqueued);
        policy.push(job, rows, key, enqueued);
    }

    /// Moves every request already sent into the policy; returns false once all senders are gone.
    fn drain(&self, policy: &mut BatchPolicy<Job>) -> bool {
        loop {
            match self.requests.try_recv() {
                Ok(job) => self.push(policy, job),
                Err(flume::TryRecvError::Empty) => return true,
                Err(flume::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn forget_abandoned(&self, policy: &mut BatchPolicy<Job>) {
        let dropped = policy.retain(|job| !job.reply.is_closed());
        if dropped > 0 {
            self.queued.fetch_sub(dropped, Ordering::AcqRel);
            ::metrics::counter!(metrics::DROPPED_TOTAL, &self.labels.pairs()).increment(dropped as u64);
        }
    }

    async fn run(self, config: PolicyConfig) {
        let mut policy = BatchPolicy::new(config);
        let mut open = true;
        loop {
            if policy.is_empty() {
                if !open {
                    break;
                }
                match self.requests.recv_async().await {
                    Ok(job) => self.push(&mut policy, job),
                    Err(_) => break,
                }
            }
            // Wait for a free instance; requests keep arriving in the channel meanwhile.
            let Ok(permit) = self.idle.clone().acquire_owned().await else {
                break;
            };
            open &= self.drain(&mut policy);
            self.forget_abandoned(&mut policy);
            loop {
                match policy.decide(tokio::time::Instant::now()) {
                    Decision::Dispatch | Decision::Idle => break,
                    Decision::WaitUntil(deadline) if open => {
                        tokio::select! {
                            job = self.requests.recv_async() => match job {
                                Ok(job) => self.push(&mut policy, job),
                                Err(_) => open = false,
                            },
                            _ = tokio::time::sleep_until(deadline) => {}
                        }
                    }
                    Decision::WaitUntil(_) => break,
                }
            }
            if policy.is_empty() {
                continue;
            }
            let (batch, rows) = policy.take_batch();
            self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
            ::metrics::gauge!(metrics::QUEUE_DEPTH, &self.labels.pairs()).set(self.queued.load(Ordering::Relaxed) as f64);
            ::metrics::histogram!(metrics::BATCH_SIZE, &self.labels.pairs()).record(rows as f64);
            ::metrics::histogram!(metrics::BATCH_REQUESTS, &self.labels.pairs()).record(batch.len() as f64);
            // The worker gives the permit back when it has finished the batch.
            permit.forget();
            if self.batches.send(batch).is_err() {
                break;
            }
        }
    }
}

struct Worker {
    batches: flume::Receiver<Vec<Job>>,
    idle: Arc<Semaphore>,
    factory: Arc<dyn BackendFactory>,
    path: PathBuf,
    options: LoadOptions,
    labels: Labels,
}

impl Worker {
    fn run(self, ready: oneshot::Sender<Result<Signature, BackendError>>) {
        let mut backend = match self.factory.load(&self.path, &self.options) {
            Ok(backend) => {
                let _ = ready.send(Ok(backend.signature().clone()));
                backend
            }
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        while let Ok(batch) = self.batches.recv() {
            // A panic outside the runtime's call (merging, splitting) drops the batch's replies, which fails
            // its requests; the worker and its permit go on.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_batch(backend.as_mut(), batch)));
            if ran.is_err() {
                tracing::error!(model = %self.labels.model, version = %self.labels.version, "A worker panicked outside the runtime; its batch failed.");
            }
            self.idle.add_permits(1);
        }
    }

    fn run_batch(&self, backend: &mut dyn BatchBackend, batch: Vec<Job>) {
        let (live, gone): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|job| !job.reply.is_closed());
        if !gone.is_empty() {
            ::metrics::counter!(metrics::DROPPED_TOTAL, &self.labels.pairs()).increment(gone.len() as u64);
        }
        if live.is_empty() {
            return;
        }
        let started = Instant::now();
        let queue_times: Vec<Duration> = live.iter().map(|job| started.duration_since(job.enqueued)).collect();
        let outputs = live[0].outputs.clone();
        let rows: Vec<usize> =
            live.iter().map(|job| job.inputs.first().and_then(|t| t.shape().first()).map_or(1, |d| *d as usize)).collect();
        let (replies, inputs): (Vec<_>, Vec<_>) = live.into_iter().map(|job| (job.reply, job.inputs)).unzip();
        let results: Vec<Result<Vec<Tensor>, BackendError>> = if replies.len() == 1 {
            vec![run_guarded(backend, inputs.into_iter().next().expect("one job"), &outputs)]
        } else {
            let merged = yunmo_scheduler::merge(inputs, rows.iter().sum());
            match run_guarded(backend, merged, &outputs) {
                Ok(tensors) => match yunmo_scheduler::split(tensors, &rows) {
                    Ok(parts) => parts.into_iter().map(Ok).collect(),
                    Err(error) => vec![Err(BackendError::Inference(error.0)); replies.len()],
                },
                Err(error) => vec![Err(error); replies.len()],
            }
        };
        let compute_time = started.elapsed();
        for ((reply, result), queue_time) in replies.into_iter().zip(results).zip(queue_times) {
            let _ = reply.send(JobResult { result, queue_time, compute_time });
        }
    }
}

/// Runs one call, turning a panic inside the runtime into an error instead of killing the worker.
fn run_guarded(backend: &mut dyn BatchBackend, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.infer(inputs, outputs)))
        .unwrap_or_else(|_| Err(BackendError::Inference("the runtime panicked".into())))
}
