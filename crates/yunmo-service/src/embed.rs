//! Embeddings from ONNX encoders: tokenise with the version's `tokenizer.json`, form batches by token
//! budget (padded length × rows), run them through the model's tensor queue, pool and normalise. Encoders
//! that carry their own vocabulary and batching (GGUF) are driven by `embed_own` behind the same front.
//!
//! One batching task per loaded encoder. It forms a batch only when one of the model's instances is free
//! (a semaphore of `instance_count` permits), so inputs that arrive while the model computes are padded
//! into the next call together.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, oneshot};
use yunmo_text::embed::{EmbedTokenizer, Encoded, pad, pool};
use yunmo_types::{DataType, EmbeddingConfig, Signature, Tensor, TensorData};

use crate::VersionKey;
use crate::batching::{Job, TensorQueue};
pub use crate::embed_input::EmbedInput;
use crate::embed_input::{check_vocabulary, cut, cut_at};
use crate::{ServiceError, metrics};

/// Pooled vectors, one per input, in input order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// Model name.
    pub model: String,
    /// Version that computed them.
    pub version: u64,
    /// The vectors.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens read, special tokens included.
    pub prompt_tokens: u64,
}

struct Item {
    encoded: Encoded,
    reply: oneshot::Sender<Result<Vec<f32>, ServiceError>>,
}

/// The embedding front of one loaded encoder.
pub(crate) struct Embedder {
    config: EmbeddingConfig,
    /// Length of the vectors it returns.
    dimensions: Option<usize>,
    /// Requests being embedded now, at most `capacity` (the version's `queue_capacity`); past it, `overloaded`.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    capacity: usize,
    engine: Engine,
}

/// What computes the vectors.
enum Engine {
    /// An ONNX encoder: tokenised with the version's `tokenizer.json`, batched here into its tensor queue.
    Tensor { tokenizer: Arc<EmbedTokenizer>, items: flume::Sender<Item> },
    /// An encoder that tokenises and batches by itself (GGUF).
    Own(Arc<dyn yunmo_backend::EncodeBackend>),
}

/// One admitted embedding request; gives its place back when dropped, however the request ends.
struct Admitted(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

struct BatchTask {
    items: flume::Receiver<Item>,
    max_rows: usize,
    max_batch_tokens: usize,
    free: Arc<Semaphore>,
    plan: Arc<BatchPlan>,
}

/// How every batch of one encoder is run.
struct BatchPlan {
    queue: TensorQueue,
    /// Which of `input_ids`, `attention_mask`, `token_type_ids` the model takes, in signature order.
    inputs: Vec<String>,
    output: String,
    pooling: yunmo_types::Pooling,
    normalize: bool,
    pad_id: i64,
    model: String,
}

/// The version an encoder serves, as loading knows it.
pub(crate) struct EncoderVersion<'a> {
    /// Model name and version.
    pub key: &'a VersionKey,
    /// Its `tokenizer.json`.
    pub tokenizer: Option<&'a str>,
    /// Its `max_batch_size` (0: one row per call).
    pub max_batch_size: u32,
}

impl Embedder {
    pub(crate) fn start(
        spec: EncoderVersion<'_>,
        config: EmbeddingConfig,
        signature: &Signature,
        queue: TensorQueue,
        instances: usize,
    ) -> Result<Self, ServiceError> {
        let capacity = queue.capacity();
        let name = &spec.key.0;
        let json = spec.tokenizer.ok_or_else(|| {
            ServiceError::not_ready(format!(
                "model '{name}' version {} has an embedding config but no tokenizer.json; upload one with PUT /api/v1/models/{name}/versions/{}/tokenizer",
                spec.key.1, spec.key.1
            ))
        })?;
        let tokenizer = EmbedTokenizer::from_json(json.as_bytes()).map_err(|error| ServiceError::not_ready(error.to_string()))?;
        let known = ["input_ids", "attention_mask", "token_type_ids"];
        if let Some(unknown) = signature.inputs.iter().find(|spec| !known.contains(&spec.name.as_str())) {
            return Err(ServiceError::not_ready(format!(
                "model '{name}' has an input '{}': an embedding encoder takes only {}",
                unknown.name,
                known.join(", ")
            )));
        }
        let output = if config.output.is_empty() {
            signature.outputs.first().map(|spec| spec.name.clone()).unwrap_or_default()
        } else {
            config.output.clone()
        };
        let output_spec = signature
            .outputs
            .iter()
            .find(|spec| spec.name == output)
            .ok_or_else(|| ServiceError::not_ready(format!("model '{name}' has no output '{output}' (embedding.output)")))?;
        let dimensions = output_spec.shape.last().and_then(|d| usize::try_from(*d).ok());
        let rerank = config.task == yunmo_types::EncoderTask::Rerank;
        if rerank && (output_spec.shape.len() != 2 || dimensions.is_some_and(|d| d != 1)) {
            return Err(ServiceError::not_ready(format!(
                "model '{name}' is a reranker (embedding.task) but its output '{output}' has shape {:?}: a cross-encoder answers one logit per pair, [N, 1]",
                output_spec.shape
            )));
        }
        let (items, receiver) = flume::unbounded();
        let task = BatchTask {
            items: receiver,
            max_rows: if spec.max_batch_size > 0 { spec.max_batch_size as usize } else { usize::MAX },
            max_batch_tokens: config.max_batch_tokens as usize,
            free: Arc::new(Semaphore::new(instances.max(1))),
            plan: Arc::new(BatchPlan {
                queue,
                inputs: signature.inputs.iter().map(|spec| spec.name.clone()).collect(),
                output,
                // A reranker's logits are taken as they are.
                pooling: if rerank { yunmo_types::Pooling::None } else { config.pooling.unwrap_or_default() },
                normalize: config.normalize && !rerank,
                pad_id: tokenizer.pad_id(),
                model: name.clone(),
            }),
        };
        tokio::spawn(task.run());
        let engine = Engine::Tensor { tokenizer: Arc::new(tokenizer), items };
        Ok(Embedder { config, dimensions, in_flight: Arc::default(), capacity, engine })
    }

