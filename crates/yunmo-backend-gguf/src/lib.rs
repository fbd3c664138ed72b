//! GGUF large language models through llama.cpp (the `llama-cpp-2` crate), with continuous batching.
//!
//! [`GgufFactory`] checks uploads (a vocabulary-only load) and loads a model into a [`engine::Engine`]:
//! one thread that owns the llama.cpp context and runs decode steps for every admitted sequence at once
//! (one sequence id per request), planned by [`plan::plan_step`]. Sampling ([`sampler`]) and text assembly
//! with stop strings ([`text`]) are pure Rust. A file that declares a pooling type holds a text encoder
//! instead (an embedding model, or a reranker with rank pooling): it loads into an [`encoder::Encoder`].
//! Only this crate and `yunmo-backend-onnx` touch native code.

mod encoder;
mod engine;
mod grammar;
mod merge;
#[cfg(feature = "fault-injection")]
pub mod fault {
    //! Switches the tests use to make the engine fail (feature `fault-injection`, never in a release).

    /// When set, the next decode step of any engine in this process panics (and clears the switch).
    pub static PANIC_NEXT_STEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
}
pub mod plan;
mod prefix;
pub mod requantize;
pub mod sampler;
pub mod text;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use yunmo_backend::{BackendError, BackendFactory, EncodeBackend, EncodeOptions, GenerateBackend, GenerateOptions, RuntimeKind};
use yunmo_types::{EncoderTask, Signature};

/// Options of the GGUF runtime (the `backends.gguf` settings section).
#[derive(Debug, Clone)]
pub struct GgufConfig {
    /// CPU threads for decode and prefill (0: all available cores).
    pub threads: usize,
    /// Sequences decoded together (continuous batching width).
    pub max_sequences: u32,
    /// Tokens one sequence may hold (prompt plus completion).
    pub context_per_sequence: u32,
    /// Most tokens in one decode step; long prompts are prefilled in chunks of at most this.
    pub batch_tokens: u32,
    /// Requests that may wait for a free sequence; beyond that, `overloaded`.
    pub queue_capacity: usize,
    /// Layers offloaded to the GPU (only with the `cuda` feature; 0 on CPU builds).
    pub gpu_layers: u32,
    /// Keep a finished sequence's KV cells in its slot and reuse them for a prompt that shares their prefix.
    pub prefix_cache: bool,
    /// Tokens of one prefill chunk, aligned to absolute positions: the unit of prefix reuse (see `plan.rs`).
    pub prefill_chunk: u32,
    /// The loaded version's own options (its `kv_cache_type` and `flash_attention`); the defaults unless it sets them.
    pub options: GenerateOptions,
}

impl Default for GgufConfig {
    fn default() -> Self {
        GgufConfig {
            threads: 0,
            max_sequences: 8,
            context_per_sequence: 2048,
            batch_tokens: 512,
            queue_capacity: 64,
            gpu_layers: 0,
            prefix_cache: true,
            prefill_chunk: 64,
            options: GenerateOptions::default(),
        }
    }
}

/// The `"gguf"` format.
pub struct GgufFactory {
    config: GgufConfig,
}

impl GgufFactory {
    /// A factory that loads models with `config`.
    pub fn new(config: GgufConfig) -> Result<Self, BackendError> {
        if config.max_sequences == 0 || config.batch_tokens < config.max_sequences {
            return Err(BackendError::Runtime(format!(
                "backends.gguf.batch_tokens ({}) must be at least backends.gguf.max_sequences ({}), which must be at least 1",
                config.batch_tokens, config.max_sequences
            )));
        }
        if config.prefill_chunk == 0 || config.prefill_chunk > config.batch_tokens {
            return Err(BackendError::Runtime(format!(
                "backends.gguf.prefill_chunk must be between 1 and backends.gguf.batch_tokens ({}), got {}",
                config.batch_tokens, config.prefill_chunk
            )));
        }
        if config.context_per_sequence < 16 {
            return Err(BackendError::Runtime(format!(
                "backends.gguf.context_per_sequence must be at least 16, got {}",
                config.context_per_sequence
            )));
        }
        backend()?;
        Ok(GgufFactory { config })
    }
}

/// llama.cpp's process-wide initialisation, done once.
pub(crate) fn backend() -> Result<&'static LlamaBackend, BackendError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(|error| BackendError::Runtime(format!("llama.cpp failed to start: {error}")))
}

fn gpu_layers(config: &GgufConfig) -> u32 {
    if cfg!(feature = "cuda") { config.gpu_layers } else { 0 }
}

/// Loads the file at `path` (`vocab_only`: its metadata and vocabulary).
pub(crate) fn load_model(path: &Path, params: &LlamaModelParams) -> Result<LlamaModel, BackendError> {
    LlamaModel::load_from_file(backend()?, path, params)
        .map_err(|error| BackendError::InvalidModel(format!("llama.cpp cannot read this GGUF file: {error}")))
}

impl BackendFactory for GgufFactory {
    fn format(&self) -> &'static str {
        "gguf"
    }

    fn platform(&self) -> &'static str {
        "llama.cpp_gguf"
    }

    fn sniff(&self, head: &[u8]) -> bool {
        head.starts_with(b"GGUF")
    }

    fn inspect(&self, path: &Path) -> Result<Signature, BackendError> {
        let model = load_model(path, &LlamaModelParams::default().with_vocab_only(true))?;
        if model.vocab().n_tokens() <= 0 {
            return Err(BackendError::InvalidModel("the GGUF file has no vocabulary".into()));
        }
        Ok(yunmo_backend::text_signature(encoder::encoder_task(&model)?))
    }

    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Generate
    }

    fn load_generate(&self, path: &Path, options: &GenerateOptions) -> Result<Arc<dyn GenerateBackend>, BackendError> {
        let model = load_model(path, &LlamaModelParams::default().with_n_gpu_layers(gpu_layers(&self.config)))?;
        if let Some(task) = encoder::encoder_task(&model)? {
            let what = if task == EncoderTask::Rerank { "a reranker" } else { "an embedding model" };
            return Err(BackendError::Unsupported(format!(
                "this GGUF file holds {what} (it declares a pooling type), which generates no text: give it an embedding config with task \"{}\" (uploads get one by themselves)",
                if task == EncoderTask::Rerank { "rerank" } else { "embed" }
            )));
        }
        let config = GgufConfig { options: *options, ..self.config.clone() };
        Ok(Arc::new(engine::Engine::start(Arc::new(model), config)?))
    }

    fn load_encode(&self, path: &Path, options: &EncodeOptions) -> Result<Arc<dyn EncodeBackend>, BackendError> {
        let model = load_model(path, &LlamaModelParams::default().with_n_gpu_layers(gpu_layers(&self.config)))?;
        Ok(Arc::new(encoder::Encoder::start(Arc::new(model), &self.config, options)?))
    }
}
