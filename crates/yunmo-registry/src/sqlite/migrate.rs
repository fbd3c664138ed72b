//! Numbered schema migrations, applied once each and recorded in `schema_migrations` with their checksum.
//!
//! All of it runs in one write transaction (`BEGIN IMMEDIATE`), so two processes opening one database at
//! once apply each migration once. A database written by a newer Yunmo (a migration this binary does not
//! know) or whose recorded migration differs from this binary's text is refused, naming the version.
//! Databases made before migrations were numbered are adopted once: their ad-hoc columns are brought to
//! the shape of the migrations they already hold, which are then recorded as applied.

use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;

use super::now;
use super::tx::WriteTx;
use crate::RegistryError;
use crate::migrations::{Migration, checksum, newest, pending};

/// Every migration, in order. A released migration is never edited: a change is a new one.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "models", sql: include_str!("../../migrations/sqlite/0001_models.sql") },
    Migration { version: 2, name: "tenancy", sql: include_str!("../../migrations/sqlite/0002_tenancy.sql") },
    Migration { version: 3, name: "cluster", sql: include_str!("../../migrations/sqlite/0003_cluster.sql") },
    Migration { version: 4, name: "forecast", sql: include_str!("../../migrations/sqlite/0004_forecast.sql") },
    Migration { version: 5, name: "drift", sql: include_str!("../../migrations/sqlite/0005_drift.sql") },
    Migration { version: 6, name: "jobs", sql: include_str!("../../migrations/sqlite/0006_jobs.sql") },
    Migration { version: 7, name: "responses", sql: include_str!("../../migrations/sqlite/0007_responses.sql") },
];

/// Brings the database to the newest schema; returns its version.
pub(super) async fn migrate(pool: &SqlitePool) -> Result<u32, RegistryError> {
    let mut tx = WriteTx::begin(pool).await?;
    if !table_exists(&mut tx, "schema_migrations").await? {
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
             applied_at INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        adopt_unnumbered(&mut tx).await?;
    }
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM schema_migrations ORDER BY version").fetch_all(&mut *tx).await?;
    for migration in pending(MIGRATIONS, &applied)? {
        sqlx::raw_sql(sqlx::AssertSqlSafe(migration.sql)).execute(&mut *tx).await?;
        record(&mut tx, migration).await?;
        tracing::info!(version = migration.version, name = migration.name, "Applied a schema migration.");
    }
    tx.commit().await?;
    Ok(newest(MIGRATIONS))
}

async fn record(connection: &mut SqliteConnection, migration: &Migration) -> Result<(), RegistryError> {
    sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)")
        .bind(i64::from(migration.version))
        .bind(migration.name)
        .bind(checksum(migration.sql))
        .bind(now())
        .execute(connection)
        .await?;
    Ok(())
}

async fn table_exists(connection: &mut SqliteConnection, name: &str) -> Result<bool, RegistryError> {
    let found = sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").bind(name).fetch_optional(connection).await?;
    Ok(found.is_some())
}

async fn has_column(connection: &mut SqliteConnection, table: &str, column: &str) -> Result<bool, RegistryError> {
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?)").bind(table).fetch_all(&mut *connection).await?;
    Ok(columns.iter().any(|name| name == column))
}

/// A database from before numbered migrations: brings what it has to the shape of migrations 1 and 2 and
/// records those it now holds. A new, empty database has neither table and is left to the migrations.
async fn adopt_unnumbered(connection: &mut SqliteConnection) -> Result<(), RegistryError> {
    if table_exists(connection, "models").await? {
        // Versions before tokenizers were stored.
        if !has_column(connection, "versions", "tokenizer").await? {
            sqlx::raw_sql("ALTER TABLE versions ADD COLUMN tokenizer TEXT").execute(&mut *connection).await?;
        }
        // Models before tenants owned them belong to 'default'.
        if !has_column(connection, "models", "tenant").await? {
            sqlx::raw_sql(
                "ALTER TABLE models ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default'; \
                 ALTER TABLE models ADD COLUMN sharing TEXT NOT NULL DEFAULT '{}'",
            )
            .execute(&mut *connection)
            .await?;
        }
        // Names became unique per tenant: another tenant's model is stored under 'tenant/name'.
        sqlx::raw_sql("UPDATE models SET name = tenant || '/' || name WHERE tenant != 'default' AND instr(name, '/') = 0")
            .execute(&mut *connection)
            .await?;
        record(connection, &MIGRATIONS[0]).await?;
        tracing::info!("Adopted a database from before numbered migrations.");
    }
    if table_exists(connection, "tenants").await? {
        // Usage rows before they were summed per flush: each row is one request.
        if !has_column(connection, "usage_events", "requests").await? {
            sqlx::raw_sql("ALTER TABLE usage_events ADD COLUMN requests INTEGER NOT NULL DEFAULT 1").execute(&mut *connection).await?;
        }
        record(connection, &MIGRATIONS[1]).await?;
    }
    Ok(())
}
