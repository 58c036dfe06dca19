//! One-time console sign-in links (`console_links`): stored as the SHA-256 of their code.

use crate::domain::ids::UserId;
use crate::domain::time::Timestamp;

use super::{Conn, StoreError};

/// Stores a link for `user` working until `expires_at`.
pub async fn insert(
    conn: &mut Conn,
    code_digest: &str,
    user: &UserId,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO console_links (code_digest, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4)")
        .bind(code_digest)
        .bind(user.as_str())
        .bind(expires_at.millis())
        .bind(now.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks the link used if it is unused and unexpired at `now`: whose it was (once only).
pub async fn redeem(conn: &mut Conn, code_digest: &str, now: Timestamp) -> Result<Option<UserId>, StoreError> {
    let user: Option<String> = sqlx::query_scalar(
        "UPDATE console_links SET used_at = $2 WHERE code_digest = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING user_id",
    )
    .bind(code_digest)
    .bind(now.millis())
    .fetch_optional(conn)
    .await?;
    Ok(user.map(UserId::from))
}
