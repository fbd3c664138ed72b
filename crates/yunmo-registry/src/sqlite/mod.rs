//! The metadata store in SQLite (WAL, `synchronous=FULL`): the embedded default.

mod drift;
mod jobs;
mod migrate;
mod models;
mod tenancy;
mod tx;

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::RegistryError;

crate::responses::response_store_on_pool!(SqliteStore);

/// Models, versions, tenants, keys, usage, audit, jobs and dataset files in one SQLite file.
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

pub(crate) use crate::columns::{json, now, parse};

crate::metadata::store_by_inherent_methods!(SqliteStore);
