//! Live statistics of each loaded version, second by second over the last 15 minutes, for the console's live
//! charts and `GET /api/v1/stats`.
//!
//! A request costs two or three atomic updates and no lock or allocation: every counter is one `AtomicU64`
//! whose high 32 bits stamp the second it counts and whose low 32 bits count, so a counter found stamped with
//! an older second restarts at the new one in the same compare-and-swap, and a reader takes a count only
//! where the stamp is the second it asks for. Counts are exact; nothing is lost at a second's turn.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::InferenceService;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds the ring holds.
pub const SECONDS: u64 = 900;
/// Latency buckets: bucket `i` holds latencies up to 100 µs × 2^i (the last one, everything above 28 min).
const LATENCY_BUCKETS: usize = 25;

/// How a request ended, as the live statistics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Answered.
    Ok,
    /// Refused for what it asked (a bad input, an unknown model): the caller's mistake.
    Invalid,
    /// Refused for load: a full queue, a limit or quota, a model not ready, a store down.
    Overloaded,
    /// Past its deadline.
    Timeout,
    /// The runtime or the server failed.
    Failed,
    /// The client went away before the end (a generation whose stream was dropped).
    Cancelled,
}

/// The failure kinds, in the order of [`Series::failures`].
pub const FAILURE_KINDS: [Ending; 5] = [Ending::Invalid, Ending::Overloaded, Ending::Timeout, Ending::Failed, Ending::Cancelled];

impl Ending {
    /// The ending of a request that failed with `code`.
    pub fn of(code: crate::Code) -> Ending {
        use crate::Code;
        match code {
            Code::InvalidRequest
            | Code::PayloadTooLarge
            | Code::ModelNotFound
            | Code::Conflict
            | Code::Unauthenticated
            | Code::PermissionDenied
            | Code::HeadersTooLarge
            | Code::UnsupportedMediaType
            | Code::MethodNotAllowed
            | Code::NotFound => Ending::Invalid,
            Code::Overloaded | Code::RateLimited | Code::QuotaExceeded | Code::ModelNotReady | Code::Unavailable => Ending::Overloaded,
            Code::Timeout => Ending::Timeout,
            Code::InferenceFailed | Code::Internal => Ending::Failed,
        }
    }

    /// The ending of a request that returned `result`.
    pub fn of_result<T>(result: &Result<T, crate::ServiceError>) -> Ending {
        result.as_ref().map_or_else(|error| Ending::of(error.code), |_| Ending::Ok)
    }

    /// Its name in the API (`invalid`, `overloaded`, `timeout`, `failed`, `cancelled`; `ok`).
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Ok => "ok",
            Ending::Invalid => "invalid",
            Ending::Overloaded => "overloaded",
            Ending::Timeout => "timeout",
            Ending::Failed => "failed",
            Ending::Cancelled => "cancelled",
        }
    }

    fn failure_index(self) -> Option<usize> {
        FAILURE_KINDS.iter().position(|kind| *kind == self)
    }
}

/// One second's counters.
struct Slot {
    requests: AtomicU64,
    failures: [AtomicU64; FAILURE_KINDS.len()],
    tokens: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS],
}

/// One second's token timings (LLM versions only).
struct TokenSlot {
    first_token: [AtomicU64; LATENCY_BUCKETS],
    inter_token: [AtomicU64; LATENCY_BUCKETS],
}

/// The per-second counters of one loaded version.
pub(crate) struct StatsRing {
    slots: Box<[Slot]>,
    tokens: Option<Box<[TokenSlot]>>,
    /// Its cumulative counters (Triton's statistics extension), shared with its worker threads.
    pub(crate) totals: std::sync::Arc<crate::totals::Totals>,
}

