//! Model metadata and artifacts: the only crate that touches the database or the artifact store.
//!
//! [`Registry`] keeps models and their versions in SQLite (WAL) and model files in an [`ArtifactStore`]
//! addressed by sha256. A version row is written only after its file is durable under its final name, and a
//! file is removed only after no row refers to it, so a crash at any point leaves either the old state or the
//! new one, plus at most an unreferenced file that [`Registry::open`] sweeps away.
//! It knows nothing of runtimes: callers check a file (through a backend) between staging and committing it.

mod db;
mod seal;
mod store;
mod tenancy;
mod tx;

pub use db::{DEFAULT_TENANT, ModelPatch, ModelRecord, NewModel, VersionRecord, name_for, qualified_name};
pub use seal::EncryptionKey;
pub use store::{ArtifactStore, PreparedArtifact, ReadableArtifact, StagedArtifact, StagingFile};
pub use tenancy::{AuditEntry, KeyRecord, NewKey, TenantRecord, UsageEvent, UsageGroup, UsageRow, UsageSubject, UsageTotals};

use std::path::PathBuf;
use std::sync::Arc;

use yunmo_types::{ModelRef, Signature, VersionConfig};

/// Where the registry keeps its data.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Data directory: `yunmo.db` and `artifacts/` live here.
    pub data_dir: PathBuf,
    /// Seals model files at rest with this key.
    pub encryption_key: Option<Arc<EncryptionKey>>,
    /// Keys files may still be sealed with; at open they are re-sealed under `encryption_key`.
    pub previous_encryption_keys: Vec<Arc<EncryptionKey>>,
}

impl RegistryConfig {
    /// A registry in `data_dir` without encryption.
    pub fn new(data_dir: impl Into<PathBuf>) -> RegistryConfig {
        RegistryConfig { data_dir: data_dir.into(), encryption_key: None, previous_encryption_keys: Vec::new() }
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
}

impl From<RegistryError> for yunmo_types::ServiceError {
    fn from(error: RegistryError) -> Self {
        use yunmo_types::Code;
        let code = match &error {
            RegistryError::NotFound(_) => Code::ModelNotFound,
            RegistryError::ResourceNotFound(_) => Code::NotFound,
            RegistryError::AlreadyExists(_) => Code::Conflict,
            RegistryError::Invalid(_) => Code::InvalidRequest,
            RegistryError::Database(_) | RegistryError::Store(_) => Code::Internal,
        };
        yunmo_types::ServiceError::new(code, error.to_string())
    }
}

impl RegistryError {
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

/// Models, versions and their files.
#[derive(Clone)]
pub struct Registry {
    db: db::Db,
    store: ArtifactStore,
}

impl Registry {
    /// Opens (creating if needed) the database and the store, then removes staging leftovers and files no
    /// version refers to.
    pub async fn open(config: &RegistryConfig) -> Result<Registry, RegistryError> {
        tokio::fs::create_dir_all(&config.data_dir).await?;
        let db = db::Db::open(&config.data_dir.join("yunmo.db")).await?;
        let store = ArtifactStore::open(config.data_dir.join("artifacts"), config.encryption_key.clone()).await?;
        let registry = Registry { db, store };
        let referenced = registry.db.referenced_artifacts().await?;
        let removed = registry.store.sweep(&referenced).await?;
        if removed > 0 {
            tracing::info!(removed, "Removed unreferenced artifacts and staging files.");
        }
        registry.store.seal_under_current_key(&config.previous_encryption_keys).await?;
        Ok(registry)
    }

    /// The artifact store (for staging uploads and locating files).
    pub fn store(&self) -> &ArtifactStore {
        &self.store
    }

    /// Creates a model.
    pub async fn create_model(&self, model: NewModel) -> Result<ModelRecord, RegistryError> {
        self.db.create_model(model).await
    }

    /// All models, by name.
    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, RegistryError> {
        self.db.list_models().await
    }

    /// Every model whose name within its tenant is `short`.
    pub async fn models_named(&self, short: &str) -> Result<Vec<ModelRecord>, RegistryError> {
        self.db.models_named(short).await
    }

