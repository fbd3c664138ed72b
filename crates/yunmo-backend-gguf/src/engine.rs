//! The engine thread of one loaded GGUF model: admits requests into sequence slots, runs one llama.cpp
//! decode per step for all of them, samples, streams text and frees slots of finished or cancelled
//! sequences.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use yunmo_backend::{BackendError, GenerateBackend, GenerateEvent, GenerateInfo, GenerateRequest, GenerateStats, Grammar};
use yunmo_types::{Constraint, FinishReason, FlashAttention, KvCacheType, TextChunk, TokenLogprob, Usage};

use crate::GgufConfig;
use crate::grammar::{Constrained, Grammars};
use crate::plan::{Boundaries, Chunk, Phase, plan_step};
use crate::prefix::SlotCache;
use crate::sampler::Sampler;
use crate::text::TextAssembler;

/// Front of a running engine; dropping it stops the engine thread once its queue is empty.
pub struct Engine {
    model: Arc<LlamaModel>,
    info: GenerateInfo,
    sender: flume::Sender<Pending>,
    counters: Arc<Counters>,
    queue_capacity: usize,
    /// The grammar compiler, built on the first constrained request (a walk over the vocabulary).
    grammars: OnceLock<Result<Grammars, BackendError>>,
}

#[derive(Default)]
struct Counters {
    running: AtomicUsize,
    waiting: AtomicUsize,
    kv_used: AtomicU64,
}

struct Pending {
    request: GenerateRequest,
    grammar: Option<Constrained>,
    events: flume::Sender<GenerateEvent>,
}

impl Engine {
    /// Creates the context on a new thread and returns once it is ready.
    pub fn start(model: Arc<LlamaModel>, config: GgufConfig) -> Result<Self, BackendError> {
        let mut info = describe(&model, &config);
        let counters = Arc::new(Counters::default());
        let (sender, receiver) = flume::unbounded();
        let (ready_sender, ready_receiver) = std::sync::mpsc::channel();
        let thread_model = model.clone();
        let thread_counters = counters.clone();
        let thread_config = config.clone();
        // Counted until the engine has dropped its context: the process waits for it before exiting.
        let alive = yunmo_backend::threads::RuntimeThread::register();
        std::thread::Builder::new()
            .name("yunmo-llm-engine".into())
            .spawn(move || {
                let _alive = alive;
                engine_thread(thread_model, thread_config, receiver, thread_counters, ready_sender);
            })
            .map_err(|error| BackendError::Runtime(format!("cannot start the engine thread: {error}")))?;
        info.invariant_rows =
            ready_receiver.recv().map_err(|_| BackendError::Runtime("the engine thread died while starting".into()))?? as u32;
        Ok(Engine { model, info, sender, counters, queue_capacity: config.queue_capacity, grammars: OnceLock::new() })
    }
}

/// llama.cpp's type of a KV-cache element type.
fn kv_type(kind: KvCacheType) -> llama_cpp_2::context::params::KvCacheType {
    use llama_cpp_2::context::params::KvCacheType as Llama;
    match kind {
        KvCacheType::F16 => Llama::F16,
        KvCacheType::Q8_0 => Llama::Q8_0,
        KvCacheType::Q4_0 => Llama::Q4_0,
    }
}

fn describe(model: &LlamaModel, config: &GgufConfig) -> GenerateInfo {
    let vocab = model.vocab();
    let special_text = |token: LlamaToken| String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned();
    let n_ctx = u64::from(config.max_sequences) * u64::from(config.context_per_sequence);
    let head_dim = (model.n_embd().max(1) as u64) / u64::from(model.n_head().max(1));
    // K and V for every layer, KV head and cell, in the cache's element type.
    let elements = 2 * u64::from(model.n_layer()) * n_ctx * u64::from(model.n_head_kv()) * head_dim;
    let kv_bytes = elements * config.options.kv_cache_type.bytes_per_32() / 32;
    GenerateInfo {
        architecture: model.meta_val_str("general.architecture").unwrap_or_default(),
        context_per_sequence: config.context_per_sequence,
        max_sequences: config.max_sequences,
        chat_template: model.chat_template(None).ok().and_then(|template| template.to_string().ok()),
        bos_token: special_text(vocab.bos()),
        eos_token: special_text(vocab.eos()),
        add_bos: vocab.should_add_bos(),
        memory_bytes: model.size() + kv_bytes,
        invariant_rows: 0,
    }
}