/// The current Unix second.
pub(crate) fn unix_second() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Adds `amount` to `counter` for `second`, restarting it if it counted an older second.
fn add(counter: &AtomicU64, second: u64, amount: u64) {
    let stamp = (second & 0xffff_ffff) << 32;
    let mut current = counter.load(Ordering::Relaxed);
    loop {
        let next = if current & !0xffff_ffff == stamp {
            current + amount.min(0xffff_ffff - (current & 0xffff_ffff))
        } else {
            stamp | amount.min(0xffff_ffff)
        };
        match counter.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// What `counter` counted in `second` (0 if it holds another second).
fn read(counter: &AtomicU64, second: u64) -> u64 {
    let value = counter.load(Ordering::Relaxed);
    if value >> 32 == second & 0xffff_ffff { value & 0xffff_ffff } else { 0 }
}

fn bucket(latency: Duration) -> usize {
    let tenths_of_ms = latency.as_micros().div_ceil(100) as u64;
    // Bucket i holds up to 2^i tenths of a millisecond.
    (u64::BITS - tenths_of_ms.saturating_sub(1).leading_zeros()).min(LATENCY_BUCKETS as u32 - 1) as usize
}

/// The upper bound of bucket `i`, in milliseconds.
fn bucket_ms(i: usize) -> f64 {
    0.1 * (1u64 << i) as f64
}

/// One version's series over a window, one entry per second (oldest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Unix seconds.
    pub seconds: Vec<u64>,
    /// Requests that ended in that second (answered or failed).
    pub requests: Vec<u64>,
    /// Of them, failed (all kinds).
    pub failed: Vec<u64>,
    /// Failures by kind, in the order of [`FAILURE_KINDS`].
    pub failures: [Vec<u64>; FAILURE_KINDS.len()],
    /// Tokens generated (LLMs).
    pub tokens: Vec<u64>,
    /// Median latency in milliseconds (the upper bound of its bucket; `None` without requests).
    pub p50_ms: Vec<Option<f64>>,
    /// 99th percentile latency in milliseconds, likewise.
    pub p99_ms: Vec<Option<f64>>,
    /// LLMs: median time to first token, likewise (empty for tensor versions).
    pub first_token_p50_ms: Vec<Option<f64>>,
    /// LLMs: median time between tokens, likewise (empty for tensor versions).
    pub inter_token_p50_ms: Vec<Option<f64>>,
}

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// Which kind of version a ring counts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RingKind {
    /// Tensor versions: requests, failures, latency.
    Tensor,
    /// LLMs: also tokens and token timings.
    Generate,
}

impl StatsRing {
    pub(crate) fn new(kind: RingKind) -> StatsRing {
        let slots = (0..SECONDS)
            .map(|_| Slot { requests: AtomicU64::new(0), failures: counters(), tokens: AtomicU64::new(0), latency: counters() })
            .collect();
        let tokens = (kind == RingKind::Generate)
            .then(|| (0..SECONDS).map(|_| TokenSlot { first_token: counters(), inter_token: counters() }).collect());
        StatsRing { slots, tokens, totals: Default::default() }
    }

    fn slot(&self, second: u64) -> &Slot {
        &self.slots[(second % SECONDS) as usize]
    }

    /// Records a request that ended now as `ending`, after `latency`, and the tokens it generated.
    pub(crate) fn record(&self, ending: Ending, latency: Duration, tokens: u64) {
        self.totals.ended(ending == Ending::Ok, latency);
        let second = unix_second();
        let slot = self.slot(second);
        add(&slot.requests, second, 1);
        if let Some(kind) = ending.failure_index() {
            add(&slot.failures[kind], second, 1);
        }
        if tokens > 0 {
            add(&slot.tokens, second, tokens);
        }
        add(&slot.latency[bucket(latency)], second, 1);
    }

    /// Records a generated token that came `gap` after the previous one (or after the request's start, for
    /// the first).
    pub(crate) fn record_token(&self, first: bool, gap: Duration) {
        let Some(slots) = &self.tokens else { return };
        let second = unix_second();
        let slot = &slots[(second % SECONDS) as usize];
        let buckets = if first { &slot.first_token } else { &slot.inter_token };
        add(&buckets[bucket(gap)], second, 1);
    }

