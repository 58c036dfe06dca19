//! Per-connection plugin key-value state.

use crate::domain::ids::ConnectionId;
use crate::domain::time::Timestamp;

use super::{Conn, StoreError};

/// The value under `key`.
pub async fn get(conn: &mut Conn, connection: &ConnectionId, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT value FROM plugin_kv WHERE connection_id = $1 AND key = $2")
            .bind(connection.as_str())
            .bind(key)
            .fetch_optional(conn)
            .await?,
    )
}

/// Stores `value` under `key`.
pub async fn set(
    conn: &mut Conn,
    connection: &ConnectionId,
    key: &str,
    value: &[u8],
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO plugin_kv (connection_id, key, value, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (connection_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(connection.as_str())
    .bind(key)
    .bind(value.to_vec())
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes `key`.
pub async fn delete(conn: &mut Conn, connection: &ConnectionId, key: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM plugin_kv WHERE connection_id = $1 AND key = $2")
        .bind(connection.as_str())
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Bytes stored by `connection` (keys and values, counted in bytes, not characters), for its quota.
pub async fn usage(conn: &mut Conn, connection: &ConnectionId) -> Result<i64, StoreError> {
    let total: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(OCTET_LENGTH(key) + OCTET_LENGTH(value)), 0) AS BIGINT) FROM plugin_kv WHERE connection_id = $1",
    )
    .bind(connection.as_str())
    .fetch_one(conn)
    .await?;
    Ok(total.unwrap_or(0))
}
