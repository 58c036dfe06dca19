-- What an @mention of a bot does while its latest session on the task is open: `continue` it
-- (the plugin gets a follow-up event) or open a `newSession`. NULL: the connection type's default
-- (continue when its plugin handles follow-ups).
ALTER TABLE agent_connections ADD COLUMN follow_ups TEXT;