    /// The last `seconds` seconds up to and including `now` (at most [`SECONDS`]).
    pub(crate) fn series(&self, now: u64, seconds: u64) -> Series {
        let mut series = Series::default();
        for second in now.saturating_sub(seconds.clamp(1, SECONDS) - 1)..=now {
            let slot = self.slot(second);
            let requests = read(&slot.requests, second);
            series.seconds.push(second);
            series.requests.push(requests);
            let mut failed = 0;
            for (kind, counter) in slot.failures.iter().enumerate() {
                let count = read(counter, second);
                failed += count;
                series.failures[kind].push(count);
            }
            series.failed.push(failed);
            series.tokens.push(read(&slot.tokens, second));
            let latency = counts(&slot.latency, second);
            series.p50_ms.push(quantile(&latency, 0.5));
            series.p99_ms.push(quantile(&latency, 0.99));
            if let Some(slots) = &self.tokens {
                let slot = &slots[(second % SECONDS) as usize];
                series.first_token_p50_ms.push(quantile(&counts(&slot.first_token, second), 0.5));
                series.inter_token_p50_ms.push(quantile(&counts(&slot.inter_token, second), 0.5));
            }
        }
        series
    }
}

/// Sums over a window of seconds, for the alert rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct WindowSummary {
    /// Requests that ended.
    pub requests: u64,
    /// Failures by kind, in the order of [`FAILURE_KINDS`].
    pub failures: [u64; FAILURE_KINDS.len()],
    /// Latency bucket counts.
    pub latency: [u64; LATENCY_BUCKETS],
}

impl WindowSummary {
    /// Failures that are the server's or the load's (failed, timeout, overloaded), not the caller's.
    pub(crate) fn server_failures(&self) -> u64 {
        FAILURE_KINDS
            .iter()
            .zip(self.failures)
            .filter(|(kind, _)| matches!(kind, Ending::Failed | Ending::Timeout | Ending::Overloaded))
            .map(|(_, count)| count)
            .sum()
    }

    /// The 99th percentile latency in milliseconds (the upper bound of its bucket).
    pub(crate) fn p99_ms(&self) -> Option<f64> {
        quantile(&self.latency, 0.99)
    }
}

impl StatsRing {
    /// The sums over the last `seconds` up to `now` (at most [`SECONDS`]).
    pub(crate) fn summary(&self, now: u64, seconds: u64) -> WindowSummary {
        let mut summary = WindowSummary::default();
        for second in now.saturating_sub(seconds.clamp(1, SECONDS) - 1)..=now {
            let slot = self.slot(second);
            summary.requests += read(&slot.requests, second);
            for (total, counter) in summary.failures.iter_mut().zip(&slot.failures) {
                *total += read(counter, second);
            }
            for (total, counter) in summary.latency.iter_mut().zip(&slot.latency) {
                *total += read(counter, second);
            }
        }
        summary
    }
}

/// What each bucket counted in `second`.
fn counts(buckets: &[AtomicU64; LATENCY_BUCKETS], second: u64) -> [u64; LATENCY_BUCKETS] {
    std::array::from_fn(|i| read(&buckets[i], second))
}

