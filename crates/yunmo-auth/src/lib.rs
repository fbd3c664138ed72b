//! Who is calling and what they may use: API keys, scopes, model access, rate limits, quotas, metering and
//! the audit log, behind one transport-agnostic [`Gate`]. The REST middleware and the gRPC interceptor both
//! call [`Gate::authenticate`] with the credentials they found; handlers call [`check`] on the model's
//! record before touching a model and [`Gate::admit`] before running one.

mod access;
mod cache;
pub use yunmo_types::calendar;
pub mod key;
mod limits;
mod meter;
mod principal;
mod usage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use access::{Action, can_see, check, pick};
pub use limits::{Admission, LIMIT_STORE_FAILURES_TOTAL, LimitStore, Limiter, OnFailure, RedisLimits, Subject};
pub use meter::{Meter, UsageGuard};
pub use principal::Principal;
pub use usage::UsageCell;
use yunmo_registry::{AuditEntry, DEFAULT_TENANT, KeyRecord, ModelRecord, NewKey, Registry, UsageEvent};
use yunmo_types::{Code, Limits, Scope, ServiceError};

/// How callers are authenticated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Require a key on every route but the open ones.
    pub enabled: bool,
    /// Paths served without a key (exact, or a prefix when ending in `*`).
    pub open_paths: Vec<String>,
    /// How often usage events are written.
    pub flush_interval: Duration,
    /// How long a key read from the database is reused (zero: read it on every request). Changes made
    /// through this process take effect at once regardless; this bounds changes made by another process.
    pub key_cache_ttl: Duration,
    /// Where rate limits and quotas are counted (this process, or Redis shared by every replica).
    pub limits: LimitStore,
    /// While the database cannot be reached, a key read from it less than this long ago is still accepted
    /// (zero: never); a key never seen is refused with 503.
    pub key_outage_ttl: Duration,
}

/// Credentials found on a request, whatever the transport.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The `authorization` header or metadata value (`Bearer <key>`).
    pub authorization: Option<&'a str>,
    /// The `api-key` header or metadata value.
    pub api_key: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    /// The key presented (a bearer token, else the `api-key` value), if any.
    pub fn key(&self) -> Option<&'a str> {
        let bearer = self.authorization.and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
        });
        bearer.or(self.api_key.map(str::trim))
    }
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// Owning tenant.
    pub tenant: String,
    /// Label.
    pub name: String,
    /// Scopes (at least one).
    pub scopes: Vec<Scope>,
    /// Model allow-list.
    pub models: Option<Vec<String>>,
    /// The key's limits.
    pub limits: Limits,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<i64>,
}

struct Inner {
    registry: Registry,
    config: AuthConfig,
    limiter: Arc<Limiter>,
    meter: Meter,
    keys: cache::KeyCache,
    /// Until when (Unix ms) key lookups skip the database, which just failed to answer: known keys are
    /// answered from the cache at once instead of each request waiting for a connection first.
    database_down_until: std::sync::atomic::AtomicI64,
}

/// How long key lookups skip a database that could not be reached before trying it again.
const DATABASE_RETRY_MS: i64 = 2000;
/// How long a lookup of a key the cache still knows (past `key_cache_ms`) may wait for the database.
const KNOWN_KEY_LOOKUP: Duration = Duration::from_millis(500);

/// The one place requests are authenticated, authorized, limited and metered.
#[derive(Clone)]
pub struct Gate(Arc<Inner>);

fn unauthenticated(message: impl Into<String>) -> ServiceError {
    ServiceError::new(Code::Unauthenticated, message)
}

impl Gate {
    /// A gate on `registry`; starts the usage writer (and the limit store's charge sender) on the current
    /// runtime. Fails only on a malformed limit store URL.
    pub fn new(registry: Registry, config: AuthConfig) -> Result<Gate, ServiceError> {
        let limiter = Arc::new(Limiter::new(registry.clone(), &config.limits)?);
        let meter = Meter::start(registry.clone(), config.flush_interval);
        let keys = cache::KeyCache::new(config.key_cache_ttl, !config.key_outage_ttl.is_zero());
        let database_down_until = std::sync::atomic::AtomicI64::new(0);
        Ok(Gate(Arc::new(Inner { registry, config, limiter, meter, keys, database_down_until })))
    }

    /// Whether keys are required.
    pub fn enabled(&self) -> bool {
        self.0.config.enabled
    }

