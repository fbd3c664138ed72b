//! Model metadata and artifacts: the only crate that touches the database or the artifact store.
//!
//! [`Registry`] keeps models, versions, tenants, keys, usage and audit in a [`MetadataStore`] (which also keeps
//! background jobs and dataset files, as a [`JobStore`]) and model and dataset files in an [`ArtifactStore`]
//! addressed by sha256; SQLite ([`SqliteStore`]) and a local folder ([`LocalArtifacts`]) are the embedded
//! defaults, [`SealedArtifacts`] encrypts any artifact store at rest, and [`conformance`] is the suite every
//! implementation passes. A version row is committed only after its file is durable under its final name,
//! and a file is removed only after no row refers to it, both under the metadata store's lock, so a crash at
//! any point leaves either the old state or the new one, plus at most an unreferenced file that a later
//! sweep removes once it is older than the grace period.
//! It knows nothing of runtimes: callers check a file (through a backend) between staging and committing it.

mod artifacts;
mod cache;
mod columns;
pub mod conformance;
mod datasets;
mod job_store;
mod jobs;
mod local;
mod metadata;
mod migrations;
mod postgres;
mod records;
mod responses;
mod s3;
mod seal;
mod sealed;
mod sqlite;
mod staging;
mod tenancy;

pub use artifacts::{ArtifactStore, LocalFile, Prepared, ReadableArtifact, StoredObject};
pub use cache::DiskCache;
pub use datasets::new_id;
pub use jobs::{FileRecord, JobEnd, JobEvent, JobFilter, JobRecord, JobStatus, JobStore, NewJob};
pub use local::LocalArtifacts;
pub use metadata::{ArtifactWork, Change, DesiredState, MaintenanceLock, MetadataStore, UsageQuery};
pub use postgres::{PgStore, PgStoreOptions, redact_url};
pub use records::{
    DEFAULT_TENANT, DriftBaselineRecord, ModelPatch, ModelRecord, NewModel, VersionRecord, VersionRow, name_for, qualified_name,
    validate_name,
};
pub use responses::{ResponseStore, StoredResponse};
pub use s3::{S3Artifacts, S3Options};
pub use seal::EncryptionKey;
pub use sealed::{RefuseSealed, SealedArtifacts};
pub use sqlite::SqliteStore;
pub use staging::{StagedArtifact, Staging, StagingFile};
pub use tenancy::{
    AuditEntry, KeyRecord, NewKey, TenantRecord, UsageBucket, UsageEvent, UsageGroup, UsageRow, UsageSubject, UsageTotals, aggregate_usage,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use yunmo_types::{Limits, ModelRef, Signature, VersionConfig};

/// Where the registry keeps its data.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Data directory: `yunmo.db` and `artifacts/` live here.
    pub data_dir: PathBuf,
    /// Seals model files at rest with this key.
    pub encryption_key: Option<Arc<EncryptionKey>>,
    /// Keys files may still be sealed with; at open they are re-sealed under `encryption_key`.
    pub previous_encryption_keys: Vec<Arc<EncryptionKey>>,
    /// How old a stored file no version refers to must be before a sweep removes it (another process may
    /// be adding the version that refers to it).
    pub orphan_grace: Duration,
    /// PostgreSQL instead of SQLite in `data_dir`.
    pub postgres: Option<PgStoreOptions>,
    /// An S3 bucket instead of `data_dir/artifacts`, with a cache in `data_dir/cache` of at most this many
    /// bytes.
    pub s3: Option<(S3Options, u64)>,
}

/// The default [`RegistryConfig::orphan_grace`]: an hour.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(3600);

