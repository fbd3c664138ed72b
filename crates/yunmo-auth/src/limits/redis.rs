//! The shared limit store: buckets and monthly counters in Redis, changed only by two Lua scripts
//! (`admit.lua`, `charge.lua`) so that every check-and-take is atomic across replicas.
//!
//! Keys are `yunmo:{limits}:<k|t>:<id>:<req|tok|m<month>>`; the `{limits}` hash tag puts them in one slot,
//! so the scripts also run on a Redis Cluster (on one shard). Buckets expire when idle; a month's counters
//! expire after 40 days.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use tokio::sync::{OnceCell, mpsc};
use yunmo_registry::Registry;
use yunmo_types::{Code, Limits, ServiceError};

use super::{
    Admission, LIMIT_STORE_FAILURES_TOTAL, OnFailure, RedisLimits, Subject, has_quota, quota_exceeded, rate_limited, request_capacity,
};
use crate::calendar;

/// How long a month's usage counter lives in Redis (past the month's end, then it is gone).
const USAGE_TTL_MS: i64 = 40 * 24 * 3600 * 1000;
/// Charges sent to Redis together at most.
const CHARGE_BATCH: usize = 64;
/// Charges waiting to be sent at most; past it (Redis far slower than the requests) they are dropped and
/// counted, which bounds memory.
const CHARGE_QUEUE: usize = 65_536;

struct Connection {
    client: redis::Client,
    config: RedisLimits,
    manager: OnceCell<ConnectionManager>,
    admit: Script,
    charge: Script,
    /// Whether the last call reached the store (a failure is logged once per run of failures).
    healthy: AtomicBool,
}

/// Limits counted in Redis, shared by every replica.
pub(super) struct Shared {
    registry: Registry,
    connection: Arc<Connection>,
    charges: mpsc::Sender<Charge>,
}

/// A charge waiting to be sent.
struct Charge {
    subjects: Vec<(Subject, Limits)>,
    month: i64,
    tokens: u64,
    compute_ms: u64,
}

/// What the admit script answered.
enum Verdict {
    Ok,
    /// Subject `i` (0-based) has a quota but no counter this month: read it from the database.
    Seed(usize),
    Refused(ServiceError),
}

fn key(subject: &Subject, what: &str) -> String {
    match subject {
        Subject::Key(id) => format!("yunmo:{{limits}}:k:{id}:{what}"),
        Subject::Tenant(name) => format!("yunmo:{{limits}}:t:{name}:{what}"),
    }
}

fn usage_key(subject: &Subject, month: i64) -> String {
    key(subject, &format!("m{month}"))
}

impl Shared {
    pub(super) fn new(registry: Registry, config: &RedisLimits) -> Result<Shared, ServiceError> {
        let client = redis::Client::open(config.url.as_str()).map_err(|error| {
            // The URL is a secret; the parser's message does not repeat it.
            ServiceError::invalid(format!("limits.redis_url is not a Redis URL (redis://[:password@]host:port/db): {error}"))
        })?;
        let connection = Arc::new(Connection {
            client,
            config: config.clone(),
            manager: OnceCell::new(),
            admit: Script::new(include_str!("admit.lua")),
            charge: Script::new(include_str!("charge.lua")),
            healthy: AtomicBool::new(true),
        });
        let (charges, receiver) = mpsc::channel(CHARGE_QUEUE);
        tokio::spawn(send_charges(connection.clone(), receiver));
        Ok(Shared { registry, connection, charges })
    }

