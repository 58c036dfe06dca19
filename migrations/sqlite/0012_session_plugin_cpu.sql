-- CPU time the session's plugin calls used, in microseconds (shown on the session card).
ALTER TABLE agent_sessions ADD COLUMN plugin_cpu_micros BIGINT NOT NULL DEFAULT 0;
