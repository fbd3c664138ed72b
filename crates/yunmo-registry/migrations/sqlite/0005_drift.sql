-- Frozen drift baselines, shared by replicas and kept across restarts: one per version. `settings` names the
-- drift settings and file they were made with (a baseline made otherwise is not used); `baseline` is JSON,
-- or empty after a reset (the replicas then collect a new one from their next requests).
CREATE TABLE drift_baselines (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    settings TEXT NOT NULL,
    baseline TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (model, version)
);
