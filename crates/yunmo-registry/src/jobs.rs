//! Background jobs (fine-tuning and other long work), their event logs, and uploaded dataset files: what
//! every metadata store keeps for them ([`JobStore`]), and the SQL that SQLite and PostgreSQL share.
//!
//! The API queues a job; a worker of any replica claims it with a lease ([`JobStore::claim_job`]), renews
//! the lease while it works ([`JobStore::renew_job`]) and ends it ([`JobStore::finish_job`]). A worker that
//! dies stops renewing: once `lease_until` has passed, the next claim takes the job again, and `attempts`
//! counts how often it was taken. Cancelling a running job only asks its worker to stop
//! (`cancel_requested`); the worker ends it, or a claim does once the lease has ended.
//!
//! A dataset file's content lives in the artifact store under its sha256, like a model file: a file row
//! refers to it, so a sweep keeps it ([`crate::MetadataStore::referenced_artifacts`]).

use crate::RegistryError;

/// Where a job is in its life. Queued and running jobs may still change; the others are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker to claim it.
    Queued,
    /// Held by a worker's lease.
    Running,
    /// Ended as its worker reported success.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Ended because it was cancelled.
    Cancelled,
}

impl JobStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// From what is stored; `None` for a status this build does not know.
    pub fn parse(text: &str) -> Option<JobStatus> {
        match text {
            "queued" => Some(JobStatus::Queued),
            "running" => Some(JobStatus::Running),
            "succeeded" => Some(JobStatus::Succeeded),
            "failed" => Some(JobStatus::Failed),
            "cancelled" => Some(JobStatus::Cancelled),
            _ => None,
        }
    }

    /// Whether the job has ended (succeeded, failed or cancelled): it never changes again.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }
}

/// A job as created by the API; times are Unix milliseconds.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Unique id, chosen by the caller.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// What the job does (`fine_tune`, …): free text the workers understand.
    pub kind: String,
    /// The model (qualified name) the job works on.
    pub model: String,
    /// The job's parameters, as JSON text.
    pub params: String,
    /// The id of the dataset file ([`FileRecord`]) it trains on, if any.
    pub training_file: Option<String>,
    /// The version of `model` it starts from, if any.
    pub parent_version: Option<u64>,
    /// When it was created.
    pub created_at: i64,
}

/// A stored job; times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// Unique id.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// What the job does.
    pub kind: String,
    /// The model (qualified name) the job works on.
    pub model: String,
    /// The job's parameters, as JSON text.
    pub params: String,
    /// The id of the dataset file it trains on, if any.
    pub training_file: Option<String>,
    /// The version of `model` it starts from, if any.
    pub parent_version: Option<u64>,
    /// Where it is in its life.
    pub status: JobStatus,
    /// From 0 to 1, as its worker last reported (1 once it succeeded).
    pub progress: f64,
    /// The version it produced, once it succeeded (if it produces one).
    pub result_version: Option<u64>,
    /// Its results, as the text of a JSON object (`"{}"` when none).
    pub metrics: String,
    /// Why it failed, once it failed.
    pub error: Option<String>,
    /// Whether it was asked to stop while running; its worker (or the next claim after its lease) ends it.
    pub cancel_requested: bool,
    /// How many times a worker claimed it.
    pub attempts: u32,
    /// The worker holding it, while running.
    pub lease_owner: Option<String>,
    /// Until when `lease_owner` holds it, while running.
    pub lease_until: Option<i64>,
    /// When it was created.
    pub created_at: i64,
    /// When a worker first claimed it.
    pub started_at: Option<i64>,
    /// When it ended.
    pub finished_at: Option<i64>,
}

/// One entry of a job's event log.
#[derive(Clone, Debug, PartialEq)]
pub struct JobEvent {
    /// The job's id.
    pub job: String,
    /// Its place in one sequence over all events of all jobs: higher is later.
    pub seq: u64,
    /// When it happened, in Unix milliseconds.
    pub at: i64,
    /// `info`, `warning`, `error`, …: free text.
    pub level: String,
    /// What happened, for people.
    pub message: String,
    /// Structured details as JSON text, or empty.
    pub data: String,
}

