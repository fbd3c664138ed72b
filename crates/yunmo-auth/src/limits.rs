//! Rate limits (token buckets) and monthly quotas, per key and per tenant, held in memory.
//!
//! A request is admitted only if every bucket and quota of its key and its tenant has room; then, in the
//! same critical section, one request is taken from each bucket and counted against each monthly request
//! quota, so concurrent requests cannot overshoot a request limit. Tokens and compute time are known only
//! when a request ends: they are charged then, so token and compute limits can be passed by at most the
//! requests in flight when the limit was reached. Monthly counters start from the database's usage totals
//! the first time a subject is seen in a month.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use yunmo_registry::{Registry, UsageSubject, UsageTotals};
use yunmo_types::Limits;
use yunmo_types::{Code, ServiceError};

use crate::Principal;
use crate::calendar;

/// Whose limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A key, by id.
    Key(String),
    /// A tenant, by name.
    Tenant(String),
}

impl Subject {
    fn describe(&self) -> String {
        match self {
            Subject::Key(id) => format!("key '{id}'"),
            Subject::Tenant(name) => format!("tenant '{name}'"),
        }
    }
}

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
    fn wait_for(&self, needed: f64) -> u64 {
        ((needed - self.level) / self.per_second).ceil().max(1.0) as u64
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
pub struct Limiter {
    registry: Registry,
    states: Mutex<HashMap<Subject, State>>,
}

/// What an admitted request holds: the subjects to charge when it ends.
#[derive(Debug)]
pub struct Admission {
    subjects: Vec<(Subject, Limits)>,
}

fn has_quota(limits: &Limits) -> bool {
    limits.monthly_requests.is_some() || limits.monthly_tokens.is_some() || limits.monthly_compute_seconds.is_some()
}

fn has_any(limits: &Limits) -> bool {
    has_quota(limits) || limits.requests_per_second.is_some() || limits.tokens_per_minute.is_some()
}

impl Limiter {
    /// Limits backed by `registry`'s usage totals.
    pub fn new(registry: Registry) -> Limiter {
        Limiter { registry, states: Mutex::new(HashMap::new()) }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, State>> {
        self.states.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits one request of `principal` or says which limit stops it and when to retry.
    pub async fn admit(&self, principal: &Principal) -> Result<Admission, ServiceError> {
        let mut subjects = Vec::with_capacity(2);
        if has_any(&principal.key_limits) {
            subjects.push((Subject::Key(principal.key_id.clone()), principal.key_limits));
        }
        if has_any(&principal.tenant_limits) {
            subjects.push((Subject::Tenant(principal.tenant.clone()), principal.tenant_limits));
        }
        if subjects.is_empty() {
            // Unlimited keys of unlimited tenants take no lock.
            return Ok(Admission { subjects });
        }
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
    pub fn charge(&self, admission: &Admission, tokens: u64, compute_ms: u64) {
        if admission.subjects.is_empty() {
            return;
        }
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
        let query = match subject {
            Subject::Key(id) => UsageSubject::Key(id),
            Subject::Tenant(name) => UsageSubject::Tenant(name),
        };
        let totals = self.registry.usage_totals(query, month).await?;
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
                let now = calendar::now_ms();
                let reset = calendar::next_month_start_ms(now);
                return Err(ServiceError::new(
                    Code::QuotaExceeded,
                    format!(
                        "the {name} quota of {quota} for {} is used up ({used} used); it resets at {}",
                        subject.describe(),
                        calendar::format_utc(reset)
                    ),
                )
                .with_retry_after(((reset - now) / 1000).max(1) as u64));
            }
        }
    }
    if let Some(rps) = limits.requests_per_second {
        let capacity = limits.requests_burst.map_or(rps.ceil().max(1.0), |burst| burst as f64);
        let bucket = state.requests.get_or_insert_with(|| Bucket::new(capacity, rps));
        bucket.refill(capacity, rps);
        if bucket.level < 1.0 {
            return Err(ServiceError::new(
                Code::RateLimited,
                format!("the requests_per_second limit of {rps} (burst {capacity}) for {} is reached", subject.describe()),
            )
            .with_retry_after(bucket.wait_for(1.0)));
        }
    }
    if let Some(per_minute) = limits.tokens_per_minute {
        let bucket = state.tokens.get_or_insert_with(|| Bucket::new(per_minute as f64, per_minute as f64 / 60.0));
        bucket.refill(per_minute as f64, per_minute as f64 / 60.0);
        if bucket.level <= 0.0 {
            return Err(ServiceError::new(
                Code::RateLimited,
                format!("the tokens_per_minute limit of {per_minute} for {} is reached", subject.describe()),
            )
            .with_retry_after(bucket.wait_for(1.0)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn limiter() -> (Limiter, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&yunmo_registry::RegistryConfig::new(dir.path())).await.unwrap();
        (Limiter::new(registry), dir)
    }

    fn principal(key: Limits, tenant: Limits) -> Principal {
        Principal { key_limits: key, tenant_limits: tenant, ..Principal::local() }
    }

    #[tokio::test]
    async fn burst_then_refusal_with_retry_after() {
        let (limiter, _dir) = limiter().await;
        let caller = principal(Limits { requests_per_second: Some(0.5), requests_burst: Some(3), ..Limits::default() }, Limits::default());
        for _ in 0..3 {
            limiter.admit(&caller).await.unwrap();
        }
        let error = limiter.admit(&caller).await.unwrap_err();
        assert_eq!(error.code, Code::RateLimited);
        assert!(error.message.contains("requests_per_second"), "{}", error.message);
        assert_eq!(error.retry_after, Some(2));
    }

    #[tokio::test]
    async fn tenant_quota_counts_every_key_and_names_the_reset() {
        let (limiter, _dir) = limiter().await;
        let tenant = Limits { monthly_requests: Some(2), ..Limits::default() };
        let a = Principal { key_id: "a".into(), ..principal(Limits::default(), tenant) };
        let b = Principal { key_id: "b".into(), ..principal(Limits::default(), tenant) };
        limiter.admit(&a).await.unwrap();
        limiter.admit(&b).await.unwrap();
        let error = limiter.admit(&a).await.unwrap_err();
        assert_eq!(error.code, Code::QuotaExceeded);
        assert!(error.message.contains("monthly_requests") && error.message.contains("resets at"), "{}", error.message);
    }

    #[tokio::test]
    async fn tokens_are_charged_when_a_request_ends() {
        let (limiter, _dir) = limiter().await;
        let caller = principal(Limits { tokens_per_minute: Some(100), monthly_tokens: Some(150), ..Limits::default() }, Limits::default());
        let admission = limiter.admit(&caller).await.unwrap();
        limiter.charge(&admission, 120, 5);
        let error = limiter.admit(&caller).await.unwrap_err();
        assert_eq!(error.code, Code::RateLimited, "{}", error.message);
    }
}
