//! Text generation: prompts (text, token ids or a chat rendered with the model's template) are tokenised
//! and checked against the context, then streamed from the model's engine. A [`Generation`] records
//! time to first token, inter-token latency and token usage, once, when it ends or is dropped.

use std::sync::Arc;
use std::time::Instant;

use yunmo_backend::{GenerateEvent, GenerateRequest, Grammar};
use yunmo_text::chat::{Chat, SpecialTokens};
use yunmo_text::tool_calls::Family;
use yunmo_text::tools::Tools;
use yunmo_types::{Constraint, GenerateParams, Usage};

use crate::loaded::LoadedModel;
use crate::{InferenceService, ServiceError, metrics};

/// What to generate from.
#[derive(Debug, Clone)]
pub enum PromptInput {
    /// Raw text; special tokens written in it are parsed.
    Text(String),
    /// Token ids as they are.
    Tokens(Vec<u32>),
    /// A conversation, rendered with the chat template (with its `kwargs` as more template variables) and
    /// opened for the assistant's reply, offering these tools: through the template's `tools` when it
    /// renders tools, else described in a system message ([`yunmo_text::tools::without_tool_support`]).
    Chat(Chat, Option<Arc<Tools>>),
}

/// How the answer to a prompt that offers tools writes its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolFormat {
    /// The call format.
    pub family: Family,
    /// Whether the model's own template offered the tools (else Yunmo's system message did, in the Hermes
    /// format, and only a grammar makes the model follow it).
    pub native: bool,
}

/// A tokenised prompt bound to the loaded model that will run it.
pub struct Prompt {
    loaded: Arc<LoadedModel>,
    /// Model name.
    pub model: String,
    /// Version.
    pub version: u64,
    /// The text given to the tokenizer (the rendered template for chats; empty for token input).
    pub text: String,
    /// Token ids.
    pub tokens: Vec<u32>,
    /// Tokens one sequence may hold.
    pub context: u32,
    /// For a chat whose template thinks in `<think>...</think>`: whether the rendered prompt already opened
    /// the thinking section (`Some(true)`: the answer starts inside it). `None`: no thinking to split off.
    pub thinking: Option<bool>,
    /// For a chat that offers tools: the format its calls come in.
    pub tool_format: Option<ToolFormat>,
    /// Set once a generation from this prompt has counted its tokens: with `n` choices the prompt is
    /// counted (metrics and usage records) once, as the response's `usage` counts it.
    prompt_counted: std::sync::atomic::AtomicBool,
    /// Where generations from this prompt add their tokens and time (the request's usage record).
    pub(crate) usage: Option<crate::UsageCell>,
    /// The request's span: a generation's last log line is written in it wherever the stream is dropped.
    pub(crate) span: tracing::Span,
}

/// Bounds of sampling parameters (OpenAI's, where it has them).
pub mod bounds {
    /// Most alternatives per position for `top_logprobs`.
    pub const MAX_TOP_LOGPROBS: u32 = 20;
    /// Most stop strings.
    pub const MAX_STOP: usize = 16;
    /// Most tokens in `logit_bias` (OpenAI's bound).
    pub const MAX_LOGIT_BIAS: usize = 300;
}