/// Which jobs [`JobStore::list_jobs`] returns.
#[derive(Clone, Copy, Debug, Default)]
pub struct JobFilter<'a> {
    /// One tenant's, or all.
    pub tenant: Option<&'a str>,
    /// Only those with this status, or all.
    pub status: Option<JobStatus>,
    /// At most this many (0: no limit).
    pub limit: u32,
}

/// How a worker ends a job ([`JobStore::finish_job`]).
#[derive(Clone, Debug)]
pub enum JobEnd {
    /// It did its work.
    Succeeded {
        /// The version it produced, if it produces one.
        result_version: Option<u64>,
        /// Its results, as the text of a JSON object.
        metrics: String,
    },
    /// It could not do its work.
    Failed {
        /// Why, for people.
        error: String,
    },
    /// It stopped because it was asked to.
    Cancelled,
}

/// An uploaded dataset file; its content is in the artifact store under `sha256`.
#[derive(Clone, Debug, PartialEq)]
pub struct FileRecord {
    /// Unique id, chosen by the caller.
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// The name it was uploaded under.
    pub filename: String,
    /// What it is for (`fine-tune`, …): free text.
    pub purpose: String,
    /// Its size.
    pub bytes: u64,
    /// The hex sha256 of its content: its name in the artifact store.
    pub sha256: String,
    /// How many records it holds.
    pub rows: u64,
    /// Its column names, as the text of a JSON array.
    pub columns: String,
    /// When it was uploaded, in Unix milliseconds.
    pub created_at: i64,
}

/// Background jobs, their event logs and dataset files; part of every [`crate::MetadataStore`].
///
/// Contract (checked by [`crate::conformance::jobs`]): ids are unique (`AlreadyExists` otherwise); a missing
/// job or file is `ResourceNotFound` where a call needs one; two claims, from any connection or process,
/// never take the same job; a worker that lost its lease can neither renew nor end the job.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new job: queued, progress 0, no attempts, metrics `"{}"`. A taken id is `AlreadyExists`.
    async fn insert_job(&self, job: &NewJob) -> Result<JobRecord, RegistryError>;
    /// One job, if it exists.
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>, RegistryError>;
    /// Jobs that pass `filter`, newest first (by `created_at`, then by id, both descending).
    async fn list_jobs(&self, filter: JobFilter<'_>) -> Result<Vec<JobRecord>, RegistryError>;
    /// Takes the oldest job (by `created_at`, then id) that is queued and not `cancel_requested`, or running
    /// with `lease_until < now`, for `owner` until `lease_until`: status running, `lease_owner` and
    /// `lease_until` set, `attempts` + 1, `started_at` set when it was unset. `None` when there is none.
    /// Atomic: two concurrent callers (also on different connections or processes) never take the same
    /// job. A running job whose lease ended and that has `cancel_requested` set is not taken but ended as
    /// cancelled (`finished_at = now`) instead.
    async fn claim_job(&self, owner: &str, now: i64, lease_until: i64) -> Result<Option<JobRecord>, RegistryError>;
    /// When `owner` still holds the job (status running and `lease_owner = owner`): sets `progress` and
    /// `lease_until` and returns the record (the caller reads `cancel_requested`). `None` when the lease is
    /// lost.
    async fn renew_job(&self, id: &str, owner: &str, progress: f64, lease_until: i64) -> Result<Option<JobRecord>, RegistryError>;
    /// Hands a job that `owner` holds back without ending it (the server is stopping): its lease ends now,
    /// so the next claim takes it, and the run does not count as an attempt. False when owner does not hold
    /// it.
    async fn release_job(&self, id: &str, owner: &str) -> Result<bool, RegistryError>;
    /// Ends a job that `owner` holds: status from `end`, `finished_at = now`, lease cleared, progress 1 on
    /// success; `result_version` and `metrics`, or `error`, stored. Returns false (and changes nothing)
    /// when `owner` does not hold it.
    async fn finish_job(&self, id: &str, owner: &str, end: &JobEnd, now: i64) -> Result<bool, RegistryError>;
    /// A queued job becomes cancelled at once (`finished_at = now`); a running one gets
    /// `cancel_requested`; a finished job is unchanged. Returns the record after the change;
    /// `ResourceNotFound` when there is no such job.
    async fn cancel_job(&self, id: &str, now: i64) -> Result<JobRecord, RegistryError>;
    /// Appends an event to a job's log; returns its `seq` (one increasing sequence over all events).
    async fn append_job_event(&self, job: &str, at: i64, level: &str, message: &str, data: &str) -> Result<u64, RegistryError>;
    /// Events of a job with `seq > after`, in `seq` order, at most `limit` (0: no limit).
    async fn job_events(&self, job: &str, after: u64, limit: u32) -> Result<Vec<JobEvent>, RegistryError>;

    /// Stores a dataset file's record (its content is already in the artifact store). A taken id is
    /// `AlreadyExists`.
    async fn insert_file(&self, file: &FileRecord) -> Result<FileRecord, RegistryError>;
    /// One file, if it exists.
    async fn get_file(&self, id: &str) -> Result<Option<FileRecord>, RegistryError>;
    /// Files of one tenant or all, newest first (by `created_at`, then by id, both descending).
    async fn list_files(&self, tenant: Option<&str>) -> Result<Vec<FileRecord>, RegistryError>;
    /// Deletes a file's record and returns it; `ResourceNotFound` when there is none. Its content stays in
    /// the artifact store until a sweep finds no row that refers to it.
    async fn delete_file(&self, id: &str) -> Result<FileRecord, RegistryError>;
}

