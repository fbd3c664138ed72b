//! The metadata store in SQLite (WAL, `synchronous=FULL`): the embedded default.

mod migrate;
mod models;
mod tenancy;
mod tx;

use std::collections::HashSet;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use yunmo_types::{Limits, VersionConfig};

use crate::RegistryError;
use crate::metadata::{ArtifactWork, MetadataStore, UsageQuery};
use crate::records::{ModelPatch, ModelRecord, NewModel, VersionRecord, VersionRow};
use crate::tenancy::{AuditEntry, KeyRecord, NewKey, TenantRecord, UsageEvent, UsageRow, UsageSubject, UsageTotals};

/// Models, versions, tenants, keys, usage and audit in one SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    schema_version: u32,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies the migrations it lacks.
    pub async fn open(path: &Path) -> Result<SqliteStore, RegistryError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        match migrate::migrate(&pool).await {
            Ok(schema_version) => Ok(SqliteStore { pool, schema_version }),
            Err(error) => {
                pool.close().await;
                Err(error)
            }
        }
    }

    /// Closes every connection (waiting for them), so another process may open the file exclusively.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A transaction that holds the write lock from its start ([`tx::WriteTx`]).
    async fn write_transaction(&self) -> Result<tx::WriteTx, sqlx::Error> {
        tx::WriteTx::begin(&self.pool).await
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("registry types serialize. This is a bug.")
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<T, RegistryError> {
    serde_json::from_str(text).map_err(|error| RegistryError::Database(sqlx::Error::Decode(format!("stored {what}: {error}").into())))
}

#[async_trait::async_trait]
impl MetadataStore for SqliteStore {
    async fn schema_version(&self) -> Result<u32, RegistryError> {
        Ok(self.schema_version)
    }
    async fn create_model(&self, model: NewModel) -> Result<ModelRecord, RegistryError> {
        SqliteStore::create_model(self, model).await
    }
    async fn list_models(&self) -> Result<Vec<ModelRecord>, RegistryError> {
        SqliteStore::list_models(self).await
    }
    async fn models_named(&self, short: &str) -> Result<Vec<ModelRecord>, RegistryError> {
        SqliteStore::models_named(self, short).await
    }
    async fn get_model(&self, name: &str) -> Result<ModelRecord, RegistryError> {
        SqliteStore::get_model(self, name).await
    }
    async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<ModelRecord, RegistryError> {
        SqliteStore::update_model(self, name, patch).await
    }
    async fn delete_model(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        SqliteStore::delete_model(self, name).await
    }
    async fn insert_version(&self, row: VersionRow, publish: ArtifactWork<'_>) -> Result<VersionRecord, RegistryError> {
        SqliteStore::insert_version(self, row, publish).await
    }
    async fn list_versions(&self, model: &ModelRecord) -> Result<Vec<VersionRecord>, RegistryError> {
        SqliteStore::list_versions(self, model).await
    }
    async fn all_versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
        SqliteStore::all_versions(self).await
    }
    async fn get_version(&self, model: &ModelRecord, version: u64) -> Result<VersionRecord, RegistryError> {
        SqliteStore::get_version(self, model, version).await
    }
    async fn latest_version(&self, model: &ModelRecord) -> Result<Option<VersionRecord>, RegistryError> {
        SqliteStore::latest_version(self, model).await
    }
    async fn set_version_config(&self, model: &ModelRecord, version: u64, config: &VersionConfig) -> Result<VersionRecord, RegistryError> {
        SqliteStore::set_version_config(self, model, version, config).await
    }
    async fn set_tokenizer(&self, model: &ModelRecord, version: u64, tokenizer: &str) -> Result<VersionRecord, RegistryError> {
        SqliteStore::set_tokenizer(self, model, version, tokenizer).await
    }
    async fn tokenizer(&self, model: &ModelRecord, version: u64) -> Result<Option<String>, RegistryError> {
        SqliteStore::tokenizer(self, model, version).await
    }
    async fn delete_version(&self, model: &ModelRecord, version: u64) -> Result<VersionRecord, RegistryError> {
        SqliteStore::delete_version(self, model, version).await
    }
    async fn referenced_artifacts(&self) -> Result<HashSet<String>, RegistryError> {
        SqliteStore::referenced_artifacts(self).await
    }
    async fn remove_artifact_if_unreferenced(&self, sha256: &str, remove: ArtifactWork<'_>) -> Result<bool, RegistryError> {
        SqliteStore::remove_artifact_if_unreferenced(self, sha256, remove).await
    }
    async fn create_tenant(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
        SqliteStore::create_tenant(self, name, limits).await
    }
    async fn get_tenant(&self, name: &str) -> Result<TenantRecord, RegistryError> {
        SqliteStore::get_tenant(self, name).await
    }
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, RegistryError> {
        SqliteStore::list_tenants(self).await
    }
    async fn set_tenant_limits(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
        SqliteStore::set_tenant_limits(self, name, limits).await
    }
    async fn delete_tenant(&self, name: &str, with_models: bool) -> Result<Vec<VersionRecord>, RegistryError> {
        SqliteStore::delete_tenant(self, name, with_models).await
    }
    async fn insert_key(&self, key: &NewKey) -> Result<KeyRecord, RegistryError> {
        SqliteStore::insert_key(self, key).await
    }
    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, RegistryError> {
        SqliteStore::get_key(self, id).await
    }
    async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, RegistryError> {
        SqliteStore::list_keys(self, tenant).await
    }
    async fn count_keys(&self) -> Result<u64, RegistryError> {
        SqliteStore::count_keys(self).await
    }
    async fn revoke_key(&self, id: &str) -> Result<KeyRecord, RegistryError> {
        SqliteStore::revoke_key(self, id).await
    }
    async fn insert_usage(&self, events: &[UsageEvent]) -> Result<(), RegistryError> {
        SqliteStore::insert_usage(self, events).await
    }
    async fn usage_report(&self, query: UsageQuery<'_>) -> Result<Vec<UsageRow>, RegistryError> {
        SqliteStore::usage_report(self, query).await
    }
    async fn usage_totals(&self, subject: UsageSubject<'_>, from_ms: i64) -> Result<UsageTotals, RegistryError> {
        SqliteStore::usage_totals(self, subject, from_ms).await
    }
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), RegistryError> {
        SqliteStore::append_audit(self, entry).await
    }
    async fn list_audit(&self, tenant: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, RegistryError> {
        SqliteStore::list_audit(self, tenant, limit).await
    }
}
