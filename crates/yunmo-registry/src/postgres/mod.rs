//! The metadata store in PostgreSQL: what many replicas share.
//!
//! Same tables, columns and meaning as SQLite's ([`crate::SqliteStore`]), so both pass one conformance
//! suite. Differences: ids are `BIGSERIAL`; writes that read first lock the rows they read (`FOR UPDATE`)
//! instead of the whole database; the artifact lock of `insert_version` and
//! `remove_artifact_if_unreferenced` is a transaction-scoped advisory lock on the file's name, held by
//! whichever replica runs them.

mod drift;
mod jobs;
mod listen;
mod migrate;
mod models;
mod tenancy;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::RegistryError;

crate::responses::response_store_on_pool!(PgStore);

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PgStoreOptions {
    /// A `postgres://user:password@host:port/database` URL (libpq's `PG*` variables fill what it omits).
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a call waits for a connection (the database down or every connection busy) before failing.
    pub acquire_timeout: Duration,
}

impl std::fmt::Debug for PgStoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStoreOptions")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

impl PgStoreOptions {
    /// Options for `url` with the defaults: 8 connections, 5 s to get one.
    pub fn new(url: impl Into<String>) -> PgStoreOptions {
        PgStoreOptions { url: url.into(), max_connections: 8, acquire_timeout: Duration::from_secs(5) }
    }
}

/// `url` with its password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    // The authority ends at the first '/' after the last '@': a password may hold a '/' (base64 does).
    let host_from = rest.rfind('@').map_or(0, |at| at + 1);
    let (authority, path) = match rest[host_from..].find('/') {
        Some(slash) => (&rest[..host_from + slash], Some(&rest[host_from + slash + 1..])),
        None => (rest, None),
    };
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    // A password may also be a query parameter.
    let path = path.map(|path| match path.split_once('?') {
        Some((database, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| if pair.to_ascii_lowercase().starts_with("password=") { "password=***".to_string() } else { pair.to_string() })
                .collect();
            format!("{database}?{}", query.join("&"))
        }
        None => path.to_string(),
    });
    match path {
        Some(path) => format!("{scheme}://{authority}/{path}"),
        None => format!("{scheme}://{authority}"),
    }
}

/// Models, versions, tenants, keys, usage, audit, jobs and dataset files in a PostgreSQL database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    schema_version: u32,
    changes: tokio::sync::broadcast::Sender<crate::metadata::Change>,
    _listener: std::sync::Arc<listen::ListenerTask>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("schema_version", &self.schema_version).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects and applies the migrations the database lacks (under an advisory lock, so replicas that
    /// start together apply each once).
    pub async fn connect(options: &PgStoreOptions) -> Result<PgStore, RegistryError> {
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|error| RegistryError::Invalid(format!("storage.postgres_url {}: {error}", redact_url(&options.url))))?
            .application_name("yunmo");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        match migrate::migrate(&pool).await {
            Ok(schema_version) => {
                let (changes, _) = tokio::sync::broadcast::channel(1024);
                let listener = std::sync::Arc::new(listen::spawn(pool.clone(), changes.clone()));
                Ok(PgStore { pool, schema_version, changes, _listener: listener })
            }
            Err(error) => {
                pool.close().await;
                Err(error)
            }
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) use crate::columns::{json, now, parse};

/// A version number as PostgreSQL's BIGINT (a number beyond it matches no row).
fn version_param(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

crate::metadata::store_by_inherent_methods!(PgStore);

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_a_log() {
        assert_eq!(redact_url("postgres://yunmo:s3cret@db:5432/yunmo"), "postgres://yunmo:***@db:5432/yunmo");
        assert_eq!(
            redact_url("postgres://yunmo@db/yunmo?sslmode=require&password=s3cret"),
            "postgres://yunmo@db/yunmo?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://yunmo:ab/c+d=@db:5432/yunmo"),
            "postgres://yunmo:***@db:5432/yunmo",
            "a password with a slash (base64) ends at the last '@'"
        );
        assert_eq!(redact_url("postgres://db"), "postgres://db");
        assert_eq!(redact_url("postgres://u:p@ss@db"), "postgres://u:***@db");
    }
}