/// Checks `params`; the message names the field, the bound and the value.
pub fn validate_params(params: &GenerateParams) -> Result<(), ServiceError> {
    let check = |ok: bool, message: String| {
        if ok { Ok(()) } else { Err(ServiceError::invalid(message)) }
    };
    check((0.0..=2.0).contains(&params.temperature), format!("temperature must be between 0 and 2, got {}", params.temperature))?;
    check(params.top_p > 0.0 && params.top_p <= 1.0, format!("top_p must be greater than 0 and at most 1, got {}", params.top_p))?;
    check(
        (-2.0..=2.0).contains(&params.presence_penalty),
        format!("presence_penalty must be between -2 and 2, got {}", params.presence_penalty),
    )?;
    check(
        (-2.0..=2.0).contains(&params.frequency_penalty),
        format!("frequency_penalty must be between -2 and 2, got {}", params.frequency_penalty),
    )?;
    check(
        params.repetition_penalty > 0.0 && params.repetition_penalty <= 2.0,
        format!("repetition_penalty must be greater than 0 and at most 2, got {}", params.repetition_penalty),
    )?;
    check(
        params.logprobs.is_none_or(|n| n <= bounds::MAX_TOP_LOGPROBS),
        format!("top_logprobs must be between 0 and {}, got {:?}", bounds::MAX_TOP_LOGPROBS, params.logprobs.unwrap_or(0)),
    )?;
    check(
        params.logit_bias.len() <= bounds::MAX_LOGIT_BIAS,
        format!("logit_bias may hold at most {} tokens, got {}", bounds::MAX_LOGIT_BIAS, params.logit_bias.len()),
    )?;
    if let Some((token, bias)) = params.logit_bias.iter().find(|(_, bias)| !(-100.0..=100.0).contains(bias)) {
        return Err(ServiceError::invalid(format!("logit_bias of token {token} must be between -100 and 100, got {bias}")));
    }
    check(params.stop.len() <= bounds::MAX_STOP, format!("stop may hold at most {} strings, got {}", bounds::MAX_STOP, params.stop.len()))?;
    check(params.max_tokens >= 1, format!("max_tokens must be at least 1, got {}", params.max_tokens))
}

impl InferenceService {
    /// Resolves and loads a text-generation model and tokenises the prompt for it.
    /// The prompt's generations are metered on `call`'s usage record.
    pub async fn prepare_prompt(&self, call: &crate::Call, target: &crate::Target, input: PromptInput) -> Result<Prompt, ServiceError> {
        target.permits(call, yunmo_auth::Action::Infer)?;
        let mut prompt = self.build_prompt(target, input).await?;
        prompt.usage = call.usage.clone();
        prompt.span = call.span.clone();
        Ok(prompt)
    }

    /// The tokens the model would read for `input` and the context per sequence they go into, for a
    /// caller that may read the model. Not a [`Prompt`]: nothing can be generated from it.
    pub async fn tokenize(&self, call: &crate::Call, target: &crate::Target, input: PromptInput) -> Result<(Vec<u32>, u32), ServiceError> {
        target.permits(call, yunmo_auth::Action::Read)?;
        let prompt = self.build_prompt(target, input).await?;
        Ok((prompt.tokens, prompt.context))
    }

    async fn build_prompt(&self, target: &crate::Target, input: PromptInput) -> Result<Prompt, ServiceError> {
        let version = self.resolve(target.name(), target.version()).await?;
        let loaded = self.loaded(&version).await?;
        let generator = loaded.generator().ok_or_else(|| {
            let what = match loaded.config.embedding.as_ref().map(|embedding| embedding.task) {
                Some(yunmo_types::EncoderTask::Rerank) => "it is a reranker: /v1/rerank and /v1/score serve it".to_string(),
                Some(yunmo_types::EncoderTask::Embed) => "it is an embedding model: /v1/embeddings serves it".to_string(),
                None => format!("its format is {}", version.format),
            };
            ServiceError::invalid(format!("model '{}' does not generate text ({what})", version.model))
        })?;
        let mut thinking = None;
        let mut tool_format = None;
        let (text, tokens) = match input {
            PromptInput::Tokens(tokens) => (String::new(), tokens),
            PromptInput::Text(text) => {
                let tokens = generator.tokenize(&text, true)?;
                (text, tokens)
            }
            PromptInput::Chat(mut chat, tools) => {
                let template = loaded.chat_template.as_ref().map_err(|reason| {
                    ServiceError::invalid(format!(
                        "model '{}' has no chat template ({reason}); use /v1/completions or set chat_template in the version config",
                        version.model
                    ))
                })?;
                let info = generator.info();
                let special = SpecialTokens { bos_token: info.bos_token.clone(), eos_token: info.eos_token.clone() };
                let tools = tools.filter(|tools| !tools.is_empty());
                match template.tool_family() {
                    Some(family) => {
                        chat.tools = tools.as_ref().map(|tools| tools.specs().to_vec()).unwrap_or_default();
                        tool_format = tools.is_some().then_some(ToolFormat { family, native: true });
                    }
                    None => {
                        chat.messages = yunmo_text::tools::without_tool_support(std::mem::take(&mut chat.messages), tools.as_deref());
                        tool_format = tools.is_some().then_some(ToolFormat { family: Family::Hermes, native: false });
                    }
                }
                let rendered = template.render_chat(&chat, &special, true).map_err(|error| ServiceError::invalid(error.to_string()))?;
                thinking = template.thinks().then(|| rendered.trim_end().ends_with("<think>"));
                // The template writes BOS itself when the model wants one.
                let mut tokens = generator.tokenize(&rendered, true)?;
                if info.add_bos && rendered.starts_with(&info.bos_token) && tokens.len() >= 2 && tokens[0] == tokens[1] {
                    tokens.remove(0);
                }
                (rendered, tokens)
            }
        };
        let context = generator.info().context_per_sequence;
        Ok(Prompt {
            model: version.model.clone(),
            version: version.version,
            text,
            tokens,
            context,
            thinking,
            tool_format,
            loaded,
            prompt_counted: Default::default(),
            usage: None,
            span: tracing::Span::none(),
        })
    }

