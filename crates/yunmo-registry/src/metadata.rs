//! The metadata store: where models, versions, tenants, keys, usage and audit entries live, and (through
//! its supertrait [`JobStore`]) background jobs and dataset files.
//!
//! [`crate::Registry`] validates names and limits and then calls one of these; an implementation only
//! stores and reads. SQLite ([`crate::SqliteStore`]) is the embedded default; every implementation must
//! pass [`crate::conformance`].

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use yunmo_types::{Limits, VersionConfig};

use crate::RegistryError;
use crate::jobs::JobStore;
use crate::records::{DriftBaselineRecord, ModelPatch, ModelRecord, NewModel, VersionRecord, VersionRow};
use crate::tenancy::{
    AuditEntry, KeyRecord, NewKey, TenantRecord, UsageBucket, UsageEvent, UsageGroup, UsageRow, UsageSubject, UsageTotals,
};

/// Work on the artifact store that must happen inside a metadata transaction: not yet started when passed,
/// awaited by the store while it holds the lock that [`MetadataStore::insert_version`] and
/// [`MetadataStore::remove_artifact_if_unreferenced`] share.
pub type ArtifactWork<'a> = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + 'a>>;

/// Models, versions, tenants, keys, usage and audit entries; jobs and dataset files through [`JobStore`].
///
/// Contract (checked by [`crate::conformance::metadata`], and for jobs and files by
/// [`crate::conformance::jobs`]): a failed call changes nothing; names are unique
/// (`AlreadyExists` otherwise); missing models and versions are `NotFound`, missing tenants and keys
/// `ResourceNotFound`; the artifact work passed to `insert_version` and `remove_artifact_if_unreferenced`
/// runs under one lock, so a file is never removed while a version that refers to it is being added.
#[async_trait::async_trait]
pub trait MetadataStore: JobStore + crate::responses::ResponseStore + Send + Sync + 'static {
    /// The schema version the store is at (the highest migration applied).
    async fn schema_version(&self) -> Result<u32, RegistryError>;

    /// Creates a model under its qualified name (the name is already validated).
    async fn create_model(&self, model: NewModel) -> Result<ModelRecord, RegistryError>;
    /// All models, by name.
    async fn list_models(&self) -> Result<Vec<ModelRecord>, RegistryError>;
    /// Every model whose name within its tenant is `short`, of any tenant.
    async fn models_named(&self, short: &str) -> Result<Vec<ModelRecord>, RegistryError>;
    /// One model, by its qualified name.
    async fn get_model(&self, name: &str) -> Result<ModelRecord, RegistryError>;
    /// Applies a patch; pinning a version the model does not have is `Invalid`.
    async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<ModelRecord, RegistryError>;
    /// Deletes a model and its versions; returns the versions.
    async fn delete_model(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError>;

    /// Inserts a version and, in the same transaction, awaits `publish` (which puts its file in place); the
    /// row is committed only if `publish` succeeds. Returns the stored version.
    async fn insert_version(&self, row: VersionRow, publish: ArtifactWork<'_>) -> Result<VersionRecord, RegistryError>;
    /// Versions of a model, lowest first.
    async fn list_versions(&self, model: &ModelRecord) -> Result<Vec<VersionRecord>, RegistryError>;
    /// Every version of every model, by model name and version.
    async fn all_versions(&self) -> Result<Vec<VersionRecord>, RegistryError>;
    /// One version.
    async fn get_version(&self, model: &ModelRecord, version: u64) -> Result<VersionRecord, RegistryError>;
    /// The highest version, if any.
    async fn latest_version(&self, model: &ModelRecord) -> Result<Option<VersionRecord>, RegistryError>;
    /// Replaces a version's serving options.
    async fn set_version_config(&self, model: &ModelRecord, version: u64, config: &VersionConfig) -> Result<VersionRecord, RegistryError>;
    /// Stores (or replaces) a version's `tokenizer.json`.
    async fn set_tokenizer(&self, model: &ModelRecord, version: u64, tokenizer: &str) -> Result<VersionRecord, RegistryError>;
    /// A version's `tokenizer.json`, if it has one.
    async fn tokenizer(&self, model: &ModelRecord, version: u64) -> Result<Option<String>, RegistryError>;
    /// Deletes a version; the version a model's policy pins is `Invalid`.
    async fn delete_version(&self, model: &ModelRecord, version: u64) -> Result<VersionRecord, RegistryError>;
    /// The sha256 of every stored file a row refers to: versions' model files and dataset files.
    async fn referenced_artifacts(&self) -> Result<HashSet<String>, RegistryError>;
    /// Awaits `remove` if no version and no dataset file refers to `sha256`, under the lock
    /// `insert_version` holds while it publishes; returns whether it ran.
    async fn remove_artifact_if_unreferenced(&self, sha256: &str, remove: ArtifactWork<'_>) -> Result<bool, RegistryError>;

    /// Creates a tenant (name and limits already validated).
    async fn create_tenant(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError>;
    /// One tenant.
    async fn get_tenant(&self, name: &str) -> Result<TenantRecord, RegistryError>;
    /// All tenants, by name.
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, RegistryError>;
    /// Replaces a tenant's limits.
    async fn set_tenant_limits(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError>;
    /// Deletes a tenant, its keys and its place in every model's sharing, and (with `with_models`) its models,
    /// in one transaction; a tenant that owns models without `with_models` is `AlreadyExists` naming them.
    /// Returns the deleted versions. Usage and audit entries stay.
    async fn delete_tenant(&self, name: &str, with_models: bool) -> Result<Vec<VersionRecord>, RegistryError>;

    /// Stores a key (its hash); its tenant must exist.
    async fn insert_key(&self, key: &NewKey) -> Result<KeyRecord, RegistryError>;
    /// A key by its visible id, with its tenant's limits.
    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, RegistryError>;
    /// Keys of one tenant or all, oldest first.
    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, RegistryError>;
    /// How many keys exist, revoked ones included.
    async fn count_keys(&self) -> Result<u64, RegistryError>;
    /// Revokes a key (idempotent: the first revocation time stays).
    async fn revoke_key(&self, id: &str) -> Result<KeyRecord, RegistryError>;

    /// Appends usage events in one transaction, all or none.
    async fn insert_usage(&self, events: &[UsageEvent]) -> Result<(), RegistryError>;
    /// Usage in `[from_ms, to_ms)`, grouped, of one tenant or all.
    async fn usage_report(&self, query: UsageQuery<'_>) -> Result<Vec<UsageRow>, RegistryError>;
    /// Totals of one key or tenant since `from_ms`.
    async fn usage_totals(&self, subject: UsageSubject<'_>, from_ms: i64) -> Result<UsageTotals, RegistryError>;
    /// The usage of `model` (qualified name) since `from_ms`, summed in buckets of `bucket_ms`, oldest first;
    /// buckets without usage are left out.
    async fn usage_series(&self, model: &str, from_ms: i64, bucket_ms: i64) -> Result<Vec<UsageBucket>, RegistryError>;

    /// The stored drift baseline of a version.
    async fn get_drift_baseline(&self, model: &str, version: u64) -> Result<Option<DriftBaselineRecord>, RegistryError>;
    /// Stores a drift baseline: with `replace`, whatever was stored is replaced; without, it is stored only
    /// when none is (the first replica to freeze one wins). Returns what is stored afterwards.
    async fn put_drift_baseline(&self, record: &DriftBaselineRecord, replace: bool) -> Result<DriftBaselineRecord, RegistryError>;

    /// Appends an audit entry.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), RegistryError>;
    /// The newest audit entries first, of one tenant or all.
    async fn list_audit(&self, tenant: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, RegistryError>;

    /// Records whether a version is kept loaded, kept unloaded, or (`None`) loaded on first request.
    async fn set_desired_state(&self, model: &ModelRecord, version: u64, state: Option<DesiredState>) -> Result<(), RegistryError>;
    /// Every version with a desired state: (qualified model name, version, state).
    async fn desired_states(&self) -> Result<Vec<(String, u64, DesiredState)>, RegistryError>;

    /// Changes committed by any process, as they commit (`None`: the store is not shared, so every change
    /// is made through this process). A receiver that lags has missed changes and must act as on
    /// [`Change::Resync`].
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }
    /// Takes the lock that lets one process of those sharing the store do maintenance (the sweep of
    /// unreferenced files), if no other holds it; held until the value is dropped. A store that is not
    /// shared always grants it.
    async fn try_maintenance_lock(&self) -> Result<Option<MaintenanceLock>, RegistryError> {
        Ok(Some(MaintenanceLock::unshared()))
    }
}

/// What [`MetadataStore::changes`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Models or versions changed (names, policies, sharing, configs, versions added or removed, what
    /// should be loaded).
    Models,
    /// A drift baseline was stored, replaced or reset.
    Drift,
    /// Tenants or keys changed (limits, keys created or revoked).
    Keys,
    /// The connection that reports changes was lost and is back: changes may have been missed, so every
    /// cache must be dropped.
    Resync,
}

/// Whether a version is kept loaded or unloaded across the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredState {
    /// Loaded by every replica (at start, and when it is asked to).
    Loaded,
    /// Refused by every replica until it is loaded again.
    Unloaded,
}

impl DesiredState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Loaded => "loaded",
            DesiredState::Unloaded => "unloaded",
        }
    }

    /// From what is stored.
    pub fn parse(text: &str) -> Option<DesiredState> {
        match text {
            "loaded" => Some(DesiredState::Loaded),
            "unloaded" => Some(DesiredState::Unloaded),
            _ => None,
        }
    }

    /// The stored states from rows of [`DesiredState::QUERY`]; a value this build does not know is skipped.
    pub(crate) fn from_rows(rows: Vec<(String, i64, String)>) -> Vec<(String, u64, DesiredState)> {
        rows.into_iter()
            .filter_map(|(name, version, state)| Some((name, u64::try_from(version).ok()?, DesiredState::parse(&state)?)))
            .collect()
    }

    /// Every version with a desired state, as (model name, version, state); the same SQL in both stores.
    pub(crate) const QUERY: &'static str = "SELECT m.name, v.version, v.desired_state FROM versions v JOIN models m ON m.id = v.model_id \
         WHERE v.desired_state IS NOT NULL ORDER BY m.name, v.version";
}

/// The maintenance lock ([`MetadataStore::try_maintenance_lock`]); released when dropped.
pub struct MaintenanceLock {
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl MaintenanceLock {
    /// A lock that holds nothing (a store that is not shared).
    pub(crate) fn unshared() -> MaintenanceLock {
        MaintenanceLock { _guard: None }
    }

    /// A lock held while `guard` lives.
    pub(crate) fn holding(guard: impl std::any::Any + Send + Sync) -> MaintenanceLock {
        MaintenanceLock { _guard: Some(Box::new(guard)) }
    }
}

impl std::fmt::Debug for MaintenanceLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaintenanceLock")
    }
}