/// The upper bound (ms) of the bucket holding quantile `q` of `counts`.
fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    counts
        .iter()
        .position(|count| {
            seen += count;
            seen >= rank
        })
        .map(bucket_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_and_a_turned_second_restarts_its_slot() {
        let ring = StatsRing::new(RingKind::Tensor);
        let slot = ring.slot(1000);
        for _ in 0..5 {
            add(&slot.requests, 1000, 1);
        }
        assert_eq!(read(&slot.requests, 1000), 5);
        assert_eq!(read(&slot.requests, 1000 + SECONDS), 0, "another second's count is not this one's");
        add(&slot.requests, 1000 + SECONDS, 1);
        assert_eq!(read(&slot.requests, 1000 + SECONDS), 1, "the slot restarts at the new second");
        assert_eq!(read(&slot.requests, 1000), 0);
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let ring = std::sync::Arc::new(StatsRing::new(RingKind::Tensor));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        let ending = if i % 10 == 0 { Ending::Timeout } else { Ending::Ok };
                        ring.record(ending, Duration::from_micros(500), 2);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let series = ring.series(unix_second(), 10);
        assert_eq!(series.requests.iter().sum::<u64>(), 40_000);
        assert_eq!(series.failed.iter().sum::<u64>(), 4_000);
        assert_eq!(series.failures[2].iter().sum::<u64>(), 4_000, "all timeouts");
        assert!(series.first_token_p50_ms.is_empty(), "a tensor version has no token timings");
        assert_eq!(series.tokens.iter().sum::<u64>(), 80_000);
    }

    #[test]
    fn an_llm_ring_keeps_token_timings_by_second() {
        let ring = StatsRing::new(RingKind::Generate);
        ring.record_token(true, Duration::from_millis(3));
        for _ in 0..9 {
            ring.record_token(false, Duration::from_micros(150));
        }
        ring.record(Ending::Cancelled, Duration::from_millis(5), 10);
        let series = ring.series(unix_second(), 3);
        assert_eq!(series.first_token_p50_ms.iter().flatten().copied().collect::<Vec<_>>(), [3.2]);
        assert_eq!(series.inter_token_p50_ms.iter().flatten().copied().collect::<Vec<_>>(), [0.2]);
        assert_eq!(series.failures[4].iter().sum::<u64>(), 1, "cancelled");
        assert_eq!(series.tokens.iter().sum::<u64>(), 10);
    }

    #[test]
    fn every_code_has_a_failure_kind() {
        use crate::Code;
        for code in Code::ALL {
            assert_ne!(Ending::of(code), Ending::Ok, "{code:?}");
        }
        assert_eq!(Ending::of(Code::RateLimited), Ending::Overloaded);
        assert_eq!(Ending::of(Code::InvalidRequest), Ending::Invalid);
        assert_eq!(Ending::of(Code::Internal), Ending::Failed);
    }

    #[test]
    fn quantiles_come_from_the_latency_buckets() {
        assert_eq!(bucket(Duration::from_micros(50)), 0);
        assert_eq!(bucket(Duration::from_micros(100)), 0);
        assert_eq!(bucket(Duration::from_micros(101)), 1);
        assert_eq!(bucket(Duration::from_millis(3)), 5, "3 ms is within 0.1 ms x 2^5 = 3.2 ms");
        assert_eq!(bucket(Duration::from_secs(10_000)), LATENCY_BUCKETS - 1);
        let mut counts = [0u64; LATENCY_BUCKETS];
        counts[3] = 98;
        counts[10] = 2;
        assert_eq!(quantile(&counts, 0.5), Some(0.8));
        assert_eq!(quantile(&counts, 0.99), Some(102.4));
        assert_eq!(quantile(&[0; LATENCY_BUCKETS], 0.5), None);
    }
}

/// One loaded version's live statistics.
#[derive(Debug, Clone)]
pub struct VersionStats {
    /// The model, as the caller names it (its own without the tenant prefix).
    pub model: String,
    /// The version.
    pub version: u64,
    /// `tensor` (ONNX, embeddings) or `generate` (LLM).
    pub kind: &'static str,
    /// Requests waiting now (tensor queue, or an LLM's waiting sequences).
    pub queue_depth: usize,
    /// The most that may wait (tensor versions).
    pub queue_capacity: Option<usize>,
    /// LLMs: sequences being prefilled or decoded now.
    pub running: Option<usize>,
    /// LLMs: share of the KV cache holding tokens now, 0 to 1.
    pub kv_cache_usage: Option<f64>,
    /// Its second-by-second series.
    pub series: Series,
}

