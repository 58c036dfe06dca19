-- The plugin version (wasm SHA-256) a session started on; its later events run on the same one.
ALTER TABLE agent_sessions ADD COLUMN plugin_sha256 TEXT;
