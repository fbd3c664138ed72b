//! Real servers for tests, each started on 127.0.0.1 with an ephemeral port in its own temporary directory
//! and stopped when dropped: PostgreSQL ([`Postgres`]), an S3 server ([`S3`]).
//!
//! Nothing is mocked: these are the servers a cluster of Yunmo replicas runs against. A server that cannot
//! be found fails the test with the command that installs it (`scripts/system-deps.sh`,
//! `scripts/cluster-deps.sh`).

mod postgres;
mod process;
mod s3;

pub use postgres::Postgres;
pub use process::free_port;
pub use s3::{ACCESS_KEY as S3_ACCESS_KEY, S3, SECRET_KEY as S3_SECRET_KEY};
