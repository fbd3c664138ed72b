-- Background jobs (fine-tuning and other long work), their event logs, and uploaded dataset files. Times are
-- Unix milliseconds. A worker claims a job by setting `lease_owner` and `lease_until` and renews the lease
-- while it works; `cancel_requested` (0 or 1) asks it to stop. `metrics` is a JSON object, `params` JSON,
-- `column_names` a JSON array. A dataset file's content is in the artifact store under its sha256, which
-- keeps it from the sweep.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    params TEXT NOT NULL,
    training_file TEXT,
    parent_version INTEGER,
    status TEXT NOT NULL,
    progress REAL NOT NULL,
    result_version INTEGER,
    metrics TEXT NOT NULL,
    error TEXT,
    cancel_requested INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
CREATE INDEX jobs_status_created ON jobs(status, created_at);
CREATE TABLE job_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX job_events_job_seq ON job_events(job, seq);
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    column_names TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX files_sha256 ON files(sha256);
