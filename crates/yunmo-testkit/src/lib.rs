//! Real servers for tests, each started on 127.0.0.1 with an ephemeral port in its own temporary directory
//! and stopped when dropped: PostgreSQL ([`Postgres`]), an S3 server ([`S3`]), Redis ([`Redis`]).
//!
//! Nothing is mocked: these are the servers a cluster of Yunmo replicas runs against. A server that cannot
//! be found fails the test with the command that installs it (`scripts/system-deps.sh`,
//! `scripts/fetch-assets.sh seaweedfs`).
//!
//! The `yunmo-testkit services` binary starts them for tests written in other languages.

mod postgres;
mod process;
mod redis;
mod s3;

pub use postgres::Postgres;
pub use process::free_port;
pub use redis::Redis;
pub use s3::{ACCESS_KEY as S3_ACCESS_KEY, S3, SECRET_KEY as S3_SECRET_KEY};