impl RegistryConfig {
    /// A registry in `data_dir` without encryption.
    pub fn new(data_dir: impl Into<PathBuf>) -> RegistryConfig {
        RegistryConfig {
            data_dir: data_dir.into(),
            encryption_key: None,
            previous_encryption_keys: Vec::new(),
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            postgres: None,
            s3: None,
        }
    }
}

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No such model or version.
    #[error("{0}")]
    NotFound(String),
    /// No such tenant or key.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The name or version is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// A field is out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The artifact store failed.
    #[error("artifact store error: {0}")]
    Store(#[from] std::io::Error),
    /// The database's schema cannot be used by this build.
    #[error("{0}")]
    Schema(String),
    /// A store (named) that could not be reached a moment ago is not tried again yet.
    #[error("{0} cannot be reached")]
    Unavailable(String),
}

impl From<RegistryError> for yunmo_types::ServiceError {
    fn from(error: RegistryError) -> Self {
        use yunmo_types::Code;
        let code = match &error {
            RegistryError::NotFound(_) => Code::ModelNotFound,
            RegistryError::ResourceNotFound(_) => Code::NotFound,
            RegistryError::AlreadyExists(_) => Code::Conflict,
            RegistryError::Invalid(_) => Code::InvalidRequest,
            _ if error.is_unavailable() => {
                // The client learns which store; the driver's message (addresses, object keys) stays here.
                tracing::debug!(%error, "A store cannot be reached.");
                let store = match &error {
                    RegistryError::Database(_) => "the metadata store",
                    RegistryError::Unavailable(what) => what,
                    _ => "the model file store",
                };
                let message = format!("{store} cannot be reached right now; retry later");
                return yunmo_types::ServiceError::new(Code::Unavailable, message).with_retry_after(UNAVAILABLE_RETRY_S);
            }
            RegistryError::Database(_) | RegistryError::Store(_) | RegistryError::Schema(_) | RegistryError::Unavailable(_) => {
                Code::Internal
            }
        };
        yunmo_types::ServiceError::new(code, error.to_string())
    }
}

/// Seconds a client is told to wait when a store cannot be reached.
const UNAVAILABLE_RETRY_S: u64 = 5;

impl RegistryError {
    /// Whether the metadata store or the artifact store could not be reached (a connection refused, reset or
    /// timed out; a pool with no connection to give): the request may pass when retried later. Errors the
    /// store answered (a constraint, a bad query) are not.
    pub fn is_unavailable(&self) -> bool {
        match self {
            RegistryError::Unavailable(_) => true,
            RegistryError::Database(error) => {
                matches!(error, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed)
            }
            RegistryError::Store(error) => matches!(
                error.kind(),
                std::io::ErrorKind::NotConnected
                    | std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            ),
            _ => false,
        }
    }

    /// `store` (a name for clients, e.g. "the metadata store") cannot be reached.
    pub fn unavailable(store: &str) -> Self {
        RegistryError::Unavailable(store.to_string())
    }

    /// A model that does not exist.
    pub fn model_not_found(name: &str) -> Self {
        RegistryError::NotFound(format!("model '{name}' not found"))
    }
    /// A version that does not exist.
    pub fn version_not_found(name: &str, version: u64) -> Self {
        RegistryError::NotFound(format!("model '{name}' has no version {version}"))
    }
}

/// A version to add: the staged file and what was read from it.
#[derive(Debug)]
pub struct NewVersion {
    /// Requested number; `None` assigns the next one.
    pub version: Option<u64>,
    /// Artifact format (`"onnx"`).
    pub format: String,
    /// Signature read from the file.
    pub signature: Signature,
    /// Serving options.
    pub config: VersionConfig,
    /// The checked file, not yet in the store.
    pub artifact: StagedArtifact,
    /// A `tokenizer.json` stored with the version (for embedding encoders).
    pub tokenizer: Option<String>,
}

/// Models, versions, tenants, keys, usage and audit, and the model files.
#[derive(Clone)]
pub struct Registry {
    meta: Arc<dyn MetadataStore>,
    artifacts: Arc<dyn ArtifactStore>,
    staging: Staging,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Staging files whose writer was gone.
    pub staging: usize,
    /// Stored files no version referred to, older than the grace period.
    pub artifacts: usize,
    /// What interrupted uploads left in the artifact store (temporary objects in a bucket).
    pub uploads: usize,
    /// Stored responses (Responses API) past their expiry.
    pub responses: u64,
}

