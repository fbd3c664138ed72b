//! Stored drift baselines: one per version, shared by replicas.

use sqlx::Row;

use super::SqliteStore;
use crate::RegistryError;
use crate::records::DriftBaselineRecord;

fn record(row: &sqlx::sqlite::SqliteRow) -> DriftBaselineRecord {
    DriftBaselineRecord {
        model: row.get("model"),
        version: row.get::<i64, _>("version") as u64,
        settings: row.get("settings"),
        baseline: row.get("baseline"),
        updated_at: row.get("updated_at"),
    }
}

impl SqliteStore {
    pub(super) async fn get_drift_baseline(&self, model: &str, version: u64) -> Result<Option<DriftBaselineRecord>, RegistryError> {
        let row = sqlx::query("SELECT model, version, settings, baseline, updated_at FROM drift_baselines WHERE model = ? AND version = ?")
            .bind(model)
            .bind(version as i64)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(record))
    }

    pub(super) async fn put_drift_baseline(&self, new: &DriftBaselineRecord, replace: bool) -> Result<DriftBaselineRecord, RegistryError> {
        let sql = if replace {
            "INSERT INTO drift_baselines (model, version, settings, baseline, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, version) \
             DO UPDATE SET settings = excluded.settings, baseline = excluded.baseline, updated_at = excluded.updated_at"
        } else {
            "INSERT INTO drift_baselines (model, version, settings, baseline, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, version) DO NOTHING"
        };
        sqlx::query(sql)
            .bind(&new.model)
            .bind(new.version as i64)
            .bind(&new.settings)
            .bind(&new.baseline)
            .bind(new.updated_at)
            .execute(&self.pool)
            .await?;
        self.get_drift_baseline(&new.model, new.version)
            .await?
            .ok_or_else(|| RegistryError::ResourceNotFound(format!("drift baseline of '{}' version {} vanished", new.model, new.version)))
    }
}
