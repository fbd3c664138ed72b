-- Stored responses of OpenAI's Responses API, per tenant, until `expires_at` (ms): `body` is the response
-- object (JSON), `input` the whole conversation it answered, as input items (JSON), which a later request's
-- `previous_response_id` continues.
CREATE TABLE responses (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    model TEXT NOT NULL,
    body TEXT NOT NULL,
    input TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX responses_expiry ON responses (expires_at);
