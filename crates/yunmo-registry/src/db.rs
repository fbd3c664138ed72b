//! SQLite metadata: models and versions.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row};
use yunmo_types::{Sharing, Signature, VersionConfig, VersionPolicy};

use crate::RegistryError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    task TEXT NOT NULL,
    labels TEXT NOT NULL,
    metadata TEXT NOT NULL,
    version_policy TEXT NOT NULL,
    next_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    tenant TEXT NOT NULL DEFAULT 'default',
    sharing TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS versions (
    model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    signature TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    tokenizer TEXT,
    PRIMARY KEY (model_id, version)
);
CREATE INDEX IF NOT EXISTS versions_sha256 ON versions(sha256);
"#;

/// A model to create.
#[derive(Debug, Clone)]
pub struct NewModel {
    /// Name, unique within its tenant.
    pub name: String,
    /// Free text.
    pub description: String,
    /// What the model does (`classification`, `regression`, `embedding`, …): free text.
    pub task: String,
    /// String key/value labels.
    pub labels: BTreeMap<String, String>,
    /// Free-form JSON.
    pub metadata: serde_json::Value,
    /// Which version serves requests without one.
    pub version_policy: VersionPolicy,
    /// Owning tenant.
    pub tenant: String,
    /// Who else may see and call it.
    pub sharing: Sharing,
}

impl Default for NewModel {
    fn default() -> Self {
        NewModel {
            name: String::new(),
            description: String::new(),
            task: String::new(),
            labels: BTreeMap::new(),
            metadata: serde_json::Value::Null,
            version_policy: VersionPolicy::default(),
            tenant: DEFAULT_TENANT.to_string(),
            sharing: Sharing::default(),
        }
    }
}

/// The tenant that owns models when auth is off, and the bootstrap admin key's tenant.
pub const DEFAULT_TENANT: &str = "default";

/// Changes to a model; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ModelPatch {
    /// New description.
    pub description: Option<String>,
    /// New task.
    pub task: Option<String>,
    /// New labels (replacing all).
    pub labels: Option<BTreeMap<String, String>>,
    /// New metadata (replacing all).
    pub metadata: Option<serde_json::Value>,
    /// New version policy.
    pub version_policy: Option<VersionPolicy>,
    /// New sharing.
    pub sharing: Option<Sharing>,
}

/// The name a model is stored and served under, unique across tenants: its own name for a model of the
/// `default` tenant, `tenant/name` for any other. Names are unique per tenant, so one tenant's name can
/// never tell another that a model exists.
pub fn qualified_name(tenant: &str, name: &str) -> String {
    if tenant == DEFAULT_TENANT { name.to_string() } else { format!("{tenant}/{name}") }
}

/// A qualified model name as a caller of `tenant` calls it: without the prefix when it is `tenant`'s own.
pub fn name_for<'a>(qualified: &'a str, tenant: &str) -> &'a str {
    qualified.strip_prefix(tenant).and_then(|rest| rest.strip_prefix('/')).unwrap_or(qualified)
}

/// A stored model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRecord {
    #[serde(skip)]
    pub(crate) id: i64,
    /// The qualified name ([`qualified_name`]): unique, and what every other part of Yunmo calls the model.
    pub name: String,
    /// Free text.
    pub description: String,
    /// What the model does.
    pub task: String,
    /// String key/value labels.
    pub labels: BTreeMap<String, String>,
    /// Free-form JSON.
    pub metadata: serde_json::Value,
    /// Which version serves requests without one.
    pub version_policy: VersionPolicy,
    /// Owning tenant.
    pub tenant: String,
    /// Who else may see and call it.
    pub sharing: Sharing,
    /// Unix seconds.
    pub created_at: i64,
}

impl ModelRecord {
    /// The name within its tenant (what its owner created it as).
    pub fn short_name(&self) -> &str {
        name_for(&self.name, &self.tenant)
    }

    /// The name as a caller of `tenant` calls it: the short name for its owner, the qualified name for others.
    pub fn name_for(&self, tenant: &str) -> &str {
        name_for(&self.name, tenant)
    }

    /// A record that was never stored (for access-rule tests).
    #[doc(hidden)]
    pub fn for_tests(model: NewModel) -> ModelRecord {
        ModelRecord {
            id: 0,
            name: qualified_name(&model.tenant, &model.name),
            description: model.description,
            task: model.task,
            labels: model.labels,
            metadata: model.metadata,
            version_policy: model.version_policy,
            tenant: model.tenant,
            sharing: model.sharing,
            created_at: 0,
        }
    }
}

