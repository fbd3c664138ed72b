//! Loading a version: the worker threads and batching task of a tensor model, or the engine of an LLM.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};
use yunmo_backend::{LoadOptions, RuntimeKind};
use yunmo_scheduler::PolicyConfig;

use crate::batching::{Batcher, Job, TensorQueue};
use crate::loaded::{LoadSpec, LoadedModel, Runtime, WorkerConfig};
use crate::workers::Worker;
use crate::{ServiceError, metrics};

pub(crate) async fn load(spec: LoadSpec, config: WorkerConfig, now_ms: u64) -> Result<Arc<LoadedModel>, ServiceError> {
    if let Some(pipeline) = spec.pipeline.clone() {
        return Ok(load_pipeline(spec, pipeline, now_ms));
    }
    if spec.factory.kind() == RuntimeKind::Generate {
        if let Some(embedding) = spec.config.embedding.clone() {
            return load_encoder(spec, embedding, config.queue_capacity, now_ms).await;
        }
        return load_generate(spec, now_ms).await;
    }
    let started = Instant::now();
    let batch_metrics = metrics::BatchMetrics::new(&spec.key.0, spec.key.1);
    let (batch_sender, batch_receiver) = flume::unbounded::<Vec<Job>>();
    let instance_count = spec.config.instance_count.max(1) as usize;
    let idle = Arc::new(Semaphore::new(instance_count));
    let stats = crate::stats::StatsRing::new(crate::stats::RingKind::Tensor);
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
            key: spec.key.clone(),
            dropped: batch_metrics.dropped.clone(),
            totals: stats.totals.clone(),
        };
        // Counted until the worker has dropped its session: the process waits for it before exiting.
        let alive = yunmo_backend::threads::RuntimeThread::register();
        std::thread::Builder::new()
            .name(format!("yunmo-worker-{}-{}-{instance}", spec.key.0, spec.key.1))
            .spawn(move || {
                let _alive = alive;
                worker.run(ready_sender);
            })
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
    let labels = [("model", spec.key.0.clone()), ("version", spec.key.1.to_string())];
    ::metrics::gauge!(metrics::QUEUE_CAPACITY, &labels).set(config.queue_capacity as f64);
    ::metrics::gauge!(metrics::MODEL_INSTANCES, &labels).set(instance_count as f64);
    let embedder = match &spec.config.embedding {
        Some(embedding) => {
            let version = crate::embed::EncoderVersion {
                key: &spec.key,
                tokenizer: spec.tokenizer.as_deref(),
                max_batch_size: spec.config.max_batch_size,
            };
            Some(crate::embed::Embedder::start(version, embedding.clone(), &signature, queue.clone(), instance_count)?)
        }
        None => None,
    };
    let policy = PolicyConfig {
        max_batch_size: spec.config.max_batch_size as usize,
        max_queue_delay: Duration::from_micros(spec.config.max_queue_delay_us),
    };
    let batcher =
        Batcher { requests, batches: batch_sender, idle, queued: queued.clone(), metrics: batch_metrics, unique: AtomicU64::new(0) };
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
        known_values: crate::validate::KnownValues::new(&spec.config),
        config: spec.config,
        runtime: Runtime::Tensor(queue),
        tokenizer_digest: spec.tokenizer.as_deref().map(crate::loaded::tokenizer_digest),
        stats,
        drift: spec.drift,
        embedder,
        chat_template: Err("it is not a text-generation model".into()),
        llm_metrics: None,
        last_used_ms: AtomicU64::new(now_ms),
        last_used_order: AtomicU64::new(0),
    }))
}

async fn load_generate(spec: LoadSpec, now_ms: u64) -> Result<Arc<LoadedModel>, ServiceError> {
    let started = Instant::now();
    let options = yunmo_backend::GenerateOptions {
        kv_cache_type: spec.config.kv_cache_type.unwrap_or_default(),
        flash_attention: spec.config.flash_attention.unwrap_or_default(),
    };
    let backend = load_engine(&spec, move |factory, path| factory.load_generate(path, &options)).await?;
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
        llm_metrics: Some(metrics::LlmMetrics::new(&spec.key.0, spec.key.1)),
        key: spec.key,
        signature: spec.signature,
        known_values: Default::default(),
        config: spec.config,
        runtime: Runtime::Generate(backend),
        embedder: None,
        chat_template,
        last_used_ms: AtomicU64::new(now_ms),
        last_used_order: AtomicU64::new(0),
        tokenizer_digest: None,
        stats: crate::stats::StatsRing::new(crate::stats::RingKind::Generate),
        drift: spec.drift,
    }))
}

