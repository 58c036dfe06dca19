//! Sealed connection secrets (see `crate::secrets`). Only ciphertext is stored.

use sqlx::Row;

use crate::domain::ids::ConnectionId;
use crate::domain::time::Timestamp;
use crate::secrets::Sealed;

use super::{Conn, StoreError};

/// A stored secret's name and when it was last set (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub updated_at: Timestamp,
}

/// The sealed value of secret `name` of `connection`.
pub async fn get(conn: &mut Conn, connection: &ConnectionId, name: &str) -> Result<Option<Sealed>, StoreError> {
    let row = sqlx::query("SELECT nonce, ciphertext FROM connection_secrets WHERE connection_id = $1 AND name = $2")
        .bind(connection.as_str())
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => Some(Sealed {
            nonce: row.try_get("nonce")?,
            ciphertext: row.try_get("ciphertext")?,
        }),
        None => None,
    })
}

/// Stores (or replaces) secret `name` of `connection`.
pub async fn put(
    conn: &mut Conn,
    connection: &ConnectionId,
    name: &str,
    sealed: &Sealed,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO connection_secrets (connection_id, name, nonce, ciphertext, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (connection_id, name) DO UPDATE SET nonce = excluded.nonce, \
         ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
    )
    .bind(connection.as_str())
    .bind(name)
    .bind(sealed.nonce.clone())
    .bind(sealed.ciphertext.clone())
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes secret `name` of `connection`; whether there was one.
pub async fn delete(conn: &mut Conn, connection: &ConnectionId, name: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM connection_secrets WHERE connection_id = $1 AND name = $2")
        .bind(connection.as_str())
        .bind(name)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Removes every secret of `connection` (its bot was deleted); how many there were.
pub async fn delete_all(conn: &mut Conn, connection: &ConnectionId) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM connection_secrets WHERE connection_id = $1")
        .bind(connection.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// The secrets set on `connection`, by name.
pub async fn list(conn: &mut Conn, connection: &ConnectionId) -> Result<Vec<SecretInfo>, StoreError> {
    let rows = sqlx::query("SELECT name, updated_at FROM connection_secrets WHERE connection_id = $1 ORDER BY name")
        .bind(connection.as_str())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(SecretInfo {
                name: row.try_get("name")?,
                updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
            })
        })
        .collect()
}
