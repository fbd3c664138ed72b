//! A GGUF text encoder (an embedding model or a reranker) on llama.cpp: one thread owns an embeddings
//! context and runs every queued input through it, packing the inputs of concurrent calls into one
//! forward pass (up to `max_sequences` inputs and `batch_tokens` tokens), each input its own sequence.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use yunmo_backend::{BackendError, EncodeBackend, EncodeInfo, EncodeOptions, Encoded};
use yunmo_types::{EncoderTask, Pooling};

use crate::GgufConfig;

/// The pooling type the file of `model` declares (llama.cpp's `{arch}.pooling_type`), if any.
fn file_pooling(model: &LlamaModel) -> Option<LlamaPoolingType> {
    let architecture = model.meta_val_str("general.architecture").ok()?;
    let pooling: i32 = model.meta_val_str(&format!("{architecture}.pooling_type")).ok()?.trim().parse().ok()?;
    Some(LlamaPoolingType::from(pooling)).filter(|pooling| !matches!(pooling, LlamaPoolingType::None | LlamaPoolingType::Unspecified))
}

/// What the encoder in `model` serves, from the pooling type its file declares: `rank` is a reranker, any
/// other pooling an embedding model; a file without one is a generative model. A reranker that lays out
/// its pairs with a prompt template is refused: Yunmo does not lay pairs out that way.
pub(crate) fn encoder_task(model: &LlamaModel) -> Result<Option<EncoderTask>, BackendError> {
    let task = file_pooling(model).map(|pooling| if pooling == LlamaPoolingType::Rank { EncoderTask::Rerank } else { EncoderTask::Embed });
    if task == Some(EncoderTask::Rerank) && model.chat_template(Some("rerank")).is_ok() {
        return Err(BackendError::Unsupported(
            "this reranker lays out its pairs with a rerank prompt template (tokenizer.chat_template.rerank, as Qwen3-Reranker does); Yunmo serves rerankers that take the pair between their special tokens (BERT, XLM-RoBERTa, Jina)".into(),
        ));
    }
    Ok(task)
}

/// llama.cpp's pooling for `options` on `model`, or why the pair cannot serve.
fn pooling_for(model: &LlamaModel, options: &EncodeOptions) -> Result<LlamaPoolingType, BackendError> {
    let file = file_pooling(model);
    let pooling = match (options.task, options.pooling) {
        (EncoderTask::Rerank, _) if file != Some(LlamaPoolingType::Rank) => {
            return Err(BackendError::Unsupported(
                "embedding.task is \"rerank\" but this GGUF file declares no rank pooling (a reranker's classification head): it is not a reranker".into(),
            ));
        }
        (EncoderTask::Rerank, _) if model.n_cls_out() != 1 => {
            return Err(BackendError::Unsupported(format!(
                "this reranker answers {} scores per pair; /v1/rerank and /v1/score take rerankers that answer one",
                model.n_cls_out()
            )));
        }
        (EncoderTask::Rerank, _) => LlamaPoolingType::Rank,
        (EncoderTask::Embed, Some(Pooling::Mean)) => LlamaPoolingType::Mean,
        (EncoderTask::Embed, Some(Pooling::Cls)) => LlamaPoolingType::Cls,
        (EncoderTask::Embed, None | Some(Pooling::None)) => match file {
            Some(LlamaPoolingType::Rank) => {
                return Err(BackendError::Unsupported(
                    "this GGUF file is a reranker (rank pooling): serve it with embedding.task \"rerank\", or set embedding.pooling to \"mean\" or \"cls\" to take embeddings from its encoder".into(),
                ));
            }
            Some(pooling) => pooling,
            None => {
                return Err(BackendError::Unsupported(
                    "this GGUF file declares no pooling type: set embedding.pooling to \"mean\" or \"cls\" to take embeddings from it"
                        .into(),
                ));
            }
        },
    };
    let context = model.n_ctx_train();
    if options.max_tokens > context {
        return Err(BackendError::Unsupported(format!(
            "embedding.max_tokens is {}, but this model was trained on inputs of at most {context} tokens (its position table ends there); set it to {context} or less",
            options.max_tokens
        )));
    }
    Ok(pooling)
}

/// Front of a running encoder; dropping it stops the thread once its queue is empty.
pub struct Encoder {
    model: Arc<LlamaModel>,
    info: EncodeInfo,
    /// The special tokens the model puts before and after one input.
    affixes: (Vec<u32>, Vec<u32>),
    sender: flume::Sender<Job>,
    queued: Arc<AtomicUsize>,
    queue_capacity: usize,
}

struct Job {
    inputs: Vec<Vec<u32>>,
    reply: flume::Sender<Encoded>,
}