/// What `sql::FINISH_JOB` stores for a [`JobEnd`]: `metrics` `None` keeps the stored ones.
pub(crate) struct JobEndColumns<'a> {
    pub status: &'static str,
    pub result_version: Option<i64>,
    pub metrics: Option<&'a str>,
    pub error: Option<&'a str>,
}

impl JobEnd {
    /// The columns this end stores.
    pub(crate) fn columns(&self) -> JobEndColumns<'_> {
        match self {
            JobEnd::Succeeded { result_version, metrics } => JobEndColumns {
                status: JobStatus::Succeeded.as_str(),
                result_version: (*result_version).map(stored_integer),
                metrics: Some(metrics.as_str()),
                error: None,
            },
            JobEnd::Failed { error } => {
                JobEndColumns { status: JobStatus::Failed.as_str(), result_version: None, metrics: None, error: Some(error.as_str()) }
            }
            JobEnd::Cancelled => JobEndColumns { status: JobStatus::Cancelled.as_str(), result_version: None, metrics: None, error: None },
        }
    }
}

/// A count or version as the stores' signed 64-bit integers (a value beyond them is stored as the largest).
pub(crate) fn stored_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A limit of [`JobFilter`] or [`JobStore::job_events`] as SQL's `LIMIT`: 0 (no limit) as the largest.
pub(crate) fn limit_param(limit: u32) -> i64 {
    if limit == 0 { i64::MAX } else { i64::from(limit) }
}

/// `AlreadyExists` with `message` for a unique violation (an id that is taken), otherwise the database error.
pub(crate) fn taken_or_database_error(error: sqlx::Error, message: impl FnOnce() -> String) -> RegistryError {
    match error {
        sqlx::Error::Database(database) if database.is_unique_violation() => RegistryError::AlreadyExists(message()),
        other => other.into(),
    }
}

/// No job `id`.
pub(crate) fn job_not_found(id: &str) -> RegistryError {
    RegistryError::ResourceNotFound(format!("job '{id}' not found"))
}

/// No file `id`.
pub(crate) fn file_not_found(id: &str) -> RegistryError {
    RegistryError::ResourceNotFound(format!("file '{id}' not found"))
}

