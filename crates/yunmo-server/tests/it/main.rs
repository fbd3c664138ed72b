//! Integration tests: the real `yunmo` binary on 127.0.0.1 with an ephemeral port and a temporary data dir.
//! Model files come from the fixture cache that `scripts/test.sh` fills (scripts/fetch-assets.sh and
//! tests/fixtures/make_models.py); a missing fixture fails the test with that hint.

mod harness;

/// Every kind of bad input gets its 4xx and leaves the server serving and the registry unchanged.
mod bad_input;
/// Dynamic batching, the bounded queue (429), per-request timeouts (504), abandoned requests.
mod batching;
/// The `yunmo` client commands: sharing, load/unload, configs, tenants, audit, and clean failures.
mod cli;
/// Three replicas on PostgreSQL and S3: shared models, keys, limits and load state; a restart from the cache.
mod cluster;
/// PostgreSQL, S3 and Redis down in turn and back, and a replica killed mid-upload: serving, 503s, recovery.
mod cluster_faults;
/// Cluster-wide rate limits and quotas (Redis) and exact metering across three replicas.
mod cluster_limits;
/// SIGKILL in the middle of an upload, then a restart: the registry is consistent.
mod crash;
/// The data directory fills up and frees again (a small tmpfs): usage is counted exactly.
mod disk_full;
/// Drift per version: a shift on one feature drifts that feature only; reference baselines; bad settings.
mod drift;
/// Drift baselines shared by replicas (PostgreSQL) and kept across restarts.
mod drift_shared;
/// Demand forecasts from two weeks of hourly usage, the measured capacity and the capacity alert.
mod forecast;
/// Jobs shared by replicas (PostgreSQL): one queue, each job run once, cancels across replicas.
mod jobs_shared;
/// Models and versions through the management API: create, upload, policy, load/unload, delete, restart.
mod lifecycle;
/// Request bodies, bytes in flight, connection timeouts and the connection limit.
mod limits;
/// Concurrent management calls that touch the same stored file.
mod races;
/// The memory budget (least recently used first) and idle unloading.
mod residency;
/// Secret settings never reach the log or `--print-config`.
mod secrets;
/// SIGTERM lets in-flight requests finish and exits cleanly.
mod shutdown;
/// Live statistics per loaded version: exact counts, visibility per key.
mod stats;
/// Model names are per tenant; short and qualified names; nothing confirms another tenant's private model.
mod tenant_names;
/// Mutated ONNX files through the upload path: stored or refused, never a crash or a leftover file.
mod upload_fuzz;