    pub(super) async fn admit(&self, subjects: Vec<(Subject, Limits)>) -> Result<Admission, ServiceError> {
        let month = calendar::month_start_ms(calendar::now_ms());
        let mut seeds: Vec<Option<[u64; 3]>> = vec![None; subjects.len()];
        // Each round either decides or seeds one more subject.
        for _ in 0..=subjects.len() {
            let verdict = match self.connection.admit(&subjects, month, &seeds).await {
                Ok(verdict) => verdict,
                Err(error) if unreachable(&error) => return self.connection.failed(error, Admission::unlimited()),
                // Redis answered, with an error (a script error): the server's fault, not an outage.
                Err(error) => return Err(ServiceError::internal(format!("the limit store refused the admission script: {error}"))),
            };
            match verdict {
                Verdict::Ok => return Ok(Admission { subjects }),
                Verdict::Refused(error) => return Err(error),
                Verdict::Seed(index) => {
                    let totals = self.registry.usage_totals(subjects[index].0.usage(), month).await?;
                    seeds[index] = Some([totals.requests, totals.tokens, totals.compute_ms]);
                }
            }
        }
        Err(ServiceError::internal("the limit store asked for usage totals it was given"))
    }

    pub(super) fn charge(&self, admission: &Admission, tokens: u64, compute_ms: u64) {
        let worth_sending =
            admission.subjects.iter().any(|(_, limits)| has_quota(limits) || (limits.tokens_per_minute.is_some() && tokens > 0));
        if worth_sending {
            let month = calendar::month_start_ms(calendar::now_ms());
            let charge = Charge { subjects: admission.subjects.clone(), month, tokens, compute_ms };
            if self.charges.try_send(charge).is_err() {
                metrics::counter!(LIMIT_STORE_FAILURES_TOTAL, "behaviour" => "charge_dropped").increment(1);
            }
        }
    }
}

impl Connection {
    async fn manager(&self) -> redis::RedisResult<ConnectionManager> {
        let manager = self
            .manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.config.timeout))
                    .set_response_timeout(Some(self.config.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                tokio::time::timeout(self.config.timeout, ConnectionManager::new_with_config(self.client.clone(), config))
                    .await
                    .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connecting timed out")))?
            })
            .await?;
        Ok(manager.clone())
    }

    async fn admit(&self, subjects: &[(Subject, Limits)], month: i64, seeds: &[Option<[u64; 3]>]) -> redis::RedisResult<Verdict> {
        let mut invocation = self.admit.prepare_invoke();
        invocation.arg(USAGE_TTL_MS);
        for ((subject, limits), seed) in subjects.iter().zip(seeds) {
            invocation.key(key(subject, "req")).key(key(subject, "tok")).key(usage_key(subject, month));
            let rps = limits.requests_per_second.unwrap_or(0.0);
            let quota = |value: Option<f64>| value.map_or(-1.0, |value| value);
            let seed = seed.map_or([-1i64; 3], |seed| seed.map(|value| value as i64));
            invocation
                .arg(rps)
                .arg(if rps > 0.0 { request_capacity(limits, rps) } else { 0.0 })
                .arg(limits.tokens_per_minute.unwrap_or(0))
                .arg(quota(limits.monthly_requests.map(|q| q as f64)))
                .arg(quota(limits.monthly_tokens.map(|q| q as f64)))
                .arg(quota(limits.monthly_compute_seconds.map(|seconds| seconds * 1000.0)))
                .arg(seed[0])
                .arg(seed[1])
                .arg(seed[2]);
        }
        let mut manager = self.manager().await?;
        let reply: Vec<Value> = tokio::time::timeout(self.config.timeout, invocation.invoke_async(&mut manager))
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "no answer in time")))??;
        self.recovered();
        Ok(verdict(&reply, subjects))
    }

    /// A call that did not reach the store: counted, logged once per run of failures, and answered as
    /// configured (`allowed` on allow).
    fn failed<T>(&self, error: redis::RedisError, allowed: T) -> Result<T, ServiceError> {
        let behaviour = self.config.on_failure;
        metrics::counter!(LIMIT_STORE_FAILURES_TOTAL, "behaviour" => behaviour.label()).increment(1);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::error!(%error, on_failure = behaviour.label(),
                "The limit store (Redis) cannot be reached; requests are {} until it is back.",
                if behaviour == OnFailure::Deny { "refused with 503" } else { "admitted without limits" });
        }
        match behaviour {
            OnFailure::Allow => Ok(allowed),
            OnFailure::Deny => Err(ServiceError::new(
                Code::Unavailable,
                "the limit store cannot be reached, and limits.on_store_failure is \"deny\": retry later",
            )
            .with_retry_after(1)),
        }
    }

    fn recovered(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("The limit store (Redis) answers again.");
        }
    }

    async fn charge(&self, charge: &Charge) -> redis::RedisResult<()> {
        let mut invocation = self.charge.prepare_invoke();
        invocation.arg(charge.tokens).arg(charge.compute_ms);
        for (subject, limits) in &charge.subjects {
            invocation.key(key(subject, "tok")).key(usage_key(subject, charge.month));
            invocation.arg(limits.tokens_per_minute.unwrap_or(0)).arg(u8::from(has_quota(limits)));
        }
        let mut manager = self.manager().await?;
        let _: Value = invocation.invoke_async(&mut manager).await?;
        Ok(())
    }
}

