-- Webhook signing secrets are sealed under the operator's key like connection secrets; the host
-- seals rows written before this migration at start and blanks their plaintext column.
ALTER TABLE webhook_secrets ADD COLUMN nonce BYTEA;
ALTER TABLE webhook_secrets ADD COLUMN ciphertext BYTEA;
