//! Domain vocabulary of Yunmo: [`DataType`], [`Tensor`], [`TensorSpec`], [`Signature`], [`ModelRef`],
//! the per-request types [`InferInput`] / [`InferOutput`], and the one error table ([`ServiceError`], [`Code`]) every
//! layer returns and every transport maps.
//!
//! Tensors hold their elements as little-endian, row-major bytes ([`TensorData::Fixed`]) or as a list of
//! byte strings ([`TensorData::Bytes`]), which is the shape every wire format (JSON, Triton binary, gRPC raw)
//! and every runtime can meet without per-element conversion.
//! This crate does no IO and knows no wire format.
#![warn(missing_docs)]

pub mod calendar;
mod datatype;
mod error;
mod generate;
mod route;
mod tenancy;
mod tensor;

pub use datatype::DataType;
pub use error::{Code, ServiceError};
pub use generate::{Constraint, EmbeddingConfig, EncoderTask, FinishReason, GenerateParams, Pooling, TextChunk, TokenLogprob, Usage};
pub use route::{Guard, MAX_ROUTED_VERSIONS, Route, Sticky, Weighted, sticky_hash};
pub use tenancy::{Limits, Price, Scope, Sharing};
pub use tensor::{Tensor, TensorData, TensorError, element_count as element_count_of};

use serde::{Deserialize, Serialize};

/// Name and optional version of a model, as a request names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// Explicit version; `None` means the model's version policy decides.
    pub version: Option<u64>,
}

impl ModelRef {
    /// A reference to `name` at `version` (or the policy's choice when `None`).
    pub fn new(name: impl Into<String>, version: Option<u64>) -> Self {
        Self { name: name.into(), version }
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(version) => write!(f, "{}:{}", self.name, version),
            None => f.write_str(&self.name),
        }
    }
}

/// Name, data type and shape of one model input or output. `-1` marks a variable dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name as the model declares it.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions; `-1` is variable.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Whether `shape` fits this spec: same rank and equal on every fixed dimension.
    pub fn accepts_shape(&self, shape: &[i64]) -> bool {
        self.shape.len() == shape.len() && self.shape.iter().zip(shape).all(|(want, got)| *want < 0 || want == got)
    }
}

/// The inputs and outputs of a model, read from the model file at upload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Signature {
    /// Model inputs, in the model's order.
    pub inputs: Vec<TensorSpec>,
    /// Model outputs, in the model's order.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// The input spec called `name`.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|spec| spec.name == name)
    }
    /// The output spec called `name`.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|spec| spec.name == name)
    }
}

/// One output a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// Triton's classification extension: return the top `k` classes as `"score:index[:label]"` strings.
    pub class_count: Option<usize>,
}

/// A validated inference request, independent of the protocol it came in on.
#[derive(Debug, Clone)]
pub struct InferInput {
    /// Request id, echoed in the response.
    pub id: Option<String>,
    /// Input tensors.
    pub inputs: Vec<Tensor>,
    /// Outputs asked for; empty means all.
    pub outputs: Vec<RequestedOutput>,
}

/// The result of one inference request.
#[derive(Debug, Clone)]
pub struct InferOutput {
    /// Version that served the request.
    pub model_version: u64,
    /// Request id from the input.
    pub id: Option<String>,
    /// Output tensors, in the order requested (or the model's order).
    pub outputs: Vec<Tensor>,
    /// Microseconds the request waited in the queue.
    pub queue_us: u64,
    /// Microseconds of the batch that computed it.
    pub compute_us: u64,
}

/// Which version a request without an explicit version gets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VersionPolicy {
    /// The highest version number.
    #[default]
    Latest,
    /// One fixed version.
    Pinned {
        /// The version served.
        version: u64,
    },
    /// Versions sharing the requests by weight (canary, A/B), with an optional shadow and guard.
    Routed(Route),
}

impl VersionPolicy {
    /// Every version the policy names (which must exist, and may not be deleted while it does).
    pub fn named_versions(&self) -> Vec<u64> {
        match self {
            VersionPolicy::Latest => Vec::new(),
            VersionPolicy::Pinned { version } => vec![*version],
            VersionPolicy::Routed(route) => route.named_versions().collect(),
        }
    }
}

