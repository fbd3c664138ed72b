//! PostgreSQL: background jobs, their event logs and dataset files ([`crate::jobs::JobStore`]).
//!
//! The statements are SQLite's ([`crate::jobs::sql`]), run on the pool. A claim's subquery also locks the row
//! it picks and skips rows that other claims hold (`FOR UPDATE SKIP LOCKED`), so concurrent claims from any
//! replica take different jobs; the outer condition, checked again on the row as committed, leaves alone a
//! job that another claim took in between.

use super::PgStore;

crate::job_store::job_store_on_pool!(PgStore, crate::jobs::sql::CLAIM_JOB_POSTGRES);
