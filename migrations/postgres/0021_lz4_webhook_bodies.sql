-- Webhook bodies (a session's start carries its task, ~2–5 KB of JSON) are compressed when their
-- row passes PostgreSQL's 2 KB TOAST threshold. The default method, pglz, clears a 16 KB history
-- table for every value it compresses; under load that was ~4 % of the box's CPU. lz4 compresses
-- JSON about as well at a fraction of the cost. Servers built without lz4 keep pglz.
DO $$
BEGIN
    ALTER TABLE webhook_deliveries ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4; webhook bodies stay compressed with pglz';
END
$$;