impl Encoder {
    /// Creates the context on a new thread and returns once it is ready.
    pub fn start(model: Arc<LlamaModel>, config: &GgufConfig, options: &EncodeOptions) -> Result<Self, BackendError> {
        encoder_task(&model)?;
        let pooling = pooling_for(&model, options)?;
        // Every input must fit one forward pass (an encoder attends over its whole input at once).
        let batch_tokens = config.batch_tokens.max(options.max_tokens);
        let threads = if config.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { config.threads };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(batch_tokens))
            .with_n_batch(batch_tokens)
            .with_n_ubatch(batch_tokens)
            .with_n_seq_max(config.max_sequences)
            .with_kv_unified(true)
            .with_embeddings(true)
            .with_pooling_type(pooling)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32);
        let dimensions = if options.task == EncoderTask::Rerank { model.n_cls_out() as usize } else { model.n_embd_out().max(0) as usize };
        let info = EncodeInfo {
            architecture: model.meta_val_str("general.architecture").unwrap_or_default(),
            dimensions,
            vocab_size: model.vocab().n_tokens().max(0) as u32,
            memory_bytes: model.size(),
        };
        let affixes = affixes(&model);
        let (sender, receiver) = flume::unbounded();
        let (ready_sender, ready_receiver) = std::sync::mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let thread = Pass {
            model: model.clone(),
            max_sequences: config.max_sequences as usize,
            batch_tokens: batch_tokens as usize,
            queued: queued.clone(),
        };
        // Counted until the thread has dropped its context: the process waits for it before exiting.
        let alive = yunmo_backend::threads::RuntimeThread::register();
        std::thread::Builder::new()
            .name("yunmo-encoder".into())
            .spawn(move || {
                let _alive = alive;
                thread.run(params, receiver, ready_sender);
            })
            .map_err(|error| BackendError::Runtime(format!("cannot start the encoder thread: {error}")))?;
        ready_receiver.recv().map_err(|_| BackendError::Runtime("the encoder thread died while starting".into()))??;
        Ok(Encoder { model, info, affixes, sender, queued, queue_capacity: config.queue_capacity })
    }

    fn ids(&self, text: &str) -> Vec<u32> {
        self.model.vocab().tokenize(text.as_bytes(), false, false).into_iter().map(|token| token.0 as u32).collect()
    }
}

/// The tokens the model's tokenizer adds around one text: the BOS it starts with, and what follows the text.
fn affixes(model: &LlamaModel) -> (Vec<u32>, Vec<u32>) {
    let vocab = model.vocab();
    let around: Vec<u32> = vocab.tokenize(b"", true, false).into_iter().map(|token| token.0 as u32).collect();
    let starts = usize::from(around.first().is_some_and(|first| *first == vocab.bos().0 as u32 && vocab.bos().0 >= 0));
    (around[..starts].to_vec(), around[starts..].to_vec())
}

impl EncodeBackend for Encoder {
    fn info(&self) -> &EncodeInfo {
        &self.info
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>, BackendError> {
        Ok(self.wrap(&self.ids(text)))
    }

    fn tokenize_pair(&self, query: &str, document: &str) -> Result<Vec<u32>, BackendError> {
        // llama.cpp's layout: [BOS] query [EOS] [SEP] document [EOS], each special token where the
        // vocabulary adds it (BERT: [CLS] q [SEP] d [SEP]; XLM-RoBERTa: <s> q </s></s> d </s>).
        let vocab = self.model.vocab();
        let eos = if vocab.eos().0 >= 0 { vocab.eos() } else { vocab.sep() };
        let special = |token: LlamaToken, wanted: bool| (wanted && token.0 >= 0).then_some(token.0 as u32);
        let mut ids = Vec::new();
        ids.extend(special(vocab.bos(), vocab.should_add_bos()));
        ids.extend(self.ids(query));
        ids.extend(special(eos, vocab.should_add_eos()));
        ids.extend(special(vocab.sep(), vocab.should_add_sep()));
        ids.extend(self.ids(document));
        ids.extend(special(eos, vocab.should_add_eos()));
        Ok(ids)
    }

    fn wrap(&self, ids: &[u32]) -> Vec<u32> {
        let (before, after) = &self.affixes;
        before.iter().chain(ids).chain(after).copied().collect()
    }

    fn encode(&self, inputs: Vec<Vec<u32>>) -> Result<flume::Receiver<Encoded>, BackendError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.queue_capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(BackendError::Overloaded(format!(
                "the encoder has {} requests waiting (backends.gguf.queue_capacity); retry later",
                self.queue_capacity
            )));
        }
        let (reply, receiver) = flume::bounded(1);
        self.sender.send(Job { inputs, reply }).map_err(|_| BackendError::Runtime("the encoder thread has stopped".into()))?;
        Ok(receiver)
    }
}