/// The statements both SQL stores run, with numbered parameters: PostgreSQL's `$n`, which SQLite reads as
/// the named parameter `$n` (one slot however often it appears) and sqlx binds by its number. Rows are
/// read by column name, so `*` is safe. `cancel_requested` is BOOLEAN in PostgreSQL and 0/1 in SQLite;
/// `TRUE` and `FALSE` mean the same in both.
pub(crate) mod sql {
    /// Inserts a queued job: $1 id, $2 tenant, $3 kind, $4 model, $5 params, $6 training_file,
    /// $7 parent_version, $8 created_at.
    pub(crate) const INSERT_JOB: &str = "INSERT INTO jobs (id, tenant, kind, model, params, training_file, parent_version, status, \
         progress, result_version, metrics, error, cancel_requested, attempts, lease_owner, lease_until, created_at, started_at, \
         finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', 0.0, NULL, '{}', NULL, FALSE, 0, NULL, NULL, $8, NULL, NULL) \
         RETURNING *";

    /// One job: $1 id.
    pub(crate) const GET_JOB: &str = "SELECT * FROM jobs WHERE id = $1";

    /// Jobs, newest first: $1 tenant or NULL, $2 status or NULL, $3 limit.
    pub(crate) const LIST_JOBS: &str = "SELECT * FROM jobs WHERE (CAST($1 AS TEXT) IS NULL OR tenant = $1) \
         AND (CAST($2 AS TEXT) IS NULL OR status = $2) ORDER BY created_at DESC, id DESC LIMIT $3";

    /// Ends as cancelled every running job whose lease ended and whose cancellation was asked for: $1 now.
    /// A claim runs it first, so such a job is ended instead of taken.
    pub(crate) const END_CANCELLED_EXPIRED_JOBS: &str = "UPDATE jobs SET status = 'cancelled', finished_at = $1, \
         lease_owner = NULL, lease_until = NULL WHERE status = 'running' AND cancel_requested = TRUE AND lease_until < $1";

    /// The claim, with `$row_lock` after the subquery's LIMIT: $1 owner, $2 now, $3 lease_until. The
    /// subquery picks the oldest claimable job; the outer condition checks it again on the row the UPDATE
    /// sees, so a job another claim took in between is left alone (the claim then returns no row).
    macro_rules! claim_job_sql {
        ($row_lock:literal) => {
            concat!(
                "UPDATE jobs SET status = 'running', lease_owner = $1, lease_until = $3, attempts = attempts + 1, \
                 started_at = COALESCE(started_at, $2) \
                 WHERE id = (SELECT id FROM jobs \
                 WHERE cancel_requested = FALSE AND (status = 'queued' OR (status = 'running' AND lease_until < $2)) \
                 ORDER BY created_at, id LIMIT 1",
                $row_lock,
                ") AND cancel_requested = FALSE AND (status = 'queued' OR (status = 'running' AND lease_until < $2)) \
                 RETURNING *"
            )
        };
    }

    /// `claim_job_sql!` for SQLite, which runs a write statement under its one write lock: no other
    /// claim can come between the subquery and the update.
    pub(crate) const CLAIM_JOB_SQLITE: &str = claim_job_sql!("");

    /// `claim_job_sql!` for PostgreSQL: the subquery locks the row it picks and skips rows other claims
    /// hold, so concurrent claims take different jobs instead of queueing on one row and finding it taken.
    pub(crate) const CLAIM_JOB_POSTGRES: &str = claim_job_sql!(" FOR UPDATE SKIP LOCKED");

    /// Renews a held lease: $1 id, $2 owner, $3 progress, $4 lease_until.
    pub(crate) const RENEW_JOB: &str = "UPDATE jobs SET progress = $3, lease_until = $4 \
         WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING *";

    /// Hands a held job back: $1 id, $2 owner.
    pub(crate) const RELEASE_JOB: &str = "UPDATE jobs SET lease_until = 0, lease_owner = NULL, attempts = attempts - 1 \
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'";

    /// Ends a held job: $1 id, $2 owner, $3 status, $4 now, $5 result_version, $6 metrics (NULL keeps
    /// them), $7 error.
    pub(crate) const FINISH_JOB: &str = "UPDATE jobs SET status = $3, finished_at = $4, lease_owner = NULL, lease_until = NULL, \
         progress = CASE WHEN $3 = 'succeeded' THEN 1.0 ELSE progress END, result_version = $5, \
         metrics = COALESCE($6, metrics), error = $7 WHERE id = $1 AND lease_owner = $2 AND status = 'running'";