    /// Compiles `constraint` for the prompt's model, on the blocking pool (a schema may take milliseconds);
    /// a schema or grammar the model cannot enforce is an `invalid_request` naming what is unsupported.
    pub async fn constrain(&self, prompt: &Prompt, constraint: Constraint) -> Result<Grammar, ServiceError> {
        let loaded = prompt.loaded.clone();
        tokio::task::spawn_blocking(move || {
            let generator = loaded.generator().expect("prepare_prompt checked. This is a bug.");
            generator.constrain(&constraint)
        })
        .await
        .map_err(|error| ServiceError::internal(format!("compiling the output grammar failed: {error}")))?
        .map_err(|error| match error {
            yunmo_backend::BackendError::InvalidInput(message) => ServiceError::invalid(message),
            other => other.into(),
        })
    }

    /// Starts generating, constrained by `grammar` (from [`InferenceService::constrain`] with the same prompt)
    /// when given. `max_tokens: None` allows the rest of the context.
    pub fn generate(
        &self,
        prompt: &Prompt,
        max_tokens: Option<u32>,
        mut params: GenerateParams,
        grammar: Option<Grammar>,
    ) -> Result<Generation, ServiceError> {
        let room = prompt.context.saturating_sub(prompt.tokens.len() as u32);
        params.max_tokens = match max_tokens {
            Some(requested) if requested > room => {
                return Err(ServiceError::invalid(format!(
                    "this model's context per sequence is {} tokens; the prompt has {} and max_tokens asks for {requested} more (at most {room})",
                    prompt.context,
                    prompt.tokens.len()
                )));
            }
            Some(requested) => requested,
            None => room,
        };
        validate_params(&params)?;
        let generator = prompt.loaded.generator().expect("prepare_prompt checked. This is a bug.");
        let events = generator.submit(GenerateRequest { prompt: prompt.tokens.clone(), params, grammar }).inspect_err(|error| {
            if matches!(error, yunmo_backend::BackendError::Runtime(_)) {
                self.models().forget_instance(&prompt.loaded);
            }
        })?;
        let model = prompt.model.clone();
        let first = !prompt.prompt_counted.swap(true, std::sync::atomic::Ordering::Relaxed);
        let prompt_tokens = if first { prompt.tokens.len() as u64 } else { 0 };
        let metrics = prompt.loaded.llm_metrics.clone().unwrap_or_else(|| metrics::LlmMetrics::new(&model, prompt.loaded.key.1));
        metrics.prompt.increment(prompt_tokens);
        Ok(Generation {
            events,
            record: UsageRecord {
                loaded: prompt.loaded.clone(),
                model,
                version: prompt.version,
                started: Instant::now(),
                first_token: None,
                last_token: None,
                usage: Usage { prompt_tokens, completion_tokens: 0, cached_tokens: 0 },
                outcome: None,
                ending: None,
                finish_reason: None,
                cell: prompt.usage.clone(),
                metrics,
                span: prompt.span.clone(),
            },
        })
    }
}

/// A running generation. Dropping it cancels the sequence.
pub struct Generation {
    events: flume::Receiver<GenerateEvent>,
    record: UsageRecord,
}

