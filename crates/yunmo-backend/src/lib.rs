//! The backend traits of Yunmo: what a runtime must do to run a model.
//!
//! A [`BackendFactory`] knows one artifact format (`"onnx"`): it inspects an uploaded file
//! ([`BackendFactory::inspect`], which must reject anything it could not later load) and loads it into
//! [`BatchBackend`] instances. An instance runs on one worker thread and is called with whole requests.
//! Backends do no network IO and never see keys, tenants or wire formats.
//!
//! Formats that generate text (`"gguf"`) load instead into one [`GenerateBackend`] per version, which owns
//! its continuous batching: it accepts tokenised requests and answers each with a stream of
//! [`GenerateEvent`]s. Dropping the stream's receiver cancels the request at the next decode step.
//!
//! A GGUF file may instead hold a text encoder (an embedding model or a reranker, which llama.cpp marks with
//! a pooling type); it loads into an [`EncodeBackend`] (see the `encode` module).
#![warn(missing_docs)]

mod encode;
pub mod threads;

pub use encode::{EncodeBackend, EncodeInfo, EncodeOptions, Encoded, text_signature, text_signature_task};

use std::path::Path;

use yunmo_types::{Constraint, FinishReason, GenerateParams, Signature, Tensor, TextChunk, Usage};

/// Why a backend call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The artifact could not be read as a model of this format.
    #[error("invalid model file: {0}")]
    InvalidModel(String),
    /// The model uses something this runtime cannot run.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// The runtime itself could not be started (library missing, wrong version).
    #[error("runtime unavailable: {0}")]
    Runtime(String),
    /// The inputs were rejected by the runtime.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Inference failed inside the runtime.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The runtime's own queue is full; the caller may retry later.
    #[error("{0}")]
    Overloaded(String),
}

impl From<BackendError> for yunmo_types::ServiceError {
    fn from(error: BackendError) -> Self {
        use yunmo_types::Code;
        let code = match &error {
            BackendError::InvalidModel(_) | BackendError::Unsupported(_) | BackendError::InvalidInput(_) => Code::InvalidRequest,
            BackendError::Runtime(_) => Code::ModelNotReady,
            BackendError::Inference(_) => Code::InferenceFailed,
            BackendError::Overloaded(_) => Code::Overloaded,
        };
        yunmo_types::ServiceError::new(code, error.to_string())
    }
}

/// What kind of runtime a format loads into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// Stateless tensor in, tensor out ([`BatchBackend`]).
    Tensor,
    /// Token streams with backend-owned continuous batching ([`GenerateBackend`]).
    Generate,
}

/// How to load one instance of a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Threads the runtime may use inside one call (0 = the runtime's default).
    pub intra_op_threads: usize,
}

/// Runs whole requests on one worker thread. Implemented by tensor runtimes.
pub trait BatchBackend: Send + 'static {
    /// The inputs and outputs of the loaded model.
    fn signature(&self) -> &Signature;

    /// Runs the model. `inputs` have been checked against [`BatchBackend::signature`] (names, data types,
    /// fixed dimensions); `outputs` names the outputs to return, in that order, each one of the signature's.
    fn infer(&mut self, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, BackendError>;
}

/// Knows one artifact format: checks uploads and loads instances.
pub trait BackendFactory: Send + Sync + 'static {
    /// The format name stored with each version (`"onnx"`).
    fn format(&self) -> &'static str;

    /// The V2 `platform` string for model metadata (`"onnx_onnxv1"`).
    fn platform(&self) -> &'static str;

    /// Whether `head` (the first bytes of a file) looks like this format.
    fn sniff(&self, head: &[u8]) -> bool;

    /// Reads the model at `path` and returns its signature; fails on anything [`BackendFactory::load`] could
    /// not load. Blocking: call it off the async runtime.
    fn inspect(&self, path: &Path) -> Result<Signature, BackendError>;

    /// Which trait the format loads into.
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Tensor
    }

    /// Loads one instance of a tensor model. Blocking: call it off the async runtime.
    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Box<dyn BatchBackend>, BackendError> {
        let _ = (path, options);
        Err(BackendError::Unsupported(format!("format '{}' does not load tensor models", self.format())))
    }

    /// Loads a text-generation model and starts its engine with the version's `options`. Blocking: call it
    /// off the async runtime.
    fn load_generate(&self, path: &Path, options: &GenerateOptions) -> Result<std::sync::Arc<dyn GenerateBackend>, BackendError> {
        let _ = (path, options);
        Err(BackendError::Unsupported(format!("format '{}' does not generate text", self.format())))
    }

    /// Loads a text encoder and starts its batching thread. Blocking: call it off the async runtime.
    fn load_encode(&self, path: &Path, options: &EncodeOptions) -> Result<std::sync::Arc<dyn EncodeBackend>, BackendError> {
        let _ = (path, options);
        Err(BackendError::Unsupported(format!("format '{}' does not load text encoders", self.format())))
    }
}

