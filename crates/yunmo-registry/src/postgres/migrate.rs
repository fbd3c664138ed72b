//! PostgreSQL's numbered schema migrations, applied in one transaction under an advisory lock.
//!
//! Every replica runs this at start. The first to take the transaction-scoped advisory lock creates
//! `schema_migrations` and applies what is missing; the others wait on the lock and then find nothing to
//! do, so replicas starting at once on an empty database all come up. DDL is transactional in
//! PostgreSQL: a migration that fails leaves the schema as it was.

use sqlx::PgPool;

use super::now;
use crate::RegistryError;
use crate::migrations::{Migration, checksum, newest, pending};

/// Every migration, in order, numbered as SQLite's. A released migration is never edited.
const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "models", sql: include_str!("../../migrations/postgres/0001_models.sql") },
    Migration { version: 2, name: "tenancy", sql: include_str!("../../migrations/postgres/0002_tenancy.sql") },
    Migration { version: 3, name: "cluster", sql: include_str!("../../migrations/postgres/0003_cluster.sql") },
    Migration { version: 4, name: "forecast", sql: include_str!("../../migrations/postgres/0004_forecast.sql") },
    Migration { version: 5, name: "drift", sql: include_str!("../../migrations/postgres/0005_drift.sql") },
    Migration { version: 6, name: "jobs", sql: include_str!("../../migrations/postgres/0006_jobs.sql") },
    Migration { version: 7, name: "responses", sql: include_str!("../../migrations/postgres/0007_responses.sql") },
];

/// The advisory lock key migrations hold (any constant no other lock of Yunmo's uses).
pub(super) const MIGRATION_LOCK: i64 = 0x7975_6e6d_6f01;

/// Brings the database to the newest schema; returns its version.
pub(super) async fn migrate(pool: &PgPool) -> Result<u32, RegistryError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
         applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, checksum FROM schema_migrations ORDER BY version").fetch_all(&mut *tx).await?;
    for migration in pending(MIGRATIONS, &applied)? {
        sqlx::raw_sql(sqlx::AssertSqlSafe(migration.sql)).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
            .bind(i64::from(migration.version))
            .bind(migration.name)
            .bind(checksum(migration.sql))
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tracing::info!(version = migration.version, name = migration.name, "Applied a schema migration.");
    }
    tx.commit().await?;
    Ok(newest(MIGRATIONS))
}
