//! Traffic control: a model's route sends each request that names no version to one of its versions by
//! weight (sticky per API key or per a header's value), copies it to a shadow version whose answer is
//! dropped, and, with a guard, rolls the other versions back to the stable one when they fail or slow down.
//! The route is the model's version policy, stored in the metadata store (every replica routes alike; a
//! rollback written by one replica reaches the others through the change feed); the guard judges each
//! replica's own live statistics.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use yunmo_registry::{AuditEntry, ModelPatch, ModelRecord};
use yunmo_types::{Route, ServiceError, Sticky, VersionPolicy};

use yunmo_auth::Action;

use crate::call::{Call, Target};
use crate::stats::{WindowSummary, unix_second};
use crate::{InferenceService, metrics};

/// Shadow copies in flight at most (per process); past it a copy is dropped and counted.
pub const MAX_SHADOW_INFLIGHT: usize = 64;
/// How often at most a guard judges one model's canaries.
const JUDGE_INTERVAL: Duration = Duration::from_millis(200);

/// What routing needs to remember in this process.
pub(crate) struct RoutingState {
    shadow_slots: Arc<tokio::sync::Semaphore>,
    /// When each model's canaries were last judged.
    judged: Mutex<HashMap<String, Instant>>,
}

impl Default for RoutingState {
    fn default() -> Self {
        RoutingState { shadow_slots: Arc::new(tokio::sync::Semaphore::new(MAX_SHADOW_INFLIGHT)), judged: Mutex::default() }
    }
}

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Routed {
    /// The version asked for or picked (`None`: the version policy's single version).
    pub version: Option<u64>,
    /// The version that gets a copy, if any.
    pub shadow: Option<u64>,
    /// Whether the route picked a version other than its stable one (its guard then judges).
    pub canary: bool,
}

/// One version of a route as this replica has seen it serve.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteVersionStats {
    /// The version.
    pub version: u64,
    /// Its weight (shadow: 0).
    pub weight: u32,
    /// `stable`, `canary` or `shadow`.
    pub role: &'static str,
    /// Requests it ended in the judged window since the route was set (this replica).
    pub requests: u64,
    /// Of them, failed for the server's or the load's reasons (not the caller's).
    pub failed: u64,
    /// p99 latency in milliseconds (bucket bound), if it served any.
    pub p99_ms: Option<f64>,
}

/// A model's route and how its versions compare on this replica.
#[derive(Debug, Clone)]
pub struct RouteStatus {
    /// The model's version policy (a route, or what replaced it).
    pub policy: VersionPolicy,
    /// Each version of the route (none when the policy is not a route).
    pub versions: Vec<RouteVersionStats>,
}

/// The draw of a request without a sticky key.
fn random_draw() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(std::collections::hash_map::RandomState::new().build_hasher().finish() | 1);
    }
    // xorshift64*: uniform enough for shares, and no lock.
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// Where a request to `target` goes: its explicit version always wins; else the route picks.
pub(crate) fn choose(call: &Call, target: &Target) -> Routed {
    let explicit = Routed { version: target.version(), shadow: None, canary: false };
    if target.version().is_some() {
        return explicit;
    }
    let VersionPolicy::Routed(route) = &target.record().version_policy else { return explicit };
    let draw = match route.sticky() {
        Some(Sticky::Key) => yunmo_types::sticky_hash(call.principal.key_id.as_bytes()),
        Some(Sticky::Header(_)) => target.sticky_hash().unwrap_or_else(random_draw),
        None => random_draw(),
    };
    let version = route.pick(draw);
    Routed { version: Some(version), shadow: route.shadow, canary: version != route.stable }
}

impl InferenceService {
    /// Sets `route` as the model's version policy: every version it names must exist and take the same
    /// inputs as the stable one. Judging starts over from now.
    pub async fn set_route(&self, call: &Call, target: &Target, route: Route) -> Result<ModelRecord, ServiceError> {
        let patch = ModelPatch { version_policy: Some(VersionPolicy::Routed(route)), ..ModelPatch::default() };
        self.update_model(call, target, patch).await
    }

