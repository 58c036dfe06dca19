-- Audit records are chained with HMAC-SHA256 under a key derived from the operator's secrets key
-- (outside the database) from this sequence number on; earlier records (written by hosts before
-- keying) keep their plain SHA-256 links. A fresh database is keyed from its first record.
ALTER TABLE audit_head ADD COLUMN keyed_from BIGINT NOT NULL DEFAULT 1;
UPDATE audit_head SET keyed_from = seq + 1;
