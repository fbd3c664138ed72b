//! Text generation and embedding vocabulary: what a request asks of an LLM and what it gets back.

use serde::{Deserialize, Serialize};

/// Sampling and stopping parameters of one generation, already validated by the service.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateParams {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Softmax temperature; 0 is greedy.
    pub temperature: f32,
    /// Nucleus sampling mass (1 = off).
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    pub top_k: u32,
    /// Seed of the sampler's random numbers; the same seed and parameters give the same text.
    pub seed: u64,
    /// Strings that end the generation; they are not part of the returned text.
    pub stop: Vec<String>,
    /// OpenAI presence penalty: subtracted once from the logit of every token already generated.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty: subtracted per occurrence of a token already generated.
    pub frequency_penalty: f32,
    /// llama.cpp's (Ollama's, vLLM's) repetition penalty over the tokens already generated: a positive
    /// logit is divided by it, a negative one multiplied (1 is off).
    pub repetition_penalty: f32,
    /// `Some(n)`: return the chosen token's log-probability and the `n` most likely alternatives.
    pub logprobs: Option<u32>,
    /// OpenAI `logit_bias`: added to the logit of each token id before sampling (-100 to 100; -100 bans a
    /// token, 100 all but forces it).
    pub logit_bias: Vec<(u32, f32)>,
    /// Write control tokens other than end-of-generation ones (Llama 3's `<|python_tag|>`, Mistral's
    /// `[TOOL_CALLS]`) into the text, as tool-call parsers need them; otherwise they are dropped.
    pub special_tokens: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 16,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop: Vec::new(),
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logprobs: None,
            logit_bias: Vec::new(),
            special_tokens: false,
        }
    }
}

/// A language the generated text must be in: enforced token by token while sampling (structured outputs,
/// tool calls), so the text always parses.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON valid against this JSON schema (`{"type": "json_schema", ...}`).
    JsonSchema(serde_json::Value),
    /// A grammar in llguidance's Lark dialect (which may embed JSON schemas with `%json{...}`).
    Lark(String),
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-generation token (or a grammar that is complete).
    Stop,
    /// The stop string at this index of the request's `stop` list.
    StopString(u32),
    /// `max_tokens` or the context per sequence was reached.
    Length,
}

impl FinishReason {
    /// The OpenAI `finish_reason` string.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop | FinishReason::StopString(_) => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Token counts of one request, for the response's `usage` and for metering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens read (the prompt, or the embedded inputs).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Of the prompt tokens, those whose KV cells were reused from an earlier request (prefix cache).
    #[serde(default)]
    pub cached_tokens: u64,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Log-probability of one token, with the most likely alternatives at its position.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token's text (lossy UTF-8 when the token is part of a character).
    pub token: String,
    /// The token's raw bytes.
    pub bytes: Vec<u8>,
    /// Natural log of its probability under the unmodified distribution (temperature 1, no penalties).
    pub logprob: f32,
    /// The most likely tokens at this position, most likely first.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// A piece of generated text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextChunk {
    /// New text (may be empty while a multi-byte character or a possible stop string is held back).
    pub text: String,
    /// Log-probabilities of the tokens that produced it, when asked for.
    pub logprobs: Vec<TokenLogprob>,
}

/// How a pooled embedding is formed from an encoder's per-token states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps (sentence-transformers' default).
    #[default]
    Mean,
    /// The first token's state (BERT's `[CLS]`).
    Cls,
    /// The model's output is already one vector per input.
    None,
}

/// What an ONNX text encoder serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EncoderTask {
    /// Embeddings of texts (`/v1/embeddings`): its output pooled into one vector per text.
    #[default]
    Embed,
    /// Relevance of (query, document) pairs (`/v1/rerank`, `/v1/score`): a cross-encoder that takes each pair
    /// tokenised as one input (the document as the second segment) and answers one logit per pair
    /// (`[N, 1]`); `pooling` and `normalize` do not apply.
    Rerank,
}

/// How an encoder serves `/v1/embeddings` (or, with `task = "rerank"`, `/v1/rerank` and `/v1/score`): an
/// ONNX encoder with the version's `tokenizer.json`, or a GGUF encoder (a file with a pooling type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingConfig {
    /// Pooling of the per-token output; unset: mean for an ONNX encoder, the file's own for a GGUF one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooling: Option<Pooling>,
    /// L2-normalise each vector.
    pub normalize: bool,
    /// Longest input in tokens; longer inputs are rejected with a 400 unless `truncate`.
    pub max_tokens: u32,
    /// Cut inputs longer than `max_tokens` instead of rejecting them.
    pub truncate: bool,
    /// Most tokens (padded length × rows) in one batch.
    pub max_batch_tokens: u32,
    /// The output to pool; empty takes the model's first output.
    pub output: String,
    /// Embeddings, or reranking of pairs.
    pub task: EncoderTask,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            pooling: None,
            normalize: true,
            max_tokens: 256,
            truncate: false,
            max_batch_tokens: 16_384,
            output: String::new(),
            task: EncoderTask::Embed,
        }
    }
}

impl EmbeddingConfig {
    /// Checks the bounds; the message names the field, the bound and the value.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_tokens == 0 || self.max_tokens > 65_536 {
            return Err(format!("embedding.max_tokens must be between 1 and 65536, got {}", self.max_tokens));
        }
        if self.max_batch_tokens < self.max_tokens {
            return Err(format!(
                "embedding.max_batch_tokens must be at least embedding.max_tokens ({}), got {}",
                self.max_tokens, self.max_batch_tokens
            ));
        }
        Ok(())
    }
}