    /// Checks a route about to be set (fills in its stable version and its start): its versions must take
    /// the same inputs (the registry checks that they exist).
    pub(crate) async fn check_route(&self, target: &Target, route: &mut Route) -> Result<(), ServiceError> {
        route.validate().map_err(ServiceError::invalid)?;
        route.since = unix_second() as i64;
        let version = async |version| {
            let model_ref = yunmo_types::ModelRef::new(target.name().to_string(), Some(version));
            match self.inner.registry.resolve(&model_ref).await {
                Ok((_, record)) => Ok(record),
                Err(yunmo_registry::RegistryError::NotFound(_)) => {
                    Err(ServiceError::invalid(format!("versions: version {version} of model '{}' does not exist", target.name())))
                }
                Err(error) => Err(ServiceError::from(error)),
            }
        };
        let inputs = |signature: &yunmo_types::Signature| -> Vec<(String, &'static str)> {
            let mut inputs: Vec<_> = signature.inputs.iter().map(|spec| (spec.name.clone(), spec.datatype.as_str())).collect();
            inputs.sort();
            inputs
        };
        let stable = inputs(&version(route.stable).await?.signature);
        for other in route.named_versions().filter(|other| *other != route.stable) {
            let taken = inputs(&version(other).await?.signature);
            if taken != stable {
                return Err(ServiceError::invalid(format!(
                    "versions: version {other} takes other inputs than the stable version {} ({taken:?}, not {stable:?}); a route's versions must take the same requests",
                    route.stable
                )));
            }
        }
        Ok(())
    }

    /// Sends every request to `version` (the policy becomes a pin): the end of a canary that succeeded.
    pub async fn promote(&self, call: &Call, target: &Target, version: u64) -> Result<ModelRecord, ServiceError> {
        let patch = ModelPatch { version_policy: Some(VersionPolicy::Pinned { version }), ..ModelPatch::default() };
        self.update_model(call, target, patch).await
    }

    /// The model's route and each of its versions' requests, failures and p99 on this replica since the
    /// route was set (within its guard's window, or the last 15 minutes).
    pub async fn route_status(&self, call: &Call, target: &Target) -> Result<RouteStatus, ServiceError> {
        target.permits(call, Action::Read)?;
        let record = self.model_record(target.name()).await?;
        let VersionPolicy::Routed(route) = &record.version_policy else {
            return Ok(RouteStatus { policy: record.version_policy.clone(), versions: Vec::new() });
        };
        let mut versions = Vec::new();
        let weighted = route.versions.iter().map(|entry| (entry.version, entry.weight));
        for (version, weight) in weighted.chain(route.shadow.map(|shadow| (shadow, 0))) {
            let role = match version {
                _ if Some(version) == route.shadow => "shadow",
                _ if version == route.stable => "stable",
                _ => "canary",
            };
            let summary = self.window_summary(&record.name, version, route);
            versions.push(RouteVersionStats {
                version,
                weight,
                role,
                requests: summary.requests,
                failed: summary.server_failures(),
                p99_ms: summary.p99_ms(),
            });
        }
        Ok(RouteStatus { policy: record.version_policy.clone(), versions })
    }

    /// `version`'s requests on this replica since `route` was set, within the guard's window.
    fn window_summary(&self, model: &str, version: u64, route: &Route) -> WindowSummary {
        let now = unix_second();
        let window = route.guard.map_or(crate::stats::SECONDS, |guard| guard.window_seconds);
        let since_set = now.saturating_sub(route.since.max(0) as u64) + 1;
        match self.inner.models.get(&(model.to_string(), version)) {
            Some(loaded) => loaded.stats.summary(now, window.min(since_set)),
            None => WindowSummary::default(),
        }
    }

    /// Sends a copy of `input` to the route's shadow version, off the request: its answer is counted in
    /// the shadow's metrics and dropped; nothing is metered to the caller.
    pub(crate) fn shadow(&self, target: &Target, version: u64, input: yunmo_types::InferInput) {
        let Ok(slot) = self.inner.routing.shadow_slots.clone().try_acquire_owned() else {
            metrics::counter_shadow_dropped(target.name());
            return;
        };
        let service = self.clone();
        let name = target.name().to_string();
        tokio::spawn(async move {
            let _slot = slot;
            let started = Instant::now();
            let Ok(record) = service.resolve(&name, Some(version)).await else { return };
            let Ok(loaded) = service.loaded(&record).await else { return };
            let result = service.infer_loaded(&record, &loaded, input, started + service.inner.request_timeout).await;
            loaded.record_ending(&result, started.elapsed());
        });
    }