    /// One model, by its qualified name.
    pub async fn get_model(&self, name: &str) -> Result<ModelRecord, RegistryError> {
        self.db.get_model(name).await
    }

    /// Changes a model's description, task, labels, metadata or version policy.
    pub async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<ModelRecord, RegistryError> {
        self.db.update_model(name, patch).await
    }

    /// Deletes a model, its versions, and files no other version uses. Returns the deleted versions.
    pub async fn delete_model(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        let versions = self.db.delete_model(name).await?;
        self.remove_unreferenced(&versions).await;
        Ok(versions)
    }

    /// Adds a version: readies the staged file (sealing it when the store is encrypted), then, holding the
    /// database's write lock, moves it into the store and records the version in one transaction. A
    /// concurrent removal of the same content takes that lock too ([`Registry::remove_unreferenced_sha`]),
    /// so it either runs first (and the file is put back) or sees the new row (and keeps the file).
    pub async fn add_version(&self, name: &str, new_version: NewVersion) -> Result<VersionRecord, RegistryError> {
        let model = self.db.get_model(name).await?;
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
        let prepared = self.store.prepare(artifact).await?;
        let row = db::VersionRow { model_id: model.id, version, format, sha256, size, signature, config, tokenizer };
        let mut tx = self.db.write_transaction().await?;
        let version = db::Db::insert_version(&mut tx, row).await?;
        // The file goes in place only once the row is written in the open transaction: an error before
        // this leaves the store untouched; a failed commit leaves an unreferenced file the next start sweeps.
        self.store.publish(prepared).await?;
        tx.commit().await?;
        self.db.get_version(model.id, name, version).await
    }

    /// Versions of a model, lowest first.
    pub async fn list_versions(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        let model = self.db.get_model(name).await?;
        self.db.list_versions(model.id).await
    }

    /// One version.
    pub async fn get_version(&self, name: &str, version: u64) -> Result<VersionRecord, RegistryError> {
        let model = self.db.get_model(name).await?;
        self.db.get_version(model.id, name, version).await
    }

    /// Replaces a version's serving options.
    pub async fn set_version_config(&self, name: &str, version: u64, config: VersionConfig) -> Result<VersionRecord, RegistryError> {
        config.validate().map_err(RegistryError::Invalid)?;
        let model = self.db.get_model(name).await?;
        self.db.set_version_config(model.id, name, version, &config).await
    }

    /// Stores (or replaces) the `tokenizer.json` of a version.
    pub async fn set_tokenizer(&self, name: &str, version: u64, tokenizer: &str) -> Result<VersionRecord, RegistryError> {
        let model = self.db.get_model(name).await?;
        self.db.set_tokenizer(model.id, name, version, tokenizer).await
    }

    /// The `tokenizer.json` stored with a version, if any.
    pub async fn tokenizer(&self, name: &str, version: u64) -> Result<Option<String>, RegistryError> {
        let model = self.db.get_model(name).await?;
        self.db.tokenizer(model.id, name, version).await
    }

    /// Deletes a version and its file if no other version uses it.
    pub async fn delete_version(&self, name: &str, version: u64) -> Result<VersionRecord, RegistryError> {
        let model = self.db.get_model(name).await?;
        let record = self.db.delete_version(model.id, name, version).await?;
        self.remove_unreferenced(std::slice::from_ref(&record)).await;
        Ok(record)
    }

    /// The version a request for `model_ref` gets: the explicit one, else the model's policy.
    pub async fn resolve(&self, model_ref: &ModelRef) -> Result<(ModelRecord, VersionRecord), RegistryError> {
        let model = self.db.get_model(&model_ref.name).await?;
        let version = match (model_ref.version, model.version_policy) {
            (Some(version), _) | (None, yunmo_types::VersionPolicy::Pinned { version }) => {
                self.db.get_version(model.id, &model.name, version).await?
            }
            (None, yunmo_types::VersionPolicy::Latest) => self
                .db
                .latest_version(model.id)
                .await?
                .ok_or_else(|| RegistryError::NotFound(format!("model '{}' has no versions yet", model.name)))?,
        };
        Ok((model, version))
    }

    /// Every version of every model (for the repository index).
    pub async fn all_versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
        self.db.all_versions().await
    }

