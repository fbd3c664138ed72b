//! Tenants, API keys, usage events and the audit log: the tables of multi-tenancy.
//!
//! Keys are stored only as the sha256 of the whole key; the visible id is the primary key. Usage events
//! and audit entries are append-only: triggers refuse UPDATE and DELETE on both tables.

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use yunmo_types::{Limits, Scope};

use crate::RegistryError;
use crate::db::{Db, json, now, parse};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    limits TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT OR IGNORE INTO tenants (name, limits, created_at) VALUES ('default', '{}', strftime('%s', 'now'));
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name),
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    models TEXT,
    limits TEXT NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    outcome TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 1,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    input_elements INTEGER NOT NULL,
    output_elements INTEGER NOT NULL,
    queue_ms INTEGER NOT NULL,
    compute_ms INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    cost REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_tenant_at ON usage_events(tenant, at_ms);
CREATE INDEX IF NOT EXISTS usage_key_at ON usage_events(key_id, at_ms);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    remote TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_no_update BEFORE UPDATE ON usage_events BEGIN SELECT RAISE(ABORT, 'usage_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_no_delete BEFORE DELETE ON usage_events BEGIN SELECT RAISE(ABORT, 'usage_events is append-only'); END;
"#;

/// Usage rows per INSERT statement: 17 parameters each stay under SQLite's 32,766.
const USAGE_ROWS_PER_INSERT: usize = 1000;

/// What usage rows are summed by: day, tenant, key, model, version, protocol, outcome.
type UsageKey<'a> = (i64, &'a str, &'a str, &'a str, u64, &'a str, &'a str);

/// Events summed per [`UsageKey`], each with how many it holds.
fn aggregate(events: &[UsageEvent]) -> Vec<(UsageEvent, u64)> {
    let mut rows: Vec<(UsageEvent, u64)> = Vec::new();
    let mut index: std::collections::HashMap<UsageKey<'_>, usize> = std::collections::HashMap::new();
    for event in events {
        let key = (
            event.at_ms.div_euclid(86_400_000),
            event.tenant.as_str(),
            event.key_id.as_str(),
            event.model.as_str(),
            event.version,
            event.protocol,
            event.outcome,
        );
        match index.get(&key) {
            Some(&at) => {
                let (sum, count) = &mut rows[at];
                *count += 1;
                sum.at_ms = sum.at_ms.min(event.at_ms);
                sum.input_tokens += event.input_tokens;
                sum.output_tokens += event.output_tokens;
                sum.input_elements += event.input_elements;
                sum.output_elements += event.output_elements;
                sum.queue_ms += event.queue_ms;
                sum.compute_ms += event.compute_ms;
                sum.bytes_in += event.bytes_in;
                sum.bytes_out += event.bytes_out;
                sum.cost += event.cost;
            }
            None => {
                index.insert(key, rows.len());
                rows.push((event.clone(), 1));
            }
        }
    }
    rows
}

/// A tenant: the owner of models and keys.
#[derive(Debug, Clone, Serialize)]
pub struct TenantRecord {
    /// Unique name.
    pub name: String,
    /// Limits shared by all of the tenant's keys.
    pub limits: Limits,
    /// Unix seconds.
    pub created_at: i64,
}

/// A key to store. `hash` is the hex sha256 of the whole key; the key itself is never stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Visible id (the part after `ym_`).
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Label.
    pub name: String,
    /// Hex sha256 of the key.
    pub hash: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Models the key may use (`None`: all the tenant can see).
    pub models: Option<Vec<String>>,
    /// The key's own limits.
    pub limits: Limits,
    /// Unix seconds after which the key is refused.
    pub expires_at: Option<i64>,
}

/// A stored key (with its hash, for verification; never serialized).
#[derive(Debug, Clone, Serialize)]
pub struct KeyRecord {
    /// Visible id.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Label.
    pub name: String,
    /// Hex sha256 of the key.
    #[serde(skip)]
    pub hash: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Model allow-list.
    pub models: Option<Vec<String>>,
    /// The key's own limits.
    pub limits: Limits,
    /// The owning tenant's limits.
    #[serde(skip)]
    pub tenant_limits: Limits,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Unix seconds; set once revoked.
    pub revoked_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// One metered request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageEvent {
    /// Unix milliseconds when the request was admitted.
    pub at_ms: i64,
    /// Tenant of the key.
    pub tenant: String,
    /// Key id.
    pub key_id: String,
    /// Model name ("" if the request failed before naming one).
    pub model: String,
    /// Version served (0 if none).
    pub version: u64,
    /// `rest`, `grpc` or `openai`.
    pub protocol: &'static str,
    /// `ok`, an error code, or `cancelled`.
    pub outcome: &'static str,
    /// Prompt or input tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Input tensor elements.
    pub input_elements: u64,
    /// Output tensor elements.
    pub output_elements: u64,
    /// Milliseconds waiting before the model ran.
    pub queue_ms: u64,
    /// Milliseconds of the service call.
    pub compute_ms: u64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Cost by the version's price.
    pub cost: f64,
}