/// A stored model version.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    /// Model name.
    pub model: String,
    /// Version number (from 1).
    pub version: u64,
    /// Artifact format.
    pub format: String,
    /// Hex sha256 of the artifact.
    pub sha256: String,
    /// Artifact size in bytes.
    pub size_bytes: u64,
    /// Inputs and outputs.
    pub signature: Signature,
    /// Serving options.
    pub config: VersionConfig,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether a `tokenizer.json` is stored with the version.
    pub has_tokenizer: bool,
}

pub(crate) struct VersionRow {
    pub model_id: i64,
    pub version: Option<u64>,
    pub format: String,
    pub sha256: String,
    pub size: u64,
    pub signature: Signature,
    pub config: VersionConfig,
    pub tokenizer: Option<String>,
}

/// The text columns of a version that change after upload.
#[derive(Clone, Copy)]
enum VersionText {
    Config,
    Tokenizer,
}

#[derive(Clone)]
pub(crate) struct Db {
    pub(crate) pool: SqlitePool,
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("registry types serialize. This is a bug.")
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<T, RegistryError> {
    serde_json::from_str(text).map_err(|error| RegistryError::Database(sqlx::Error::Decode(format!("stored {what}: {error}").into())))
}

const MODEL_COLUMNS: &str = "id, name, description, task, labels, metadata, version_policy, tenant, sharing, created_at";
const VERSION_COLUMNS: &str = "m.name, v.version, v.format, v.sha256, v.size_bytes, v.signature, v.config, v.created_at, \
     v.tokenizer IS NOT NULL AS has_tokenizer";

impl Db {
    pub async fn open(path: &Path) -> Result<Db, RegistryError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        // Databases created before tokenizers were stored lack the column.
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('versions')").fetch_all(&pool).await?;
        if !columns.iter().any(|column| column == "tokenizer") {
            sqlx::raw_sql("ALTER TABLE versions ADD COLUMN tokenizer TEXT").execute(&pool).await?;
        }
        // Databases created before tenants own models: their models belong to 'default'.
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('models')").fetch_all(&pool).await?;
        if !columns.iter().any(|column| column == "tenant") {
            sqlx::raw_sql(
                "ALTER TABLE models ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default'; \
                 ALTER TABLE models ADD COLUMN sharing TEXT NOT NULL DEFAULT '{}'",
            )
            .execute(&pool)
            .await?;
        }
        // Names became unique per tenant: a model of another tenant than 'default' is stored under
        // 'tenant/name' (idempotent).
        sqlx::raw_sql("UPDATE models SET name = tenant || '/' || name WHERE tenant != 'default' AND instr(name, '/') = 0")
            .execute(&pool)
            .await?;
        sqlx::raw_sql(crate::tenancy::SCHEMA).execute(&pool).await?;
        // Databases created before usage rows were summed per flush: each row is one request.
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('usage_events')").fetch_all(&pool).await?;
        if !columns.iter().any(|column| column == "requests") {
            sqlx::raw_sql("ALTER TABLE usage_events ADD COLUMN requests INTEGER NOT NULL DEFAULT 1").execute(&pool).await?;
        }
        Ok(Db { pool })
    }

    /// A transaction that holds the write lock from its start ([`crate::tx::WriteTx`]).
    pub(crate) async fn write_transaction(&self) -> Result<crate::tx::WriteTx, sqlx::Error> {
        crate::tx::WriteTx::begin(&self.pool).await
    }

    fn model(row: &SqliteRow) -> Result<ModelRecord, RegistryError> {
        Ok(ModelRecord {
            id: row.get("id"),
            name: row.get("name"),
            description: row.get("description"),
            task: row.get("task"),
            labels: parse(row.get("labels"), "labels")?,
            metadata: parse(row.get("metadata"), "metadata")?,
            version_policy: parse(row.get("version_policy"), "version policy")?,
            tenant: row.get("tenant"),
            sharing: parse(row.get("sharing"), "sharing")?,
            created_at: row.get("created_at"),
        })
    }

    fn version(row: &SqliteRow) -> Result<VersionRecord, RegistryError> {
        Ok(VersionRecord {
            model: row.get("name"),
            version: row.get::<i64, _>("version") as u64,
            format: row.get("format"),
            sha256: row.get("sha256"),
            size_bytes: row.get::<i64, _>("size_bytes") as u64,
            signature: parse(row.get("signature"), "signature")?,
            config: parse(row.get("config"), "config")?,
            created_at: row.get("created_at"),
            has_tokenizer: row.get("has_tokenizer"),
        })
    }