impl GenerateBackend for Engine {
    fn info(&self) -> &GenerateInfo {
        &self.info
    }

    fn tokenize(&self, text: &str, special: bool) -> Result<Vec<u32>, BackendError> {
        let tokens = self.model.vocab().tokenize(text.as_bytes(), special, special);
        Ok(tokens.into_iter().map(|token| token.0 as u32).collect())
    }

    fn submit(&self, request: GenerateRequest) -> Result<flume::Receiver<GenerateEvent>, BackendError> {
        let context = self.info.context_per_sequence as usize;
        if request.prompt.is_empty() {
            return Err(BackendError::InvalidInput("the prompt is empty (0 tokens)".into()));
        }
        if request.prompt.len() >= context {
            return Err(BackendError::InvalidInput(format!(
                "the prompt has {} tokens; the context per sequence holds {context} (backends.gguf.context_per_sequence), prompt and at least one generated token included",
                request.prompt.len()
            )));
        }
        let n_vocab = self.model.n_vocab() as u32;
        if let Some(bad) = request.prompt.iter().find(|token| **token >= n_vocab) {
            return Err(BackendError::InvalidInput(format!("token id {bad} is out of the vocabulary (0..{n_vocab})")));
        }
        if let Some((bad, _)) = request.params.logit_bias.iter().find(|(token, _)| *token >= n_vocab) {
            return Err(BackendError::InvalidInput(format!("logit_bias: token id {bad} is out of the vocabulary (0..{n_vocab})")));
        }
        let grammar = request.grammar.as_ref().map(Constrained::start).transpose()?;
        if self.counters.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue_capacity {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(BackendError::Overloaded(format!(
                "{} requests are waiting for a sequence slot, the queue_capacity; retry later",
                self.queue_capacity
            )));
        }
        let (events, receiver) = flume::unbounded();
        self.sender.send(Pending { request, grammar, events }).map_err(|_| {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            BackendError::Runtime("the engine has stopped".into())
        })?;
        Ok(receiver)
    }

    fn stats(&self) -> GenerateStats {
        GenerateStats {
            running: self.counters.running.load(Ordering::Relaxed),
            waiting: self.counters.waiting.load(Ordering::Relaxed),
            kv_cells_used: self.counters.kv_used.load(Ordering::Relaxed),
            kv_cells_total: u64::from(self.info.max_sequences) * u64::from(self.info.context_per_sequence),
        }
    }

    fn constrain(&self, constraint: &Constraint) -> Result<Grammar, BackendError> {
        let grammars = self.grammars.get_or_init(|| Grammars::new(self.model.clone()));
        grammars.as_ref().map_err(Clone::clone)?.compile(constraint)
    }
}

/// How a sequence ends.
enum Ending {
    Finished(FinishReason),
    Failed(BackendError),
}

/// One admitted request.
struct Sequence {
    slot: i32,
    prompt: Vec<u32>,
    /// The tokens in the slot's KV cells, in order (prompt, then generated): kept with the slot when the
    /// sequence ends, for the next request that shares a prefix.
    history: Vec<u32>,
    /// Prompt tokens whose cells were already in the slot.
    cached: usize,
    /// Leading cells computed by whole aligned prefill chunks (reusable by the prefix cache).
    exact: usize,
    /// Tokens already in the KV cache (the next position).
    n_past: usize,
    /// Prompt tokens fed so far.
    n_prefilled: usize,
    /// The sampled token that must be fed next, once the prompt is in.
    next: Option<u32>,
    n_generated: usize,
    max_tokens: usize,
    sampler: Sampler,
    /// The grammar the output follows, if constrained.
    grammar: Option<Constrained>,
    text: TextAssembler,
    want_logprobs: bool,
    /// Control tokens are written into the text ([`yunmo_types::GenerateParams::special_tokens`]).
    special_tokens: bool,
    events: flume::Sender<GenerateEvent>,
}

impl Sequence {
    fn phase(&self) -> Phase {
        match self.next {
            Some(_) => Phase::Decode,
            None => Phase::Prefill { done: self.n_prefilled, total: self.prompt.len() },
        }
    }
}