impl Generation {
    /// The next event; `None` after the last.
    pub async fn next(&mut self) -> Option<GenerateEvent> {
        if self.record.outcome.is_some() {
            return None;
        }
        let event = match self.events.recv_async().await {
            Ok(event) => event,
            Err(_) => GenerateEvent::Failed(yunmo_backend::BackendError::Inference("the engine stopped".into())),
        };
        let now = Instant::now();
        match &event {
            GenerateEvent::Chunk(_) => {
                match self.record.last_token {
                    None => {
                        self.record.metrics.ttft.record((now - self.record.started).as_secs_f64());
                        self.record.loaded.stats.record_token(true, now - self.record.started);
                    }
                    Some(last) => {
                        self.record.metrics.itl.record((now - last).as_secs_f64());
                        self.record.loaded.stats.record_token(false, now - last);
                    }
                }
                self.record.first_token.get_or_insert(now);
                self.record.last_token = Some(now);
                self.record.usage.completion_tokens += 1;
            }
            GenerateEvent::Finished { usage, reason } => {
                self.record.finish_reason = Some(reason.as_str());
                // The prompt is counted by the first choice only (see `Prompt`).
                self.record.usage.completion_tokens = usage.completion_tokens;
                self.record.usage.cached_tokens = usage.cached_tokens;
                self.record.outcome = Some("ok");
                self.record.ending = Some(crate::stats::Ending::Ok);
            }
            GenerateEvent::Failed(error) => {
                let code = ServiceError::from(error.clone()).code;
                self.record.outcome = Some(code.as_str());
                self.record.ending = Some(crate::stats::Ending::of(code));
            }
        }
        Some(event)
    }

    /// Tokens counted for metering so far (final once the stream has ended); the prompt is counted by the
    /// first generation of a [`Prompt`] only.
    pub fn usage(&self) -> Usage {
        self.record.usage
    }
}

/// Metrics and the usage line of one generation, written once on drop.
struct UsageRecord {
    /// Keeps the model loaded while the stream is read; its live statistics count the generation.
    loaded: Arc<LoadedModel>,
    model: String,
    version: u64,
    started: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    usage: Usage,
    outcome: Option<&'static str>,
    /// How it ended, for the live statistics (`None`: still running, or dropped by its client).
    ending: Option<crate::stats::Ending>,
    /// Why it finished (`stop`, `length`, ...), once it has.
    finish_reason: Option<&'static str>,
    cell: Option<crate::UsageCell>,
    metrics: metrics::LlmMetrics,
    span: tracing::Span,
}

impl Drop for UsageRecord {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or("cancelled");
        if let Some(cell) = &self.cell {
            cell.set_model(&self.model, self.version);
            cell.add_tokens(self.usage.prompt_tokens, self.usage.completion_tokens);
            cell.add_time_us(0, self.started.elapsed().as_micros() as u64);
        }
        self.metrics.generated.increment(self.usage.completion_tokens);
        self.metrics.cached.increment(self.usage.cached_tokens);
        if self.finish_reason.is_some() {
            self.metrics.lookups[usize::from(self.usage.cached_tokens == 0)].increment(1);
        }
        self.metrics.ended(outcome);
        let ending = self.ending.unwrap_or(crate::stats::Ending::Cancelled);
        if let (Some(reason), Some(watch)) = (self.finish_reason, self.loaded.drift.as_ref().filter(|watch| watch.sampled())) {
            watch.submit_sample(yunmo_drift::extract::generation(self.usage.prompt_tokens, self.usage.completion_tokens, reason));
        }
        self.loaded.stats.record(ending, self.started.elapsed(), self.usage.completion_tokens);
        if ending == crate::stats::Ending::Ok {
            self.loaded.stats.totals.generated();
        }
        if let (Some(first), Some(last)) = (self.first_token, self.last_token) {
            let decode = (last - first).as_secs_f64();
            if self.usage.completion_tokens > 1 && decode > 0.0 {
                self.metrics.tokens_per_second.record((self.usage.completion_tokens - 1) as f64 / decode);
            }
        }
        // A stream is often dropped outside the request's task (the response body outlives the handler).
        let _request = self.span.enter();
        tracing::info!(
            target: "yunmo::usage",
            model = %self.model, version = self.version, outcome,
            prompt_tokens = self.usage.prompt_tokens, completion_tokens = self.usage.completion_tokens,
            seconds = self.started.elapsed().as_secs_f64(),
            "Generation ended."
        );
    }
}