    /// The embedding front of an encoder that tokenises and batches by itself.
    pub(crate) fn start_own(backend: Arc<dyn yunmo_backend::EncodeBackend>, config: EmbeddingConfig, capacity: usize) -> Self {
        Embedder { dimensions: Some(backend.info().dimensions), config, in_flight: Arc::default(), capacity, engine: Engine::Own(backend) }
    }

    /// Tokenises and checks every input, then embeds them all.
    pub(crate) async fn embed(&self, model: &str, input: EmbedInput) -> Result<(Vec<Vec<f32>>, u64), ServiceError> {
        match (self.config.task, matches!(input, EmbedInput::Pairs(_))) {
            (yunmo_types::EncoderTask::Rerank, false) => {
                return Err(ServiceError::invalid(format!(
                    "model '{model}' is a reranker (embedding.task = \"rerank\"): it scores (query, document) pairs through /v1/rerank or /v1/score, not embeddings"
                )));
            }
            (yunmo_types::EncoderTask::Embed, true) => {
                return Err(ServiceError::invalid(format!(
                    "model '{model}' is not a reranker: set embedding.task = \"rerank\" in the version config of a cross-encoder (one logit per pair) to rerank with it"
                )));
            }
            _ => {}
        }
        let _admitted = admit(&self.in_flight, self.capacity, model)?;
        let (vectors, prompt_tokens) = match &self.engine {
            Engine::Tensor { tokenizer, items } => self.embed_tensor(tokenizer, items, model, input).await?,
            Engine::Own(backend) => crate::embed_own::embed(backend, &self.config, model, input).await?,
        };
        ::metrics::counter!(metrics::EMBEDDING_TOKENS_TOTAL, "model" => model.to_string()).increment(prompt_tokens);
        Ok((vectors, prompt_tokens))
    }

    async fn embed_tensor(
        &self,
        tokenizer: &Arc<EmbedTokenizer>,
        items: &flume::Sender<Item>,
        model: &str,
        input: EmbedInput,
    ) -> Result<(Vec<Vec<f32>>, u64), ServiceError> {
        let tokenizer = tokenizer.clone();
        let config = self.config.clone();
        let model_name = model.to_string();
        let encoded = tokio::task::spawn_blocking(move || encode_all(&tokenizer, &config, &model_name, input))
            .await
            .map_err(|error| ServiceError::internal(format!("tokenization panicked: {error}")))??;
        let prompt_tokens: u64 = encoded.iter().map(|e| e.ids.len() as u64).sum();
        let mut replies = Vec::with_capacity(encoded.len());
        for encoded in encoded {
            let (reply, receiver) = oneshot::channel();
            items.send(Item { encoded, reply }).map_err(|_| ServiceError::not_ready(format!("model '{model}' is unloading")))?;
            replies.push(receiver);
        }
        let mut vectors = Vec::with_capacity(replies.len());
        for receiver in replies {
            vectors.push(receiver.await.map_err(|_| ServiceError::internal("the embedding batcher stopped"))??);
        }
        Ok((vectors, prompt_tokens))
    }

    /// Length of the vectors, when the model declares it.
    pub(crate) fn dimensions(&self) -> Option<usize> {
        self.dimensions
    }
}

/// A place among the requests being embedded, or `overloaded` when all `capacity` are taken.
fn admit(in_flight: &Arc<std::sync::atomic::AtomicUsize>, capacity: usize, model: &str) -> Result<Admitted, ServiceError> {
    // Counted first, so the place is given back on every path, refusal included.
    let admitted = Admitted(in_flight.clone());
    if in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel) >= capacity {
        return Err(ServiceError::new(
            crate::Code::Overloaded,
            format!("model '{model}' has {capacity} embedding requests in progress, its queue_capacity; retry later"),
        ));
    }
    Ok(admitted)
}

