//! How records are kept in columns, for both SQL stores: JSON text for structured fields, Unix seconds for
//! times.

use serde::{Deserialize, Serialize};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::RegistryError;
use crate::jobs::{FileRecord, JobEvent, JobRecord, JobStatus};
use crate::records::{ModelRecord, VersionRecord};
use crate::tenancy::{AuditEntry, KeyRecord, TenantRecord, UsageBucket, UsageRow, UsageTotals};

/// Now, in Unix seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A structured field as stored.
pub(crate) fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("registry types serialize. This is a bug.")
}

/// A stored structured field read back; `what` names it in the error.
pub(crate) fn parse<T: for<'de> Deserialize<'de>>(text: &str, what: &str) -> Result<T, RegistryError> {
    serde_json::from_str(text).map_err(|error| RegistryError::Database(sqlx::Error::Decode(format!("stored {what}: {error}").into())))
}

/// A row of either SQL store whose columns decode as text, integers, floats and booleans.
pub(crate) trait StoredRow: Row
where
    for<'r> &'r str: ColumnIndex<Self> + Decode<'r, Self::Database> + Type<Self::Database>,
    for<'r> String: Decode<'r, Self::Database> + Type<Self::Database>,
    for<'r> Option<String>: Decode<'r, Self::Database> + Type<Self::Database>,
    for<'r> i64: Decode<'r, Self::Database> + Type<Self::Database>,
    for<'r> Option<i64>: Decode<'r, Self::Database> + Type<Self::Database>,
    for<'r> f64: Decode<'r, Self::Database> + Type<Self::Database>,
    for<'r> bool: Decode<'r, Self::Database> + Type<Self::Database>,
{
    /// A model.
    fn model(&self) -> Result<ModelRecord, RegistryError> {
        Ok(ModelRecord {
            id: self.get("id"),
            name: self.get("name"),
            description: self.get("description"),
            task: self.get("task"),
            labels: parse(self.get("labels"), "labels")?,
            metadata: parse(self.get("metadata"), "metadata")?,
            version_policy: parse(self.get("version_policy"), "version policy")?,
            tenant: self.get("tenant"),
            sharing: parse(self.get("sharing"), "sharing")?,
            created_at: self.get("created_at"),
        })
    }

    /// A version from a versions-join-models row.
    fn version(&self) -> Result<VersionRecord, RegistryError> {
        Ok(VersionRecord {
            model: self.get("name"),
            version: self.get::<i64, _>("version") as u64,
            format: self.get("format"),
            sha256: self.get("sha256"),
            size_bytes: self.get::<i64, _>("size_bytes") as u64,
            signature: parse(self.get("signature"), "signature")?,
            config: parse(self.get("config"), "config")?,
            created_at: self.get("created_at"),
            has_tokenizer: self.get("has_tokenizer"),
        })
    }

    /// A tenant.
    fn tenant(&self) -> Result<TenantRecord, RegistryError> {
        Ok(TenantRecord { name: self.get("name"), limits: parse(self.get("limits"), "limits")?, created_at: self.get("created_at") })
    }

    /// A key joined with its tenant's limits.
    fn key(&self) -> Result<KeyRecord, RegistryError> {
        let models: Option<String> = self.get("models");
        Ok(KeyRecord {
            id: self.get("id"),
            tenant: self.get("tenant"),
            name: self.get("name"),
            hash: self.get("hash"),
            scopes: parse(self.get("scopes"), "scopes")?,
            models: models.map(|text| parse(&text, "models")).transpose()?,
            limits: parse(self.get("limits"), "limits")?,
            tenant_limits: parse(self.get("tenant_limits"), "limits")?,
            expires_at: self.get("expires_at"),
            revoked_at: self.get("revoked_at"),
            created_at: self.get("created_at"),
        })
    }

    /// A usage report row.
    fn usage_row(&self) -> UsageRow {
        let count = |name: &str| self.get::<i64, _>(name) as u64;
        UsageRow {
            tenant: self.get("tenant"),
            group: self.get("grp"),
            requests: count("requests"),
            failed: count("failed"),
            input_tokens: count("input_tokens"),
            output_tokens: count("output_tokens"),
            input_elements: count("input_elements"),
            output_elements: count("output_elements"),
            compute_ms: count("compute_ms"),
            bytes_in: count("bytes_in"),
            bytes_out: count("bytes_out"),
            cost: self.get("cost"),
        }
    }

    /// Usage totals.
    fn usage_totals(&self) -> UsageTotals {
        UsageTotals {
            requests: self.get::<i64, _>("requests") as u64,
            tokens: self.get::<i64, _>("tokens") as u64,
            compute_ms: self.get::<i64, _>("compute_ms") as u64,
        }
    }

    /// A bucket of a usage series.
    fn usage_bucket(&self) -> UsageBucket {
        UsageBucket {
            start_ms: self.get("start_ms"),
            requests: self.get::<i64, _>("requests") as u64,
            tokens: self.get::<i64, _>("tokens") as u64,
            compute_ms: self.get::<i64, _>("compute_ms") as u64,
        }
    }

    /// An audit entry.
    fn audit_entry(&self) -> AuditEntry {
        AuditEntry {
            at_ms: self.get("at_ms"),
            key_id: self.get("key_id"),
            tenant: self.get("tenant"),
            action: self.get("action"),
            target: self.get("target"),
            remote: self.get("remote"),
            outcome: self.get("outcome"),
        }
    }

    /// A job.
    fn job(&self) -> Result<JobRecord, RegistryError> {
        let status: String = self.get("status");
        let Some(parsed_status) = JobStatus::parse(&status) else {
            return Err(RegistryError::Database(sqlx::Error::Decode(format!("stored job status '{status}' is unknown").into())));
        };
        Ok(JobRecord {
            id: self.get("id"),
            tenant: self.get("tenant"),
            kind: self.get("kind"),
            model: self.get("model"),
            params: self.get("params"),
            training_file: self.get("training_file"),
            parent_version: self.get::<Option<i64>, _>("parent_version").map(|version| version as u64),
            status: parsed_status,
            progress: self.get("progress"),
            result_version: self.get::<Option<i64>, _>("result_version").map(|version| version as u64),
            metrics: self.get("metrics"),
            error: self.get("error"),
            cancel_requested: self.get("cancel_requested"),
            attempts: u32::try_from(self.get::<i64, _>("attempts")).unwrap_or(u32::MAX),
            lease_owner: self.get("lease_owner"),
            lease_until: self.get("lease_until"),
            created_at: self.get("created_at"),
            started_at: self.get("started_at"),
            finished_at: self.get("finished_at"),
        })
    }

    /// An entry of a job's event log.
    fn job_event(&self) -> JobEvent {
        JobEvent {
            job: self.get("job"),
            seq: self.get::<i64, _>("seq") as u64,
            at: self.get("at_ms"),
            level: self.get("level"),
            message: self.get("message"),
            data: self.get("data"),
        }
    }

    /// A dataset file.
    fn file(&self) -> FileRecord {
        FileRecord {
            id: self.get("id"),
            tenant: self.get("tenant"),
            filename: self.get("filename"),
            purpose: self.get("purpose"),
            bytes: self.get::<i64, _>("bytes") as u64,
            sha256: self.get("sha256"),
            rows: self.get::<i64, _>("row_count") as u64,
            columns: self.get("column_names"),
            created_at: self.get("created_at"),
        }
    }
}

impl StoredRow for sqlx::sqlite::SqliteRow {}
impl StoredRow for sqlx::postgres::PgRow {}