impl Registry {
    /// Opens the configured stores: by default SQLite at `data_dir/yunmo.db` and files under
    /// `data_dir/artifacts/`; PostgreSQL and an S3 bucket (cached in `data_dir/cache`) when configured. Files
    /// are sealed with the configured key. Applies migrations, sweeps (see [`Registry::sweep`]) and brings
    /// every stored file under the current key. Uploads are staged in `data_dir/artifacts/staging` always.
    pub async fn open(config: &RegistryConfig) -> Result<Registry, RegistryError> {
        tokio::fs::create_dir_all(&config.data_dir).await?;
        let meta: Arc<dyn MetadataStore> = match &config.postgres {
            Some(options) => Arc::new(PgStore::connect(options).await?),
            None => Arc::new(SqliteStore::open(&config.data_dir.join("yunmo.db")).await?),
        };
        let root = config.data_dir.join("artifacts");
        let staging = Staging::open(root.join("staging"), config.encryption_key.is_some()).await?;
        let local: Arc<dyn ArtifactStore> = match &config.s3 {
            Some((options, cache_bytes)) => {
                let cache = Arc::new(DiskCache::open(config.data_dir.join("cache"), *cache_bytes).await?);
                Arc::new(S3Artifacts::new(options, cache)?)
            }
            None => Arc::new(LocalArtifacts::open(root.join("sha256"), staging.clone()).await?),
        };
        let sealed = config.encryption_key.clone().map(|key| SealedArtifacts::new(local.clone(), key, staging.clone()));
        let artifacts: Arc<dyn ArtifactStore> = match &sealed {
            Some(sealed) => Arc::new(sealed.clone()),
            None => Arc::new(RefuseSealed(local)),
        };
        let registry = Registry::from_parts(meta, artifacts, staging);
        let maintenance = async {
            registry.sweep(config.orphan_grace).await?;
            if let Some(sealed) = sealed {
                sealed.seal_under_current_key(&config.previous_encryption_keys).await?;
            }
            Ok::<(), RegistryError>(())
        };
        match maintenance.await {
            // A bucket that cannot be reached must not keep a replica from serving what it has cached: the
            // sweep and the re-sealing run again at the next start.
            Err(RegistryError::Store(error)) if config.s3.is_some() => {
                tracing::warn!(error = %error, "Could not sweep or re-seal the bucket at start; serving from the local cache.");
            }
            other => other?,
        }
        Ok(registry)
    }

    /// A registry over any stores; `staging` is this machine's folder for uploads.
    pub fn from_parts(meta: Arc<dyn MetadataStore>, artifacts: Arc<dyn ArtifactStore>, staging: Staging) -> Registry {
        Registry { meta, artifacts, staging }
    }

