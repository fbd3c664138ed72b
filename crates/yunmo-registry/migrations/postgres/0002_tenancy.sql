-- 2: multi-tenancy: tenants (with the 'default' one), API keys (hashes), usage events and the audit log, append-only.
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    limits TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO tenants (name, limits, created_at) VALUES ('default', '{}', extract(epoch FROM now())::BIGINT);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name),
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    models TEXT,
    limits TEXT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE usage_events (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    version BIGINT NOT NULL,
    protocol TEXT NOT NULL,
    outcome TEXT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 1,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    input_elements BIGINT NOT NULL,
    output_elements BIGINT NOT NULL,
    queue_ms BIGINT NOT NULL,
    compute_ms BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    cost DOUBLE PRECISION NOT NULL
);
CREATE INDEX usage_tenant_at ON usage_events(tenant, at_ms);
CREATE INDEX usage_key_at ON usage_events(key_id, at_ms);
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    remote TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE FUNCTION yunmo_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION yunmo_append_only();
CREATE TRIGGER usage_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON usage_events
    FOR EACH STATEMENT EXECUTE FUNCTION yunmo_append_only();
