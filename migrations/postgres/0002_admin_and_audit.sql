-- Workspace administration (connection types, bot lifecycle, setup codes) and the audit trail.

-- Admin choices of which connection types a workspace may use. No row: the type's default
-- (built-in types enabled, others disabled).
CREATE TABLE workspace_connection_types (
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    connection_type TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('enabled', 'disabled')),
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, connection_type)
);

-- Deleted users keep their rows (history refers to them) but lose their handle and tokens.
ALTER TABLE users ADD COLUMN deleted_at BIGINT;

-- One-time codes a wrapper claims to set up a bot's self-hosted connection (wire contract §4).
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

-- The audit trail: one record per mutation, hash-chained (hash = SHA-256(prev_hash ‖ canonical
-- record)). Append-only: the triggers below refuse UPDATE, DELETE and TRUNCATE.
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

-- The head of the chain. Writers lock this row (UPDATE … RETURNING) inside their transaction, so
-- records get consecutive sequence numbers and each links to the one before, across replicas.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
