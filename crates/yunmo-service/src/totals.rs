//! Triton's statistics extension: cumulative counters of one loaded version since it was loaded, with
//! Triton's meanings (`GET /v2/models/{m}/stats`, gRPC `ModelStatistics`).
//!
//! Every request that reaches the version ends as a success or a failure with its whole duration; a tensor
//! request that ran also counts its wait in the queue and the compute of the batch it ran in (merging the
//! inputs, the runtime's call, splitting the outputs), and each batch counts once as an execution of its
//! size. An LLM request is one inference and one execution (its engine steps are shared with other
//! sequences). An embedding request counts its texts as inferences; its encoder batches, which mix
//! requests, count as executions of their size, and queue and compute stay zero (not split per request). Counters are per process, like Prometheus counters: each replica counts what it served.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A count and the nanoseconds summed over it (Triton's `StatisticDuration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    pub count: u64,
    pub ns: u64,
}

#[derive(Default)]
struct Tally {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Tally {
    fn add(&self, took: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add(nanos(took), Ordering::Relaxed);
    }

    fn get(&self) -> Timing {
        Timing { count: self.count.load(Ordering::Relaxed), ns: self.ns.load(Ordering::Relaxed) }
    }
}

fn nanos(took: Duration) -> u64 {
    u64::try_from(took.as_nanos()).unwrap_or(u64::MAX)
}

/// The three compute phases of one batch.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BatchTimes {
    /// Merging the requests' inputs into one batch.
    pub input: Duration,
    /// The runtime's call.
    pub infer: Duration,
    /// Splitting the outputs back per request.
    pub output: Duration,
}

/// One batch size's executions and their compute (Triton's `InferBatchStatistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchTotals {
    pub batch_size: u64,
    pub compute_input: Timing,
    pub compute_infer: Timing,
    pub compute_output: Timing,
}

/// The counters of one loaded version.
#[derive(Default)]
pub(crate) struct Totals {
    last_inference_ms: AtomicU64,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    success: Tally,
    fail: Tally,
    queue: Tally,
    compute_input: Tally,
    compute_infer: Tally,
    compute_output: Tally,
    batches: Mutex<BTreeMap<u64, BatchTotals>>,
}

/// What the counters hold now (Triton's `ModelStatistics`, less name and version).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TotalsSnapshot {
    /// When the last request ended, in milliseconds since the Unix epoch (0: none yet).
    pub last_inference_ms: u64,
    /// Rows inferred (the first dimension of each successful tensor request; 1 per LLM request).
    pub inference_count: u64,
    /// Model executions (batches; 1 per LLM request).
    pub execution_count: u64,
    pub success: Timing,
    pub fail: Timing,
    pub queue: Timing,
    pub compute_input: Timing,
    pub compute_infer: Timing,
    pub compute_output: Timing,
    /// By batch size, ascending.
    pub batches: Vec<BatchTotals>,
}

impl Totals {
    /// A request that reached the version ended, answered or not, after `took`.
    pub(crate) fn ended(&self, ok: bool, took: Duration) {
        if ok { &self.success } else { &self.fail }.add(took);
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as u64);
        self.last_inference_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// A batch of `rows` rows ran.
    pub(crate) fn executed(&self, rows: u64, times: BatchTimes) {
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        let mut batches = self.batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = batches.entry(rows).or_insert(BatchTotals { batch_size: rows, ..BatchTotals::default() });
        for (timing, took) in
            [(&mut entry.compute_input, times.input), (&mut entry.compute_infer, times.infer), (&mut entry.compute_output, times.output)]
        {
            timing.count += 1;
            timing.ns = timing.ns.saturating_add(nanos(took));
        }
    }

    /// A request of `rows` rows was answered by a batch after waiting `queue` for it.
    pub(crate) fn served(&self, rows: u64, queue: Duration, times: BatchTimes) {
        self.inference_count.fetch_add(rows, Ordering::Relaxed);
        self.queue.add(queue);
        self.compute_input.add(times.input);
        self.compute_infer.add(times.infer);
        self.compute_output.add(times.output);
    }

    /// An embedding request of `texts` texts was answered (its encoder batches count as executions; its
    /// queue and compute are not split per request, as batches mix requests).
    pub(crate) fn embedded(&self, texts: u64) {
        self.inference_count.fetch_add(texts, Ordering::Relaxed);
    }

    /// An LLM request was answered: one inference, one execution.
    pub(crate) fn generated(&self) {
        self.inference_count.fetch_add(1, Ordering::Relaxed);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TotalsSnapshot {
        TotalsSnapshot {
            last_inference_ms: self.last_inference_ms.load(Ordering::Relaxed),
            inference_count: self.inference_count.load(Ordering::Relaxed),
            execution_count: self.execution_count.load(Ordering::Relaxed),
            success: self.success.get(),
            fail: self.fail.get(),
            queue: self.queue.get(),
            compute_input: self.compute_input.get(),
            compute_infer: self.compute_infer.get(),
            compute_output: self.compute_output.get(),
            batches: self.batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_batches_and_phases_add_up_as_triton_counts_them() {
        let totals = Totals::default();
        let times = BatchTimes { input: Duration::from_nanos(10), infer: Duration::from_nanos(100), output: Duration::from_nanos(5) };
        // Two requests (1 and 3 rows) in one batch of 4, one alone, one failure.
        totals.executed(4, times);
        totals.served(1, Duration::from_nanos(7), times);
        totals.served(3, Duration::from_nanos(9), times);
        totals.executed(1, times);
        totals.served(1, Duration::from_nanos(2), times);
        for _ in 0..3 {
            totals.ended(true, Duration::from_nanos(1000));
        }
        totals.ended(false, Duration::from_nanos(50));
        let snapshot = totals.snapshot();
        assert_eq!((snapshot.inference_count, snapshot.execution_count), (5, 2));
        assert_eq!(snapshot.success, Timing { count: 3, ns: 3000 });
        assert_eq!(snapshot.fail, Timing { count: 1, ns: 50 });
        assert_eq!(snapshot.queue, Timing { count: 3, ns: 18 });
        assert_eq!(snapshot.compute_infer, Timing { count: 3, ns: 300 });
        assert_eq!(snapshot.batches.iter().map(|b| (b.batch_size, b.compute_infer.count)).collect::<Vec<_>>(), vec![(1, 1), (4, 1)]);
        assert!(snapshot.last_inference_ms > 1_700_000_000_000);
        totals.generated();
        assert_eq!((totals.snapshot().inference_count, totals.snapshot().execution_count), (6, 3));
    }
}
