//! Rate limits (token buckets) and monthly quotas, per key and per tenant, in one of two stores: this
//! process's memory ([`LimitStore::Local`], one server) or Redis ([`LimitStore::Redis`], shared by every
//! replica, so a tenant limited to N requests/s gets N/s from the whole cluster).
//!
//! Both stores keep the same rules. A request is admitted only if every bucket and quota of its key and its
//! tenant has room; then, atomically with the check, one request is taken from each bucket and counted
//! against each monthly request quota, so concurrent requests cannot overshoot a request limit. Tokens and
//! compute time are known only when a request ends: they are charged then, so token and compute limits can be
//! passed by at most the requests in flight when the limit was reached. Monthly counters start from the
//! database's usage totals the first time a subject is seen in a month (in Redis: whenever its counter is
//! missing, also after Redis lost its data).
//!
//! When Redis cannot be reached, [`OnFailure`] decides: refuse with 503 or admit without limits; each such
//! request is counted in [`LIMIT_STORE_FAILURES_TOTAL`] and the first of a run is logged. It never falls back
//! to per-replica limits.

mod local;
mod redis;

use std::time::Duration;

use yunmo_registry::Registry;
use yunmo_types::{Code, Limits, ServiceError};

use crate::Principal;
use crate::calendar;

/// Requests admitted or refused because the limit store could not be reached, by `behaviour` (deny, allow).
pub const LIMIT_STORE_FAILURES_TOTAL: &str = "yunmo_limit_store_failures_total";

/// Where limits are counted.
#[derive(Debug, Clone, Default)]
pub enum LimitStore {
    /// In this process (one server; replicas would each allow the full limit).
    #[default]
    Local,
    /// In a Redis server every replica shares.
    Redis(RedisLimits),
}

/// How to reach the shared limit store and what to do without it.
#[derive(Clone)]
pub struct RedisLimits {
    /// `redis://[:password@]host:port/db` (a secret: never logged).
    pub url: String,
    /// Longest wait for one answer (or a connection) before the store counts as down.
    pub timeout: Duration,
    /// What a request gets while the store is down.
    pub on_failure: OnFailure,
}

impl std::fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimits")
            .field("url", &"<secret>")
            .field("timeout", &self.timeout)
            .field("on_failure", &self.on_failure)
            .finish()
    }
}

/// What a request gets while the limit store is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// 503 with Retry-After: limits hold, availability suffers.
    Deny,
    /// Admitted without limits or quotas: availability holds, limits do not.
    Allow,
}

impl OnFailure {
    fn label(self) -> &'static str {
        match self {
            OnFailure::Deny => "deny",
            OnFailure::Allow => "allow",
        }
    }
}

/// Whose limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A key, by id.
    Key(String),
    /// A tenant, by name.
    Tenant(String),
}

impl Subject {
    /// Its usage totals' query (monthly counters start from them).
    fn usage(&self) -> yunmo_registry::UsageSubject<'_> {
        match self {
            Subject::Key(id) => yunmo_registry::UsageSubject::Key(id),
            Subject::Tenant(name) => yunmo_registry::UsageSubject::Tenant(name),
        }
    }

    fn describe(&self) -> String {
        match self {
            Subject::Key(id) => format!("key '{id}'"),
            Subject::Tenant(name) => format!("tenant '{name}'"),
        }
    }
}

/// What an admitted request holds: the subjects to charge when it ends.
#[derive(Debug)]
pub struct Admission {
    subjects: Vec<(Subject, Limits)>,
}

impl Admission {
    /// An admission that charges nothing (no limits, or admitted while the store was down).
    fn unlimited() -> Admission {
        Admission { subjects: Vec::new() }
    }
}

fn has_quota(limits: &Limits) -> bool {
    limits.monthly_requests.is_some() || limits.monthly_tokens.is_some() || limits.monthly_compute_seconds.is_some()
}

fn has_any(limits: &Limits) -> bool {
    has_quota(limits) || limits.requests_per_second.is_some() || limits.tokens_per_minute.is_some()
}

/// The request bucket's capacity: the burst if set, else one second's worth (at least one request).
fn request_capacity(limits: &Limits, rps: f64) -> f64 {
    limits.requests_burst.map_or(rps.ceil().max(1.0), |burst| burst as f64)
}

/// The subjects whose limits apply to `principal`'s requests.
fn subjects(principal: &Principal) -> Vec<(Subject, Limits)> {
    let mut subjects = Vec::with_capacity(2);
    if has_any(&principal.key_limits) {
        subjects.push((Subject::Key(principal.key_id.clone()), principal.key_limits));
    }
    if has_any(&principal.tenant_limits) {
        subjects.push((Subject::Tenant(principal.tenant.clone()), principal.tenant_limits));
    }
    subjects
}

/// The refusal for a used-up monthly quota.
fn quota_exceeded(subject: &Subject, name: &str, quota: f64, used: f64) -> ServiceError {
    let now = calendar::now_ms();
    let reset = calendar::next_month_start_ms(now);
    ServiceError::new(
        Code::QuotaExceeded,
        format!(
            "the {name} quota of {quota} for {} is used up ({used} used); it resets at {}",
            subject.describe(),
            calendar::format_utc(reset)
        ),
    )
    .with_retry_after(((reset - now) / 1000).max(1) as u64)
}

/// The refusal for a rate limit: `what` names it, `wait_s` is when a retry can pass.
fn rate_limited(subject: &Subject, what: String, wait_s: f64) -> ServiceError {
    ServiceError::new(Code::RateLimited, format!("the {what} for {} is reached", subject.describe()))
        .with_retry_after(wait_s.ceil().max(1.0) as u64)
}

enum Store {
    Local(local::Local),
    Redis(redis::Shared),
}

/// The limits of every key and tenant, in the configured store.
pub struct Limiter {
    store: Store,
}

impl Limiter {
    /// Limits in `store`, with monthly counters seeded from `registry`'s usage totals. Fails only on a
    /// malformed Redis URL: the store itself is reached lazily, so a replica starts while Redis is down.
    pub fn new(registry: Registry, store: &LimitStore) -> Result<Limiter, ServiceError> {
        let store = match store {
            LimitStore::Local => Store::Local(local::Local::new(registry)),
            LimitStore::Redis(config) => Store::Redis(redis::Shared::new(registry, config)?),
        };
        Ok(Limiter { store })
    }

    /// Admits one request of `principal` or says which limit stops it and when to retry.
    pub async fn admit(&self, principal: &Principal) -> Result<Admission, ServiceError> {
        let subjects = subjects(principal);
        if subjects.is_empty() {
            // Unlimited keys of unlimited tenants touch no store.
            return Ok(Admission::unlimited());
        }
        match &self.store {
            Store::Local(local) => local.admit(subjects).await,
            Store::Redis(shared) => shared.admit(subjects).await,
        }
    }

    /// Charges the tokens and compute time of an admitted request that ended.
    pub fn charge(&self, admission: &Admission, tokens: u64, compute_ms: u64) {
        if admission.subjects.is_empty() {
            return;
        }
        match &self.store {
            Store::Local(local) => local.charge(admission, tokens, compute_ms),
            Store::Redis(shared) => shared.charge(admission, tokens, compute_ms),
        }
    }
}

#[cfg(test)]
mod tests;
