//! Write transactions that never leave a pooled connection in a broken state.
//!
//! sqlx tracks a transaction depth per connection. When `COMMIT` fails (the disk is full, say), SQLite may
//! already have rolled the transaction back; sqlx then keeps the depth at 1, the rollback on drop fails
//! ("no transaction is active"), and the connection goes back to the pool still counted as inside a
//! transaction: every later `begin_with` on it fails with "attempted to call begin_with at non-zero
//! transaction depth". So Yunmo runs `BEGIN IMMEDIATE` / `COMMIT` / `ROLLBACK` itself on a pooled
//! connection (sqlx's depth stays 0), and a connection whose transaction did not end cleanly is closed
//! instead of being returned to the pool: the pool opens a fresh one when it is next needed.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};

/// A transaction that holds SQLite's write lock from its start (`BEGIN IMMEDIATE`).
///
/// A deferred transaction that reads and then writes fails at once with SQLITE_BUSY when another
/// connection committed since its read (`busy_timeout` does not help there); taking the lock first makes
/// the wait apply instead. Dropped without [`WriteTx::commit`], it is rolled back in the background, and
/// its connection is closed if that fails.
pub(crate) struct WriteTx {
    connection: Option<PoolConnection<Sqlite>>,
}

impl WriteTx {
    /// Starts a write transaction on a connection from `pool`.
    pub(crate) async fn begin(pool: &SqlitePool) -> Result<WriteTx, sqlx::Error> {
        let mut connection = pool.acquire().await?;
        if let Err(error) = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *connection).await {
            // A failed BEGIN may still have left a transaction open: never reuse the connection.
            connection.close_on_drop();
            return Err(error);
        }
        Ok(WriteTx { connection: Some(connection) })
    }

    /// Commits. On failure the transaction is rolled back (if SQLite has not done so already) and the
    /// connection is closed, so the next transaction starts on a clean one.
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let mut connection = self.connection.take().expect("a transaction has its connection until it ends. This is a bug.");
        match sqlx::raw_sql("COMMIT").execute(&mut *connection).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await;
                connection.close_on_drop();
                Err(error)
            }
        }
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        self.connection.as_deref().expect("a transaction has its connection until it ends. This is a bug.")
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.connection.as_deref_mut().expect("a transaction has its connection until it ends. This is a bug.")
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        let Some(mut connection) = self.connection.take() else { return };
        // An early return (an error, a conflict) or a cancelled future: roll back off this thread. If that
        // fails too, or no runtime is left to do it, the connection is closed, which SQLite rolls back.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await.is_err() {
                        connection.close_on_drop();
                    }
                });
            }
            Err(_) => connection.close_on_drop(),
        }
    }
}