/// Serving options of one model version, persisted with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VersionConfig {
    /// Largest first dimension one call may carry (0: the model is not batched along its first dimension).
    /// Above 0, requests are also merged along the first dimension (dynamic batching) up to this size.
    pub max_batch_size: u32,
    /// How long a request may wait for a batch to fill once a worker is free, in microseconds.
    /// 0 (the default) sends whatever is waiting as soon as a worker is free.
    pub max_queue_delay_us: u64,
    /// How many instances (each with its own runtime session and worker thread) run this version.
    pub instance_count: u32,
    /// Class labels for Triton's classification extension, by class index.
    pub labels: Vec<String>,
    /// Serve `/v1/embeddings` from this encoder (needs a tokenizer uploaded with the version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingConfig>,
    /// Jinja chat template for `/v1/chat/completions`, replacing the one inside the model file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// How a GGUF model's KV cache stores keys and values (default f16): quantised types hold more tokens in
    /// the same memory, at a small cost in accuracy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache_type: Option<KvCacheType>,
    /// Whether a GGUF model's attention runs in flash-attention kernels (default `auto`: llama.cpp chooses, on
    /// for the CPU, where an f16 cache takes Yunmo's kernel). A quantised `kv_cache_type` needs them: `off` is
    /// then refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flash_attention: Option<FlashAttention>,
    /// What a request to this version costs (usage reports price requests by it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// Drift monitoring settings of this version, replacing the server's `[drift]` defaults field by field
    /// (checked by the service, which knows them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<serde_json::Map<String, serde_json::Value>>,
    /// BYTES inputs whose every element must be one of these values (a recommender's user and item ids):
    /// anything else is refused with a 400 naming the input, the element and the value, before the model
    /// runs. At most [`VersionConfig::MAX_KNOWN_VALUES`] values in all.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub known_values: std::collections::BTreeMap<String, Vec<String>>,
    /// How the version was made, when a Yunmo job made it (training or optimisation): set by the job,
    /// shown by the API and CLI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// The element type of an LLM's KV cache (llama.cpp's `type_k` and `type_v`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheType {
    /// 16-bit floats: 2 bytes per element.
    #[default]
    F16,
    /// 8-bit blocks (32 values and a scale in 34 bytes): 1.0625 bytes per element.
    Q8_0,
    /// 4-bit blocks (32 values and a scale in 18 bytes): 0.5625 bytes per element.
    Q4_0,
}

impl KvCacheType {
    /// Bytes per 32 elements.
    pub fn bytes_per_32(self) -> u64 {
        match self {
            KvCacheType::F16 => 64,
            KvCacheType::Q8_0 => 34,
            KvCacheType::Q4_0 => 18,
        }
    }
}

/// Whether an LLM's attention uses llama.cpp's flash-attention kernels (its `flash_attn_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlashAttention {
    /// llama.cpp's choice: on where the device supports it (the CPU does).
    #[default]
    Auto,
    /// Always: the only choice for a quantised KV cache.
    On,
    /// llama.cpp's plain attention (matrix products over the whole cache): short contexts decode slower
    /// (docs/llm.md).
    Off,
}

/// How a job made a version: what it did, from what, and how the result measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The job's id.
    pub job: String,
    /// `train` or `optimise`.
    pub kind: String,
    /// The family trained or the optimisation applied.
    pub method: String,
    /// The version it was made from (optimisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_version: Option<u64>,
    /// The dataset file it learnt from (training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_file: Option<String>,
    /// The file it was validated on, when separate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_file: Option<String>,
    /// Evaluation metrics (validation rows), by name.
    #[serde(default)]
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// What else the job measured or used (rows, features, the optimisation report).
    #[serde(default)]
    pub details: serde_json::Value,
}

impl Default for VersionConfig {
    fn default() -> Self {
        VersionConfig {
            max_batch_size: 0,
            max_queue_delay_us: 0,
            instance_count: 1,
            labels: Vec::new(),
            embedding: None,
            chat_template: None,
            kv_cache_type: None,
            flash_attention: None,
            price: None,
            drift: None,
            known_values: Default::default(),
            provenance: None,
        }
    }
}

impl VersionConfig {
    /// Upper bound on `instance_count`.
    pub const MAX_INSTANCES: u32 = 64;
    /// Upper bound on `max_queue_delay_us` (10 s).
    pub const MAX_QUEUE_DELAY_US: u64 = 10_000_000;
    /// Largest `max_batch_size`.
    pub const MAX_BATCH_SIZE: u32 = 1 << 20;
    /// Most values of `known_values`, all inputs together.
    pub const MAX_KNOWN_VALUES: usize = 2_000_000;

    /// Checks the bounds; the message names the field, the bound and the value.
    pub fn validate(&self) -> Result<(), String> {
        if self.instance_count == 0 || self.instance_count > Self::MAX_INSTANCES {
            return Err(format!("instance_count must be between 1 and {}, got {}", Self::MAX_INSTANCES, self.instance_count));
        }
        if self.max_batch_size > Self::MAX_BATCH_SIZE {
            return Err(format!("max_batch_size must be at most {}, got {}", Self::MAX_BATCH_SIZE, self.max_batch_size));
        }
        if self.max_queue_delay_us > Self::MAX_QUEUE_DELAY_US {
            return Err(format!("max_queue_delay_us must be at most {}, got {}", Self::MAX_QUEUE_DELAY_US, self.max_queue_delay_us));
        }
        if let Some(embedding) = &self.embedding {
            embedding.validate()?;
        }
        if let Some(price) = &self.price {
            price.validate()?;
        }
        if let (Some(FlashAttention::Off), Some(kv @ (KvCacheType::Q8_0 | KvCacheType::Q4_0))) = (self.flash_attention, self.kv_cache_type)
        {
            let kv = serde_json::to_value(kv).unwrap_or_default();
            return Err(format!(
                "flash_attention \"off\" needs kv_cache_type f16 (llama.cpp reads a quantised KV cache only in its flash-attention kernels), got kv_cache_type {kv}"
            ));
        }
        let known: usize = self.known_values.values().map(Vec::len).sum();
        if known > Self::MAX_KNOWN_VALUES {
            return Err(format!("known_values holds {known} values; at most {} are allowed", Self::MAX_KNOWN_VALUES));
        }
        Ok(())
    }
}
