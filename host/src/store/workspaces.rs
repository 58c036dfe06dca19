//! Workspaces and their task-number counter.

use crate::domain::ids::WorkspaceId;
use crate::domain::users::Workspace;

use super::{Conn, StoreError};

/// Inserts a workspace.
pub async fn insert(conn: &mut Conn, workspace: &Workspace) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO workspaces (id, name, next_task_number, created_at) VALUES ($1, $2, 1, $3)")
        .bind(workspace.id.as_str())
        .bind(&workspace.name)
        .bind(workspace.created_at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// The workspace with `id`.
pub async fn get(conn: &mut Conn, id: &WorkspaceId) -> Result<Option<Workspace>, StoreError> {
    Ok(
        sqlx::query_as("SELECT id, name, created_at FROM workspaces WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// Takes the workspace's next `count` task short numbers and returns the first (call in the
/// transaction that gives the tasks their numbers, so a rollback gives the numbers back).
pub async fn take_task_numbers(conn: &mut Conn, id: &WorkspaceId, count: i64) -> Result<i64, StoreError> {
    let first: i64 = sqlx::query_scalar(
        "UPDATE workspaces SET next_task_number = next_task_number + $2 WHERE id = $1 RETURNING next_task_number - $2",
    )
    .bind(id.as_str())
    .bind(count)
    .fetch_one(conn)
    .await?;
    Ok(first)
}
