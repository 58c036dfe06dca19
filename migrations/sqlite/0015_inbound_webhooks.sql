-- Provider webhooks (contract 0.1.2, `inbound`). A connection's endpoint accepts requests once its
-- plugin opened it: `spec` (JSON) says how signatures are checked and events routed.
CREATE TABLE inbound_endpoints (
    connection_id TEXT PRIMARY KEY REFERENCES agent_connections (id),
    spec          TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Which session events with a route key go to (set by the plugin's `route`).
CREATE TABLE inbound_routes (
    connection_id TEXT NOT NULL REFERENCES agent_connections (id),
    route_key     TEXT NOT NULL,
    session_id    TEXT NOT NULL REFERENCES agent_sessions (id),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (connection_id, route_key)
);

-- Every verified event, once per provider event id (the deduplication key). `session_id` is NULL
-- while no session has routed its key. Rows older than the retention window are deleted.
CREATE TABLE inbound_events (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES agent_connections (id),
    event_id      TEXT NOT NULL,
    route_key     TEXT,
    session_id    TEXT,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    headers       TEXT NOT NULL,
    body          BLOB NOT NULL,
    received_at   BIGINT NOT NULL,
    UNIQUE (connection_id, event_id)
);
CREATE INDEX inbound_events_waiting ON inbound_events (connection_id, route_key) WHERE session_id IS NULL;
CREATE INDEX inbound_events_received ON inbound_events (received_at);
