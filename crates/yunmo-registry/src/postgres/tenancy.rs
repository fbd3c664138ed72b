//! PostgreSQL: tenants, API keys, usage events and the audit log.
//!
//! Usage events and audit entries are append-only: a trigger refuses UPDATE, DELETE and TRUNCATE on both.

use sqlx::AssertSqlSafe;
use yunmo_types::Limits;

use super::{PgStore, json, now, parse};
use crate::RegistryError;
use crate::columns::StoredRow;
use crate::metadata::UsageQuery;
use crate::records::VersionRecord;
use crate::tenancy::{
    AuditEntry, KeyRecord, NewKey, TenantRecord, UsageBucket, UsageEvent, UsageGroup, UsageRow, UsageSubject, UsageTotals, aggregate_usage,
};

/// Usage rows per INSERT statement: 17 parameters each stay under PostgreSQL's 65,535.
const USAGE_ROWS_PER_INSERT: usize = 2000;

const KEY_COLUMNS: &str = "k.id, k.tenant, k.name, k.hash, k.scopes, k.models, k.limits, t.limits AS tenant_limits, k.expires_at, \
     k.revoked_at, k.created_at";

fn tenant_not_found(name: &str) -> RegistryError {
    RegistryError::ResourceNotFound(format!("tenant '{name}' not found"))
}

