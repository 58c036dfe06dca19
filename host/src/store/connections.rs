//! Agent connections and their webhook signing secrets.

use crate::domain::ids::{ConnectionId, SecretId, UserId, WorkspaceId};
use crate::domain::sessions::Connection;
use crate::domain::time::Timestamp;
use crate::secrets::Sealed;
use sqlx::{FromRow, Row};

use super::connection_types::Choice;
use super::{Conn, StoreError};

const COLUMNS: &str = "id, workspace_id, bot_id, connection_type, config, follow_ups, budgets, created_at, updated_at";

/// The connection type of every bot of `workspace` that has a connection: `(bot, type)`.
pub async fn types_of_bots(conn: &mut Conn, workspace: &WorkspaceId) -> Result<Vec<(String, String)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT bot_id, connection_type FROM agent_connections WHERE workspace_id = $1")
            .bind(workspace.as_str())
            .fetch_all(conn)
            .await?,
    )
}

/// Inserts a connection.
pub async fn insert(conn: &mut Conn, connection: &Connection) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_connections (id, workspace_id, bot_id, connection_type, config, follow_ups, budgets, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(connection.id.as_str())
    .bind(connection.workspace_id.as_str())
    .bind(connection.bot_id.as_str())
    .bind(&connection.connection_type)
    .bind(&connection.config)
    .bind(connection.follow_ups.as_deref())
    .bind(connection.budgets.as_deref())
    .bind(connection.created_at.millis())
    .bind(connection.updated_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// The connection of bot `bot`.
pub async fn for_bot(conn: &mut Conn, bot: &UserId) -> Result<Option<Connection>, StoreError> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM agent_connections WHERE bot_id = $1"))
            .bind(bot.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// The connection of bot `bot` with `workspace`'s explicit choice for its connection type, if
/// any, in one query (opening a session needs both).
pub async fn for_bot_with_choice(
    conn: &mut Conn,
    bot: &UserId,
    workspace: &WorkspaceId,
) -> Result<Option<(Connection, Option<Choice>)>, StoreError> {
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("c.{c}")).collect();
    let row = sqlx::query(&format!(
        "SELECT {}, wct.state AS wct_state, wct.outbound_hosts AS wct_hosts FROM agent_connections c \
         LEFT JOIN workspace_connection_types wct \
            ON wct.workspace_id = $2 AND wct.connection_type = c.connection_type \
         WHERE c.bot_id = $1",
        columns.join(", ")
    ))
    .bind(bot.as_str())
    .bind(workspace.as_str())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let connection = Connection::from_row(&row)?;
    let state: Option<String> = row.try_get("wct_state")?;
    let hosts: Option<String> = row.try_get("wct_hosts")?;
    let choice = state.map(|state| super::connection_types::choice(&state, hosts.as_deref()));
    Ok(Some((connection, choice)))
}

/// The connection `id`.
pub async fn get(conn: &mut Conn, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM agent_connections WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// Adds a sealed signing secret to a connection.
pub async fn insert_secret(
    conn: &mut Conn,
    connection: &ConnectionId,
    sealed: &Sealed,
    created_at: Timestamp,
) -> Result<SecretId, StoreError> {
    let id = SecretId::generate();
    sqlx::query(
        "INSERT INTO webhook_secrets (id, connection_id, secret, nonce, ciphertext, created_at) VALUES ($1, $2, '', $3, $4, $5)",
    )
    .bind(id.as_str())
    .bind(connection.as_str())
    .bind(sealed.nonce.clone())
    .bind(sealed.ciphertext.clone())
    .bind(created_at.millis())
    .execute(conn)
    .await?;
    Ok(id)
}

/// A signing secret as stored: sealed, or (rows from before sealing, until the host seals them
/// at start) plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredSecret {
    Sealed(Sealed),
    Plaintext(String),
}

/// The secrets that sign deliveries of `connection` at `now`, newest first.
pub async fn signing_secrets(
    conn: &mut Conn,
    connection: &ConnectionId,
    now: Timestamp,
) -> Result<Vec<StoredSecret>, StoreError> {
    let rows = sqlx::query(
        "SELECT secret, nonce, ciphertext FROM webhook_secrets WHERE connection_id = $1 \
         AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC, id DESC",
    )
    .bind(connection.as_str())
    .bind(now.millis())
    .fetch_all(conn)
    .await?;
    rows.iter().map(stored_secret).collect()
}

fn stored_secret(row: &sqlx::any::AnyRow) -> Result<StoredSecret, StoreError> {
    let nonce: Option<Vec<u8>> = row.try_get("nonce")?;
    let ciphertext: Option<Vec<u8>> = row.try_get("ciphertext")?;
    Ok(match (nonce, ciphertext) {
        (Some(nonce), Some(ciphertext)) => StoredSecret::Sealed(Sealed { nonce, ciphertext }),
        _ => StoredSecret::Plaintext(row.try_get("secret")?),
    })
}

/// Signing secrets still stored in plaintext: `(secret id, connection id, secret)`.
pub async fn plaintext_secrets(conn: &mut Conn) -> Result<Vec<(String, String, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, connection_id, secret FROM webhook_secrets WHERE ciphertext IS NULL AND secret <> ''",
    )
    .fetch_all(conn)
    .await?)
}

/// Replaces a plaintext signing secret by its sealed form.
pub async fn seal_secret(conn: &mut Conn, id: &str, sealed: &Sealed) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhook_secrets SET secret = '', nonce = $2, ciphertext = $3 WHERE id = $1")
        .bind(id)
        .bind(sealed.nonce.clone())
        .bind(sealed.ciphertext.clone())
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes a connection's config, follow-up mode and budgets.
pub async fn update_config(conn: &mut Conn, connection: &Connection) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE agent_connections SET config = $2, follow_ups = $3, budgets = $4, updated_at = $5 WHERE id = $1",
    )
    .bind(connection.id.as_str())
    .bind(&connection.config)
    .bind(connection.follow_ups.as_deref())
    .bind(connection.budgets.as_deref())
    .bind(connection.updated_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes every secret of `connection` that would sign past `at` stop signing at `at`; returns how
/// many were affected.
pub async fn retire_secrets(conn: &mut Conn, connection: &ConnectionId, at: Timestamp) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_secrets SET expires_at = $2 WHERE connection_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(connection.as_str())
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