/// How usage is grouped in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGroup {
    /// By tenant and model.
    Model,
    /// By tenant and key.
    Key,
    /// By tenant and UTC day.
    Day,
}

/// One row of a usage report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageRow {
    /// Tenant.
    pub tenant: String,
    /// The model, key id or day (YYYY-MM-DD).
    pub group: String,
    /// Requests.
    pub requests: u64,
    /// Requests whose outcome was not `ok`.
    pub failed: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input elements.
    pub input_elements: u64,
    /// Output elements.
    pub output_elements: u64,
    /// Compute milliseconds.
    pub compute_ms: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Cost.
    pub cost: f64,
}

/// What has been used in a period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageTotals {
    /// Requests.
    pub requests: u64,
    /// Input plus output tokens.
    pub tokens: u64,
    /// Compute milliseconds.
    pub compute_ms: u64,
}

/// Whose usage to total.
#[derive(Debug, Clone, Copy)]
pub enum UsageSubject<'a> {
    /// One key.
    Key(&'a str),
    /// One tenant.
    Tenant(&'a str),
}

/// One management action.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Key id of the actor (`-` with auth off).
    pub key_id: String,
    /// Tenant of the actor.
    pub tenant: String,
    /// What was done (`POST /api/v1/models`).
    pub action: String,
    /// What it was done to (the path).
    pub target: String,
    /// Peer address.
    pub remote: String,
    /// HTTP status.
    pub outcome: String,
}

/// Tenant names follow model names' rules.
fn validate_tenant(name: &str) -> Result<(), RegistryError> {
    crate::db::validate_name(name)
        .map_err(|_| RegistryError::Invalid(format!("tenant name must be 1 to 128 characters from [A-Za-z0-9._-], got '{name}'")))
}

const KEY_COLUMNS: &str = "k.id, k.tenant, k.name, k.hash, k.scopes, k.models, k.limits, t.limits AS tenant_limits, k.expires_at, \
     k.revoked_at, k.created_at";

impl Db {
    fn tenant(row: &SqliteRow) -> Result<TenantRecord, RegistryError> {
        Ok(TenantRecord { name: row.get("name"), limits: parse(row.get("limits"), "limits")?, created_at: row.get("created_at") })
    }

    fn key(row: &SqliteRow) -> Result<KeyRecord, RegistryError> {
        let models: Option<String> = row.get("models");
        Ok(KeyRecord {
            id: row.get("id"),
            tenant: row.get("tenant"),
            name: row.get("name"),
            hash: row.get("hash"),
            scopes: parse(row.get("scopes"), "scopes")?,
            models: models.map(|text| parse(&text, "models")).transpose()?,
            limits: parse(row.get("limits"), "limits")?,
            tenant_limits: parse(row.get("tenant_limits"), "limits")?,
            expires_at: row.get("expires_at"),
            revoked_at: row.get("revoked_at"),
            created_at: row.get("created_at"),
        })
    }

    pub async fn create_tenant(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
        validate_tenant(name)?;
        limits.validate().map_err(RegistryError::Invalid)?;
        let result = sqlx::query("INSERT INTO tenants (name, limits, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(json(limits))
            .bind(now())
            .execute(&self.pool)
            .await;
        match result {
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                Err(RegistryError::AlreadyExists(format!("tenant '{name}' already exists")))
            }
            Err(error) => Err(error.into()),
            Ok(_) => self.get_tenant(name).await,
        }
    }

