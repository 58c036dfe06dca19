-- Native agents (`model` capability): what each session's model calls used, checked against the
-- connection's budgets before every call.
CREATE TABLE session_model_usage (
    session_id    TEXT PRIMARY KEY REFERENCES agent_sessions (id),
    calls         BIGINT NOT NULL,
    input_tokens  BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- Per-session budgets an admin sets on a connection (JSON: modelCalls, tokens, wallSeconds);
-- NULL: the host's defaults.
ALTER TABLE agent_connections ADD COLUMN budgets TEXT;
