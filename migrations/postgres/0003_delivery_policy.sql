-- Durable delivery: endpoint health and manual redelivery.

-- Attempts made before the current retry schedule began (a manual redelivery starts a new one).
ALTER TABLE webhook_deliveries ADD COLUMN retry_base BIGINT NOT NULL DEFAULT 0;
CREATE INDEX webhook_deliveries_connection ON webhook_deliveries (connection_id, status, locked_until);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (connection_id, created_at);

-- The health of each connection's webhook endpoint, as admins see it. Counters reset when the
-- connection's URL changes.
CREATE TABLE webhook_endpoints (
    connection_id        TEXT PRIMARY KEY REFERENCES agent_connections (id),
    url                  TEXT NOT NULL,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    failed_deliveries    BIGINT NOT NULL DEFAULT 0,
    last_error           TEXT,
    last_attempt_at      BIGINT,
    last_success_at      BIGINT,
    disabled_at          BIGINT,
    disabled_reason      TEXT,
    updated_at           BIGINT NOT NULL
);