impl PgStore {
    pub(super) async fn create_tenant(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
        let result = sqlx::query("INSERT INTO tenants (name, limits, created_at) VALUES ($1, $2, $3) RETURNING name, limits, created_at")
            .bind(name)
            .bind(json(limits))
            .bind(now())
            .fetch_one(&self.pool)
            .await;
        match result {
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(RegistryError::AlreadyExists(format!("tenant '{name}' already exists")))
            }
            Err(error) => Err(error.into()),
            Ok(row) => row.tenant(),
        }
    }

    pub(super) async fn get_tenant(&self, name: &str) -> Result<TenantRecord, RegistryError> {
        let row = sqlx::query("SELECT name, limits, created_at FROM tenants WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(StoredRow::tenant).transpose()?.ok_or_else(|| tenant_not_found(name))
    }

    pub(super) async fn list_tenants(&self) -> Result<Vec<TenantRecord>, RegistryError> {
        let rows = sqlx::query("SELECT name, limits, created_at FROM tenants ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(StoredRow::tenant).collect()
    }

    pub(super) async fn set_tenant_limits(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
        let row = sqlx::query("UPDATE tenants SET limits = $1 WHERE name = $2 RETURNING name, limits, created_at")
            .bind(json(limits))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(StoredRow::tenant).transpose()?.ok_or_else(|| tenant_not_found(name))
    }

    /// As SQLite's: the tenant, its keys, its place in sharing lists and (with `with_models`) its models, in
    /// one transaction that holds the tenant's row.
    pub(super) async fn delete_tenant(&self, name: &str, with_models: bool) -> Result<Vec<VersionRecord>, RegistryError> {
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE name = $1 FOR UPDATE").bind(name).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Err(tenant_not_found(name));
        }
        let owned: Vec<String> =
            sqlx::query_scalar("SELECT name FROM models WHERE tenant = $1 ORDER BY name").bind(name).fetch_all(&mut *tx).await?;
        if !owned.is_empty() && !with_models {
            return Err(RegistryError::AlreadyExists(format!(
                "tenant '{name}' owns {} models ({}); delete them first, or delete the tenant with delete_models=true",
                owned.len(),
                owned.iter().map(|model| crate::records::name_for(model, name)).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut versions = Vec::new();
        for model in &owned {
            versions.extend(Self::delete_model_in(&mut tx, model).await?);
        }
        let shared: Vec<(i64, String)> = sqlx::query_as("SELECT id, sharing FROM models FOR UPDATE").fetch_all(&mut *tx).await?;
        for (id, text) in shared {
            let mut sharing: yunmo_types::Sharing = parse(&text, "sharing")?;
            if sharing.tenants.iter().any(|tenant| tenant == name) {
                sharing.tenants.retain(|tenant| tenant != name);
                sqlx::query("UPDATE models SET sharing = $1 WHERE id = $2").bind(json(&sharing)).bind(id).execute(&mut *tx).await?;
            }
        }
        sqlx::query("DELETE FROM api_keys WHERE tenant = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM tenants WHERE name = $1").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(versions)
    }

    pub(super) async fn insert_key(&self, key: &NewKey) -> Result<KeyRecord, RegistryError> {
        let result = sqlx::query(
            "INSERT INTO api_keys (id, tenant, name, hash, scopes, models, limits, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&key.id)
        .bind(&key.tenant)
        .bind(&key.name)
        .bind(&key.hash)
        .bind(json(&key.scopes))
        .bind(key.models.as_ref().map(json))
        .bind(json(&key.limits))
        .bind(key.expires_at)
        .bind(now())
        .execute(&self.pool)
        .await;
        match result {
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(RegistryError::AlreadyExists(format!("key id '{}' already exists", key.id)))
            }
            Err(sqlx::Error::Database(error)) if error.is_foreign_key_violation() => Err(tenant_not_found(&key.tenant)),
            Err(error) => Err(error.into()),
            Ok(_) => self.get_key(&key.id).await?.ok_or_else(|| RegistryError::ResourceNotFound(format!("key '{}' not found", key.id))),
        }
    }

    pub(super) async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, RegistryError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.name = k.tenant WHERE k.id = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(StoredRow::key).transpose()
    }

    pub(super) async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, RegistryError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.name = k.tenant WHERE ($1::TEXT IS NULL OR k.tenant = $1) \
             ORDER BY k.created_at, k.id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(tenant).fetch_all(&self.pool).await?;
        rows.iter().map(StoredRow::key).collect()
    }

    pub(super) async fn count_keys(&self) -> Result<u64, RegistryError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&self.pool).await?;
        Ok(count as u64)
    }

    pub(super) async fn revoke_key(&self, id: &str) -> Result<KeyRecord, RegistryError> {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.get_key(id).await?.ok_or_else(|| RegistryError::ResourceNotFound(format!("key '{id}' not found")))
    }

    /// As SQLite's: events summed per day and subject ([`aggregate_usage`]), one row per subject per flush,
    /// in multi-row INSERTs inside one transaction.
    pub(super) async fn insert_usage(&self, events: &[UsageEvent]) -> Result<(), RegistryError> {
        let rows = aggregate_usage(events);
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(USAGE_ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO usage_events (at_ms, tenant, key_id, model, version, protocol, outcome, requests, input_tokens, \
                 output_tokens, input_elements, output_elements, queue_ms, compute_ms, bytes_in, bytes_out, cost) ",
            );
            insert.push_values(chunk, |mut row, (event, requests)| {
                row.push_bind(event.at_ms)
                    .push_bind(event.tenant.as_str())
                    .push_bind(event.key_id.as_str())
                    .push_bind(event.model.as_str())
                    .push_bind(event.version as i64)
                    .push_bind(event.protocol)
                    .push_bind(event.outcome)
                    .push_bind(*requests as i64)
                    .push_bind(event.input_tokens as i64)
                    .push_bind(event.output_tokens as i64)
                    .push_bind(event.input_elements as i64)
                    .push_bind(event.output_elements as i64)
                    .push_bind(event.queue_ms as i64)
                    .push_bind(event.compute_ms as i64)
                    .push_bind(event.bytes_in as i64)
                    .push_bind(event.bytes_out as i64)
                    .push_bind(event.cost);
            });
            insert.build().persistent(false).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn usage_report(&self, query: UsageQuery<'_>) -> Result<Vec<UsageRow>, RegistryError> {
        let UsageQuery { from_ms, to_ms, tenant, group } = query;
        let group_sql = match group {
            UsageGroup::Model => "model",
            UsageGroup::Key => "key_id",
            UsageGroup::Day => "to_char(to_timestamp(at_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        };
        let sql = format!(
            "SELECT tenant, {group_sql} AS grp, SUM(requests)::BIGINT AS requests, \
             SUM(CASE WHEN outcome != 'ok' THEN requests ELSE 0 END)::BIGINT AS failed, \
             SUM(input_tokens)::BIGINT AS input_tokens, SUM(output_tokens)::BIGINT AS output_tokens, \
             SUM(input_elements)::BIGINT AS input_elements, SUM(output_elements)::BIGINT AS output_elements, \
             SUM(compute_ms)::BIGINT AS compute_ms, SUM(bytes_in)::BIGINT AS bytes_in, SUM(bytes_out)::BIGINT AS bytes_out, \
             SUM(cost) AS cost \
             FROM usage_events WHERE at_ms >= $1 AND at_ms < $2 AND ($3::TEXT IS NULL OR tenant = $3) GROUP BY tenant, grp ORDER BY tenant, grp"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(from_ms).bind(to_ms).bind(tenant).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(StoredRow::usage_row).collect())
    }

    pub(super) async fn usage_totals(&self, subject: UsageSubject<'_>, from_ms: i64) -> Result<UsageTotals, RegistryError> {
        let (column, value) = match subject {
            UsageSubject::Key(id) => ("key_id", id),
            UsageSubject::Tenant(name) => ("tenant", name),
        };
        let sql = format!(
            "SELECT COALESCE(SUM(requests), 0)::BIGINT AS requests, COALESCE(SUM(input_tokens + output_tokens), 0)::BIGINT AS tokens, \
             COALESCE(SUM(compute_ms), 0)::BIGINT AS compute_ms FROM usage_events WHERE {column} = $1 AND at_ms >= $2"
        );
        let row = sqlx::query(AssertSqlSafe(sql)).bind(value).bind(from_ms).fetch_one(&self.pool).await?;
        Ok(row.usage_totals())
    }

    /// The usage of `model` since `from_ms` in buckets of `bucket_ms`, oldest first.
    pub(super) async fn usage_series(&self, model: &str, from_ms: i64, bucket_ms: i64) -> Result<Vec<UsageBucket>, RegistryError> {
        let sql = "SELECT (at_ms / $1)::BIGINT * $2 AS start_ms, SUM(requests)::BIGINT AS requests, SUM(input_tokens + output_tokens)::BIGINT AS tokens, \
                   SUM(compute_ms)::BIGINT AS compute_ms FROM usage_events WHERE model = $3 AND at_ms >= $4 GROUP BY 1 ORDER BY 1";
        let rows = sqlx::query(sql).bind(bucket_ms.max(1)).bind(bucket_ms.max(1)).bind(model).bind(from_ms).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(StoredRow::usage_bucket).collect())
    }

    pub(super) async fn append_audit(&self, entry: &AuditEntry) -> Result<(), RegistryError> {
        sqlx::query("INSERT INTO audit_log (at_ms, key_id, tenant, action, target, remote, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(entry.at_ms)
            .bind(&entry.key_id)
            .bind(&entry.tenant)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(&entry.remote)
            .bind(&entry.outcome)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn list_audit(&self, tenant: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, RegistryError> {
        let rows = sqlx::query(
            "SELECT at_ms, key_id, tenant, action, target, remote, outcome FROM audit_log WHERE ($1::TEXT IS NULL OR tenant = $1) \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(StoredRow::audit_entry).collect())
    }
}
