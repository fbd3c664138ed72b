-- 2: multi-tenancy: tenants (with the 'default' one), API keys (hashes), usage events and the audit log, append-only.
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    limits TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO tenants (name, limits, created_at) VALUES ('default', '{}', strftime('%s', 'now'));
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name),
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    models TEXT,
    limits TEXT NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE usage_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    outcome TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 1,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    input_elements INTEGER NOT NULL,
    output_elements INTEGER NOT NULL,
    queue_ms INTEGER NOT NULL,
    compute_ms INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    cost REAL NOT NULL
);
CREATE INDEX usage_tenant_at ON usage_events(tenant, at_ms);
CREATE INDEX usage_key_at ON usage_events(key_id, at_ms);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    remote TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER usage_no_update BEFORE UPDATE ON usage_events BEGIN SELECT RAISE(ABORT, 'usage_events is append-only'); END;
CREATE TRIGGER usage_no_delete BEFORE DELETE ON usage_events BEGIN SELECT RAISE(ABORT, 'usage_events is append-only'); END;
