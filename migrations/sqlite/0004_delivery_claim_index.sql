-- Leased deliveries per endpoint are counted at every claim.
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (status, locked_until);