/// Runs `load` (a factory's blocking load of the version's file) off the async runtime; a failure is counted
/// and logged.
async fn load_engine<T: Send + 'static>(
    spec: &LoadSpec,
    load: impl FnOnce(&dyn yunmo_backend::BackendFactory, &std::path::Path) -> Result<T, yunmo_backend::BackendError> + Send + 'static,
) -> Result<T, ServiceError> {
    let factory = spec.factory.clone();
    let path = spec.artifact.path().to_path_buf();
    tokio::task::spawn_blocking(move || load(factory.as_ref(), &path))
        .await
        .map_err(|error| ServiceError::internal(format!("model loading panicked: {error}")))?
        .map_err(|error| {
            ::metrics::counter!(metrics::MODEL_LOAD_FAILURES_TOTAL, "model" => spec.key.0.clone()).increment(1);
            tracing::warn!(model = %spec.key.0, version = spec.key.1, %error, "Model load failed.");
            ServiceError::from(error)
        })
}

/// A text encoder in a format that loads into one engine (a GGUF embedding model or reranker).
async fn load_encoder(
    spec: LoadSpec,
    embedding: yunmo_types::EmbeddingConfig,
    capacity: usize,
    now_ms: u64,
) -> Result<Arc<LoadedModel>, ServiceError> {
    let started = Instant::now();
    let options = crate::embed_own::options(&embedding);
    let backend = load_engine(&spec, move |factory, path| factory.load_encode(path, &options)).await?;
    let info = backend.info().clone();
    let elapsed = started.elapsed();
    ::metrics::histogram!(metrics::MODEL_LOAD_DURATION_SECONDS, "model" => spec.key.0.clone()).record(elapsed.as_secs_f64());
    ::metrics::gauge!(metrics::MODELS_LOADED).increment(1.0);
    tracing::info!(
        model = %spec.key.0, version = spec.key.1, architecture = %info.architecture, task = ?embedding.task,
        dimensions = info.dimensions, memory_bytes = info.memory_bytes, seconds = elapsed.as_secs_f64(), "Model loaded."
    );
    Ok(Arc::new(LoadedModel {
        memory_bytes: info.memory_bytes,
        metrics: metrics::VersionMetrics::new(&spec.key.0, spec.key.1),
        llm_metrics: None,
        key: spec.key,
        signature: spec.signature,
        known_values: Default::default(),
        runtime: Runtime::Encode,
        embedder: Some(crate::embed::Embedder::start_own(backend, embedding, capacity)),
        config: spec.config,
        chat_template: Err("it is a text encoder".into()),
        last_used_ms: AtomicU64::new(now_ms),
        last_used_order: AtomicU64::new(0),
        tokenizer_digest: spec.tokenizer.as_deref().map(crate::loaded::tokenizer_digest),
        stats: crate::stats::StatsRing::new(crate::stats::RingKind::Tensor),
        drift: spec.drift,
    }))
}

/// A pipeline holds no runtime of its own: its steps call the loaded models they name.
fn load_pipeline(spec: LoadSpec, pipeline: Arc<crate::pipeline::Pipeline>, now_ms: u64) -> Arc<LoadedModel> {
    ::metrics::gauge!(metrics::MODELS_LOADED).increment(1.0);
    tracing::info!(model = %spec.key.0, version = spec.key.1, "Pipeline loaded.");
    Arc::new(LoadedModel {
        metrics: metrics::VersionMetrics::new(&spec.key.0, spec.key.1),
        key: spec.key,
        signature: spec.signature,
        memory_bytes: spec.size_bytes,
        known_values: crate::validate::KnownValues::new(&spec.config),
        config: spec.config,
        runtime: Runtime::Pipeline(pipeline),
        tokenizer_digest: None,
        stats: crate::stats::StatsRing::new(crate::stats::RingKind::Tensor),
        drift: spec.drift,
        embedder: None,
        chat_template: Err("it is a pipeline".into()),
        llm_metrics: None,
        last_used_ms: AtomicU64::new(now_ms),
        last_used_order: AtomicU64::new(0),
    })
}
