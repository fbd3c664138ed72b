//! The in-memory limit store: buckets and monthly counters of the keys and tenants this process has seen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use yunmo_registry::{Registry, UsageTotals};
use yunmo_types::{Limits, ServiceError};

use super::{Admission, Subject, has_quota, quota_exceeded, rate_limited, request_capacity};
use crate::calendar;

#[derive(Debug)]
struct Bucket {
    level: f64,
    capacity: f64,
    per_second: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: f64, per_second: f64) -> Bucket {
        Bucket { level: capacity, capacity, per_second, updated: Instant::now() }
    }

    /// Refills for the time passed; reshapes if the limit changed.
    fn refill(&mut self, capacity: f64, per_second: f64) {
        if capacity != self.capacity || per_second != self.per_second {
            self.level = self.level.min(capacity);
            self.capacity = capacity;
            self.per_second = per_second;
        }
        let now = Instant::now();
        self.level = (self.level + (now - self.updated).as_secs_f64() * self.per_second).min(self.capacity);
        self.updated = now;
    }

    /// Seconds until the level reaches `needed`.
    fn wait_for(&self, needed: f64) -> f64 {
        (needed - self.level) / self.per_second
    }
}

#[derive(Debug, Default)]
struct State {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    month: i64,
    used: Option<UsageTotals>,
}

/// The limits of every key and tenant seen by this process.
pub(super) struct Local {
    registry: Registry,
    states: Mutex<HashMap<Subject, State>>,
}

impl Local {
    pub(super) fn new(registry: Registry) -> Local {
        Local { registry, states: Mutex::new(HashMap::new()) }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, State>> {
        self.states.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits one request against `subjects`' limits.
    pub(super) async fn admit(&self, subjects: Vec<(Subject, Limits)>) -> Result<Admission, ServiceError> {
        let month = calendar::month_start_ms(calendar::now_ms());
        for (subject, limits) in &subjects {
            if has_quota(limits) {
                self.seed(subject, month).await?;
            }
        }
        let mut states = self.states();
        for (subject, limits) in &subjects {
            let state = states.entry(subject.clone()).or_default();
            check(subject, limits, state)?;
        }
        for (subject, limits) in &subjects {
            let state = states.get_mut(subject).expect("checked above");
            if limits.requests_per_second.is_some()
                && let Some(bucket) = &mut state.requests
            {
                bucket.level -= 1.0;
            }
            if let Some(used) = &mut state.used {
                used.requests += 1;
            }
        }
        Ok(Admission { subjects })
    }

    /// Charges the tokens and compute time of an admitted request that ended.
    pub(super) fn charge(&self, admission: &Admission, tokens: u64, compute_ms: u64) {
        let mut states = self.states();
        for (subject, limits) in &admission.subjects {
            let Some(state) = states.get_mut(subject) else { continue };
            if let (Some(per_minute), Some(bucket)) = (limits.tokens_per_minute, &mut state.tokens) {
                bucket.refill(per_minute as f64, per_minute as f64 / 60.0);
                bucket.level -= tokens as f64;
            }
            if let Some(used) = &mut state.used {
                used.tokens += tokens;
                used.compute_ms += compute_ms;
            }
        }
    }

    /// Loads this month's totals of `subject` from the database once per month.
    async fn seed(&self, subject: &Subject, month: i64) -> Result<(), ServiceError> {
        let fresh = self.states().get(subject).is_some_and(|state| state.used.is_some() && state.month == month);
        if fresh {
            return Ok(());
        }
        let totals = self.registry.usage_totals(subject.usage(), month).await?;
        let mut states = self.states();
        let state = states.entry(subject.clone()).or_default();
        if state.used.is_none() || state.month != month {
            state.used = Some(totals);
            state.month = month;
        }
        Ok(())
    }
}

/// Checks every limit of one subject without taking anything.
fn check(subject: &Subject, limits: &Limits, state: &mut State) -> Result<(), ServiceError> {
    if let Some(used) = &state.used {
        let quotas = [
            ("monthly_requests", limits.monthly_requests.map(|q| q as f64), used.requests as f64),
            ("monthly_tokens", limits.monthly_tokens.map(|q| q as f64), used.tokens as f64),
            ("monthly_compute_seconds", limits.monthly_compute_seconds, used.compute_ms as f64 / 1000.0),
        ];
        for (name, quota, used) in quotas {
            if let Some(quota) = quota
                && used >= quota
            {
                return Err(quota_exceeded(subject, name, quota, used));
            }
        }
    }
    if let Some(rps) = limits.requests_per_second {
        let capacity = request_capacity(limits, rps);
        let bucket = state.requests.get_or_insert_with(|| Bucket::new(capacity, rps));
        bucket.refill(capacity, rps);
        if bucket.level < 1.0 {
            let what = format!("requests_per_second limit of {rps} (burst {capacity})");
            return Err(rate_limited(subject, what, bucket.wait_for(1.0)));
        }
    }
    if let Some(per_minute) = limits.tokens_per_minute {
        let bucket = state.tokens.get_or_insert_with(|| Bucket::new(per_minute as f64, per_minute as f64 / 60.0));
        bucket.refill(per_minute as f64, per_minute as f64 / 60.0);
        if bucket.level <= 0.0 {
            return Err(rate_limited(subject, format!("tokens_per_minute limit of {per_minute}"), bucket.wait_for(1.0)));
        }
    }
    Ok(())
}
