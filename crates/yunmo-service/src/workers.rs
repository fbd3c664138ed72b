//! The worker threads of a loaded tensor version: each owns one backend instance and runs the batches the
//! batching task sends it, off the async runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, oneshot};
use yunmo_backend::{BackendError, BackendFactory, BatchBackend, LoadOptions};
use yunmo_types::{Signature, Tensor};

use crate::batching::{Job, JobResult};
use crate::totals::BatchTimes;

/// One instance of a loaded version, on its own thread.
pub(crate) struct Worker {
    pub(crate) batches: flume::Receiver<Vec<Job>>,
    pub(crate) idle: Arc<Semaphore>,
    pub(crate) factory: Arc<dyn BackendFactory>,
    pub(crate) path: PathBuf,
    pub(crate) options: LoadOptions,
    pub(crate) key: crate::VersionKey,
    pub(crate) dropped: metrics::Counter,
    /// The version's cumulative counters (Triton's statistics extension).
    pub(crate) totals: Arc<crate::totals::Totals>,
}

impl Worker {
    pub(crate) fn run(self, ready: oneshot::Sender<Result<Signature, BackendError>>) {
        let mut backend = match self.factory.load(&self.path, &self.options) {
            Ok(backend) => {
                let _ = ready.send(Ok(backend.signature().clone()));
                backend
            }
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        while let Ok(batch) = self.batches.recv() {
            // A panic outside the runtime's call (merging, splitting) drops the batch's replies, which fails
            // its requests; the worker and its permit go on.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_batch(backend.as_mut(), batch)));
            if ran.is_err() {
                tracing::error!(model = %self.key.0, version = self.key.1, "A worker panicked outside the runtime; its batch failed.");
            }
            self.idle.add_permits(1);
        }
    }

    fn run_batch(&self, backend: &mut dyn BatchBackend, batch: Vec<Job>) {
        let (live, gone): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|job| !job.reply.is_closed());
        if !gone.is_empty() {
            self.dropped.increment(gone.len() as u64);
        }
        if live.is_empty() {
            return;
        }
        let started = Instant::now();
        let queue_times: Vec<Duration> = live.iter().map(|job| started.duration_since(job.enqueued)).collect();
        let outputs = live[0].outputs.clone();
        let rows: Vec<usize> =
            live.iter().map(|job| job.inputs.first().and_then(|t| t.shape().first()).map_or(1, |d| *d as usize)).collect();
        let requests: Vec<bool> = live.iter().map(|job| job.request).collect();
        let (replies, inputs): (Vec<_>, Vec<_>) = live.into_iter().map(|job| (job.reply, job.inputs)).unzip();
        let mut times = BatchTimes::default();
        let results: Vec<Result<Vec<Tensor>, BackendError>> = if replies.len() == 1 {
            let result = run_guarded(backend, inputs.into_iter().next().expect("one job"), &outputs);
            times.infer = started.elapsed();
            vec![result]
        } else {
            let merged = yunmo_scheduler::merge(inputs, rows.iter().sum());
            times.input = started.elapsed();
            let ran = run_guarded(backend, merged, &outputs);
            times.infer = started.elapsed() - times.input;
            let results = match ran {
                Ok(tensors) => match yunmo_scheduler::split(tensors, &rows) {
                    Ok(parts) => parts.into_iter().map(Ok).collect(),
                    Err(error) => vec![Err(BackendError::Inference(error.0)); replies.len()],
                },
                Err(error) => vec![Err(error); replies.len()],
            };
            times.output = started.elapsed() - times.input - times.infer;
            results
        };
        let compute_time = started.elapsed();
        self.totals.executed(rows.iter().sum::<usize>() as u64, times);
        for ((((reply, result), queue_time), rows), request) in replies.into_iter().zip(results).zip(queue_times).zip(rows).zip(requests) {
            if result.is_ok() && request {
                self.totals.served(rows as u64, queue_time, times);
            }
            let _ = reply.send(JobResult { result, queue_time, compute_time });
        }
    }
}

/// Runs one call, turning a panic inside the runtime into an error instead of killing the worker.
fn run_guarded(backend: &mut dyn BatchBackend, inputs: Vec<Tensor>, outputs: &[String]) -> Result<Vec<Tensor>, BackendError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.infer(inputs, outputs)))
        .unwrap_or_else(|_| Err(BackendError::Inference("the runtime panicked".into())))
}
