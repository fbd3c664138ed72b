//! The batching task of one loaded tensor version and the admission-counted queue in front of it.
//!
//! The queue admits at most `queue_capacity` waiting requests (beyond that, `overloaded`). The task holds a
//! [`BatchPolicy`] and forms a batch only when a worker is free (a semaphore of idle instances), so under
//! load requests that arrived while the workers were busy are merged into the next call;
//! `max_queue_delay_us` lets it wait longer for a batch to fill.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};
use yunmo_backend::BackendError;
use yunmo_scheduler::{BatchKey, BatchPolicy, Decision, PolicyConfig};
use yunmo_types::Tensor;

use crate::metrics::BatchMetrics;
use crate::{ServiceError, VersionKey};

/// One request for a tensor model.
pub(crate) struct Job {
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<String>,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<JobResult>,
    /// Whether the job is one API request, counted as such by Triton's statistics (queue, compute, rows);
    /// an encoder batch of an embedding model is not: its requests are counted by the embedder.
    pub request: bool,
}

/// What a worker sends back for a [`Job`].
pub(crate) struct JobResult {
    pub result: Result<Vec<Tensor>, BackendError>,
    pub queue_time: Duration,
    pub compute_time: Duration,
}

/// The admission-counted queue in front of a tensor model's batching task.
#[derive(Clone)]
pub(crate) struct TensorQueue {
    pub(crate) key: VersionKey,
    pub(crate) sender: flume::Sender<Job>,
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) capacity: usize,
}

impl TensorQueue {
    /// Requests that may wait (`queue_capacity`).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn submit(&self, job: Job) -> Result<(), ServiceError> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(ServiceError::new(
                crate::Code::Overloaded,
                format!(
                    "model '{}' version {} has {} requests waiting, its queue_capacity; retry later",
                    self.key.0, self.key.1, self.capacity
                ),
            ));
        }
        self.sender.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            ServiceError::not_ready(format!("model '{}' version {} is unloading", self.key.0, self.key.1))
        })
    }
}

/// The batching task of one loaded version.
pub(crate) struct Batcher {
    pub(crate) requests: flume::Receiver<Job>,
    pub(crate) batches: flume::Sender<Vec<Job>>,
    pub(crate) idle: Arc<Semaphore>,
    pub(crate) queued: Arc<AtomicUsize>,
    pub(crate) metrics: BatchMetrics,
    pub(crate) unique: AtomicU64,
}

impl Batcher {
    fn push(&self, policy: &mut BatchPolicy<Job>, job: Job) {
        let (key, rows) = yunmo_scheduler::batch_key(&job.inputs, &job.outputs)
            .unwrap_or_else(|| (BatchKey::unique(self.unique.fetch_add(1, Ordering::Relaxed)), 1));
        let enqueued = tokio::time::Instant::from_std(job.enqueued);
        policy.push(job, rows, key, enqueued);
    }

    /// Moves every request already sent into the policy; returns false once all senders are gone.
    fn drain(&self, policy: &mut BatchPolicy<Job>) -> bool {
        loop {
            match self.requests.try_recv() {
                Ok(job) => self.push(policy, job),
                Err(flume::TryRecvError::Empty) => return true,
                Err(flume::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn forget_abandoned(&self, policy: &mut BatchPolicy<Job>) {
        let dropped = policy.retain(|job| !job.reply.is_closed());
        if dropped > 0 {
            self.queued.fetch_sub(dropped, Ordering::AcqRel);
            self.metrics.dropped.increment(dropped as u64);
        }
    }

    pub(crate) async fn run(self, config: PolicyConfig) {
        let mut policy = BatchPolicy::new(config);
        let mut open = true;
        loop {
            if policy.is_empty() {
                if !open {
                    break;
                }
                match self.requests.recv_async().await {
                    Ok(job) => self.push(&mut policy, job),
                    Err(_) => break,
                }
            }
            // Wait for a free instance; requests keep arriving in the channel meanwhile.
            let Ok(permit) = self.idle.clone().acquire_owned().await else {
                break;
            };
            open &= self.drain(&mut policy);
            self.forget_abandoned(&mut policy);
            loop {
                match policy.decide(tokio::time::Instant::now()) {
                    Decision::Dispatch | Decision::Idle => break,
                    Decision::WaitUntil(deadline) if open => {
                        tokio::select! {
                            job = self.requests.recv_async() => match job {
                                Ok(job) => self.push(&mut policy, job),
                                Err(_) => open = false,
                            },
                            _ = tokio::time::sleep_until(deadline) => {}
                        }
                    }
                    Decision::WaitUntil(_) => break,
                }
            }
            if policy.is_empty() {
                continue;
            }
            let (batch, rows) = policy.take_batch();
            self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
            self.metrics.queue_depth.set(self.queued.load(Ordering::Relaxed) as f64);
            self.metrics.batch_size.record(rows as f64);
            self.metrics.batch_requests.record(batch.len() as f64);
            // The worker gives the permit back when it has finished the batch.
            permit.forget();
            if self.batches.send(batch).is_err() {
                break;
            }
        }
    }
}