/// A text-generation version's own engine options (from its version config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateOptions {
    /// The KV cache's element type.
    pub kv_cache_type: yunmo_types::KvCacheType,
    /// Whether attention takes llama.cpp's flash-attention kernels.
    pub flash_attention: yunmo_types::FlashAttention,
}

/// One tokenised generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The prompt's token ids, special tokens included.
    pub prompt: Vec<u32>,
    /// Sampling and stopping.
    pub params: GenerateParams,
    /// The grammar the output must follow, compiled by [`GenerateBackend::constrain`] of the same backend.
    pub grammar: Option<Grammar>,
}

/// A [`Constraint`] compiled for one backend's vocabulary; cheap to clone (one per choice).
#[derive(Clone)]
pub struct Grammar(pub std::sync::Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Grammar")
    }
}

/// What a generation stream carries. A stream ends with exactly one `Finished` or `Failed`.
#[derive(Debug, Clone)]
pub enum GenerateEvent {
    /// New text.
    Chunk(TextChunk),
    /// The generation ended.
    Finished {
        /// Why.
        reason: FinishReason,
        /// Tokens read and generated.
        usage: Usage,
    },
    /// The generation failed.
    Failed(BackendError),
}

/// Static facts about a loaded text-generation model.
#[derive(Debug, Clone, Default)]
pub struct GenerateInfo {
    /// Architecture from the file (`llama`, `qwen2`, `gemma3`).
    pub architecture: String,
    /// Tokens one sequence may hold (prompt plus completion).
    pub context_per_sequence: u32,
    /// Sequences decoded together.
    pub max_sequences: u32,
    /// The Jinja chat template stored in the file, if any.
    pub chat_template: Option<String>,
    /// Beginning-of-sequence token text, for chat templates.
    pub bos_token: String,
    /// End-of-sequence token text, for chat templates.
    pub eos_token: String,
    /// Whether the tokenizer adds the BOS token by itself.
    pub add_bos: bool,
    /// Bytes of memory the model holds (weights and KV cache), for the memory budget.
    pub memory_bytes: u64,
    /// Most rows of one decode in which the model's kernels were measured, at load, to compute every row
    /// the same bits as in any other such batch (0: none): up to it, short prefill chunks are decoded
    /// together and cached cells inside short chunks are reused to the token.
    pub invariant_rows: u32,
}

/// Live counters of a generation engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateStats {
    /// Sequences being prefilled or decoded.
    pub running: usize,
    /// Requests accepted but not started.
    pub waiting: usize,
    /// KV cache cells holding tokens.
    pub kv_cells_used: u64,
    /// KV cache cells in all.
    pub kv_cells_total: u64,
}

/// Accepts tokenised requests and streams text; owns its continuous batching. Implemented by LLM runtimes.
pub trait GenerateBackend: Send + Sync + 'static {
    /// Facts about the model.
    fn info(&self) -> &GenerateInfo;

    /// Token ids of `text`. `special`: add BOS/EOS as the model wants and parse special tokens written in
    /// the text (for rendered chat templates).
    fn tokenize(&self, text: &str, special: bool) -> Result<Vec<u32>, BackendError>;

    /// Queues a request. Fails with [`BackendError::Overloaded`] when the queue is full, and with
    /// [`BackendError::InvalidInput`] when the prompt does not fit the context. Dropping the receiver
    /// cancels the request and frees its KV cells at the next step.
    fn submit(&self, request: GenerateRequest) -> Result<flume::Receiver<GenerateEvent>, BackendError>;

    /// Running and waiting sequences and KV cache use.
    fn stats(&self) -> GenerateStats;

    /// Compiles `constraint` for this model's vocabulary; fails with [`BackendError::InvalidInput`] naming
    /// what the grammar or schema uses that cannot be enforced. Blocking (it may take milliseconds): call
    /// it off the async runtime.
    fn constrain(&self, constraint: &Constraint) -> Result<Grammar, BackendError> {
        let _ = constraint;
        Err(BackendError::InvalidInput("this model cannot constrain its output (response_format, tool_choice)".into()))
    }
}