struct State<'m> {
    model: &'m LlamaModel,
    context: LlamaContext<'m>,
    counters: Arc<Counters>,
    config: GgufConfig,
    waiting: VecDeque<Pending>,
    running: Vec<Sequence>,
    free_slots: Vec<i32>,
    /// What each slot's cells hold (by slot).
    caches: Vec<SlotCache>,
    /// Counts releases, to order slots by when they were freed.
    releases: u64,
    /// Tokens of a prefill chunk (`backends.gguf.prefill_chunk`).
    chunk: usize,
    /// Most tokens that consecutive chunks of one sequence are decoded together in (0: each alone), as
    /// `merge::probe` measured this model's kernels.
    merge: usize,
    /// By token id: the end-of-turn tokens (llama.cpp's end-of-generation set), after which a prefill chunk
    /// ends: each chat message closes with one.
    marks: Vec<bool>,
}

fn engine_thread(
    model: Arc<LlamaModel>,
    config: GgufConfig,
    requests: flume::Receiver<Pending>,
    counters: Arc<Counters>,
    ready: std::sync::mpsc::Sender<Result<usize, BackendError>>,
) {
    let threads = if config.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { config.threads };
    let n_ctx = config.max_sequences * config.context_per_sequence;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(config.batch_tokens)
        .with_n_ubatch(config.batch_tokens)
        .with_n_seq_max(config.max_sequences)
        .with_kv_unified(false)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32)
        .with_type_k(kv_type(config.options.kv_cache_type))
        .with_type_v(kv_type(config.options.kv_cache_type));
    // Flash attention: llama.cpp reads a quantised V cache only in its flash-attention kernels, so they are
    // required there (the version config refuses `off` with one); for an f16 cache the version chooses, and
    // `auto` leaves it to llama.cpp (on for the CPU, where an f16 cache takes Yunmo's kernel, ggml/). Plain
    // attention decodes short contexts slower (docs/llm.md).
    let policy = match (config.options.kv_cache_type, config.options.flash_attention) {
        (KvCacheType::F16, FlashAttention::Auto) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
        (KvCacheType::F16, FlashAttention::Off) => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        _ => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
    };
    let params = params.with_flash_attention_policy(policy);
    let backend = match crate::backend() {
        Ok(backend) => backend,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let mut context = match model.new_context(backend, params) {
        Ok(context) => context,
        Err(error) => {
            let _ = ready.send(Err(BackendError::Runtime(format!("llama.cpp could not create a context of {n_ctx} tokens: {error}"))));
            return;
        }
    };
    let merge = crate::merge::probe(&model, &mut context, config.batch_tokens as usize);
    tracing::info!(rows = merge, "Prefill chunks decode together up to this many rows (0: each alone; the kernels differ by batch shape).");
    let _ = ready.send(Ok(merge));
    let mut state = State {
        model: &model,
        context,
        counters,
        free_slots: (0..config.max_sequences as i32).rev().collect(),
        caches: vec![SlotCache::default(); config.max_sequences as usize],
        releases: 0,
        chunk: config.prefill_chunk as usize,
        merge,
        marks: (0..model.n_vocab()).map(|id| model.vocab().is_eog(LlamaToken(id))).collect(),
        config,
        waiting: VecDeque::new(),
        running: Vec::new(),
    };
    let mut batch = LlamaBatch::new(state.config.batch_tokens as usize, 1);
    loop {
        if state.running.is_empty() && state.waiting.is_empty() {
            match requests.recv() {
                Ok(pending) => state.waiting.push_back(pending),
                Err(_) => break,
            }
        }
        state.waiting.extend(requests.try_iter());
        // A panic in one step (sampling, text assembly, a bug) fails the sequences in it, not the engine:
        // the next request still finds a working model.
        let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.turn(&mut batch)));
        if let Err(payload) = turn {
            state.recover(&panic_message(payload.as_ref()));
        }
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_string(),
    }
}

