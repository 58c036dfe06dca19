//! People and bots.

use crate::domain::ids::{UserId, WorkspaceId};
use crate::domain::time::Timestamp;
use crate::domain::users::{User, UserKind};

use super::{Conn, StoreError, conflict_or};

const COLUMNS: &str =
    "id, workspace_id, kind, name, handle, email, role, avatar_url, disabled_at, deleted_at, created_at, updated_at";

/// Inserts a user; a taken handle is a [`StoreError::Conflict`].
pub async fn insert(conn: &mut Conn, user: &User) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO users (id, workspace_id, kind, name, handle, email, role, avatar_url, disabled_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(user.id.as_str())
    .bind(user.workspace_id.as_str())
    .bind(user.kind.as_str())
    .bind(&user.name)
    .bind(&user.handle)
    .bind(user.email.as_deref())
    .bind(user.role.as_str())
    .bind(user.avatar_url.as_deref())
    .bind(user.disabled_at.map(Timestamp::millis))
    .bind(user.created_at.millis())
    .bind(user.updated_at.millis())
    .execute(conn)
    .await
    .map_err(conflict_or)?;
    Ok(())
}

/// The user `id` of workspace `workspace`.
pub async fn get(conn: &mut Conn, workspace: &WorkspaceId, id: &str) -> Result<Option<User>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// The user `id`, whatever the workspace (for internal lookups by a trusted id).
pub async fn get_any(conn: &mut Conn, id: &UserId) -> Result<Option<User>, StoreError> {
    Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?)
}

/// The user of `workspace` with `handle` (lowercase, without `@`).
pub async fn by_handle(conn: &mut Conn, workspace: &WorkspaceId, handle: &str) -> Result<Option<User>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE workspace_id = $1 AND handle = $2"
    ))
    .bind(workspace.as_str())
    .bind(handle)
    .fetch_optional(conn)
    .await?)
}

/// The people with `handle` in any workspace (the operator's tools name a person by handle).
pub async fn people_by_handle(conn: &mut Conn, handle: &str) -> Result<Vec<User>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE handle = $1 AND kind = 'person' AND deleted_at IS NULL ORDER BY created_at"
    ))
    .bind(handle)
    .fetch_all(conn)
    .await?)
}

/// The bots of `workspace` whose handles are in `handles`, in that order.
pub async fn bots_by_handle(
    conn: &mut Conn,
    workspace: &WorkspaceId,
    handles: &[String],
) -> Result<Vec<User>, StoreError> {
    let mut bots = Vec::new();
    // Mentions per comment are few; one indexed lookup each keeps the SQL portable.
    for handle in handles {
        bots.extend(
            by_handle(&mut *conn, workspace, handle)
                .await?
                .filter(|u| u.kind == UserKind::Bot),
        );
    }
    Ok(bots)
}

/// Users of `workspace`, people first then bots, each by name; optionally one kind only.
pub async fn list(conn: &mut Conn, workspace: &WorkspaceId, kind: Option<UserKind>) -> Result<Vec<User>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users WHERE workspace_id = $1 AND deleted_at IS NULL AND ($2 = '' OR kind = $2) ORDER BY kind DESC, name, id"
    ))
    .bind(workspace.as_str())
    .bind(kind.map(UserKind::as_str).unwrap_or(""))
    .fetch_all(conn)
    .await?)
}

/// Users by id (for naming authors and actors); unknown ids are skipped. One query per
/// [`MANY_CHUNK`] ids, however many there are.
pub async fn get_many(conn: &mut Conn, ids: &[UserId]) -> Result<Vec<User>, StoreError> {
    let mut users = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MANY_CHUNK) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id IN ({})", placeholders.join(", "));
        let mut query = sqlx::query_as(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        users.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(users)
}

/// Ids per query of [`get_many`] (below both backends' limits on bound parameters).
const MANY_CHUNK: usize = 500;

/// Writes a user's name, handle and avatar; a taken handle is a [`StoreError::Conflict`].
pub async fn update_profile(conn: &mut Conn, user: &User) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET name = $2, handle = $3, avatar_url = $4, updated_at = $5 WHERE id = $1")
        .bind(user.id.as_str())
        .bind(&user.name)
        .bind(&user.handle)
        .bind(user.avatar_url.as_deref())
        .bind(user.updated_at.millis())
        .execute(conn)
        .await
        .map_err(conflict_or)?;
    Ok(())
}

/// Writes whether (since when) a user is disabled.
pub async fn set_disabled(conn: &mut Conn, user: &User) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET disabled_at = $2, updated_at = $3 WHERE id = $1")
        .bind(user.id.as_str())
        .bind(user.disabled_at.map(Timestamp::millis))
        .bind(user.updated_at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a user deleted.
pub async fn mark_deleted(conn: &mut Conn, id: &UserId, at: Timestamp) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET deleted_at = $2, updated_at = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(())
}