fn encode_all(tokenizer: &EmbedTokenizer, config: &EmbeddingConfig, model: &str, input: EmbedInput) -> Result<Vec<Encoded>, ServiceError> {
    let mut encoded = match input {
        EmbedInput::Texts(texts) => texts
            .iter()
            .map(|text| tokenizer.encode(text).map_err(|error| ServiceError::invalid(error.to_string())))
            .collect::<Result<Vec<_>, _>>()?,
        EmbedInput::Pairs(pairs) => pairs
            .iter()
            .map(|(query, document)| tokenizer.encode_pair(query, document).map_err(|error| ServiceError::invalid(error.to_string())))
            .collect::<Result<Vec<_>, _>>()?,
        EmbedInput::Tokens(lists) => {
            check_vocabulary(&lists, tokenizer.vocab_size() as i64, model)?;
            lists
                .iter()
                .map(|ids| tokenizer.wrap_ids(ids).map_err(|error| ServiceError::invalid(error.to_string())))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    for (index, item) in encoded.iter_mut().enumerate() {
        if let Some(limit) = cut_at(index, item.ids.len(), config, model)? {
            cut(&mut item.ids, limit);
            item.type_ids.truncate(limit);
        }
    }
    Ok(encoded)
}

impl BatchTask {
    async fn run(self) {
        let mut carried: Option<Item> = None;
        loop {
            let first = match carried.take() {
                Some(item) => item,
                None => match self.items.recv_async().await {
                    Ok(item) => item,
                    Err(_) => return,
                },
            };
            let Ok(permit) = self.free.clone().acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            let mut longest = batch[0].encoded.ids.len();
            while batch.len() < self.max_rows {
                let Ok(item) = self.items.try_recv() else {
                    break;
                };
                if item.reply.is_closed() {
                    continue;
                }
                let length = longest.max(item.encoded.ids.len());
                if length * (batch.len() + 1) > self.max_batch_tokens {
                    carried = Some(item);
                    break;
                }
                longest = length;
                batch.push(item);
            }
            batch.retain(|item| !item.reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            let plan = self.plan.clone();
            tokio::spawn(async move {
                plan.run(batch).await;
                drop(permit);
            });
        }
    }
}

impl BatchPlan {
    async fn run(&self, batch: Vec<Item>) {
        let encoded: Vec<&Encoded> = batch.iter().map(|item| &item.encoded).collect();
        let padded = pad(&encoded, self.pad_id);
        let shape = vec![padded.rows as i64, padded.length as i64];
        let mut tensors = Vec::with_capacity(self.inputs.len());
        for name in &self.inputs {
            let values = match name.as_str() {
                "input_ids" => &padded.input_ids,
                "attention_mask" => &padded.attention_mask,
                _ => &padded.token_type_ids,
            };
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            match Tensor::new(name.clone(), DataType::Int64, shape.clone(), TensorData::Fixed(bytes.into())) {
                Ok(tensor) => tensors.push(tensor),
                Err(error) => return fail(batch, ServiceError::internal(error.to_string())),
            }
        }
        ::metrics::histogram!(metrics::EMBEDDING_BATCH_TOKENS, "model" => self.model.clone()).record((padded.rows * padded.length) as f64);
        let (reply, receiver) = oneshot::channel();
        let job = Job { inputs: tensors, outputs: vec![self.output.clone()], enqueued: Instant::now(), reply, request: false };
        if let Err(error) = self.queue.submit(job) {
            return fail(batch, error);
        }
        let result = match receiver.await {
            Ok(done) => done.result.map_err(ServiceError::from),
            Err(_) => Err(ServiceError::internal("the model worker stopped")),
        };
        let states = match result.and_then(|mut outputs| float_values(outputs.pop())) {
            Ok(states) => states,
            Err(error) => return fail(batch, error),
        };
        let vectors = pool(&states, padded.rows, padded.length, &padded.attention_mask, self.pooling, self.normalize);
        for (item, vector) in batch.into_iter().zip(vectors) {
            let _ = item.reply.send(Ok(vector));
        }
    }
}

/// The elements of an FP32 output.
fn float_values(tensor: Option<Tensor>) -> Result<Vec<f32>, ServiceError> {
    let tensor = tensor.ok_or_else(|| ServiceError::internal("the encoder returned no output"))?;
    match (tensor.datatype(), tensor.data()) {
        (DataType::Fp32, TensorData::Fixed(bytes)) => {
            Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
        }
        (datatype, _) => Err(ServiceError::internal(format!("the encoder's output is {datatype:?}, not FP32"))),
    }
}

fn fail(batch: Vec<Item>, error: ServiceError) {
    for item in batch {
        let _ = item.reply.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_requests_past_queue_capacity_are_overloaded_and_places_come_back() {
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let first = admit(&in_flight, 2, "m").unwrap();
        let _second = admit(&in_flight, 2, "m").unwrap();
        let refused = admit(&in_flight, 2, "m").err().expect("the third of capacity 2 is refused");
        assert_eq!((refused.code, refused.retry_after), (crate::Code::Overloaded, Some(1)));
        assert!(refused.message.contains("queue_capacity"), "{}", refused.message);
        drop(first);
        let _third = admit(&in_flight, 2, "m").expect("a finished request gives its place back");
        assert_eq!(in_flight.load(std::sync::atomic::Ordering::SeqCst), 2, "a refusal holds no place");
    }
}