impl InferenceService {
    /// Live statistics of the loaded versions the caller can see (of `model` only, when given, named as the
    /// caller names it), second by second over the last `seconds` (1 to 900), with the newest second of every
    /// series. Needs `models:read`, `models:write` or `metrics`.
    pub async fn live_stats(
        &self,
        call: &crate::Call,
        model: Option<&str>,
        seconds: u64,
    ) -> Result<(u64, Vec<VersionStats>), crate::ServiceError> {
        use yunmo_types::Scope;
        if !call.principal.has_any(&[Scope::ModelsRead, Scope::ModelsWrite, Scope::Metrics]) {
            return Err(call.principal.lacks(Scope::ModelsRead));
        }
        if !(1..=SECONDS).contains(&seconds) {
            return Err(crate::ServiceError::invalid(format!("seconds must be between 1 and {SECONDS}, got {seconds}")));
        }
        let visible: std::collections::HashSet<String> = self.visible_models(call).await?.into_iter().map(|model| model.name).collect();
        let tenant = &call.principal.tenant;
        let now = unix_second();
        let mut found: Vec<VersionStats> = self
            .models()
            .loaded()
            .into_iter()
            .filter(|loaded| visible.contains(&loaded.key.0))
            .filter(|loaded| model.is_none_or(|wanted| wanted == loaded.key.0 || wanted == yunmo_registry::name_for(&loaded.key.0, tenant)))
            .map(|loaded| {
                let (queue_depth, queue_capacity) = loaded.queue();
                let engine = loaded.generator().map(|generator| generator.stats());
                VersionStats {
                    model: yunmo_registry::name_for(&loaded.key.0, tenant).to_string(),
                    version: loaded.key.1,
                    kind: if loaded.generator().is_some() { "generate" } else { "tensor" },
                    queue_depth,
                    queue_capacity,
                    running: engine.map(|engine| engine.running),
                    kv_cache_usage: engine
                        .filter(|engine| engine.kv_cells_total > 0)
                        .map(|engine| engine.kv_cells_used as f64 / engine.kv_cells_total as f64),
                    series: loaded.stats.series(now, seconds),
                }
            })
            .collect();
        found.sort_by(|a, b| (&a.model, a.version).cmp(&(&b.model, b.version)));
        Ok((now, found))
    }
}

/// One version's Triton statistics, as the caller names its model.
#[derive(Debug, Clone)]
pub struct VersionTotals {
    pub model: String,
    pub version: u64,
    pub totals: crate::totals::TotalsSnapshot,
}

impl InferenceService {
    /// Triton's statistics of every loaded version the caller can see (read access), by model and version.
    pub async fn all_statistics(&self, call: &crate::Call) -> Result<Vec<VersionTotals>, crate::ServiceError> {
        let visible: std::collections::HashSet<String> = self.visible_models(call).await?.into_iter().map(|model| model.name).collect();
        let mut found: Vec<VersionTotals> = self
            .models()
            .loaded()
            .into_iter()
            .filter(|loaded| visible.contains(&loaded.key.0))
            .map(|loaded| VersionTotals {
                model: yunmo_registry::name_for(&loaded.key.0, &call.principal.tenant).to_string(),
                version: loaded.key.1,
                totals: loaded.stats.totals.snapshot(),
            })
            .collect();
        found.sort_by(|a, b| (&a.model, a.version).cmp(&(&b.model, b.version)));
        Ok(found)
    }

    /// Triton's statistics of the target's loaded versions (of its version only, when it names one); a
    /// version not loaded (yet) counts zero, so a model that exists always has an entry.
    pub async fn model_statistics(&self, call: &crate::Call, target: &crate::Target) -> Result<Vec<VersionTotals>, crate::ServiceError> {
        target.permits(call, yunmo_auth::Action::Read)?;
        let named = yunmo_registry::name_for(target.name(), &call.principal.tenant).to_string();
        let entry = |version: u64, totals| VersionTotals { model: named.clone(), version, totals };
        let loaded: Vec<_> = self
            .models()
            .loaded()
            .into_iter()
            .filter(|loaded| loaded.key.0 == target.name() && target.version().is_none_or(|version| version == loaded.key.1))
            .collect();
        if loaded.is_empty() {
            let version = self.resolve(target.name(), target.version()).await?;
            return Ok(vec![entry(version.version, Default::default())]);
        }
        let mut found: Vec<VersionTotals> = loaded.iter().map(|loaded| entry(loaded.key.1, loaded.stats.totals.snapshot())).collect();
        found.sort_by_key(|entry| entry.version);
        Ok(found)
    }
}
