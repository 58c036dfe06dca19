-- Bytes each connection keeps in kv (keys and values), kept up to date by every kv write in the
-- write's own transaction, so a quota check reads one row instead of summing every key (which
-- made a plugin filling its quota cost the database quadratic work).
CREATE TABLE plugin_kv_usage (
    connection_id TEXT PRIMARY KEY REFERENCES agent_connections (id),
    bytes         BIGINT NOT NULL
);
INSERT INTO plugin_kv_usage (connection_id, bytes)
    SELECT connection_id, SUM(OCTET_LENGTH(key) + OCTET_LENGTH(value)) FROM plugin_kv GROUP BY connection_id;