/// Which usage to report.
#[derive(Debug, Clone, Copy)]
pub struct UsageQuery<'a> {
    /// Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// Unix milliseconds, exclusive.
    pub to_ms: i64,
    /// One tenant, or all.
    pub tenant: Option<&'a str>,
    /// How rows are grouped.
    pub group: UsageGroup,
}

/// Implements [`MetadataStore`] for a store type by calling its inherent methods of the same names (each
/// store keeps them in its `models` and `tenancy` modules) and returning its `schema_version` field.
macro_rules! store_by_inherent_methods {
    ($store:ident) => {
        const _: () = {
            use std::collections::HashSet;
            use yunmo_types::{Limits, VersionConfig};
            use $crate::RegistryError;
            use $crate::metadata::{ArtifactWork, UsageQuery};
            use $crate::records::{ModelPatch, ModelRecord, NewModel, VersionRecord, VersionRow};
            use $crate::tenancy::{AuditEntry, KeyRecord, NewKey, TenantRecord, UsageEvent, UsageRow, UsageSubject, UsageTotals};
            #[async_trait::async_trait]
            impl $crate::metadata::MetadataStore for $store {
                async fn schema_version(&self) -> Result<u32, RegistryError> {
                    Ok(self.schema_version)
                }
                async fn create_model(&self, model: NewModel) -> Result<ModelRecord, RegistryError> {
                    $store::create_model(self, model).await
                }
                async fn list_models(&self) -> Result<Vec<ModelRecord>, RegistryError> {
                    $store::list_models(self).await
                }
                async fn models_named(&self, short: &str) -> Result<Vec<ModelRecord>, RegistryError> {
                    $store::models_named(self, short).await
                }
                async fn get_model(&self, name: &str) -> Result<ModelRecord, RegistryError> {
                    $store::get_model(self, name).await
                }
                async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<ModelRecord, RegistryError> {
                    $store::update_model(self, name, patch).await
                }
                async fn delete_model(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
                    $store::delete_model(self, name).await
                }
                async fn insert_version(&self, row: VersionRow, publish: ArtifactWork<'_>) -> Result<VersionRecord, RegistryError> {
                    $store::insert_version(self, row, publish).await
                }
                async fn list_versions(&self, model: &ModelRecord) -> Result<Vec<VersionRecord>, RegistryError> {
                    $store::list_versions(self, model).await
                }
                async fn all_versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
                    $store::all_versions(self).await
                }
                async fn get_version(&self, model: &ModelRecord, version: u64) -> Result<VersionRecord, RegistryError> {
                    $store::get_version(self, model, version).await
                }
                async fn latest_version(&self, model: &ModelRecord) -> Result<Option<VersionRecord>, RegistryError> {
                    $store::latest_version(self, model).await
                }
                async fn set_version_config(
                    &self,
                    model: &ModelRecord,
                    version: u64,
                    config: &VersionConfig,
                ) -> Result<VersionRecord, RegistryError> {
                    $store::set_version_config(self, model, version, config).await
                }
                async fn set_tokenizer(&self, model: &ModelRecord, version: u64, tokenizer: &str) -> Result<VersionRecord, RegistryError> {
                    $store::set_tokenizer(self, model, version, tokenizer).await
                }
                async fn tokenizer(&self, model: &ModelRecord, version: u64) -> Result<Option<String>, RegistryError> {
                    $store::tokenizer(self, model, version).await
                }
                async fn delete_version(&self, model: &ModelRecord, version: u64) -> Result<VersionRecord, RegistryError> {
                    $store::delete_version(self, model, version).await
                }
                async fn referenced_artifacts(&self) -> Result<HashSet<String>, RegistryError> {
                    $store::referenced_artifacts(self).await
                }
                async fn remove_artifact_if_unreferenced(&self, sha256: &str, remove: ArtifactWork<'_>) -> Result<bool, RegistryError> {
                    $store::remove_artifact_if_unreferenced(self, sha256, remove).await
                }
                async fn create_tenant(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
                    $store::create_tenant(self, name, limits).await
                }
                async fn get_tenant(&self, name: &str) -> Result<TenantRecord, RegistryError> {
                    $store::get_tenant(self, name).await
                }
                async fn list_tenants(&self) -> Result<Vec<TenantRecord>, RegistryError> {
                    $store::list_tenants(self).await
                }
                async fn set_tenant_limits(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
                    $store::set_tenant_limits(self, name, limits).await
                }
                async fn delete_tenant(&self, name: &str, with_models: bool) -> Result<Vec<VersionRecord>, RegistryError> {
                    $store::delete_tenant(self, name, with_models).await
                }
                async fn insert_key(&self, key: &NewKey) -> Result<KeyRecord, RegistryError> {
                    $store::insert_key(self, key).await
                }
                async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, RegistryError> {
                    $store::get_key(self, id).await
                }
                async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, RegistryError> {
                    $store::list_keys(self, tenant).await
                }
                async fn count_keys(&self) -> Result<u64, RegistryError> {
                    $store::count_keys(self).await
                }
                async fn revoke_key(&self, id: &str) -> Result<KeyRecord, RegistryError> {
                    $store::revoke_key(self, id).await
                }
                async fn insert_usage(&self, events: &[UsageEvent]) -> Result<(), RegistryError> {
                    $store::insert_usage(self, events).await
                }
                async fn usage_report(&self, query: UsageQuery<'_>) -> Result<Vec<UsageRow>, RegistryError> {
                    $store::usage_report(self, query).await
                }
                async fn usage_totals(&self, subject: UsageSubject<'_>, from_ms: i64) -> Result<UsageTotals, RegistryError> {
                    $store::usage_totals(self, subject, from_ms).await
                }
                async fn usage_series(
                    &self,
                    model: &str,
                    from_ms: i64,
                    bucket_ms: i64,
                ) -> Result<Vec<$crate::tenancy::UsageBucket>, RegistryError> {
                    $store::usage_series(self, model, from_ms, bucket_ms).await
                }
                async fn get_drift_baseline(
                    &self,
                    model: &str,
                    version: u64,
                ) -> Result<Option<$crate::records::DriftBaselineRecord>, RegistryError> {
                    $store::get_drift_baseline(self, model, version).await
                }
                async fn put_drift_baseline(
                    &self,
                    record: &$crate::records::DriftBaselineRecord,
                    replace: bool,
                ) -> Result<$crate::records::DriftBaselineRecord, RegistryError> {
                    $store::put_drift_baseline(self, record, replace).await
                }
                async fn append_audit(&self, entry: &AuditEntry) -> Result<(), RegistryError> {
                    $store::append_audit(self, entry).await
                }
                async fn list_audit(&self, tenant: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, RegistryError> {
                    $store::list_audit(self, tenant, limit).await
                }
                async fn set_desired_state(
                    &self,
                    model: &ModelRecord,
                    version: u64,
                    state: Option<$crate::metadata::DesiredState>,
                ) -> Result<(), RegistryError> {
                    $store::set_desired_state(self, model, version, state).await
                }
                async fn desired_states(&self) -> Result<Vec<(String, u64, $crate::metadata::DesiredState)>, RegistryError> {
                    $store::desired_states(self).await
                }
                fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<$crate::metadata::Change>> {
                    $store::changes(self)
                }
                async fn try_maintenance_lock(&self) -> Result<Option<$crate::metadata::MaintenanceLock>, RegistryError> {
                    $store::try_maintenance_lock(self).await
                }
            }
        };
    };
}
pub(crate) use store_by_inherent_methods;
