//! Fingerprints of the operator's keys, to refuse a host started with the wrong one.

use crate::domain::time::Timestamp;

use super::{Conn, StoreError};

/// The fingerprint recorded for key `name`, if any.
pub async fn fingerprint(conn: &mut Conn, name: &str) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT fingerprint FROM host_keys WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?)
}

/// Records the fingerprint of key `name` (the first host to start with it).
pub async fn record(conn: &mut Conn, name: &str, fingerprint: &str, at: Timestamp) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO host_keys (name, fingerprint, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(fingerprint)
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(())
}
