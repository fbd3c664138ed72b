//! SQLite: models and versions.

use std::collections::HashSet;

use sqlx::AssertSqlSafe;
use yunmo_types::{VersionConfig, VersionPolicy};

use super::tx::WriteTx;
use super::{SqliteStore, json, now, parse};
use crate::RegistryError;
use crate::columns::StoredRow;
use crate::jobs::sql as jobs_sql;
use crate::metadata::{ArtifactWork, Change, DesiredState, MaintenanceLock};
use crate::records::{ModelPatch, ModelRecord, NewModel, VersionRecord, VersionRow, qualified_name};

/// The text columns of a version that change after upload.
#[derive(Clone, Copy)]
enum VersionText {
    Config,
    Tokenizer,
}

const MODEL_COLUMNS: &str = "id, name, description, task, labels, metadata, version_policy, tenant, sharing, created_at";
const VERSION_COLUMNS: &str = "m.name, v.version, v.format, v.sha256, v.size_bytes, v.signature, v.config, v.created_at, \
     v.tokenizer IS NOT NULL AS has_tokenizer";

impl SqliteStore {
    pub(super) async fn create_model(&self, model: NewModel) -> Result<ModelRecord, RegistryError> {
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

    pub(super) async fn list_models(&self) -> Result<Vec<ModelRecord>, RegistryError> {
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY name"))).fetch_all(&self.pool).await?;
        rows.iter().map(StoredRow::model).collect()
    }

    /// Every model whose name within its tenant is `short`, of any tenant.
    pub(super) async fn models_named(&self, short: &str) -> Result<Vec<ModelRecord>, RegistryError> {
        let sql = format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = ?1 OR (tenant || '/' || ?1) = name ORDER BY name");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(short).fetch_all(&self.pool).await?;
        rows.iter().map(StoredRow::model).collect()
    }

    pub(super) async fn get_model(&self, name: &str) -> Result<ModelRecord, RegistryError> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = ?")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(StoredRow::model).transpose()?.ok_or_else(|| RegistryError::model_not_found(name))
    }

    pub(super) async fn update_model(&self, name: &str, patch: ModelPatch) -> Result<ModelRecord, RegistryError> {
        let mut tx = self.write_transaction().await?;
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = ?")))
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let mut model = row.as_ref().map(StoredRow::model).transpose()?.ok_or_else(|| RegistryError::model_not_found(name))?;
        for version in patch.version_policy.as_ref().map(VersionPolicy::named_versions).unwrap_or_default() {
            let exists = sqlx::query("SELECT 1 FROM versions WHERE model_id = ? AND version = ?")
                .bind(model.id)
                .bind(version as i64)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(RegistryError::Invalid(format!("version_policy: version {version} of model '{name}' does not exist")));
            }
        }
        patch.apply(&mut model);
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

    pub(super) async fn delete_model(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        let mut tx = self.write_transaction().await?;
        let versions = Self::delete_model_in(&mut tx, name).await?;
        tx.commit().await?;
        Ok(versions)
    }