    /// Changes committed by other processes sharing the metadata store (`None` when it is not shared).
    pub fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        self.meta.changes()
    }

    /// Records whether a version is kept loaded, unloaded, or (`None`) loaded on first request, for every
    /// process that shares the store.
    pub async fn set_desired_state(&self, name: &str, version: u64, state: Option<DesiredState>) -> Result<(), RegistryError> {
        let model = self.meta.get_model(name).await?;
        self.meta.set_desired_state(&model, version, state).await
    }

    /// Every version with a desired state.
    pub async fn desired_states(&self) -> Result<Vec<(String, u64, DesiredState)>, RegistryError> {
        self.meta.desired_states().await
    }

    /// The metadata store's schema version.
    pub async fn schema_version(&self) -> Result<u32, RegistryError> {
        self.meta.schema_version().await
    }

    /// Removes staging files whose writer is gone, and stored files no version refers to that are older than
    /// `grace` (a younger one may belong to a version another process is adding right now).
    pub async fn sweep(&self, grace: Duration) -> Result<Swept, RegistryError> {
        let staging = self.staging.sweep().await?;
        // The shared stores are swept by one process at a time; another holding the lock is sweeping now.
        let Some(_lock) = self.meta.try_maintenance_lock().await? else {
            return Ok(Swept { staging, ..Swept::default() });
        };
        let uploads = self.artifacts.sweep_incomplete().await?;
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let responses = self.meta.purge_responses(now_ms).await?;
        let referenced = self.meta.referenced_artifacts().await?;
        let now = std::time::SystemTime::now();
        let mut artifacts = 0;
        for object in self.artifacts.list().await? {
            let age = now.duration_since(object.modified).unwrap_or_default();
            if referenced.contains(&object.sha256) || age < grace {
                continue;
            }
            if self.remove_if_unreferenced(&object.sha256).await? {
                artifacts += 1;
            }
        }
        let swept = Swept { staging, artifacts, uploads, responses };
        if swept != Swept::default() {
            tracing::info!(
                staging,
                artifacts,
                uploads,
                responses,
                "Removed unreferenced artifacts, abandoned staging files and expired responses."
            );
        }
        Ok(swept)
    }

    /// Starts staging an upload on this machine.
    pub async fn stage(&self) -> std::io::Result<StagingFile> {
        self.staging.stage().await
    }

    /// Creates a model.
    pub async fn create_model(&self, model: NewModel) -> Result<ModelRecord, RegistryError> {
        records::validate_name(&model.name)?;
        self.meta.create_model(model).await
    }

    /// All models, by name.
    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, RegistryError> {
        self.meta.list_models().await
    }

    /// Every model whose name within its tenant is `short`.
    pub async fn models_named(&self, short: &str) -> Result<Vec<ModelRecord>, RegistryError> {
        self.meta.models_named(short).await
    }

    /// One model, by its qualified name.
    pub async fn get_model(&self, name: &str) -> Result<ModelRecord, RegistryError> {
        self.meta.get_model(name).await
    }

    /// Changes a model's description, task, labels, metadata or version policy.
    pub async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<ModelRecord, RegistryError> {
        self.meta.update_model(name, patch).await
    }

    /// Deletes a model, its versions, and files no other version uses. Returns the deleted versions.
    pub async fn delete_model(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        let versions = self.meta.delete_model(name).await?;
        self.remove_unreferenced(&versions).await;
        Ok(versions)
    }

    /// Adds a version: readies the staged file (sealing it when the store is encrypted), then the metadata
    /// store records the version and publishes the file in one transaction, under the lock a removal of the
    /// same content also takes ([`MetadataStore::remove_artifact_if_unreferenced`]), so a concurrent removal
    /// either runs first (and the file is put back) or sees the new row (and keeps the file).
    pub async fn add_version(&self, name: &str, new_version: NewVersion) -> Result<VersionRecord, RegistryError> {
        let model = self.meta.get_model(name).await?;
        if let Some(version) = new_version.version {
            if version == 0 {
                return Err(RegistryError::Invalid("version must be at least 1, got 0".into()));
            }
            if version > i64::MAX as u64 {
                return Err(RegistryError::Invalid(format!("version must be at most {}, got {version}", i64::MAX)));
            }
        }
        let NewVersion { version, format, signature, config, artifact, tokenizer } = new_version;
        let sha256 = artifact.sha256().to_string();
        let size = artifact.size();
        let prepared = self.artifacts.prepare(&sha256, artifact.into_file()).await?;
        let row = VersionRow { model_id: model.id, version, format, sha256, size, signature, config, tokenizer };
        let artifacts = self.artifacts.clone();
        self.meta.insert_version(row, Box::pin(async move { artifacts.publish(prepared).await })).await
    }

    /// Versions of a model, lowest first.
    pub async fn list_versions(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        let model = self.meta.get_model(name).await?;
        self.meta.list_versions(&model).await
    }

    /// One version.
    pub async fn get_version(&self, name: &str, version: u64) -> Result<VersionRecord, RegistryError> {
        let model = self.meta.get_model(name).await?;
        self.meta.get_version(&model, version).await
    }

    /// Replaces a version's serving options.
    pub async fn set_version_config(&self, name: &str, version: u64, config: VersionConfig) -> Result<VersionRecord, RegistryError> {
        config.validate().map_err(RegistryError::Invalid)?;
        let model = self.meta.get_model(name).await?;
        self.meta.set_version_config(&model, version, &config).await
    }

    /// Stores (or replaces) the `tokenizer.json` of a version.
    pub async fn set_tokenizer(&self, name: &str, version: u64, tokenizer: &str) -> Result<VersionRecord, RegistryError> {
        let model = self.meta.get_model(name).await?;
        self.meta.set_tokenizer(&model, version, tokenizer).await
    }

    /// The `tokenizer.json` stored with a version, if any.
    pub async fn tokenizer(&self, name: &str, version: u64) -> Result<Option<String>, RegistryError> {
        let model = self.meta.get_model(name).await?;
        self.meta.tokenizer(&model, version).await
    }

    /// Deletes a version and its file if no other version uses it.
    pub async fn delete_version(&self, name: &str, version: u64) -> Result<VersionRecord, RegistryError> {
        let model = self.meta.get_model(name).await?;
        let record = self.meta.delete_version(&model, version).await?;
        self.remove_unreferenced(std::slice::from_ref(&record)).await;
        Ok(record)
    }

    /// The version a request for `model_ref` gets: the explicit one, else the model's policy.
    pub async fn resolve(&self, model_ref: &ModelRef) -> Result<(ModelRecord, VersionRecord), RegistryError> {
        let model = self.meta.get_model(&model_ref.name).await?;
        let version = match (model_ref.version, &model.version_policy) {
            (Some(version), _) | (None, &yunmo_types::VersionPolicy::Pinned { version }) => self.meta.get_version(&model, version).await?,
            // The stable version stands for a route wherever one version must (metadata, readiness).
            (None, yunmo_types::VersionPolicy::Routed(route)) => self.meta.get_version(&model, route.stable).await?,
            (None, yunmo_types::VersionPolicy::Latest) => self
                .meta
                .latest_version(&model)
                .await?
                .ok_or_else(|| RegistryError::NotFound(format!("model '{}' has no versions yet", model.name)))?,
        };
        Ok((model, version))
    }

    /// Every version of every model (for the repository index).
    pub async fn all_versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
        self.meta.all_versions().await
    }

    /// Creates a tenant.
    pub async fn create_tenant(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
        records::validate_tenant(name)?;
        limits.validate().map_err(RegistryError::Invalid)?;
        self.meta.create_tenant(name, limits).await
    }

    /// One tenant.
    pub async fn get_tenant(&self, name: &str) -> Result<TenantRecord, RegistryError> {
        self.meta.get_tenant(name).await
    }

    /// All tenants, by name.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, RegistryError> {
        self.meta.list_tenants().await
    }

    /// Deletes a tenant, its keys and (with `with_models`) its models and their files; see
    /// [`MetadataStore::delete_tenant`]. Returns the deleted versions.
    pub async fn delete_tenant(&self, name: &str, with_models: bool) -> Result<Vec<VersionRecord>, RegistryError> {
        if name == DEFAULT_TENANT {
            return Err(RegistryError::Invalid(format!("the '{name}' tenant cannot be deleted")));
        }
        let versions = self.meta.delete_tenant(name, with_models).await?;
        self.remove_unreferenced(&versions).await;
        Ok(versions)
    }

    /// Replaces a tenant's limits.
    pub async fn set_tenant_limits(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
        limits.validate().map_err(RegistryError::Invalid)?;
        self.meta.set_tenant_limits(name, limits).await
    }

    /// Stores a key (its hash).
    pub async fn insert_key(&self, key: &NewKey) -> Result<KeyRecord, RegistryError> {
        key.limits.validate().map_err(RegistryError::Invalid)?;
        self.meta.insert_key(key).await
    }

    /// A key by its visible id, with its tenant's limits.
    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, RegistryError> {
        self.meta.get_key(id).await
    }

    /// Keys, of one tenant or all.
    pub async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, RegistryError> {
        self.meta.list_keys(tenant).await
    }

    /// How many keys exist (revoked ones included).
    pub async fn count_keys(&self) -> Result<u64, RegistryError> {
        self.meta.count_keys().await
    }

    /// Revokes a key (idempotent).
    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, RegistryError> {
        self.meta.revoke_key(id).await
    }

    /// Appends usage events in one transaction.
    pub async fn insert_usage(&self, events: &[UsageEvent]) -> Result<(), RegistryError> {
        self.meta.insert_usage(events).await
    }

    /// Usage in `[from_ms, to_ms)`, grouped, of one tenant or all.
    pub async fn usage_report(&self, query: UsageQuery<'_>) -> Result<Vec<UsageRow>, RegistryError> {
        self.meta.usage_report(query).await
    }

    /// Totals of one key or tenant since `from_ms`.
    pub async fn usage_totals(&self, subject: UsageSubject<'_>, from_ms: i64) -> Result<UsageTotals, RegistryError> {
        self.meta.usage_totals(subject, from_ms).await
    }

    /// The stored drift baseline of a version.
    pub async fn get_drift_baseline(&self, model: &str, version: u64) -> Result<Option<DriftBaselineRecord>, RegistryError> {
        self.meta.get_drift_baseline(model, version).await
    }

    /// Stores a drift baseline (see [`MetadataStore::put_drift_baseline`]); returns what is stored.
    pub async fn put_drift_baseline(&self, record: &DriftBaselineRecord, replace: bool) -> Result<DriftBaselineRecord, RegistryError> {
        self.meta.put_drift_baseline(record, replace).await
    }

    /// The usage of `model` (qualified name) since `from_ms` in buckets of `bucket_ms`, oldest first (buckets
    /// without usage left out).
    pub async fn usage_series(&self, model: &str, from_ms: i64, bucket_ms: i64) -> Result<Vec<UsageBucket>, RegistryError> {
        self.meta.usage_series(model, from_ms, bucket_ms).await
    }

    /// Appends an audit entry.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), RegistryError> {
        self.meta.append_audit(entry).await
    }

    /// The newest audit entries first, of one tenant or all.
    pub async fn list_audit(&self, tenant: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, RegistryError> {
        self.meta.list_audit(tenant, limit).await
    }

    /// A version's file in plaintext, for loading (decrypted into memory when the store is encrypted).
    pub async fn readable_artifact(&self, version: &VersionRecord) -> Result<ReadableArtifact, RegistryError> {
        Ok(self.artifacts.get(&version.sha256).await?)
    }

    /// Removes the files of `versions` that no version refers to any more; a failure is logged (a later
    /// sweep removes the file).
    async fn remove_unreferenced(&self, versions: &[VersionRecord]) {
        for version in versions {
            if let Err(error) = self.remove_if_unreferenced(&version.sha256).await {
                tracing::warn!(sha = %version.sha256, %error, "Could not remove an unreferenced artifact; a later sweep removes it.");
            }
        }
    }

    async fn remove_if_unreferenced(&self, sha256: &str) -> Result<bool, RegistryError> {
        let artifacts = self.artifacts.clone();
        let sha = sha256.to_string();
        self.meta.remove_artifact_if_unreferenced(sha256, Box::pin(async move { artifacts.delete(&sha).await })).await
    }
}