    /// Cancels: a queued job at once, a running one by asking; a finished one is rewritten unchanged (every
    /// right-hand side reads the row as it was). $1 id, $2 now.
    pub(crate) const CANCEL_JOB: &str = "UPDATE jobs SET \
         status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, \
         finished_at = CASE WHEN status = 'queued' THEN $2 ELSE finished_at END, \
         cancel_requested = CASE WHEN status = 'running' THEN TRUE ELSE cancel_requested END \
         WHERE id = $1 RETURNING *";

    /// Appends an event: $1 job, $2 at_ms, $3 level, $4 message, $5 data; returns its seq.
    pub(crate) const APPEND_JOB_EVENT: &str =
        "INSERT INTO job_events (job, at_ms, level, message, data) VALUES ($1, $2, $3, $4, $5) RETURNING seq";

    /// A job's events after a seq: $1 job, $2 after, $3 limit.
    pub(crate) const JOB_EVENTS: &str = "SELECT * FROM job_events WHERE job = $1 AND seq > $2 ORDER BY seq LIMIT $3";

    /// Inserts a file: $1 id, $2 tenant, $3 filename, $4 purpose, $5 bytes, $6 sha256, $7 rows, $8 columns,
    /// $9 created_at.
    pub(crate) const INSERT_FILE: &str = "INSERT INTO files (id, tenant, filename, purpose, bytes, sha256, row_count, \
         column_names, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *";

    /// One file: $1 id.
    pub(crate) const GET_FILE: &str = "SELECT * FROM files WHERE id = $1";

    /// Files, newest first: $1 tenant or NULL.
    pub(crate) const LIST_FILES: &str =
        "SELECT * FROM files WHERE (CAST($1 AS TEXT) IS NULL OR tenant = $1) ORDER BY created_at DESC, id DESC";

    /// Deletes a file: $1 id.
    pub(crate) const DELETE_FILE: &str = "DELETE FROM files WHERE id = $1 RETURNING *";

    /// The sha256 of every stored file a row refers to: versions' model files and dataset files.
    pub(crate) const REFERENCED_ARTIFACTS: &str = "SELECT sha256 FROM versions UNION SELECT sha256 FROM files";

    /// A row when a version or a dataset file refers to $1 (a sha256).
    pub(crate) const ARTIFACT_IN_USE: &str =
        "SELECT 1 FROM versions WHERE sha256 = $1 UNION ALL SELECT 1 FROM files WHERE sha256 = $1 LIMIT 1";
}

#[cfg(test)]
mod tests {
    use super::{JobEnd, JobStatus, limit_param, sql};

    #[test]
    fn statuses_round_trip_and_only_ended_ones_are_final() {
        let all = [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled];
        for status in all {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_string(&status).unwrap(), format!("\"{}\"", status.as_str()));
        }
        assert_eq!(JobStatus::parse("paused"), None);
        assert_eq!(all.map(JobStatus::is_final), [false, false, true, true, true]);
    }

    #[test]
    fn an_end_stores_only_what_it_has() {
        let succeeded = JobEnd::Succeeded { result_version: Some(3), metrics: "{}".into() };
        let columns = succeeded.columns();
        assert_eq!((columns.status, columns.result_version, columns.metrics, columns.error), ("succeeded", Some(3), Some("{}"), None));
        let failed = JobEnd::Failed { error: "out of memory".into() };
        let columns = failed.columns();
        assert_eq!((columns.status, columns.result_version, columns.metrics), ("failed", None, None));
        assert_eq!(columns.error, Some("out of memory"));
        assert_eq!(JobEnd::Cancelled.columns().status, "cancelled");
        assert_eq!((limit_param(0), limit_param(5)), (i64::MAX, 5));
    }

    #[test]
    fn the_claims_differ_only_in_the_row_lock() {
        assert_eq!(sql::CLAIM_JOB_POSTGRES.replace(" FOR UPDATE SKIP LOCKED", ""), sql::CLAIM_JOB_SQLITE);
        assert!(sql::CLAIM_JOB_SQLITE.contains("LIMIT 1) AND cancel_requested = FALSE"), "{}", sql::CLAIM_JOB_SQLITE);
    }
}
