-- A workspace may narrow the hosts a connection type's plugin may call (JSON array; NULL: every
-- host the plugin's manifest lists).
ALTER TABLE workspace_connection_types ADD COLUMN outbound_hosts TEXT;
