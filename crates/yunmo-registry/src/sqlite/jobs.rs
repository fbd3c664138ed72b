//! SQLite: background jobs, their event logs and dataset files ([`crate::jobs::JobStore`]).
//!
//! Each call runs statements of [`crate::jobs::sql`] on the pool, as the other single-statement writes do:
//! SQLite runs a write statement under its one write lock (waiting for it up to the busy timeout), so a
//! claim's subquery and update see no other write between them, also from another process. A write that
//! returns rows is read with `fetch_all`, never `fetch_optional`: the statement then runs to its end, so its
//! autocommit transaction has committed when the call returns.

use super::SqliteStore;

crate::job_store::job_store_on_pool!(SqliteStore, crate::jobs::sql::CLAIM_JOB_SQLITE);