    /// Deletes a model and its versions inside `tx`; returns the versions.
    pub(super) async fn delete_model_in(tx: &mut WriteTx, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = ?"
        )))
        .bind(name)
        .fetch_all(&mut **tx)
        .await?;
        let versions = rows.iter().map(StoredRow::version).collect::<Result<Vec<_>, _>>()?;
        let deleted = sqlx::query("DELETE FROM models WHERE name = ?").bind(name).execute(&mut **tx).await?;
        if deleted.rows_affected() == 0 {
            return Err(RegistryError::model_not_found(name));
        }
        Ok(versions)
    }

    /// Inserts a version row inside `tx`; returns its number.
    async fn insert_version_in(tx: &mut WriteTx, row: &VersionRow) -> Result<u64, RegistryError> {
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

    pub(super) async fn insert_version(&self, row: VersionRow, publish: ArtifactWork<'_>) -> Result<VersionRecord, RegistryError> {
        let mut tx = self.write_transaction().await?;
        let version = Self::insert_version_in(&mut tx, &row).await?;
        // The file goes in place only once the row is written in the open transaction: an error before
        // this leaves the store untouched; a failed commit leaves an unreferenced file that a sweep removes.
        publish.await?;
        tx.commit().await?;
        let model = self.get_model_by_id(row.model_id).await?;
        self.get_version(&model, version).await
    }

    async fn get_model_by_id(&self, id: i64) -> Result<ModelRecord, RegistryError> {
        let row =
            sqlx::query(AssertSqlSafe(format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = ?"))).bind(id).fetch_one(&self.pool).await?;
        row.model()
    }

    pub(super) async fn list_versions(&self, model: &ModelRecord) -> Result<Vec<VersionRecord>, RegistryError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id WHERE v.model_id = ? ORDER BY v.version"
        )))
        .bind(model.id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(StoredRow::version).collect()
    }

    pub(super) async fn all_versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id ORDER BY m.name, v.version"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(StoredRow::version).collect()
    }

    pub(super) async fn get_version(&self, model: &ModelRecord, version: u64) -> Result<VersionRecord, RegistryError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id WHERE v.model_id = ? AND v.version = ?"
        )))
        .bind(model.id)
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(StoredRow::version).transpose()?.ok_or_else(|| RegistryError::version_not_found(&model.name, version))
    }

    pub(super) async fn latest_version(&self, model: &ModelRecord) -> Result<Option<VersionRecord>, RegistryError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM versions v JOIN models m ON m.id = v.model_id WHERE v.model_id = ? \
             ORDER BY v.version DESC LIMIT 1"
        )))
        .bind(model.id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(StoredRow::version).transpose()
    }

    pub(super) async fn set_version_config(
        &self,
        model: &ModelRecord,
        version: u64,
        config: &VersionConfig,
    ) -> Result<VersionRecord, RegistryError> {
        self.set_version_text(VersionText::Config, model, version, &json(config)).await
    }

    pub(super) async fn set_tokenizer(&self, model: &ModelRecord, version: u64, tokenizer: &str) -> Result<VersionRecord, RegistryError> {
        self.set_version_text(VersionText::Tokenizer, model, version, tokenizer).await
    }

    /// Replaces one text column of a version and returns the updated version.
    async fn set_version_text(
        &self,
        column: VersionText,
        model: &ModelRecord,
        version: u64,
        value: &str,
    ) -> Result<VersionRecord, RegistryError> {
        let sql = match column {
            VersionText::Config => "UPDATE versions SET config = ? WHERE model_id = ? AND version = ?",
            VersionText::Tokenizer => "UPDATE versions SET tokenizer = ? WHERE model_id = ? AND version = ?",
        };
        let updated =
            sqlx::query(sql).bind(value).bind(model.id).bind(i64::try_from(version).unwrap_or(i64::MAX)).execute(&self.pool).await?;
        if updated.rows_affected() == 0 {
            return Err(RegistryError::version_not_found(&model.name, version));
        }
        self.get_version(model, version).await
    }

    pub(super) async fn tokenizer(&self, model: &ModelRecord, version: u64) -> Result<Option<String>, RegistryError> {
        let row: Option<(Option<String>,)> = sqlx::query_as("SELECT tokenizer FROM versions WHERE model_id = ? AND version = ?")
            .bind(model.id)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(tokenizer,)| tokenizer).ok_or_else(|| RegistryError::version_not_found(&model.name, version))
    }

    pub(super) async fn delete_version(&self, model: &ModelRecord, version: u64) -> Result<VersionRecord, RegistryError> {
        // Read before the write transaction: a pool read inside it could wait for a connection that the
        // writers queued behind this transaction's lock hold.
        let record = self.get_version(model, version).await?;
        let mut tx = self.write_transaction().await?;
        let policy: String =
            sqlx::query_scalar("SELECT version_policy FROM models WHERE id = ?").bind(model.id).fetch_one(&mut *tx).await?;
        if parse::<VersionPolicy>(&policy, "version policy")?.named_versions().contains(&version) {
            return Err(RegistryError::Invalid(format!(
                "version {version} of model '{}' is pinned or routed by its version policy; change the policy first",
                model.name
            )));
        }
        let deleted = sqlx::query("DELETE FROM versions WHERE model_id = ? AND version = ?")
            .bind(model.id)
            .bind(version as i64)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(RegistryError::version_not_found(&model.name, version));
        }
        tx.commit().await?;
        Ok(record)
    }

    /// Runs `remove` under the write lock if no version or dataset file refers to `sha256`.
    pub(super) async fn remove_artifact_if_unreferenced(&self, sha256: &str, remove: ArtifactWork<'_>) -> Result<bool, RegistryError> {
        let mut tx = self.write_transaction().await?;
        let in_use = sqlx::query(jobs_sql::ARTIFACT_IN_USE).bind(sha256).fetch_optional(&mut *tx).await?;
        if in_use.is_none() {
            remove.await?;
        }
        tx.commit().await?;
        Ok(in_use.is_none())
    }

    pub(super) async fn referenced_artifacts(&self) -> Result<HashSet<String>, RegistryError> {
        let shas: Vec<String> = sqlx::query_scalar(jobs_sql::REFERENCED_ARTIFACTS).fetch_all(&self.pool).await?;
        Ok(shas.into_iter().collect())
    }
    pub(super) async fn set_desired_state(
        &self,
        model: &ModelRecord,
        version: u64,
        state: Option<DesiredState>,
    ) -> Result<(), RegistryError> {
        let updated = sqlx::query("UPDATE versions SET desired_state = ? WHERE model_id = ? AND version = ?")
            .bind(state.map(DesiredState::as_str))
            .bind(model.id)
            .bind(i64::try_from(version).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(RegistryError::version_not_found(&model.name, version));
        }
        Ok(())
    }

    pub(super) async fn desired_states(&self) -> Result<Vec<(String, u64, DesiredState)>, RegistryError> {
        Ok(DesiredState::from_rows(sqlx::query_as(DesiredState::QUERY).fetch_all(&self.pool).await?))
    }

    pub(super) fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<Change>> {
        None
    }

    /// One process uses the file (or each runs its own sweep safely: removal is under the write lock).
    pub(super) async fn try_maintenance_lock(&self) -> Result<Option<MaintenanceLock>, RegistryError> {
        Ok(Some(MaintenanceLock::unshared()))
    }
}
