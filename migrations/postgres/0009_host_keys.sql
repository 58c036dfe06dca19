-- Fingerprints of the operator's keys (SHA-256 of the key, domain-separated): a host started with
-- another key than the one this database's secrets were sealed with refuses to start.
CREATE TABLE host_keys (
    name        TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
