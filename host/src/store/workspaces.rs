//! Workspaces and their task-number counter.

use crate::domain::ids::{TaskId, WorkspaceId};
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

/// Gives `tasks` (in order) the workspace's next short numbers and returns the first: on
/// PostgreSQL in one statement (the ids as a [`super::json_rows`] array), else as
/// [`take_task_numbers`] and [`super::tasks::set_short_numbers`]. Call in the transaction that
/// inserted the tasks, so a rollback gives the numbers back.
pub async fn number_tasks(conn: &mut Conn, id: &WorkspaceId, tasks: &[TaskId]) -> Result<i64, StoreError> {
    if !conn.is_postgres() {
        let first = take_task_numbers(conn, id, tasks.len() as i64).await?;
        let given: Vec<(TaskId, i64)> = tasks.iter().cloned().zip(first..).collect();
        super::tasks::set_short_numbers(conn, &given).await?;
        return Ok(first);
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH counter AS (\
                UPDATE workspaces SET next_task_number = next_task_number + $2 WHERE id = $1 \
                RETURNING next_task_number - $2 AS first), \
             given AS (\
                SELECT task.id, counter.first + task.place - 1 AS number \
                FROM counter, json_array_elements_text($3::json) WITH ORDINALITY AS task(id, place)), \
             numbered AS (UPDATE tasks SET short_number = given.number FROM given \
                WHERE tasks.id = given.id AND tasks.id = ANY ({})) \
             SELECT first FROM counter",
            super::json_rows::keys_sql(3, None)
        )
    });
    let ids: Vec<&str> = tasks.iter().map(TaskId::as_str).collect();
    let first: i64 = sqlx::query_scalar(&SQL)
        .bind(id.as_str())
        .bind(tasks.len() as i64)
        .bind(super::json_rows::encode(&ids)?)
        .fetch_one(conn)
        .await?;
    Ok(first)
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