    pub async fn get_tenant(&self, name: &str) -> Result<TenantRecord, RegistryError> {
        let row = sqlx::query("SELECT name, limits, created_at FROM tenants WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::tenant).transpose()?.ok_or_else(|| RegistryError::ResourceNotFound(format!("tenant '{name}' not found")))
    }

    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, RegistryError> {
        let rows = sqlx::query("SELECT name, limits, created_at FROM tenants ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(Self::tenant).collect()
    }

    pub async fn set_tenant_limits(&self, name: &str, limits: &Limits) -> Result<TenantRecord, RegistryError> {
        limits.validate().map_err(RegistryError::Invalid)?;
        let updated = sqlx::query("UPDATE tenants SET limits = ? WHERE name = ?").bind(json(limits)).bind(name).execute(&self.pool).await?;
        if updated.rows_affected() == 0 {
            return Err(RegistryError::ResourceNotFound(format!("tenant '{name}' not found")));
        }
        self.get_tenant(name).await
    }

    /// Deletes a tenant with its keys, drops it from every model's sharing list, and (with `with_models`)
    /// deletes the models it owns; in one transaction. Without `with_models`, a tenant that owns models is
    /// refused naming them. Returns the versions of the deleted models. Usage and audit records stay.
    pub async fn delete_tenant(&self, name: &str, with_models: bool) -> Result<Vec<crate::VersionRecord>, RegistryError> {
        if name == crate::DEFAULT_TENANT {
            return Err(RegistryError::Invalid(format!("the '{name}' tenant cannot be deleted")));
        }
        let mut tx = self.write_transaction().await?;
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE name = ?").bind(name).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Err(RegistryError::ResourceNotFound(format!("tenant '{name}' not found")));
        }
        let owned: Vec<String> =
            sqlx::query_scalar("SELECT name FROM models WHERE tenant = ? ORDER BY name").bind(name).fetch_all(&mut *tx).await?;
        if !owned.is_empty() && !with_models {
            return Err(RegistryError::AlreadyExists(format!(
                "tenant '{name}' owns {} models ({}); delete them first, or delete the tenant with delete_models=true",
                owned.len(),
                owned.iter().map(|model| crate::name_for(model, name)).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut versions = Vec::new();
        for model in &owned {
            versions.extend(Self::delete_model_in(&mut tx, model).await?);
        }
        let shared: Vec<(i64, String)> = sqlx::query_as("SELECT id, sharing FROM models").fetch_all(&mut *tx).await?;
        for (id, text) in shared {
            let mut sharing: yunmo_types::Sharing = parse(&text, "sharing")?;
            if sharing.tenants.iter().any(|tenant| tenant == name) {
                sharing.tenants.retain(|tenant| tenant != name);
                sqlx::query("UPDATE models SET sharing = ? WHERE id = ?").bind(json(&sharing)).bind(id).execute(&mut *tx).await?;
            }
        }
        sqlx::query("DELETE FROM api_keys WHERE tenant = ?").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM tenants WHERE name = ?").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(versions)
    }

    pub async fn insert_key(&self, key: &NewKey) -> Result<KeyRecord, RegistryError> {
        key.limits.validate().map_err(RegistryError::Invalid)?;
        self.get_tenant(&key.tenant).await?;
        let result = sqlx::query(
            "INSERT INTO api_keys (id, tenant, name, hash, scopes, models, limits, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            Err(error) => Err(error.into()),
            Ok(_) => self.get_key(&key.id).await?.ok_or_else(|| RegistryError::ResourceNotFound(format!("key '{}' not found", key.id))),
        }
    }

    pub async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, RegistryError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.name = k.tenant WHERE k.id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(Self::key).transpose()
    }

    pub async fn list_keys(&self, tenant: Option<&str>) -> Result<Vec<KeyRecord>, RegistryError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k JOIN tenants t ON t.name = k.tenant WHERE (? IS NULL OR k.tenant = ?) ORDER BY k.created_at, k.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(tenant).fetch_all(&self.pool).await?;
        rows.iter().map(Self::key).collect()
    }

    pub async fn count_keys(&self) -> Result<u64, RegistryError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys").fetch_one(&self.pool).await?;
        Ok(count as u64)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<KeyRecord, RegistryError> {
        sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.get_key(id).await?.ok_or_else(|| RegistryError::ResourceNotFound(format!("key '{id}' not found")))
    }

    /// Writes events in one transaction: all or none. Events of one day with the same tenant, key, model,
    /// version, protocol and outcome are stored as one row with their sums and their count (`requests`;
    /// `at_ms` is the first one's), so that the database does one row's work per subject per flush instead
    /// of one per request, and reports stay exact per day. Rows go in multi-row INSERTs of up to
    /// [`USAGE_ROWS_PER_INSERT`] (each statement is a round trip to the connection's thread).
    pub async fn insert_usage(&self, events: &[UsageEvent]) -> Result<(), RegistryError> {
        let rows = aggregate(events);
        let mut tx = self.write_transaction().await?;
        for chunk in rows.chunks(USAGE_ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO usage_events (at_ms, tenant, key_id, model, version, protocol, outcome, requests, input_tokens, \
                 output_tokens, input_elements, output_elements, queue_ms, compute_ms, bytes_in, bytes_out, cost) ",
            );
            insert.push_values(chunk, |mut row, (event, requests)| {
                row.push_bind(event.at_ms)
                    .push_bind(&event.tenant)
                    .push_bind(&event.key_id)
                    .push_bind(&event.model)
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

    pub async fn usage_report(
        &self,
        from_ms: i64,
        to_ms: i64,
        tenant: Option<&str>,
        group: UsageGroup,
    ) -> Result<Vec<UsageRow>, RegistryError> {
        let group_sql = match group {
            UsageGroup::Model => "model",
            UsageGroup::Key => "key_id",
            UsageGroup::Day => "strftime('%Y-%m-%d', at_ms / 1000, 'unixepoch')",
        };
        let sql = format!(
            "SELECT tenant, {group_sql} AS grp, SUM(requests) AS requests, SUM(CASE WHEN outcome != 'ok' THEN requests ELSE 0 END) AS failed, \
             SUM(input_tokens) AS input_tokens, \
             SUM(output_tokens) AS output_tokens, SUM(input_elements) AS input_elements, SUM(output_elements) AS output_elements, \
             SUM(compute_ms) AS compute_ms, SUM(bytes_in) AS bytes_in, SUM(bytes_out) AS bytes_out, SUM(cost) AS cost \
             FROM usage_events WHERE at_ms >= ? AND at_ms < ? AND (? IS NULL OR tenant = ?) GROUP BY tenant, grp ORDER BY tenant, grp"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(from_ms).bind(to_ms).bind(tenant).bind(tenant).fetch_all(&self.pool).await?;
        let count = |row: &SqliteRow, name: &str| row.get::<i64, _>(name) as u64;
        Ok(rows
            .iter()
            .map(|row| UsageRow {
                tenant: row.get("tenant"),
                group: row.get("grp"),
                requests: count(row, "requests"),
                failed: count(row, "failed"),
                input_tokens: count(row, "input_tokens"),
                output_tokens: count(row, "output_tokens"),
                input_elements: count(row, "input_elements"),
                output_elements: count(row, "output_elements"),
                compute_ms: count(row, "compute_ms"),
                bytes_in: count(row, "bytes_in"),
                bytes_out: count(row, "bytes_out"),
                cost: row.get("cost"),
            })
            .collect())
    }

    /// Totals of one key or tenant since `from_ms`.
    pub async fn usage_totals(&self, subject: UsageSubject<'_>, from_ms: i64) -> Result<UsageTotals, RegistryError> {
        let (sql, value) = match subject {
            UsageSubject::Key(id) => ("key_id = ?", id),
            UsageSubject::Tenant(name) => ("tenant = ?", name),
        };
        let sql = format!(
            "SELECT COALESCE(SUM(requests), 0) AS requests, COALESCE(SUM(input_tokens + output_tokens), 0) AS tokens, COALESCE(SUM(compute_ms), 0) AS compute_ms \
             FROM usage_events WHERE {sql} AND at_ms >= ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).bind(from_ms).fetch_one(&self.pool).await?;
        Ok(UsageTotals {
            requests: row.get::<i64, _>("requests") as u64,
            tokens: row.get::<i64, _>("tokens") as u64,
            compute_ms: row.get::<i64, _>("compute_ms") as u64,
        })
    }

    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), RegistryError> {
        sqlx::query("INSERT INTO audit_log (at_ms, key_id, tenant, action, target, remote, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)")
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

    pub async fn list_audit(&self, tenant: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>, RegistryError> {
        let rows = sqlx::query(
            "SELECT at_ms, key_id, tenant, action, target, remote, outcome FROM audit_log WHERE (? IS NULL OR tenant = ?) \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(tenant)
        .bind(tenant)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| AuditEntry {
                at_ms: row.get("at_ms"),
                key_id: row.get("key_id"),
                tenant: row.get("tenant"),
                action: row.get("action"),
                target: row.get("target"),
                remote: row.get("remote"),
                outcome: row.get("outcome"),
            })
            .collect())
    }
}
