-- Frozen drift baselines, shared by replicas and kept across restarts: one per version. `settings` names the
-- drift settings and file they were made with (a baseline made otherwise is not used); `baseline` is JSON,
-- or empty after a reset (the replicas then collect a new one from their next requests). Changes are
-- announced on yunmo_changes like the other shared tables.
CREATE TABLE drift_baselines (
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    settings TEXT NOT NULL,
    baseline TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TRIGGER drift_baselines_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON drift_baselines
    FOR EACH STATEMENT EXECUTE FUNCTION yunmo_notify_change();
