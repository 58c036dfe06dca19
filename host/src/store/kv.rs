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

/// Bytes stored by `connection` (keys and values, counted in bytes, not characters), for its
/// quota. Locks the connection's count until the transaction ends (PostgreSQL), so concurrent kv
/// writes of one connection take turns and each sees the others' sizes.
pub async fn lock_usage(conn: &mut Conn, connection: &ConnectionId) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO plugin_kv_usage (connection_id, bytes) VALUES ($1, 0) \
         ON CONFLICT (connection_id) DO UPDATE SET bytes = plugin_kv_usage.bytes RETURNING bytes",
    )
    .bind(connection.as_str())
    .fetch_one(conn)
    .await?)
}

/// Records that `connection` now stores `bytes` in kv (after [`lock_usage`] in the same transaction).
pub async fn set_usage(conn: &mut Conn, connection: &ConnectionId, bytes: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE plugin_kv_usage SET bytes = $2 WHERE connection_id = $1")
        .bind(connection.as_str())
        .bind(bytes)
        .execute(conn)
        .await?;
    Ok(())
}

/// The size in bytes of `key` and its value, if stored.
pub async fn stored_size(conn: &mut Conn, connection: &ConnectionId, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(OCTET_LENGTH(key) + OCTET_LENGTH(value) AS BIGINT) FROM plugin_kv WHERE connection_id = $1 AND key = $2",
    )
    .bind(connection.as_str())
    .bind(key)
    .fetch_optional(conn)
    .await?)
}
