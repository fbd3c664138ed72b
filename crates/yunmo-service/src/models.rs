//! Loaded models: lazy and explicit loading, unloading, and the worker threads that run each instance.
//!
//! Each loaded version owns a bounded job queue and `instance_count` worker threads, each with its own
//! backend instance. Requests hold an `Arc<LoadedModel>`, so unloading removes the model from the table at
//! once while requests already queued still complete; the workers exit when the last handle is dropped.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, OnceCell};
use yunmo_backend::{BackendError, BackendFactory, BatchBackend, LoadOptions};
use yunmo_types::{Signature, Tensor, VersionConfig};

use crate::{metrics, ServiceError};

/// Key of a loaded version.
pub type VersionKey = (String, u64);

/// What the manager needs to load a version.
pub struct LoadSpec {
    /// Model name and version.
    pub key: VersionKey,
    /// Artifact file.
    pub path: PathBuf,
    /// The runtime for the artifact's format.
    pub factory: Arc<dyn BackendFactory>,
    /// Serving options.
    pub config: VersionConfig,
}

/// Options shared by every loaded model.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Capacity of each model's queue; a full queue answers `overloaded`.
    pub queue_capacity: usize,
    /// Threads ONNX Runtime may use inside one call (0 = its default).
    pub intra_op_threads: usize,
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
    sender: flume::Sender<Job>,
}

impl LoadedModel {
    pub(crate) fn submit(&self, job: Job) -> Result<(), ServiceError> {
        self.sender.try_send(job).map_err(|error| match error {
            flume::TrySendError::Full(_) => ServiceError::new(
                crate::Code::Overloaded,
                format!("model '{}' version {} has {} requests queued, its limit", self.key.0, self.key.1, self.sender.capacity().unwrap_or(0)),
            ),
            flume::TrySendError::Disconnected(_) => ServiceError::not_ready(format!(
                "model '{}' version {} is unloading",
                self.key.0, self.key.1
            )),
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
}

impl ModelManager {
    /// An empty table.
    pub fn new(config: WorkerConfig) -> Self {
        ModelManager { config, slots: Mutex::default(), unloaded: Mutex::default() }
    }

    /// The loaded version, if it is loaded now.
    pub fn get(&self, key: &VersionKey) -> Option<Arc<LoadedModel>> {
        let slot = self.slots.lock().expect("model table lock").get(key).cloned()?;
        slot.cell.get().cloned()
    }

    /// Whether the version was explicitly unloaded (and so is not loaded lazily).
    pub fn is_unloaded(&self, key: &VersionKey) -> bool {
        self.unloaded.lock().expect("unloaded set lock").contains(key)
    }

    /// Keys of the loaded versions.
    pub fn loaded(&self) -> Vec<VersionKey> {
        let slots = self.slots.lock().expect("model table lock");
        slots.iter().filter(|(_, slot)| slot.cell.initialized()).map(|(key, _)| key.clone()).collect()
    }

    /// Returns the loaded version, loading it first if needed. Concurrent callers share one load; a failed
    /// load is not remembered, so the next call tries again.
    pub async fn get_or_load(&self, spec: LoadSpec) -> Result<Arc<LoadedModel>, ServiceError> {
        let key = spec.key.clone();
        self.unloaded.lock().expect("unloaded set lock").remove(&key);
        let slot = self.slots.lock().expect("model table lock").entry(key.clone()).or_default().clone();
        let result = slot.cell.get_or_try_init(|| load(spec, self.config.clone())).await.cloned();
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

    /// Drops a version from the table without blocking lazy loads (after its config changed or it was deleted).
    pub fn forget(&self, key: &VersionKey) -> bool {
        let slot = self.slots.lock().expect("model table lock").remove(key);
        slot.is_some_and(|slot| slot.cell.initialized())
    }
}

async fn load(spec: LoadSpec, config: WorkerConfig) -> Result<Arc<LoadedModel>, ServiceError> {
    let started = Instant::now();
    let (sender, receiver) = flume::bounded::<Job>(config.queue_capacity);
    let instance_count = spec.config.instance_count.max(1) as usize;
    let mut ready = Vec::with_capacity(instance_count);
    for instance in 0..instance_count {
        let (ready_sender, ready_receiver) = oneshot::channel();
        ready.push(ready_receiver);
        let worker = Worker {
            receiver: receiver.clone(),
            factory: spec.factory.clone(),
            path: spec.path.clone(),
            options: LoadOptions { intra_op_threads: config.intra_op_threads },
            model: spec.key.0.clone(),
            version: spec.key.1.to_string(),
        };
        std::thread::Builder::new()
            .name(format!("yunmo-worker-{}-{}-{instance}", spec.key.0, spec.key.1))
            .spawn(move || worker.run(ready_sender))
            .map_err(|error| ServiceError::internal(format!("cannot start a worker thread: {error}")))?;
    }
    drop(receiver);
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
                // Dropping the sender stops the instances that did load.
                return Err(error);
            }
        }
    }
    let signature = signature.expect("instance_count is at least 1. This is a bug.");
    let elapsed = started.elapsed();
    ::metrics::histogram!(metrics::MODEL_LOAD_DURATION_SECONDS, "model" => spec.key.0.clone()).record(elapsed.as_secs_f64());
    ::metrics::gauge!(metrics::MODELS_LOADED).increment(1.0);
    tracing::info!(model = %spec.key.0, version = spec.key.1, instances = instance_count, seconds = elapsed.as_secs_f64(), "Model loaded.");
    Ok(Arc::new(LoadedModel { key: spec.key, signature, config: spec.config, sender }))
}

struct Worker {
    receiver: flume::Receiver<Job>,
    factory: Arc<dyn BackendFactory>,
    path: PathBuf,
    options: LoadOptions,
    model: String,
    version: String,
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
        while let Ok(job) = self.receiver.recv() {
            if job.reply.is_closed() {
                ::metrics::counter!(metrics::DROPPED_TOTAL, "model" => self.model.clone(), "version" => self.version.clone())
                    .increment(1);
                continue;
            }
            let queue_time = job.enqueued.elapsed();
            let started = Instant::now();
            let result = run_guarded(backend.as_mut(), job.inputs, &job.outputs);
            let compute_time = started.elapsed();
            let _ = job.reply.send(JobResult { result, queue_time, compute_time });
        }
    }
}

/// Runs one call, turning a panic inside the runtime into an error instead of killing the worker.
fn run_guarded(backend: &mut dyn BatchBackend, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.infer(inputs, outputs)))
        .unwrap_or_else(|_| Err(BackendError::Inference("the runtime panicked".into())))
}
