-- Initial schema. Times are BIGINT milliseconds since the Unix epoch (UTC); ids are prefixed text;
-- JSON is TEXT. Booleans are avoided (nullable timestamps say when something happened instead), so
-- the same queries run on SQLite and PostgreSQL. Keep migrations/sqlite/ in step with this file.

CREATE TABLE workspaces (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    next_task_number BIGINT NOT NULL DEFAULT 1,
    created_at       BIGINT NOT NULL
);

-- People and bots.
CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    kind         TEXT NOT NULL CHECK (kind IN ('person', 'bot')),
    name         TEXT NOT NULL,
    handle       TEXT NOT NULL,
    email        TEXT,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    avatar_url   TEXT,
    disabled_at  BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, handle)
);

-- API tokens; only the SHA-256 digest of a token is stored.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    user_id      TEXT NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL,
    token_digest TEXT NOT NULL UNIQUE,
    scopes       TEXT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    last_used_ip TEXT,
    revoked_at   BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- A bot's agent connection: which plugin runs it, with which config.
CREATE TABLE agent_connections (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    bot_id          TEXT NOT NULL UNIQUE REFERENCES users (id),
    connection_type TEXT NOT NULL,
    config          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- Webhook signing secrets of a connection; the newest unexpired ones sign.
CREATE TABLE webhook_secrets (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES agent_connections (id),
    secret        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT
);
CREATE INDEX webhook_secrets_connection ON webhook_secrets (connection_id);

CREATE TABLE task_statuses (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name         TEXT NOT NULL,
    category     TEXT NOT NULL CHECK (category IN ('backlog', 'unstarted', 'started', 'completed', 'canceled')),
    position     BIGINT NOT NULL,
    UNIQUE (workspace_id, name)
);

CREATE TABLE tasks (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    short_number BIGINT NOT NULL,
    title        TEXT NOT NULL,
    description  TEXT NOT NULL,
    status_id    TEXT NOT NULL REFERENCES task_statuses (id),
    assignee_id  TEXT REFERENCES users (id),
    created_by   TEXT NOT NULL REFERENCES users (id),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (workspace_id, short_number)
);

CREATE TABLE task_comments (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    task_id      TEXT NOT NULL REFERENCES tasks (id),
    author_id    TEXT NOT NULL REFERENCES users (id),
    body         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX task_comments_task ON task_comments (task_id, created_at);

-- A task's own history: created, title/status/assignee changed. Comments and sessions have their
-- own tables and are merged in when the history is read.
CREATE TABLE task_events (
    id         TEXT PRIMARY KEY,
    task_id    TEXT NOT NULL REFERENCES tasks (id),
    actor_id   TEXT REFERENCES users (id),
    kind       TEXT NOT NULL,
    details    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id, created_at);

CREATE TABLE agent_sessions (
    id               TEXT PRIMARY KEY,
    workspace_id     TEXT NOT NULL REFERENCES workspaces (id),
    task_id          TEXT NOT NULL REFERENCES tasks (id),
    bot_id           TEXT NOT NULL REFERENCES users (id),
    connection_id    TEXT NOT NULL REFERENCES agent_connections (id),
    connection_type  TEXT NOT NULL,
    trigger_kind     TEXT NOT NULL CHECK (trigger_kind IN ('assigned', 'mentioned', 'automation')),
    trigger_actor_id TEXT REFERENCES users (id),
    comment_id       TEXT REFERENCES task_comments (id),
    status           TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'canceled')),
    status_message   TEXT,
    external_url     TEXT,
    external_label   TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    ended_at         BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX agent_sessions_task ON agent_sessions (task_id, created_at);
CREATE INDEX agent_sessions_bot ON agent_sessions (bot_id, status);

CREATE TABLE session_activities (
    id                  TEXT PRIMARY KEY,
    session_id          TEXT NOT NULL REFERENCES agent_sessions (id),
    activity_type       TEXT NOT NULL,
    body                TEXT NOT NULL,
    action              TEXT,
    parameter           TEXT,
    result              TEXT,
    provider_event_id   TEXT,
    provider_event_type TEXT,
    raw                 TEXT,
    idempotency_key     TEXT,
    source              TEXT NOT NULL CHECK (source IN ('api', 'plugin')),
    created_at          BIGINT NOT NULL
);
CREATE INDEX session_activities_session ON session_activities (session_id, id);
CREATE UNIQUE INDEX session_activities_idempotency ON session_activities (session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE session_status_changes (
    id              TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES agent_sessions (id),
    status          TEXT NOT NULL,
    message         TEXT,
    idempotency_key TEXT,
    source          TEXT NOT NULL CHECK (source IN ('api', 'plugin', 'host')),
    created_at      BIGINT NOT NULL
);
CREATE INDEX session_status_changes_session ON session_status_changes (session_id, id);
CREATE UNIQUE INDEX session_status_changes_idempotency ON session_status_changes (session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Durable background jobs (start a session, deliver a session event). A row exists while the job
-- is pending; a worker claims it by setting locked_until and deletes it when done.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    session_id   TEXT REFERENCES agent_sessions (id),
    payload      TEXT NOT NULL,
    run_at       BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at);

-- Signed webhook deliveries (the outbox) and their attempts.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    workspace_id    TEXT NOT NULL REFERENCES workspaces (id),
    connection_id   TEXT NOT NULL REFERENCES agent_connections (id),
    session_id      TEXT REFERENCES agent_sessions (id),
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    locked_until    BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_session ON webhook_deliveries (session_id);

CREATE TABLE webhook_attempts (
    id            TEXT PRIMARY KEY,
    delivery_id   TEXT NOT NULL REFERENCES webhook_deliveries (id),
    attempt       BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    status_code   BIGINT,
    latency_ms    BIGINT NOT NULL,
    response_body TEXT,
    error         TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);

-- Small per-connection plugin state.
CREATE TABLE plugin_kv (
    connection_id TEXT NOT NULL REFERENCES agent_connections (id),
    key           TEXT NOT NULL,
    value         BYTEA NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (connection_id, key)
);
