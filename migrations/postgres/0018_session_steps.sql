-- Plugin calls made on each session's events (its start, model answers, timers, follow-ups):
-- the `steps` a native agent's session has taken, checked against its connection's budget.
ALTER TABLE agent_sessions ADD COLUMN plugin_calls BIGINT NOT NULL DEFAULT 0;
