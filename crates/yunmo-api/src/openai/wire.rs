//! OpenAI API wire types (requests are parsed leniently: unknown fields are ignored, as OpenAI clients send
//! many optional ones; fields we cannot honour are refused by name).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A string or a list of strings (`stop`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl StringOrList {
    /// As a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(one) => vec![one],
            StringOrList::Many(many) => many,
        }
    }
}

/// Sampling fields shared by chat, completions and the V2 generate extension.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sampling {
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Newer name of `max_tokens` (chat).
    pub max_completion_tokens: Option<u32>,
    /// 0 to 2; 0 is greedy. Default 1.
    pub temperature: Option<f32>,
    /// Nucleus mass, (0, 1]. Default 1.
    pub top_p: Option<f32>,
    /// Keep the k most likely tokens; 0 or -1 is off (vLLM's extension).
    pub top_k: Option<i64>,
    /// Seed for reproducible sampling.
    pub seed: Option<i64>,
    /// Stop strings.
    pub stop: Option<StringOrList>,
    /// -2 to 2.
    pub presence_penalty: Option<f32>,
    /// -2 to 2.
    pub frequency_penalty: Option<f32>,
    /// Choices per prompt.
    pub n: Option<u32>,
    /// Stream Server-Sent Events.
    pub stream: Option<bool>,
    /// `{"include_usage": true}` adds a last chunk with usage.
    pub stream_options: Option<StreamOptions>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model name, optionally `name:version`.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessageIn>,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Return log-probabilities of the chosen tokens.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// Alternatives per position, 0 to 20 (needs `logprobs`).
    pub top_logprobs: Option<u32>,
    /// Only `{"type": "text"}` is supported.
    pub response_format: Option<Value>,
    /// Tool definitions (not supported).
    pub tools: Option<Vec<Value>>,
}

/// One message in.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessageIn {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, a list of parts, or null.
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// Message content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Parts; only `{"type": "text", "text": ...}` is supported.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// `text` (others are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// Model name.
    pub model: String,
    /// A string, strings, token ids, or lists of token ids.
    pub prompt: PromptIn,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Return the prompt before the completion.
    #[serde(default)]
    pub echo: bool,
    /// Log-probabilities of the chosen token and this many alternatives (0 to 20).
    pub logprobs: Option<u32>,
    /// Text after the completion (not supported).
    pub suffix: Option<String>,
}

/// `prompt` of a completion.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PromptIn {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One list of token ids.
    Tokens(Vec<u32>),
    /// Several lists of token ids.
    TokenLists(Vec<Vec<u32>>),
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingRequest {
    /// Model name.
    pub model: String,
    /// A string, strings, token ids, or lists of token ids.
    pub input: PromptIn,
    /// `float` (default) or `base64` (little-endian f32).
    pub encoding_format: Option<String>,
    /// Length of the vectors, where the model allows it.
    pub dimensions: Option<usize>,
}

/// `POST /v1/tokenize` (vLLM's extension): a prompt or a conversation, as the model tokenizes it.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenizeRequest {
    /// Model name.
    pub model: String,
    /// Text to tokenize as a completion prompt.
    pub prompt: Option<String>,
    /// A conversation to render with the chat template and tokenize.
    pub messages: Option<Vec<ChatMessageIn>>,
}

/// `usage`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UsageOut {
    /// Tokens read.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Sum.
    pub total_tokens: u64,
}

impl From<yunmo_types::Usage> for UsageOut {
    fn from(usage: yunmo_types::Usage) -> Self {
        UsageOut { prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens, total_tokens: usage.total_tokens() }
    }
}