/// Sends charges as they come, up to [`CHARGE_BATCH`] at once (the connection pipelines them). A charge
/// that cannot be sent is counted and dropped: the database's usage totals still hold it, and reseed the
/// counter if Redis loses it.
async fn send_charges(connection: Arc<Connection>, mut receiver: mpsc::Receiver<Charge>) {
    let mut batch = Vec::with_capacity(CHARGE_BATCH);
    while receiver.recv_many(&mut batch, CHARGE_BATCH).await > 0 {
        let results = futures::future::join_all(batch.iter().map(|charge| connection.charge(charge))).await;
        for error in results.into_iter().filter_map(Result::err) {
            metrics::counter!(LIMIT_STORE_FAILURES_TOTAL, "behaviour" => "charge_dropped").increment(1);
            if connection.healthy.swap(false, Ordering::Relaxed) {
                tracing::error!(%error, "The limit store (Redis) cannot be reached; tokens and compute time are not charged to it.");
            }
        }
        batch.clear();
    }
}

/// Whether an error means Redis could not be reached (not that it answered with an error).
fn unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_timeout() || error.is_connection_dropped() || error.is_connection_refusal()
}

/// Reads the admit script's answer.
fn verdict(reply: &[Value], subjects: &[(Subject, Limits)]) -> Verdict {
    let text = |index: usize| match reply.get(index) {
        Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(Value::SimpleString(text)) => text.clone(),
        Some(Value::Int(number)) => number.to_string(),
        _ => String::new(),
    };
    let subject = || text(1).parse::<usize>().ok().and_then(|i| i.checked_sub(1)).filter(|&i| i < subjects.len());
    let refused = |error: ServiceError| Verdict::Refused(error);
    match (text(0).as_str(), subject()) {
        ("ok", _) => Verdict::Ok,
        ("seed", Some(index)) => Verdict::Seed(index),
        ("quota", Some(index)) => {
            let (subject, limits) = &subjects[index];
            let used: f64 = text(3).parse().unwrap_or(0.0);
            refused(match text(2).as_str() {
                "requests" => quota_exceeded(subject, "monthly_requests", limits.monthly_requests.unwrap_or(0) as f64, used),
                "tokens" => quota_exceeded(subject, "monthly_tokens", limits.monthly_tokens.unwrap_or(0) as f64, used),
                _ => quota_exceeded(subject, "monthly_compute_seconds", limits.monthly_compute_seconds.unwrap_or(0.0), used / 1000.0),
            })
        }
        ("rate", Some(index)) => {
            let (subject, limits) = &subjects[index];
            let rps = limits.requests_per_second.unwrap_or(0.0);
            let what = format!("requests_per_second limit of {rps} (burst {})", request_capacity(limits, rps));
            refused(rate_limited(subject, what, text(2).parse().unwrap_or(1.0)))
        }
        ("tokens", Some(index)) => {
            let (subject, limits) = &subjects[index];
            let what = format!("tokens_per_minute limit of {}", limits.tokens_per_minute.unwrap_or(0));
            refused(rate_limited(subject, what, text(2).parse().unwrap_or(1.0)))
        }
        _ => refused(ServiceError::internal(format!("the limit store answered {reply:?}"))),
    }
}