/// The encoder thread's fixed state.
struct Pass {
    model: Arc<LlamaModel>,
    max_sequences: usize,
    batch_tokens: usize,
    queued: Arc<AtomicUsize>,
}

/// A job being encoded: its inputs, the next one to run, and the answers so far.
struct Work {
    job: Job,
    next: usize,
    answers: Vec<Vec<f32>>,
    /// Its answer was an error, already sent.
    failed: bool,
}

impl Pass {
    fn run(self, params: LlamaContextParams, jobs: flume::Receiver<Job>, ready: std::sync::mpsc::Sender<Result<(), BackendError>>) {
        let backend = match crate::backend() {
            Ok(backend) => backend,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let mut context = match self.model.new_context(backend, params) {
            Ok(context) => context,
            Err(error) => {
                let _ = ready.send(Err(BackendError::Runtime(format!("llama.cpp could not create an embeddings context: {error}"))));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut batch = LlamaBatch::new(self.batch_tokens, 1);
        let mut works: Vec<Work> = Vec::new();
        loop {
            if works.is_empty() {
                match jobs.recv() {
                    Ok(job) => works.push(self.admit(job)),
                    Err(_) => return,
                }
            }
            works.extend(jobs.try_iter().map(|job| self.admit(job)).collect::<Vec<_>>());
            // A caller that went away needs no answer.
            works.retain(|work| !work.job.reply.is_disconnected());
            if works.is_empty() {
                continue;
            }
            let taken = self.fill(&mut batch, &mut works);
            match self.pass(&mut context, &mut batch, &taken) {
                Ok(vectors) => {
                    for ((work, _), vector) in taken.iter().zip(vectors) {
                        works[*work].answers.push(vector);
                    }
                }
                Err(error) => {
                    for (work, _) in &taken {
                        let work = &mut works[*work];
                        if !work.failed {
                            work.failed = true;
                            let _ = work.job.reply.send(Err(error.clone()));
                        }
                    }
                }
            }
            works.retain_mut(|work| {
                if work.failed {
                    return false;
                }
                if work.answers.len() < work.job.inputs.len() {
                    return true;
                }
                let _ = work.job.reply.send(Ok(std::mem::take(&mut work.answers)));
                false
            });
        }
    }

    fn admit(&self, job: Job) -> Work {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Work { answers: Vec::with_capacity(job.inputs.len()), job, next: 0, failed: false }
    }

    /// Takes inputs in arrival order while they fit one pass; returns (work index, input index) per sequence.
    fn fill(&self, batch: &mut LlamaBatch, works: &mut [Work]) -> Vec<(usize, usize)> {
        batch.clear();
        let mut taken = Vec::new();
        let mut tokens = 0;
        'works: for (index, work) in works.iter_mut().enumerate() {
            while work.next < work.job.inputs.len() && !work.failed {
                let input = &work.job.inputs[work.next];
                if input.len() > self.batch_tokens {
                    // The service keeps inputs within max_tokens, which batch_tokens is at least: never here.
                    let error = format!("input[{}] has {} tokens, more than the encoder's {}", work.next, input.len(), self.batch_tokens);
                    let _ = work.job.reply.send(Err(BackendError::InvalidInput(error)));
                    work.failed = true;
                    break;
                }
                if taken.len() == self.max_sequences || (tokens + input.len() > self.batch_tokens && !taken.is_empty()) {
                    break 'works;
                }
                let sequence = taken.len() as i32;
                for (position, id) in input.iter().enumerate() {
                    // The batch holds batch_tokens, and the tokens taken are at most that (checked above).
                    let _ = batch.add(LlamaToken(*id as i32), position as i32, &[sequence], true);
                }
                tokens += input.len();
                taken.push((index, work.next));
                work.next += 1;
            }
        }
        taken
    }

    /// Runs one forward pass and reads each sequence's pooled vector.
    fn pass(&self, context: &mut LlamaContext, batch: &mut LlamaBatch, taken: &[(usize, usize)]) -> Result<Vec<Vec<f32>>, BackendError> {
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let result = context.decode(batch).map_err(|error| BackendError::Inference(format!("llama.cpp failed to encode: {error}")));
        let vectors = result.and_then(|()| {
            (0..taken.len() as i32)
                .map(|sequence| {
                    context
                        .embeddings_seq_ith(sequence)
                        .map(<[f32]>::to_vec)
                        .map_err(|error| BackendError::Inference(format!("llama.cpp returned no pooled vector: {error}")))
                })
                .collect()
        });
        // Models with a KV cache (decoder embedders) must not see this pass in the next one.
        context.clear_kv_cache();
        vectors
    }
}
