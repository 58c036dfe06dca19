-- The delivery worker looks only at pending deliveries (due ones, and the leased ones it counts
-- per endpoint), so the indexes it reads hold only those: a delivery that was delivered or failed
-- leaves them. Marking a delivery delivered then adds entries to three indexes instead of six, and
-- a new delivery is entered in five instead of six (the two lease indexes became one).
DROP INDEX webhook_deliveries_due;
DROP INDEX webhook_deliveries_leased;
DROP INDEX webhook_deliveries_connection;
CREATE INDEX webhook_deliveries_pending_due ON webhook_deliveries (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_pending_leased ON webhook_deliveries (locked_until, connection_id) WHERE status = 'pending';
