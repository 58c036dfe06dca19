//! Connector setup codes, stored by digest.

use crate::domain::ids::{UserId, WorkspaceId};
use crate::domain::time::Timestamp;

use super::{Conn, StoreError};

/// A setup code (never the code itself).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SetupCode {
    pub id: String,
    pub workspace_id: WorkspaceId,
    pub bot_id: UserId,
    pub expires_at: Timestamp,
    pub claimed_at: Option<Timestamp>,
}

/// Stores a new code under its digest.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut Conn,
    id: &str,
    workspace: &WorkspaceId,
    bot: &UserId,
    digest: &str,
    expires_at: Timestamp,
    created_by: &UserId,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO connector_setup_codes (id, workspace_id, bot_id, code_digest, expires_at, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(workspace.as_str())
    .bind(bot.as_str())
    .bind(digest)
    .bind(expires_at.millis())
    .bind(created_by.as_str())
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// The code whose digest is `digest`.
pub async fn find_by_digest(conn: &mut Conn, digest: &str) -> Result<Option<SetupCode>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, workspace_id, bot_id, expires_at, claimed_at FROM connector_setup_codes WHERE code_digest = $1",
    )
    .bind(digest)
    .fetch_optional(conn)
    .await?)
}

/// Marks a code claimed; `false` if someone claimed it first.
pub async fn mark_claimed(conn: &mut Conn, id: &str, at: Timestamp) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE connector_setup_codes SET claimed_at = $2 WHERE id = $1 AND claimed_at IS NULL")
        .bind(id)
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