    /// Creates a tenant.
    pub async fn create_tenant(&self, name: &str, limits: &yunmo_types::Limits) -> Result<TenantRecord, RegistryError> {
        self.db.create_tenant(name, limits).await
    }

    /// One tenant.
    pub async fn get_tenant(&self, name: &str) -> Result<TenantRecord, RegistryError> {
        self.db.get_tenant(name).await
    }

    /// All tenants, by name.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, RegistryError> {
        self.db.list_tenants().await
    }

    /// Deletes a tenant, its keys and (with `with_models`) its models and their files; see
    /// `Db::delete_tenant`. Returns the deleted versions.
    pub async fn delete_tenant(&self, name: &str, with_models: bool) -> Result<Vec<VersionRecord>, RegistryError> {
        let versions = self.db.delete_tenant(name, with_models).await?;
        self.remove_unreferenced(&versions).await;
        Ok(versions)
    }

    /// Replaces a tenant's limits.
    pub async fn set_tenant_limits(&self, name: &str, limits: &yunmo_types::Limits) -> Result<TenantRecord, RegistryError> {
        self.db.set_tenant_limits(name, limits).await
    }

    /// Stores a key (its hash).
    pub async fn insert_key(&self, key: &NewKey) -> Result<KeyRecord, RegistryError> {
        self.db.insert_key(key).await
    }

    /// A key by its visible id, with its tenant's limits.
    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, RegistryError> {
        self.db.get_key(id).await
    }

    /// Keys, of one tenant or all.
    pub async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, RegistryError> {
        self.db.list_keys(tenant).await
    }

    /// How many keys exist (revoked ones included).
    pub async fn count_keys(&self) -> Result<u64, RegistryError> {
        self.db.count_keys().await
    }

    /// Revokes a key (idempotent).
    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, RegistryError> {
        self.db.revoke_key(id).await
    }

    /// Appends usage events in one transaction.
    pub async fn insert_usage(&self, events: &[UsageEvent]) -> Result<(), RegistryError> {
        self.db.insert_usage(events).await
    }

    /// Usage in `[from_ms, to_ms)`, grouped, of one tenant or all.
    pub async fn usage_report(
        &self,
        from_ms: i64,
        to_ms: i64,
        tenant: Option<&str>,
        group: UsageGroup,
    ) -> Result<Vec<UsageRow>, RegistryError> {
        self.db.usage_report(from_ms, to_ms, tenant, group).await
    }

    /// Totals of one key or tenant since `from_ms`.
    pub async fn usage_totals(&self, subject: UsageSubject<'_>, from_ms: i64) -> Result<UsageTotals, RegistryError> {
        self.db.usage_totals(subject, from_ms).await
    }

    /// Appends an audit entry.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), RegistryError> {
        self.db.append_audit(entry).await
    }

    /// The newest audit entries first, of one tenant or all.
    pub async fn list_audit(&self, tenant: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, RegistryError> {
        self.db.list_audit(tenant, limit).await
    }

    /// A version's file in plaintext, for loading (decrypted into memory when the store is encrypted).
    pub async fn readable_artifact(&self, version: &VersionRecord) -> Result<ReadableArtifact, RegistryError> {
        Ok(self.store.readable(&version.sha256).await?)
    }

    async fn remove_unreferenced(&self, versions: &[VersionRecord]) {
        let shas: Vec<String> = versions.iter().map(|version| version.sha256.clone()).collect();
        self.remove_unreferenced_sha(&shas).await;
    }

    /// Removes the files of `shas` that no version refers to. Each check and removal happens under the
    /// database's write lock, which every version insert also holds while it puts its file in place.
    async fn remove_unreferenced_sha(&self, shas: &[String]) {
        for sha in shas {
            if let Err(error) = self.remove_if_unreferenced(sha).await {
                tracing::warn!(%sha, %error, "Could not remove an unreferenced artifact; the next start sweeps it.");
            }
        }
    }

    async fn remove_if_unreferenced(&self, sha256: &str) -> Result<(), RegistryError> {
        let mut tx = self.db.write_transaction().await?;
        if !db::Db::artifact_in_use(&mut tx, sha256).await? {
            self.store.remove(sha256).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
