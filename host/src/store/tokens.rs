//! API tokens, stored by digest.

use crate::domain::ids::{TokenId, UserId, WorkspaceId};
use crate::domain::time::Timestamp;
use crate::domain::tokens::ApiToken;
use crate::domain::users::User;

use super::aliased::{self, USER};

use super::{Conn, StoreError};

const COLUMNS: &str =
    "id, workspace_id, user_id, name, scopes, expires_at, last_used_at, last_used_ip, revoked_at, created_at";

/// Inserts a token under its digest.
pub async fn insert(conn: &mut Conn, token: &ApiToken, digest: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO api_tokens (id, workspace_id, user_id, name, token_digest, scopes, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(token.id.as_str())
    .bind(token.workspace_id.as_str())
    .bind(token.user_id.as_str())
    .bind(&token.name)
    .bind(digest)
    .bind(token.scopes.to_stored())
    .bind(token.expires_at.map(Timestamp::millis))
    .bind(token.created_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// The token with `digest` and its user, in one query (every authenticated request asks).
pub async fn find_with_user(conn: &mut Conn, digest: &str) -> Result<Option<(ApiToken, User)>, StoreError> {
    use sqlx::FromRow;
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT t.id, t.workspace_id, t.user_id, t.name, t.scopes, t.expires_at, t.last_used_at, \
             t.last_used_ip, t.revoked_at, t.created_at, {USER} \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_digest = $1"
        )
    });
    let row = sqlx::query(SQL.as_str()).bind(digest).fetch_optional(conn).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let token = ApiToken::from_row(&row)?;
    Ok(aliased::user(&row)?.map(|user| (token, user)))
}

/// Records a use of the token (time and client address).
pub async fn touch(conn: &mut Conn, id: &TokenId, at: Timestamp, ip: Option<&str>) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_tokens SET last_used_at = $2, last_used_ip = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(at.millis())
        .bind(ip)
        .execute(conn)
        .await?;
    Ok(())
}

/// The token `id` of `workspace`.
pub async fn get(conn: &mut Conn, workspace: &WorkspaceId, id: &str) -> Result<Option<ApiToken>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// The tokens of `workspace` (of one user when `user` is given), newest first.
pub async fn list(conn: &mut Conn, workspace: &WorkspaceId, user: Option<&str>) -> Result<Vec<ApiToken>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_tokens WHERE workspace_id = $1 AND ($2 = '' OR user_id = $2) ORDER BY created_at DESC, id DESC"
    ))
    .bind(workspace.as_str())
    .bind(user.unwrap_or(""))
    .fetch_all(conn)
    .await?)
}

/// Revokes one token.
pub async fn revoke(conn: &mut Conn, id: &TokenId, at: Timestamp) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(id.as_str())
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes every token of `user`; returns how many were live.
pub async fn revoke_all_of(conn: &mut Conn, user: &UserId, at: Timestamp) -> Result<u64, StoreError> {
    let done = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user.as_str())
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Tokens of `user` that still work at `now` (not revoked, not expired).
pub async fn count_live(conn: &mut Conn, user: &UserId, now: Timestamp) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(user.as_str())
    .bind(now.millis())
    .fetch_one(conn)
    .await?)
}
