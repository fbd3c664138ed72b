//! Text encoders that own their tokenizer and batching: embedding models and rerankers in formats such as
//! GGUF, where the vocabulary lives in the model file. (ONNX encoders run through the tensor path instead,
//! with the version's `tokenizer.json`.)

use yunmo_types::{DataType, EncoderTask, Pooling, Signature, TensorSpec};

use crate::BackendError;

/// How a version's encoder is loaded (from its `embedding` config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Embeddings or pair scores.
    pub task: EncoderTask,
    /// Pooling of an embedding model's token states; unset or [`Pooling::None`] keeps the file's own. A
    /// reranker always uses the model's classification head.
    pub pooling: Option<Pooling>,
    /// The longest input in tokens, special tokens included; longer inputs are refused by the service
    /// before they reach the encoder.
    pub max_tokens: u32,
}

/// Static facts about a loaded encoder.
#[derive(Debug, Clone, Default)]
pub struct EncodeInfo {
    /// Architecture from the file (`bert`, `nomic-bert`, `xlm-roberta`).
    pub architecture: String,
    /// Length of each answer: the embedding's width, or 1 for a reranker's score.
    pub dimensions: usize,
    /// Token ids run from 0 to this, exclusive.
    pub vocab_size: u32,
    /// Bytes of memory the model holds, for the memory budget.
    pub memory_bytes: u64,
}

/// The output an encoder's signature names: its vector, or a reranker's score.
const EMBEDDING_OUTPUT: &str = "embedding";
const SCORE_OUTPUT: &str = "score";

/// The V2 signature of a text model that owns its tokenizer: `text_input` in, and out the generated text
/// (`task` unset), the embedding, or the reranker's score.
pub fn text_signature(task: Option<EncoderTask>) -> Signature {
    let text = |name: &str| TensorSpec { name: name.into(), datatype: DataType::Bytes, shape: vec![1] };
    let output = match task {
        None => text("text_output"),
        Some(EncoderTask::Embed) => TensorSpec { name: EMBEDDING_OUTPUT.into(), datatype: DataType::Fp32, shape: vec![-1] },
        Some(EncoderTask::Rerank) => TensorSpec { name: SCORE_OUTPUT.into(), datatype: DataType::Fp32, shape: vec![1] },
    };
    Signature { inputs: vec![text("text_input")], outputs: vec![output] }
}

/// What a signature made by [`text_signature`] serves (`None`: generation).
pub fn text_signature_task(signature: &Signature) -> Option<EncoderTask> {
    match signature.outputs.first().map(|spec| spec.name.as_str()) {
        Some(EMBEDDING_OUTPUT) => Some(EncoderTask::Embed),
        Some(SCORE_OUTPUT) => Some(EncoderTask::Rerank),
        _ => None,
    }
}

/// What [`EncodeBackend::encode`] answers: one vector per input, in input order, or why it failed.
pub type Encoded = Result<Vec<Vec<f32>>, BackendError>;

/// Tokenises with the model's own vocabulary and encodes whole inputs; owns its batching (inputs of
/// concurrent calls share a forward pass). Implemented by runtimes whose files carry their tokenizer.
pub trait EncodeBackend: Send + Sync + 'static {
    /// Facts about the model.
    fn info(&self) -> &EncodeInfo;

    /// Token ids of `text` with the model's special tokens around it.
    fn tokenize(&self, text: &str) -> Result<Vec<u32>, BackendError>;

    /// Token ids of a (query, document) pair as one input, laid out the way the model was trained: its
    /// special tokens around and between the two.
    fn tokenize_pair(&self, query: &str, document: &str) -> Result<Vec<u32>, BackendError>;

    /// `ids` (already the model's token ids) with the model's special tokens around them.
    fn wrap(&self, ids: &[u32]) -> Vec<u32>;

    /// Queues `inputs` (token ids, each at most [`EncodeOptions::max_tokens`] long); the receiver gets one
    /// answer. Fails with [`BackendError::Overloaded`] when the encoder's queue is full. Dropping the
    /// receiver before the answer does not stop inputs already in a forward pass.
    fn encode(&self, inputs: Vec<Vec<u32>>) -> Result<flume::Receiver<Encoded>, BackendError>;
}