    /// Whether `path` is served without a key.
    pub fn is_open(&self, path: &str) -> bool {
        self.0.config.open_paths.iter().any(|open| match open.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == open,
        })
    }

    /// The caller of a request, by one rule for every transport: the key's, checked; on an open path
    /// (`open`), a valid key still counts as itself, and no key or one that fails is [`Gate::open_caller`]
    /// (so a probe is never refused for what it sends).
    pub async fn caller(&self, open: bool, credentials: Credentials<'_>) -> Result<Arc<Principal>, ServiceError> {
        // The common open request (a probe) sends nothing: answer it without building a refusal.
        if open && credentials.key().is_none() {
            return Ok(self.open_caller());
        }
        match self.authenticate(credentials).await {
            Err(_) if open => Ok(self.open_caller()),
            found => found,
        }
    }

    /// The caller of a request on an open path, served without a key: [`Principal::anonymous`] (no scopes)
    /// with auth on, [`Principal::local`] with auth off (as on every path). Never an admin by omission.
    pub fn open_caller(&self) -> Arc<Principal> {
        static LOCAL: std::sync::LazyLock<Arc<Principal>> = std::sync::LazyLock::new(|| Arc::new(Principal::local()));
        static ANONYMOUS: std::sync::LazyLock<Arc<Principal>> = std::sync::LazyLock::new(|| Arc::new(Principal::anonymous()));
        if self.enabled() { ANONYMOUS.clone() } else { LOCAL.clone() }
    }

    /// The caller behind `credentials`. With auth off, every caller is [`Principal::local`].
    pub async fn authenticate(&self, credentials: Credentials<'_>) -> Result<Arc<Principal>, ServiceError> {
        if !self.enabled() {
            static LOCAL: std::sync::LazyLock<Arc<Principal>> = std::sync::LazyLock::new(|| Arc::new(Principal::local()));
            return Ok(LOCAL.clone());
        }
        let Some(presented) = credentials.key() else {
            return Err(unauthenticated("no API key: send 'Authorization: Bearer ym_...' or an 'api-key' header"));
        };
        let invalid = || unauthenticated("invalid API key");
        let id = key::key_id(presented).ok_or_else(invalid)?;
        let known = match self.0.keys.get(id) {
            cache::Cached::Known(known) => known,
            cache::Cached::Unknown => return Err(invalid()),
            cache::Cached::Miss => self.read_key(id).await?.ok_or_else(invalid)?,
        };
        let record = &known.record;
        if !key::verify(presented, &record.hash) {
            return Err(invalid());
        }
        if record.revoked_at.is_some() {
            return Err(unauthenticated(format!("API key '{id}' has been revoked")));
        }
        if let Some(expires_at) = record.expires_at
            && expires_at * 1000 <= calendar::now_ms()
        {
            return Err(unauthenticated(format!("API key '{id}' expired at {}", calendar::format_utc(expires_at * 1000))));
        }
        Ok(known.principal.clone())
    }

    /// Key `id` from the database (`None`: no such key), cached; while the database cannot be reached, as
    /// last read if that was less than `key_outage_ttl` ago.
    async fn read_key(&self, id: &str) -> Result<Option<Arc<cache::KnownKey>>, ServiceError> {
        use std::sync::atomic::Ordering;
        // What was last read of the key, if recent enough to answer with while the database is down.
        let last_read = self.0.keys.stale(id, self.0.config.key_outage_ttl);
        let outage = |error: ServiceError| match &last_read {
            Some(known) => Ok(Some(known.clone())),
            None => Err(error),
        };
        if self.0.database_down_until.load(Ordering::Relaxed) > calendar::now_ms() {
            return outage(ServiceError::from(yunmo_registry::RegistryError::unavailable("the metadata store")));
        }
        let generation = self.0.keys.generation();
        // With an answer in hand, a lookup gets a short while: a database that is down (each new connection
        // waits for its timeout) or overwhelmed does not hold up callers it already knows.
        let lookup = self.0.registry.get_key(id);
        let read = match &last_read {
            Some(_) => tokio::time::timeout(KNOWN_KEY_LOOKUP, lookup)
                .await
                .unwrap_or_else(|_| Err(yunmo_registry::RegistryError::unavailable("the metadata store"))),
            None => lookup.await,
        };
        match read {
            Ok(record) => {
                let known = record.map(|record| Arc::new(cache::KnownKey::new(record)));
                self.0.keys.insert(id, known.clone(), generation);
                Ok(known)
            }
            Err(error) if error.is_unavailable() => {
                tracing::debug!(key = id, %error, "The database cannot be reached: keys are answered as last read.");
                self.0.database_down_until.store(calendar::now_ms() + DATABASE_RETRY_MS, Ordering::Relaxed);
                outage(error.into())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The models `principal` can see (own, public, shared with its tenant; within its key's allow-list).
    pub async fn visible_models(&self, principal: &Principal) -> Result<Vec<ModelRecord>, ServiceError> {
        let models = self.0.registry.list_models().await?;
        Ok(models
            .into_iter()
            .filter(|model| can_see(principal, model))
            .filter(|model| {
                principal.is_admin() || principal.models.as_ref().is_none_or(|allowed| access::allowed_by(allowed, principal, model))
            })
            .collect())
    }

    /// Admits one inference request past the rate limits and quotas, and starts its usage record.
    pub async fn admit(&self, principal: &Principal, protocol: &'static str) -> Result<UsageGuard, ServiceError> {
        let admission = self.0.limiter.admit(principal).await?;
        let cell = UsageCell::new(UsageEvent {
            at_ms: calendar::now_ms(),
            tenant: principal.tenant.clone(),
            key_id: principal.key_id.clone(),
            protocol,
            outcome: "cancelled",
            ..UsageEvent::default()
        });
        Ok(UsageGuard::new(cell, self.0.meter.clone(), self.0.limiter.clone(), admission))
    }

    /// Writes every usage event so far. `Err(n)`: `n` events could not be written yet (they stay queued
    /// and are retried); a report read now would miss them.
    pub async fn flush(&self) -> Result<(), usize> {
        self.0.meter.flush().await
    }

    /// Appends a management action to the audit log. A failure to write it is logged, not hidden.
    pub async fn audit(&self, entry: AuditEntry) {
        tracing::info!(target: "yunmo::audit", key = %entry.key_id, tenant = %entry.tenant, action = %entry.action,
            target_path = %entry.target, remote = %entry.remote, outcome = %entry.outcome, "Management action.");
        if let Err(error) = self.0.registry.append_audit(&entry).await {
            tracing::error!(%error, "Cannot write the audit log.");
        }
    }

    /// Creates a key; returns its record and the key itself, which is not stored and cannot be shown again.
    pub async fn create_key(&self, request: KeyRequest) -> Result<(KeyRecord, String), ServiceError> {
        if request.scopes.is_empty() {
            return Err(ServiceError::invalid(
                "scopes must name at least one of admin, models:write, models:read, infer, metrics, keys:write",
            ));
        }
        let generated = key::generate();
        let new = NewKey {
            id: generated.id,
            tenant: request.tenant,
            name: request.name,
            hash: generated.hash,
            scopes: request.scopes,
            models: request.models,
            limits: request.limits,
            expires_at: request.expires_at,
        };
        let result = self.0.registry.insert_key(&new).await;
        // An earlier lookup of this id may be cached as unknown.
        self.0.keys.forget(&new.id);
        Ok((result?, generated.key))
    }

    /// Revokes a key: it is refused from the next request on.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, ServiceError> {
        let result = self.0.registry.revoke_key(id).await;
        self.0.keys.forget(id);
        Ok(result?)
    }

    /// Forgets every cached key, so that a change to keys or tenants made around the gate (a deleted
    /// tenant's keys) applies from the next request on.
    pub fn forget_keys(&self) {
        self.0.keys.clear();
    }

    /// Replaces a tenant's limits; they apply from the next request on.
    pub async fn set_tenant_limits(&self, tenant: &str, limits: &Limits) -> Result<yunmo_registry::TenantRecord, ServiceError> {
        let result = self.0.registry.set_tenant_limits(tenant, limits).await;
        self.0.keys.clear();
        Ok(result?)
    }

    /// On a database without keys, creates the bootstrap admin key of the default tenant: `configured` (from
    /// `auth.bootstrap_key`) if given, else a new one written to `key_file` (mode 0600, never overwritten)
    /// and returned so the caller can print it once. Does nothing when keys exist or auth is off.
    pub async fn bootstrap(&self, configured: Option<&str>, key_file: &Path) -> Result<Option<(PathBuf, String)>, ServiceError> {
        if !self.enabled() || self.0.registry.count_keys().await? > 0 {
            return Ok(None);
        }
        let (id, key, hash, generated) = match configured {
            Some(key) => {
                let id = key::key_id(key).ok_or_else(|| {
                    ServiceError::invalid(format!(
                        "auth.bootstrap_key must look like ym_<4-32 lowercase letters or digits>_<{} or more of [A-Za-z0-9_-]>",
                        key::MIN_SECRET_CHARS
                    ))
                })?;
                (id.to_string(), key.to_string(), key::hash(key), false)
            }
            None => {
                let generated = key::generate();
                (generated.id, generated.key, generated.hash, true)
            }
        };
        let new = NewKey {
            id,
            tenant: DEFAULT_TENANT.into(),
            name: "bootstrap admin".into(),
            hash,
            scopes: vec![Scope::Admin],
            models: None,
            limits: Limits::default(),
            expires_at: None,
        };
        if generated {
            write_secret_file(key_file, &key)
                .map_err(|error| ServiceError::internal(format!("cannot write the bootstrap key to {}: {error}", key_file.display())))?;
        }
        match self.0.registry.insert_key(&new).await {
            // Replicas starting together on one empty database each install the configured key: one wins.
            Err(yunmo_registry::RegistryError::AlreadyExists(_)) if !generated => return Ok(None),
            other => other?,
        };
        Ok(generated.then(|| (key_file.to_path_buf(), key)))
    }
}

/// Writes `secret` to a new file readable only by its owner.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn gate(enabled: bool) -> (Gate, tempfile::TempDir) {
        gate_with_cache(enabled, Duration::from_secs(60)).await
    }

    async fn gate_with_cache(enabled: bool, key_cache_ttl: Duration) -> (Gate, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&yunmo_registry::RegistryConfig::new(dir.path())).await.unwrap();
        let open_paths = vec!["/v2/health/*".into(), "/metrics".into()];
        let config = AuthConfig {
            enabled,
            open_paths,
            flush_interval: Duration::from_millis(50),
            key_cache_ttl,
            limits: LimitStore::Local,
            key_outage_ttl: Duration::ZERO,
        };
        (Gate::new(registry, config).unwrap(), dir)
    }

    fn infer_key_request() -> KeyRequest {
        KeyRequest {
            tenant: DEFAULT_TENANT.into(),
            name: "t".into(),
            scopes: vec![Scope::Infer],
            models: None,
            limits: Limits::default(),
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn cached_keys_see_changes_through_the_gate_at_once_and_others_within_the_ttl() {
        let (gate, _dir) = gate_with_cache(true, Duration::from_millis(1500)).await;
        let request = infer_key_request();
        let (_, key) = gate.create_key(request.clone()).await.unwrap();
        let (header_a, header_b) = (bearer(&key), bearer(&gate.create_key(request).await.unwrap().1));
        let (a, b) =
            (Credentials { authorization: Some(&header_a), api_key: None }, Credentials { authorization: Some(&header_b), api_key: None });
        assert_eq!(gate.authenticate(a).await.unwrap().tenant_limits, Limits::default());
        let b_id = gate.authenticate(b).await.unwrap().key_id.clone();

        // Tenant limits changed through the gate apply to the next request of a cached key.
        let limits = Limits { requests_per_second: Some(5.0), ..Limits::default() };
        gate.set_tenant_limits(DEFAULT_TENANT, &limits).await.unwrap();
        assert_eq!(gate.authenticate(a).await.unwrap().tenant_limits, limits);

        // A revocation written by another process (straight to the database) is seen once the entry expires.
        assert_eq!(gate.authenticate(b).await.unwrap().tenant_limits, limits);
        gate.0.registry.revoke_key(&b_id).await.unwrap();
        assert!(gate.authenticate(b).await.is_ok(), "within the TTL the cached record is used");
        gate.0.keys.age(Duration::from_millis(1600));
        let error = gate.authenticate(b).await.unwrap_err();
        assert!(error.message.contains("revoked"), "{}", error.message);
    }

    #[tokio::test]
    async fn unknown_key_ids_are_answered_from_the_cache() {
        let (gate, _dir) = gate_with_cache(true, Duration::from_millis(1500)).await;
        let generated = key::generate();
        let header = bearer(&generated.key);
        let credentials = Credentials { authorization: Some(&header), api_key: None };
        assert_eq!(gate.authenticate(credentials).await.unwrap_err().code, Code::Unauthenticated);
        // The key appears in the database behind the gate's back (another process): the cached "unknown"
        // answers until it expires, so repeated unknown ids never reach the database.
        let new = NewKey {
            id: generated.id.clone(),
            tenant: DEFAULT_TENANT.into(),
            name: "t".into(),
            hash: generated.hash.clone(),
            scopes: vec![Scope::Infer],
            models: None,
            limits: Limits::default(),
            expires_at: None,
        };
        gate.0.registry.insert_key(&new).await.unwrap();
        assert!(gate.authenticate(credentials).await.is_err(), "within the TTL the unknown id is answered from the cache");
        gate.0.keys.age(Duration::from_millis(1600));
        assert!(gate.authenticate(credentials).await.is_ok(), "after the TTL the database is read again");
        // A key created through the gate is usable at once, even if its id was looked up before.
        let (_, key) = gate.create_key(infer_key_request()).await.unwrap();
        let header = bearer(&key);
        assert!(gate.authenticate(Credentials { authorization: Some(&header), api_key: None }).await.is_ok());
    }

    fn bearer(key: &str) -> String {
        format!("Bearer {key}")
    }

    #[tokio::test]
    async fn bootstrap_key_is_written_once_with_mode_0600_and_authenticates() {
        let (gate, dir) = gate(true).await;
        let file = dir.path().join("admin.key");
        let (path, key) = gate.bootstrap(None, &file).await.unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(gate.bootstrap(None, &file).await.unwrap().is_none(), "a second start makes no new key");
        let header = bearer(&key);
        let principal = gate.authenticate(Credentials { authorization: Some(&header), api_key: None }).await.unwrap();
        assert!(principal.is_admin());
        let principal = gate.authenticate(Credentials { authorization: None, api_key: Some(&key) }).await.unwrap();
        assert_eq!(principal.tenant, DEFAULT_TENANT);
    }

    #[tokio::test]
    async fn bad_missing_revoked_and_expired_keys_are_refused() {
        let (gate, _dir) = gate(true).await;
        let request = infer_key_request();
        let (record, key) = gate.create_key(request.clone()).await.unwrap();
        let header = bearer(&key);
        let ok = Credentials { authorization: Some(&header), api_key: None };
        assert!(gate.authenticate(ok).await.is_ok());
        let mut forged = key.clone();
        forged.pop();
        forged.push(if key.ends_with('A') { 'B' } else { 'A' });
        for credentials in [Credentials::default(), Credentials { authorization: None, api_key: Some(&forged) }] {
            assert_eq!(gate.authenticate(credentials).await.unwrap_err().code, Code::Unauthenticated);
        }
        gate.revoke_key(&record.id).await.unwrap();
        let error = gate.authenticate(ok).await.unwrap_err();
        assert!(error.message.contains("revoked"), "{}", error.message);
        let (_, expired) = gate.create_key(KeyRequest { expires_at: Some(1), ..request }).await.unwrap();
        let error = gate.authenticate(Credentials { authorization: None, api_key: Some(&expired) }).await.unwrap_err();
        assert!(error.message.contains("expired"), "{}", error.message);
    }

    #[tokio::test]
    async fn every_guard_becomes_one_stored_event_after_flush() {
        let (gate, _dir) = gate(false).await;
        let principal = Principal::local();
        for outcome in ["ok", "invalid_request", "cancelled"] {
            let guard = gate.admit(&principal, "rest").await.unwrap();
            guard.cell().add_elements(4, 3);
            if outcome != "cancelled" {
                guard.cell().set_outcome(outcome);
            }
        }
        gate.flush().await.unwrap();
        let rows = gate
            .0
            .registry
            .usage_report(yunmo_registry::UsageQuery { from_ms: 0, to_ms: i64::MAX, tenant: None, group: yunmo_registry::UsageGroup::Key })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].requests, rows[0].failed, rows[0].input_elements, rows[0].output_elements), (3, 2, 12, 9));
    }

    #[test]
    fn open_paths_match_exactly_or_by_prefix() {
        let config = AuthConfig {
            enabled: true,
            open_paths: vec!["/v2/health/*".into(), "/metrics".into()],
            flush_interval: Duration::from_secs(1),
            key_cache_ttl: Duration::from_secs(5),
            limits: LimitStore::Local,
            key_outage_ttl: Duration::ZERO,
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let registry = Registry::open(&yunmo_registry::RegistryConfig::new(dir.path())).await.unwrap();
            let gate = Gate::new(registry, config).unwrap();
            assert!(gate.is_open("/v2/health/live") && gate.is_open("/metrics"));
            assert!(!gate.is_open("/metrics/x") && !gate.is_open("/v2/models/x") && !gate.is_open("/v2"));
        });
    }
}
