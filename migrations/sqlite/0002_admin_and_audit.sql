-- Workspace administration and the audit trail (SQLite). Keep in step with
-- migrations/postgres/0002_admin_and_audit.sql, which explains each table.

CREATE TABLE workspace_connection_types (
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    connection_type TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('enabled', 'disabled')),
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, connection_type)
);

ALTER TABLE users ADD COLUMN deleted_at BIGINT;

CREATE TABLE connector_setup_codes (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    bot_id       TEXT NOT NULL REFERENCES users (id),
    code_digest  TEXT NOT NULL UNIQUE,
    expires_at   BIGINT NOT NULL,
    claimed_at   BIGINT,
    created_by   TEXT NOT NULL REFERENCES users (id),
    created_at   BIGINT NOT NULL
);

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    at          BIGINT NOT NULL,
    workspace_id TEXT,
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('person', 'bot', 'plugin', 'system')),
    actor_id    TEXT,
    token_id    TEXT,
    session_id  TEXT,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT,
    request_id  TEXT,
    ip          TEXT,
    user_agent  TEXT,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, seq);

CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed');
END;