impl State<'_> {
    /// One round: drops cancelled requests, admits waiting ones into free slots and decodes one step.
    fn turn(&mut self, batch: &mut LlamaBatch) {
        self.drop_cancelled();
        self.admit();
        if !self.running.is_empty() {
            self.step(batch);
        }
    }

    /// After a panic inside [`State::turn`]: fails every running sequence with an error naming the panic,
    /// empties the KV cache and frees every slot. Requests still waiting are served next.
    fn recover(&mut self, message: &str) {
        tracing::error!(panic = %message, sequences = self.running.len(), "The engine panicked; its running sequences fail and it goes on.");
        let error = BackendError::Inference(format!("the engine panicked ({message}); the sequence was stopped"));
        let failed: Vec<Sequence> = self.running.drain(..).collect();
        // Free everything first, so that stats read after the last event already show it free.
        self.context.clear_kv_cache();
        self.free_slots = (0..self.config.max_sequences as i32).rev().collect();
        self.caches.iter_mut().for_each(|cache| cache.tokens.clear());
        self.publish();
        for sequence in failed {
            let _ = sequence.events.send(GenerateEvent::Failed(error.clone()));
        }
    }

    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|pending| !pending.events.is_disconnected());
        self.counters.waiting.fetch_sub(before - self.waiting.len(), Ordering::AcqRel);
        let mut index = 0;
        while index < self.running.len() {
            if self.running[index].events.is_disconnected() {
                let sequence = self.running.swap_remove(index);
                tracing::debug!(slot = sequence.slot, generated = sequence.n_generated, "Sequence cancelled by its client.");
                self.release(sequence, true);
            } else {
                index += 1;
            }
        }
    }

    fn admit(&mut self) {
        while !self.waiting.is_empty() && !self.free_slots.is_empty() {
            let pending = self.waiting.pop_front().expect("checked non-empty");
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            let boundaries = Boundaries { chunk: self.chunk, marks: &self.marks };
            let prompt = &pending.request.prompt;
            let merge = self.merge;
            let reuse = |cache: &SlotCache, n: usize| crate::prefix::reusable(cache, prompt, n, &boundaries, merge);
            let (at, shared) = crate::prefix::pick(&self.free_slots, &self.caches, prompt, reuse);
            let slot = self.free_slots.swap_remove(at);
            let mut history = std::mem::take(&mut self.caches[slot as usize].tokens);
            let mut cached = if self.config.prefix_cache { shared } else { 0 };
            if history.len() > cached {
                // The cells past the shared prefix hold another text: dropped before this one is written.
                // A memory that cannot drop part of a sequence (recurrent models) answers false: it starts over.
                let dropped = self.context.clear_kv_cache_seq(Some(slot as u32), Some(cached as u32), None);
                if !matches!(dropped, Ok(true)) {
                    tracing::debug!(slot, ?dropped, "Could not drop a slot's KV cells past its shared prefix; clearing it all.");
                    let _ = self.context.clear_kv_cache_seq(Some(slot as u32), None, None);
                    cached = 0;
                }
                history.truncate(cached);
            }
            let room = self.config.context_per_sequence as usize - pending.request.prompt.len();
            let params = &pending.request.params;
            self.running.push(Sequence {
                slot,
                max_tokens: (params.max_tokens as usize).min(room),
                sampler: Sampler::new(params),
                grammar: pending.grammar,
                text: TextAssembler::new(&params.stop),
                want_logprobs: params.logprobs.is_some(),
                special_tokens: params.special_tokens,
                prompt: pending.request.prompt,
                history,
                cached,
                exact: cached,
                n_past: cached,
                n_prefilled: cached,
                next: None,
                n_generated: 0,
                events: pending.events,
            });
        }
        self.publish();
    }

    fn publish(&self) {
        self.counters.running.store(self.running.len(), Ordering::Relaxed);
        self.counters.kv_used.store(self.running.iter().map(|s| s.n_past as u64).sum(), Ordering::Relaxed);
    }

    /// Frees the sequence's slot. With the prefix cache on, its KV cells stay, with the tokens they hold
    /// (unless `keep` is false: after a failed decode their contents are unknown); else they are cleared.
    fn release(&mut self, sequence: Sequence, keep: bool) {
        let slot = sequence.slot as usize;
        self.releases += 1;
        self.caches[slot] =
            SlotCache { tokens: Vec::new(), exact: sequence.exact, prompt_len: sequence.n_prefilled, freed_at: self.releases };
        if keep && self.config.prefix_cache {
            self.caches[slot].tokens = sequence.history;
        } else if let Err(error) = self.context.clear_kv_cache_seq(Some(sequence.slot as u32), None, None) {
            tracing::warn!(slot = sequence.slot, %error, "Could not clear a sequence's KV cells.");
        }
        self.free_slots.push(sequence.slot);
        self.publish();
    }

    fn step(&mut self, batch: &mut LlamaBatch) {
        #[cfg(feature = "fault-injection")]
        if crate::fault::PANIC_NEXT_STEP.swap(false, Ordering::SeqCst) {
            panic!("fault injected for a test");
        }
        let phases: Vec<Phase> = self.running.iter().map(Sequence::phase).collect();
        let boundaries = Boundaries { chunk: self.chunk, marks: &self.marks };
        let plan =
            plan_step(&phases, self.config.batch_tokens as usize, |index, done| boundaries.next_end(&self.running[index].prompt, done));
        let mut endings = Vec::new();
        if !plan.decode.is_empty() {
            let feeds: Vec<Chunk> = plan.decode.iter().map(|&sequence| Chunk { sequence, tokens: 1, logits: true }).collect();
            self.decode(batch, &feeds, &mut endings);
        }
        for chunk in crate::plan::merge(plan.prefill, self.merge) {
            if !endings.iter().any(|(index, _)| *index == chunk.sequence) {
                self.decode(batch, &[chunk], &mut endings);
            }
        }
        self.finish_many(endings);
        self.publish();
    }

    /// One llama.cpp decode of `feeds`, then sampling where logits were asked for; sequences that end are
    /// added to `endings` (ended by the caller, so that indices stay valid during the step).
    fn decode(&mut self, batch: &mut LlamaBatch, feeds: &[Chunk], endings: &mut Vec<(usize, Ending)>) {
        batch.clear();
        // (sequence index, batch index of its logits)
        let mut sample_at = Vec::new();
        for chunk in feeds {
            let sequence = &mut self.running[chunk.sequence];
            let tokens: Vec<u32> = match sequence.next {
                Some(token) => vec![token],
                None => sequence.prompt[sequence.n_prefilled..sequence.n_prefilled + chunk.tokens].to_vec(),
            };
            for (offset, token) in tokens.iter().enumerate() {
                let logits = chunk.logits && offset + 1 == tokens.len();
                if logits {
                    sample_at.push((chunk.sequence, batch.n_tokens()));
                }
                batch
                    .add(LlamaToken(*token as i32), (sequence.n_past + offset) as i32, &[sequence.slot], logits)
                    .expect("the plan fits the batch's token budget. This is a bug.");
            }
            if sequence.next.is_none() {
                // Whole chunks (ending at a boundary, not cut by the prompt's end) after exact cells: their
                // cells are exact too (merged chunks as well: they are merged only where that gives the same bits).
                let end = sequence.n_prefilled + tokens.len();
                if sequence.exact == sequence.n_prefilled {
                    let last = (Boundaries { chunk: self.chunk, marks: &self.marks }).last_end(&sequence.prompt, end);
                    sequence.exact = last.max(sequence.exact);
                }
                sequence.n_prefilled += tokens.len();
            }
            sequence.n_past += tokens.len();
            sequence.history.extend_from_slice(&tokens);
        }
        if let Err(error) = self.decode_masking(batch, &sample_at) {
            let message = format!("llama.cpp decode failed: {error}");
            tracing::warn!(error = %message, "Decode step failed.");
            endings.extend(feeds.iter().map(|chunk| (chunk.sequence, Ending::Failed(BackendError::Inference(message.clone())))));
            return;
        }
        for (index, batch_index) in sample_at {
            if let Some(ending) = self.sample(index, batch_index) {
                endings.push((index, ending));
            }
        }
    }

    /// Runs llama.cpp on `batch` while, on another thread, the grammars of the sequences that sample
    /// after it compute their masks of allowed tokens: constrained sequences do not stall the batch.
    fn decode_masking(&mut self, batch: &mut LlamaBatch, sample_at: &[(usize, i32)]) -> Result<(), llama_cpp_2::DecodeError> {
        let mut grammars: Vec<(usize, Constrained)> =
            sample_at.iter().filter_map(|(index, _)| self.running[*index].grammar.take().map(|grammar| (*index, grammar))).collect();
        if grammars.is_empty() {
            return self.context.decode(batch);
        }
        let context = &mut self.context;
        let decoded = std::thread::scope(|scope| {
            let masks = scope.spawn(|| grammars.iter_mut().for_each(|(_, grammar)| grammar.prepare()));
            let decoded = context.decode(batch);
            if let Err(payload) = masks.join() {
                std::panic::resume_unwind(payload);
            }
            decoded
        });
        for (index, grammar) in grammars {
            self.running[index].grammar = Some(grammar);
        }
        decoded
    }

    /// Samples the next token of one sequence and sends its text; returns how it ended, if it did.
    fn sample(&mut self, index: usize, batch_index: i32) -> Option<Ending> {
        let logits = self.context.get_logits_ith(batch_index);
        let vocab = self.model.vocab();
        let sequence = &mut self.running[index];
        let allowed = match sequence.grammar.as_mut().map(Constrained::mask).transpose() {
            Ok(mask) => mask.map(toktrie::SimpleVob::as_slice),
            Err(error) => return Some(Ending::Failed(error)),
        };
        let sampled = sequence.sampler.sample_allowed(logits, allowed);
        let token = LlamaToken(sampled.token as i32);
        sequence.n_generated += 1;
        if vocab.is_eog(token) {
            let rest = sequence.text.finish();
            if !rest.is_empty() {
                let _ = sequence.events.send(GenerateEvent::Chunk(TextChunk { text: rest, logprobs: Vec::new() }));
            }
            return Some(Ending::Finished(FinishReason::Stop));
        }
        // A grammar that is complete after this token ends the sequence: nothing more may follow.
        let complete = match sequence.grammar.as_mut().map(|grammar| grammar.accept(sampled.token)).transpose() {
            Ok(complete) => complete.unwrap_or(false),
            Err(error) => return Some(Ending::Failed(error)),
        };
        let bytes = vocab.token_to_piece(token, sequence.special_tokens, None);
        let logprobs = if sequence.want_logprobs {
            let piece = |id: u32| vocab.token_to_piece(LlamaToken(id as i32), false, None);
            vec![TokenLogprob {
                token: String::from_utf8_lossy(&bytes).into_owned(),
                bytes: bytes.clone(),
                logprob: sampled.logprob.unwrap_or(0.0),
                top: sampled
                    .top
                    .iter()
                    .map(|(id, logprob)| {
                        let bytes = piece(*id);
                        (String::from_utf8_lossy(&bytes).into_owned(), bytes, *logprob)
                    })
                    .collect(),
            }]
        } else {
            Vec::new()
        };
        let pushed = sequence.text.push(&bytes);
        let mut reason = None;
        let mut text = pushed.text;
        if let Some(index) = pushed.stopped {
            reason = Some(FinishReason::StopString(index));
        } else if complete {
            text.push_str(&sequence.text.finish());
            reason = Some(FinishReason::Stop);
        } else if sequence.n_generated >= sequence.max_tokens {
            text.push_str(&sequence.text.finish());
            reason = Some(FinishReason::Length);
        }
        // One chunk per token (text may be empty while held back), so consumers can count tokens.
        if sequence.events.send(GenerateEvent::Chunk(TextChunk { text, logprobs })).is_err() {
            // The client went away; the next step releases the slot.
            return None;
        }
        sequence.next = Some(sampled.token);
        reason.map(Ending::Finished)
    }

    /// Ends the sequences at the given indices (each at most once) with their last event.
    fn finish_many(&mut self, mut endings: Vec<(usize, Ending)>) {
        // Highest index first, so that each swap_remove leaves the lower indices in place.
        endings.sort_unstable_by_key(|(index, _)| std::cmp::Reverse(*index));
        endings.dedup_by_key(|(index, _)| *index);
        for (index, ending) in endings {
            let sequence = self.running.swap_remove(index);
            let usage = Usage {
                prompt_tokens: sequence.prompt.len() as u64,
                completion_tokens: sequence.n_generated as u64,
                cached_tokens: sequence.cached as u64,
            };
            let (event, keep) = match ending {
                Ending::Finished(reason) => (GenerateEvent::Finished { reason, usage }, true),
                Ending::Failed(error) => (GenerateEvent::Failed(error), false),
            };
            let events = sequence.events.clone();
            // Free the cells first, so that stats read after the last event already show them free.
            self.release(sequence, keep);
            let _ = events.send(event);
        }
    }
}
