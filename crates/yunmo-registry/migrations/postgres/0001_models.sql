-- 1: models and their versions.
CREATE TABLE models (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    task TEXT NOT NULL,
    labels TEXT NOT NULL,
    metadata TEXT NOT NULL,
    version_policy TEXT NOT NULL,
    next_version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    tenant TEXT NOT NULL DEFAULT 'default',
    sharing TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE versions (
    model_id BIGINT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    signature TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    tokenizer TEXT,
    PRIMARY KEY (model_id, version)
);
CREATE INDEX versions_sha256 ON versions(sha256);
