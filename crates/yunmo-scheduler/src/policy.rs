use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::BatchKey;

/// When batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Most rows (first-dimension entries) in one batch; 0 means no batching: one request per call.
    pub max_batch_size: usize,
    /// How long the oldest request may wait for the batch to fill before it is sent anyway.
    /// Zero sends whatever is waiting as soon as a worker is free.
    pub max_queue_delay: Duration,
}

/// What the batching task should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is waiting.
    Idle,
    /// Form a batch with [`BatchPolicy::take_batch`] and hand it to a worker.
    Dispatch,
    /// Wait for more requests, or until this instant, whichever comes first.
    WaitUntil(Instant),
}

struct Waiting<T> {
    item: T,
    rows: usize,
    key: BatchKey,
    enqueued: Instant,
}

/// The requests waiting for one model version, and the rules for batching them.
///
/// Rules: requests are served in arrival order; a batch holds the oldest request plus later requests with
/// the same [`BatchKey`] (same input names, types, trailing dimensions and outputs) while the rows fit in
/// `max_batch_size`; a batch is dispatched when it is full, or when the oldest request has waited
/// `max_queue_delay`. A request larger than `max_batch_size` is never merged (validation refuses those).
pub struct BatchPolicy<T> {
    config: PolicyConfig,
    waiting: VecDeque<Waiting<T>>,
}

impl<T> BatchPolicy<T> {
    /// An empty queue with these rules.
    pub fn new(config: PolicyConfig) -> Self {
        BatchPolicy { config, waiting: VecDeque::new() }
    }

    /// Adds a request with `rows` rows that can be merged with others of the same `key`.
    pub fn push(&mut self, item: T, rows: usize, key: BatchKey, enqueued: Instant) {
        self.waiting.push_back(Waiting { item, rows, key, enqueued });
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Rows of the batch [`BatchPolicy::take_batch`] would form now.
    fn next_batch_rows(&self) -> usize {
        let Some(first) = self.waiting.front() else {
            return 0;
        };
        if self.config.max_batch_size == 0 {
            return first.rows;
        }
        let mut rows = 0;
        for waiting in self.waiting.iter().filter(|w| w.key == first.key) {
            if rows + waiting.rows > self.config.max_batch_size && rows > 0 {
                break;
            }
            rows += waiting.rows;
        }
        rows
    }

    /// What to do at `now`.
    pub fn decide(&self, now: Instant) -> Decision {
        let Some(first) = self.waiting.front() else {
            return Decision::Idle;
        };
        if self.config.max_batch_size == 0 || self.next_batch_rows() >= self.config.max_batch_size {
            return Decision::Dispatch;
        }
        let deadline = first.enqueued + self.config.max_queue_delay;
        if now >= deadline { Decision::Dispatch } else { Decision::WaitUntil(deadline) }
    }

    /// Removes and returns the next batch (oldest request first), with its total rows.
    pub fn take_batch(&mut self) -> (Vec<T>, usize) {
        let Some(first) = self.waiting.pop_front() else {
            return (Vec::new(), 0);
        };
        let mut rows = first.rows;
        let key = first.key;
        let mut batch = vec![first.item];
        if self.config.max_batch_size == 0 {
            return (batch, rows);
        }
        let mut index = 0;
        while index < self.waiting.len() && rows < self.config.max_batch_size {
            let candidate = &self.waiting[index];
            if candidate.key == key && rows + candidate.rows <= self.config.max_batch_size {
                rows += candidate.rows;
                let taken = self.waiting.remove(index).expect("index is in bounds");
                batch.push(taken.item);
            } else {
                index += 1;
            }
        }
        (batch, rows)
    }

    /// Drops waiting requests for which `keep` is false (clients that went away); returns how many.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let before = self.waiting.len();
        self.waiting.retain(|waiting| keep(&waiting.item));
        before - self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u8) -> BatchKey {
        BatchKey::for_test(id)
    }

    fn policy(max_batch_size: usize, delay_ms: u64) -> BatchPolicy<&'static str> {
        BatchPolicy::new(PolicyConfig { max_batch_size, max_queue_delay: Duration::from_millis(delay_ms) })
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_delay_then_dispatches_what_it_has() {
        let mut policy = policy(8, 5);
        assert_eq!(policy.decide(Instant::now()), Decision::Idle);
        let start = Instant::now();
        policy.push("a", 1, key(0), start);
        assert_eq!(policy.decide(Instant::now()), Decision::WaitUntil(start + Duration::from_millis(5)));
        tokio::time::advance(Duration::from_millis(2)).await;
        policy.push("b", 2, key(0), Instant::now());
        assert_eq!(policy.decide(Instant::now()), Decision::WaitUntil(start + Duration::from_millis(5)), "the oldest sets the deadline");
        tokio::time::advance(Duration::from_millis(3)).await;
        assert_eq!(policy.decide(Instant::now()), Decision::Dispatch);
        assert_eq!(policy.take_batch(), (vec!["a", "b"], 3));
        assert!(policy.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once_and_the_rest_waits() {
        let mut policy = policy(4, 1000);
        for name in ["a", "b", "c", "d", "e"] {
            policy.push(name, 1, key(0), Instant::now());
        }
        assert_eq!(policy.decide(Instant::now()), Decision::Dispatch);
        assert_eq!(policy.take_batch(), (vec!["a", "b", "c", "d"], 4));
        assert!(matches!(policy.decide(Instant::now()), Decision::WaitUntil(_)));
        assert_eq!(policy.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_delay_dispatches_immediately() {
        let mut policy = policy(16, 0);
        policy.push("a", 1, key(0), Instant::now());
        assert_eq!(policy.decide(Instant::now()), Decision::Dispatch);
    }

    #[tokio::test(start_paused = true)]
    async fn only_same_key_requests_merge_and_order_is_kept() {
        let mut policy = policy(8, 0);
        policy.push("a", 1, key(0), Instant::now());
        policy.push("x", 1, key(1), Instant::now());
        policy.push("b", 3, key(0), Instant::now());
        policy.push("c", 5, key(0), Instant::now()); // would overflow 8 with a and b
        policy.push("d", 4, key(0), Instant::now());
        assert_eq!(policy.take_batch(), (vec!["a", "b", "d"], 8));
        assert_eq!(policy.take_batch(), (vec!["x"], 1));
        assert_eq!(policy.take_batch(), (vec!["c"], 5));
    }

    #[tokio::test(start_paused = true)]
    async fn no_batching_takes_one_request_at_a_time() {
        let mut policy = policy(0, 100);
        policy.push("a", 3, key(0), Instant::now());
        policy.push("b", 3, key(0), Instant::now());
        assert_eq!(policy.decide(Instant::now()), Decision::Dispatch);
        assert_eq!(policy.take_batch(), (vec!["a"], 3));
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_requests_are_dropped_before_batching() {
        let mut policy = policy(8, 0);
        for name in ["a", "gone", "b"] {
            policy.push(name, 1, key(0), Instant::now());
        }
        assert_eq!(policy.retain(|name| *name != "gone"), 1);
        assert_eq!(policy.take_batch(), (vec!["a", "b"], 2));
    }
}
