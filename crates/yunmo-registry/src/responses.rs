//! Stored responses of OpenAI's Responses API ([`ResponseStore`], part of every [`crate::MetadataStore`]):
//! one row per response, per tenant, kept until it expires. The statements are the same on SQLite and
//! PostgreSQL ([`sql`]); [`response_store_on_pool!`] implements the trait for both.

use crate::RegistryError;

/// A stored response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// `resp_…`.
    pub id: String,
    /// The tenant of the key that created it: only that tenant reads or deletes it.
    pub tenant: String,
    /// The model, as the request named it.
    pub model: String,
    /// The response object (JSON).
    pub body: String,
    /// The whole conversation it answered, as input items (JSON): what `previous_response_id` continues.
    pub input: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds after which it is gone.
    pub expires_at: i64,
}

/// Stored responses.
///
/// Contract (checked by [`crate::conformance::responses`]): ids are unique (`AlreadyExists` otherwise); a
/// response is found only with its own tenant and only before it expires; a deleted or expired response is
/// never found again.
#[async_trait::async_trait]
pub trait ResponseStore: Send + Sync + 'static {
    /// Stores a response, first removing every response expired at `now`.
    async fn put_response(&self, response: &StoredResponse, now: i64) -> Result<(), RegistryError>;
    /// The response `id` of `tenant` that has not expired at `now`.
    async fn get_response(&self, tenant: &str, id: &str, now: i64) -> Result<Option<StoredResponse>, RegistryError>;
    /// Deletes the response `id` of `tenant`; whether one (not expired at `now`) was there.
    async fn delete_response(&self, tenant: &str, id: &str, now: i64) -> Result<bool, RegistryError>;
    /// Removes every response expired at `now`; how many.
    async fn purge_responses(&self, now: i64) -> Result<u64, RegistryError>;
}

/// The statements, with `$n` parameters (which SQLite also reads).
pub(crate) mod sql {
    /// $1 id, $2 tenant, $3 model, $4 body, $5 input, $6 created_at, $7 expires_at.
    pub(crate) const INSERT: &str =
        "INSERT INTO responses (id, tenant, model, body, input, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    /// $1 tenant, $2 id, $3 now.
    pub(crate) const GET: &str = "SELECT id, tenant, model, body, input, created_at, expires_at FROM responses \
         WHERE tenant = $1 AND id = $2 AND expires_at > $3";
    /// $1 tenant, $2 id, $3 now.
    pub(crate) const DELETE: &str = "DELETE FROM responses WHERE tenant = $1 AND id = $2 AND expires_at > $3";
    /// $1 now.
    pub(crate) const PURGE: &str = "DELETE FROM responses WHERE expires_at <= $1";
}

/// Implements [`ResponseStore`] for a store with a `pool` field.
macro_rules! response_store_on_pool {
    ($store:ident) => {
        const _: () = {
            use sqlx::Row;
            use $crate::RegistryError;
            use $crate::responses::{StoredResponse, sql};

            #[async_trait::async_trait]
            impl $crate::responses::ResponseStore for $store {
                async fn put_response(&self, response: &StoredResponse, now: i64) -> Result<(), RegistryError> {
                    sqlx::query(sql::PURGE).bind(now).execute(&self.pool).await?;
                    sqlx::query(sql::INSERT)
                        .bind(&response.id)
                        .bind(&response.tenant)
                        .bind(&response.model)
                        .bind(&response.body)
                        .bind(&response.input)
                        .bind(response.created_at)
                        .bind(response.expires_at)
                        .execute(&self.pool)
                        .await
                        .map_err(|error| {
                            $crate::jobs::taken_or_database_error(error, || format!("response '{}' already exists", response.id))
                        })?;
                    Ok(())
                }

                async fn get_response(&self, tenant: &str, id: &str, now: i64) -> Result<Option<StoredResponse>, RegistryError> {
                    let row = sqlx::query(sql::GET).bind(tenant).bind(id).bind(now).fetch_optional(&self.pool).await?;
                    Ok(row.map(|row| StoredResponse {
                        id: row.get("id"),
                        tenant: row.get("tenant"),
                        model: row.get("model"),
                        body: row.get("body"),
                        input: row.get("input"),
                        created_at: row.get("created_at"),
                        expires_at: row.get("expires_at"),
                    }))
                }

                async fn delete_response(&self, tenant: &str, id: &str, now: i64) -> Result<bool, RegistryError> {
                    let done = sqlx::query(sql::DELETE).bind(tenant).bind(id).bind(now).execute(&self.pool).await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn purge_responses(&self, now: i64) -> Result<u64, RegistryError> {
                    Ok(sqlx::query(sql::PURGE).bind(now).execute(&self.pool).await?.rows_affected())
                }
            }
        };
    };
}

pub(crate) use response_store_on_pool;
