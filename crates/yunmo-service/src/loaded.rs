//! A loaded version: what requests hold while it serves them ([`LoadedModel`]), and what loading needs.
//!
//! Requests hold an `Arc<LoadedModel>`: unloading removes the model from the table at once, queued
//! requests still complete, and the batching task and workers stop when the last handle is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use yunmo_backend::{BackendFactory, GenerateBackend};
use yunmo_types::{Signature, VersionConfig};

use crate::batching::{Job, TensorQueue};
use crate::{ServiceError, VersionKey, metrics};

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
    /// Its drift watch, when drift monitoring is on for it.
    pub(crate) drift: Option<Arc<crate::drift::Watch>>,
    /// The opened pipeline, when the version is one (then nothing is loaded into a runtime).
    pub(crate) pipeline: Option<Arc<crate::pipeline::Pipeline>>,
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

/// A version ready to serve.
pub struct LoadedModel {
    /// Model name and version.
    pub key: VersionKey,
    /// Inputs and outputs.
    pub signature: Signature,
    /// Serving options it was loaded with.
    pub config: VersionConfig,
    /// The values its BYTES inputs may hold (`config.known_values`), as sets.
    pub(crate) known_values: crate::validate::KnownValues,
    /// Estimated bytes it holds (artifact size per instance, or what the runtime reports).
    pub memory_bytes: u64,
    pub(crate) runtime: Runtime,
    /// The encoder front for `/v1/embeddings`, when configured.
    pub(crate) embedder: Option<crate::embed::Embedder>,
    /// The parsed chat template of a text-generation model (or why there is none).
    pub(crate) chat_template: Result<yunmo_text::chat::ChatTemplate, String>,
    /// Its request metrics, labelled once.
    pub(crate) metrics: metrics::VersionMetrics,
    /// Its generation metrics, labelled once (LLMs only).
    pub(crate) llm_metrics: Option<metrics::LlmMetrics>,
    pub(crate) last_used_ms: AtomicU64,
    /// Order of last use (a logical clock: milliseconds are too coarse to order requests).
    pub(crate) last_used_order: AtomicU64,
    /// A digest of the `tokenizer.json` it was loaded with, to notice when another replica replaces it.
    pub(crate) tokenizer_digest: Option<u64>,
    /// Its requests second by second over the last 15 minutes (`/api/v1/stats`).
    /// Its drift watch, when drift monitoring is on for it.
    pub(crate) drift: Option<Arc<crate::drift::Watch>>,
    pub(crate) stats: crate::stats::StatsRing,
}

/// A digest of a `tokenizer.json` (change detection, not security).
pub(crate) fn tokenizer_digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

pub(crate) enum Runtime {
    Tensor(TensorQueue),
    Generate(Arc<dyn GenerateBackend>),
    /// Steps run by the service, calling other loaded models.
    Pipeline(Arc<crate::pipeline::Pipeline>),
    /// A text encoder that batches by itself, reached only through its embedder (a GGUF embedding model
    /// or reranker).
    Encode,
}

impl LoadedModel {
    /// Counts a tensor request that ended with `result` after `took`: the version's request metrics and
    /// its live statistics.
    pub(crate) fn record_ending<T>(&self, result: &Result<T, ServiceError>, took: Duration) {
        match result {
            Ok(_) => self.metrics.ok.increment(1),
            Err(error) => self.metrics.failed(error.code),
        }
        self.metrics.duration.record(took.as_secs_f64());
        self.stats.record(crate::stats::Ending::of_result(result), took, 0);
    }

    pub(crate) fn submit(&self, job: Job) -> Result<(), ServiceError> {
        match &self.runtime {
            Runtime::Tensor(queue) => queue.submit(job),
            Runtime::Generate(_) => Err(ServiceError::invalid(format!(
                "model '{}' generates text: use /v1/chat/completions, /v1/completions or the V2 generate endpoints",
                self.key.0
            ))),
            Runtime::Pipeline(_) => {
                Err(ServiceError::invalid(format!("model '{}' is a pipeline: it runs through inference requests", self.key.0)))
            }
            Runtime::Encode => Err(ServiceError::invalid(format!(
                "model '{}' is a text encoder: use /v1/embeddings, or /v1/rerank and /v1/score for a reranker",
                self.key.0
            ))),
        }
    }

    /// Requests waiting and the most that may wait: the tensor queue's, or an LLM's waiting sequences (its
    /// bound is the queue capacity too).
    pub(crate) fn queue(&self) -> (usize, Option<usize>) {
        match &self.runtime {
            Runtime::Tensor(queue) => (queue.queued.load(Ordering::Relaxed), Some(queue.capacity())),
            Runtime::Generate(backend) => (backend.stats().waiting, None),
            Runtime::Pipeline(_) | Runtime::Encode => (0, None),
        }
    }

    /// The text-generation engine, for LLMs.
    pub fn generator(&self) -> Option<&Arc<dyn GenerateBackend>> {
        match &self.runtime {
            Runtime::Generate(backend) => Some(backend),
            Runtime::Tensor(_) | Runtime::Pipeline(_) | Runtime::Encode => None,
        }
    }

    pub(crate) fn touch(&self, now_ms: u64, order: u64) {
        self.last_used_ms.store(now_ms, Ordering::Relaxed);
        self.last_used_order.store(order, Ordering::Relaxed);
    }
}

impl Drop for LoadedModel {
    fn drop(&mut self) {
        ::metrics::gauge!(metrics::MODELS_LOADED).decrement(1.0);
    }
}
