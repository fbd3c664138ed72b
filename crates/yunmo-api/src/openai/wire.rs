//! OpenAI API wire types. Every field a request may carry is either honoured, or accepted only with the value
//! that asks for nothing (`store: false`, `function_call: "none"`, …), or refused by name: unknown fields
//! are refused as OpenAI itself refuses them ([`super::fields`]). Nothing is accepted and ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fields of a request that no named field took; [`super::fields::check`] decides on each.
pub type Extra = serde_json::Map<String, Value>;

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
    /// vLLM's and llama.cpp's repetition penalty, (0, 2]: a generated token's positive logit is divided by
    /// it, a negative one multiplied. 1 is off.
    pub repetition_penalty: Option<f32>,
    /// Choices per prompt.
    pub n: Option<u32>,
    /// Stream Server-Sent Events.
    pub stream: Option<bool>,
    /// `{"include_usage": true}` adds a last chunk with usage.
    pub stream_options: Option<StreamOptions>,
    /// Token id (as a string) to a bias from -100 to 100 added to its logit before sampling.
    pub logit_bias: Option<BTreeMap<String, f32>>,
}

impl Sampling {
    /// The names of these fields (the V2 generate extension checks its `parameters` against them).
    pub const FIELDS: [&'static str; 14] = [
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "n",
        "stream",
        "stream_options",
        "logit_bias",
    ];
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Structured output: `{"type": "text" | "json_object" | "json_schema", ...}`.
    pub response_format: Option<Value>,
    /// Functions the model may call: `{"type": "function", "function": {"name", "description", "parameters"}}`.
    pub tools: Option<Vec<Value>>,
    /// `"none"`, `"auto"` (the default with tools), `"required"`, or `{"type": "function", "function": {"name"}}`.
    pub tool_choice: Option<Value>,
    /// Whether one answer may hold several calls (default true).
    pub parallel_tool_calls: Option<bool>,
    /// More variables for the model's chat template (vLLM's field), such as `{"enable_thinking": false}`.
    pub chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One message in.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessageIn {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text, a list of parts, or null.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// An assistant's calls.
    pub tool_calls: Option<Vec<ToolCallIn>>,
    /// A `tool` message's answer to this call.
    pub tool_call_id: Option<String>,
    /// A participant's or a tool's name.
    pub name: Option<String>,
    /// Every other field (accepted only when null or empty, as clients echo `refusal: null` and the like).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One call in an assistant message.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolCallIn {
    /// The call's id, which the `tool` message answering it repeats.
    #[serde(default)]
    pub id: Option<String>,
    /// `function`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The function and its arguments.
    pub function: FunctionCallIn,
}

/// `tool_calls[].function`.
#[derive(Debug, Clone, Deserialize)]
pub struct FunctionCallIn {
    /// The function's name.
    pub name: String,
    /// Its arguments: a JSON object, as text.
    pub arguments: String,
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
    /// Structured output, as on chat completions (an extension of vLLM's and Yunmo's).
    pub response_format: Option<Value>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Extra,
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
    /// Every other field.
    #[serde(flatten)]
    pub extra: Extra,
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
    /// Every other field.
    #[serde(flatten)]
    pub extra: Extra,
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
    /// Of the prompt tokens, those read from the prefix cache.
    pub prompt_tokens_details: PromptTokensDetails,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV cells an earlier request with the same prefix left (not computed again).
    pub cached_tokens: u64,
}

impl From<yunmo_types::Usage> for UsageOut {
    fn from(usage: yunmo_types::Usage) -> Self {
        UsageOut {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens(),
            prompt_tokens_details: PromptTokensDetails { cached_tokens: usage.cached_tokens },
        }
    }
}
