-- The answer to every status request that carried an idempotency key, whether or not it changed the
-- status, so a repeated key answers with the original result whatever happened to the session since
-- (wire contract §2: connectors re-send their keys whenever a webhook is redelivered).
CREATE TABLE session_status_requests (
    session_id      TEXT NOT NULL REFERENCES agent_sessions (id),
    idempotency_key TEXT NOT NULL,
    status          TEXT NOT NULL,
    message         TEXT,
    changed         BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    PRIMARY KEY (session_id, idempotency_key)
);

-- Keys recorded by earlier hosts (only on changes) keep answering.
INSERT INTO session_status_requests (session_id, idempotency_key, status, message, changed, at)
SELECT session_id, idempotency_key, status, message, 1, created_at
FROM session_status_changes WHERE idempotency_key IS NOT NULL;
