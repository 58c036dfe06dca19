-- Connection secrets (provider API keys), sealed with AES-256-GCM under the operator's key. The
-- associated data binds each ciphertext to its connection and name, so rows cannot be swapped.
CREATE TABLE connection_secrets (
    connection_id TEXT NOT NULL REFERENCES agent_connections (id),
    name          TEXT NOT NULL,
    nonce         BYTEA NOT NULL,
    ciphertext    BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (connection_id, name)
);