    /// After a routed request to a canary: judges the model's canaries (at most every 200 ms) and rolls back
    /// those that fail or slow down past the guard's bounds.
    pub(crate) fn judge(&self, target: &Target) {
        let VersionPolicy::Routed(route) = &target.record().version_policy else { return };
        let Some(guard) = route.guard else { return };
        {
            let mut judged = self.inner.routing.judged.lock().expect("judged lock");
            let now = Instant::now();
            match judged.get(target.name()) {
                Some(last) if now.duration_since(*last) < JUDGE_INTERVAL => return,
                _ => judged.insert(target.name().to_string(), now),
            };
        }
        let stable = self.window_summary(target.name(), route.stable, route);
        let rate = |summary: &WindowSummary| summary.server_failures() as f64 / summary.requests.max(1) as f64;
        let mut reasons = Vec::new();
        for version in route.canaries() {
            let canary = self.window_summary(target.name(), version, route);
            if canary.requests < guard.min_requests {
                continue;
            }
            if rate(&canary) > rate(&stable) + guard.max_error_rate_increase {
                reasons.push(format!(
                    "version {version} failed {:.1}% of {} requests against {:.1}% of version {}'s {} (bound: +{:.1} points)",
                    100.0 * rate(&canary),
                    canary.requests,
                    100.0 * rate(&stable),
                    route.stable,
                    stable.requests,
                    100.0 * guard.max_error_rate_increase
                ));
                continue;
            }
            let (Some(ratio), Some(p99), Some(stable_p99)) = (guard.max_p99_ratio, canary.p99_ms(), stable.p99_ms()) else { continue };
            if stable.requests >= guard.min_requests && p99 > ratio * stable_p99 {
                reasons.push(format!(
                    "version {version}'s p99 latency {p99} ms is above {ratio} x version {}'s {stable_p99} ms",
                    route.stable
                ));
            }
        }
        if reasons.is_empty() {
            return;
        }
        let service = self.clone();
        let (record, route) = (target.record().clone(), route.clone());
        tokio::spawn(async move { service.roll_back(&record, &route, &reasons.join("; ")).await });
    }

    /// Writes `route` rolled back to its stable version, unless the route changed meanwhile, and audits it.
    async fn roll_back(&self, record: &ModelRecord, route: &Route, reason: &str) {
        let current = match self.inner.registry.get_model(&record.name).await {
            Ok(current) => current,
            Err(error) => return tracing::warn!(model = %record.name, %error, "The route guard could not read the model."),
        };
        if current.version_policy != VersionPolicy::Routed(route.clone()) {
            return;
        }
        let patch = ModelPatch { version_policy: Some(VersionPolicy::Routed(route.rolled_back())), ..ModelPatch::default() };
        let result = self.inner.registry.update_model(&record.name, patch).await;
        self.invalidate(&record.name);
        if let Err(error) = result {
            return tracing::warn!(model = %record.name, %error, "The route guard could not roll back.");
        }
        for version in route.canaries() {
            metrics::counter_rollback(&record.name, version);
        }
        tracing::warn!(model = %record.name, stable = route.stable, reason, "The route guard rolled the canaries back to 0%.");
        let entry = AuditEntry {
            at_ms: yunmo_types::calendar::now_ms(),
            key_id: "route-guard".to_string(),
            tenant: record.tenant.clone(),
            action: "route rollback".to_string(),
            target: format!("/api/v1/models/{}/route", record.short_name()),
            remote: "-".to_string(),
            outcome: format!("rolled back to version {}: {reason}", route.stable),
        };
        if let Err(error) = self.inner.registry.append_audit(&entry).await {
            tracing::warn!(model = %record.name, %error, "The route guard's rollback could not be audited.");
        }
    }
}