    pub async fn create_model(&self, model: NewModel) -> Result<ModelRecord, RegistryError> {
        validate_name(&model.name)?;
        let name = qualified_name(&model.tenant, &model.name);
        let result = sqlx::query(
            "INSERT INTO models (name, description, task, labels, metadata, version_policy, next_version, created_at, tenant, sharing) \
             VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
        )
        .bind(&name)
        .bind(&model.description)
        .bind(&model.task)
        .bind(json(&model.labels))
        .bind(json(&model.metadata))
        .bind(json(&model.version_policy))
        .bind(now())
        .bind(&model.tenant)
        .bind(json(&model.sharing))
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(RegistryError::AlreadyExists(format!("model '{}' already exists", model.name)))
            }
            Err(error) => Err(error.into()),
            Ok(_) => self.get_model(&name).await,
        }
    }

    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, RegistryError> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY name"))).fetch_all(&self.pool).await?;
        rows.iter().map(Self::model).collect()
    }

    /// Every model whose name within its tenant is `short`, of any tenant.
    pub async fn models_named(&self, short: &str) -> Result<Vec<ModelRecord>, RegistryError> {
        let sql = format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = ?1 OR (tenant || '/' || ?1) = name ORDER BY name");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(short).fetch_all(&self.pool).await?;
        rows.iter().map(Self::model).collect()
    }

    pub async fn get_model(&self, name: &str) -> Result<ModelRecord, RegistryError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = ?")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::model).transpose()?.ok_or_else(|| RegistryError::model_not_found(name))
    }

    pub async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<ModelRecord, RegistryError> {
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = ?")))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let mut model = row.as_ref().map(Self::model).transpose()?.ok_or_else(|| RegistryError::model_not_found(name))?;
        if let Some(VersionPolicy::Pinned { version }) = patch.version_policy {
            let exists = sqlx::query("SELECT 1 FROM versions WHERE model_id = ? AND version = ?")
                .bind(model.id)
                .bind(version as i64)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(RegistryError::Invalid(format!(
                    "version_policy: cannot pin version {version}, model '{name}' has no such version"
                )));
            }
        }
        if let Some(description) = patch.description {
            model.description = description;
        }
        if let Some(task) = patch.task {
            model.task = task;
        }
        if let Some(labels) = patch.labels {
            model.labels = labels;
        }
        if let Some(metadata) = patch.metadata {
            model.metadata = metadata;
        }
        if let Some(policy) = patch.version_policy {
            model.version_policy = policy;
        }
        if let Some(sharing) = patch.sharing {
            model.sharing = sharing;
        }
        sqlx::query("UPDATE models SET description = ?, task = ?, labels = ?, metadata = ?, version_policy = ?, sharing = ? WHERE id = ?")
            .bind(&model.description)
            .bind(&model.task)
            .bind(json(&model.labels))
            .bind(json(&model.metadata))
            .bind(json(&model.version_policy))
            .bind(json(&model.sharing))
            .bind(model.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(model)
    }

    pub async fn delete_model(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        let mut tx = self.write_transaction().await?;
        let versions = Self::delete_model_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(versions)
    }

    /// Deletes a model and its versions inside `tx`; returns the versions.
    pub(crate) async fn delete_model_in(tx: &mut crate::tx::WriteTx, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = ?"
        )))
        .bind(name)
        .fetch_all(&mut **tx)
        .await?;
        let versions = rows.iter().map(Self::version).collect::<Result<Vec<_>, _>>()?;
        let deleted = sqlx::query("DELETE FROM models WHERE name = ?").bind(name).execute(&mut **tx).await?;
        if deleted.rows_affected() == 0 {
            return Err(RegistryError::model_not_found(name));
        }
        Ok(versions)
    }

    /// Inserts a version row inside `tx`; returns its number.
    pub async fn insert_version(tx: &mut crate::tx::WriteTx, row: VersionRow) -> Result<u64, RegistryError> {
        let (name, next_version): (String, i64) =
            sqlx::query_as("SELECT name, next_version FROM models WHERE id = ?").bind(row.model_id).fetch_one(&mut **tx).await?;
        let version = match row.version {
            Some(version) => version as i64,
            None => next_version,
        };
        let inserted = sqlx::query(
            "INSERT INTO versions (model_id, version, format, sha256, size_bytes, signature, config, created_at, tokenizer) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(row.model_id)
        .bind(version)
        .bind(&row.format)
        .bind(&row.sha256)
        .bind(row.size as i64)
        .bind(json(&row.signature))
        .bind(json(&row.config))
        .bind(now())
        .bind(&row.tokenizer)
        .execute(&mut **tx)
        .await;
        match inserted {
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Err(RegistryError::AlreadyExists(format!("model '{name}' already has version {version}")));
            }
            other => other?,
        };
        sqlx::query("UPDATE models SET next_version = MAX(next_version, ?) WHERE id = ?")
            .bind(version + 1)
            .bind(row.model_id)
            .execute(&mut **tx)
            .await?;
        Ok(version as u64)
    }

    pub async fn list_versions(&self, model_id: i64) -> Result<Vec<VersionRecord>, RegistryError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id WHERE v.model_id = ? ORDER BY v.version"
        )))
        .bind(model_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::version).collect()
    }

    pub async fn all_versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id ORDER BY m.name, v.version"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::version).collect()
    }

    pub async fn get_version(&self, model_id: i64, name: &str, version: u64) -> Result<VersionRecord, RegistryError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id WHERE v.model_id = ? AND v.version = ?"
        )))
        .bind(model_id)
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::version).transpose()?.ok_or_else(|| RegistryError::version_not_found(name, version))
    }

    pub async fn latest_version(&self, model_id: i64) -> Result<Option<VersionRecord>, RegistryError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id WHERE v.model_id = ? \
             ORDER BY v.version DESC LIMIT 1"
        )))
        .bind(model_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::version).transpose()
    }

    pub async fn set_version_config(
        &self,
        model_id: i64,
        name: &str,
        version: u64,
        config: &VersionConfig,
    ) -> Result<VersionRecord, RegistryError> {
        self.set_version_text(VersionText::Config, model_id, name, version, &json(config)).await
    }

    pub async fn set_tokenizer(&self, model_id: i64, name: &str, version: u64, tokenizer: &str) -> Result<VersionRecord, RegistryError> {
        self.set_version_text(VersionText::Tokenizer, model_id, name, version, tokenizer).await
    }

    /// Replaces one text column of a version and returns the updated version.
    async fn set_version_text(
        &self,
        column: VersionText,
        model_id: i64,
        name: &str,
        version: u64,
        value: &str,
    ) -> Result<VersionRecord, RegistryError> {
        let sql = match column {
            VersionText::Config => "UPDATE versions SET config = ? WHERE model_id = ? AND version = ?",
            VersionText::Tokenizer => "UPDATE versions SET tokenizer = ? WHERE model_id = ? AND version = ?",
        };
        let updated =
            sqlx::query(sql).bind(value).bind(model_id).bind(i64::try_from(version).unwrap_or(i64::MAX)).execute(&self.pool).await?;
        if updated.rows_affected() == 0 {
            return Err(RegistryError::version_not_found(name, version));
        }
        self.get_version(model_id, name, version).await
    }

    pub async fn tokenizer(&self, model_id: i64, name: &str, version: u64) -> Result<Option<String>, RegistryError> {
        let row: Option<(Option<String>,)> = sqlx::query_as("SELECT tokenizer FROM versions WHERE model_id = ? AND version = ?")
            .bind(model_id)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(tokenizer,)| tokenizer).ok_or_else(|| RegistryError::version_not_found(name, version))
    }

    pub async fn delete_version(&self, model_id: i64, name: &str, version: u64) -> Result<VersionRecord, RegistryError> {
        let mut tx = self.write_transaction().await?;
        let policy: String =
            sqlx::query_scalar("SELECT version_policy FROM models WHERE id = ?").bind(model_id).fetch_one(&mut *tx).await?;
        if parse::<VersionPolicy>(&policy, "version policy")? == (VersionPolicy::Pinned { version }) {
            return Err(RegistryError::Invalid(format!(
                "version {version} of model '{name}' is pinned by its version policy; change the policy first"
            )));
        }
        let record = self.get_version(model_id, name, version).await?;
        sqlx::query("DELETE FROM versions WHERE model_id = ? AND version = ?")
            .bind(model_id)
            .bind(version as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Whether a version refers to the file `sha256`, read inside `tx` (which holds the write lock).
    pub async fn artifact_in_use(tx: &mut crate::tx::WriteTx, sha256: &str) -> Result<bool, RegistryError> {
        let row = sqlx::query("SELECT 1 FROM versions WHERE sha256 = ? LIMIT 1").bind(sha256).fetch_optional(&mut **tx).await?;
        Ok(row.is_some())
    }

    pub async fn referenced_artifacts(&self) -> Result<HashSet<String>, RegistryError> {
        let shas: Vec<String> = sqlx::query_scalar("SELECT DISTINCT sha256 FROM versions").fetch_all(&self.pool).await?;
        Ok(shas.into_iter().collect())
    }
}

/// Model names go into URLs: 1–128 characters from `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub(crate) fn validate_name(name: &str) -> Result<(), RegistryError> {
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if name.is_empty() || name.len() > 128 || !valid_chars || !valid_start {
        return Err(RegistryError::Invalid(format!(
            "name must be 1 to 128 characters from [A-Za-z0-9._-] starting with a letter, digit or '_', got '{name}'"
        )));
    }
    Ok(())
}
