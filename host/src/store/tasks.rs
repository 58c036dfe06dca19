//! Tasks, task statuses, comments and task history events.

use crate::domain::ids::{CommentId, TaskId, WorkspaceId};
use crate::domain::tasks::{Comment, Task, TaskEvent, TaskRef, TaskStatus};

use super::{Conn, StoreError};

const TASK_COLUMNS: &str =
    "id, workspace_id, short_number, title, description, status_id, assignee_id, created_by, created_at, updated_at";
const COMMENT_COLUMNS: &str = "id, workspace_id, task_id, author_id, body, created_at";

/// Inserts a task status.
pub async fn insert_status(conn: &mut Conn, status: &TaskStatus) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO task_statuses (id, workspace_id, name, category, position) VALUES ($1, $2, $3, $4, $5)")
        .bind(status.id.as_str())
        .bind(status.workspace_id.as_str())
        .bind(&status.name)
        .bind(status.category.as_str())
        .bind(status.position)
        .execute(conn)
        .await?;
    Ok(())
}

/// The statuses of `workspace` in board order.
///
/// A workspace's statuses are written once, when it is created, and never change (there is no
/// way to edit them), so they are read from the database once per process and kept: they are read
/// by most task requests (the default status, every task view). Should statuses become editable,
/// this memo must go (or be invalidated across hosts).
pub async fn statuses(conn: &mut Conn, workspace: &WorkspaceId) -> Result<Vec<TaskStatus>, StoreError> {
    if let Some(kept) = status_memo::get(workspace) {
        return Ok(kept.to_vec());
    }
    let statuses: Vec<TaskStatus> = sqlx::query_as(
        "SELECT id, workspace_id, name, category, position FROM task_statuses WHERE workspace_id = $1 ORDER BY position, id",
    )
    .bind(workspace.as_str())
    .fetch_all(conn)
    .await?;
    status_memo::keep(workspace, &statuses);
    Ok(statuses)
}

/// The statuses of `workspace` if this process keeps them already (see [`statuses`]): no read.
pub fn kept_statuses(workspace: &WorkspaceId) -> Option<std::sync::Arc<[TaskStatus]>> {
    status_memo::get(workspace)
}

/// The status `id` of `workspace`.
pub async fn status(conn: &mut Conn, workspace: &WorkspaceId, id: &str) -> Result<Option<TaskStatus>, StoreError> {
    Ok(statuses(conn, workspace)
        .await?
        .into_iter()
        .find(|status| status.id.as_str() == id))
}

/// The process's memo of workspace statuses (see [`statuses`]).
mod status_memo {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, Mutex};

    use crate::domain::ids::WorkspaceId;
    use crate::domain::tasks::TaskStatus;

    /// Workspaces kept at most; past it the memo starts over (a read costs one query again).
    const WORKSPACES: usize = 10_000;

    type Memo = HashMap<WorkspaceId, Arc<[TaskStatus]>>;
    static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(Mutex::default);

    pub(super) fn get(workspace: &WorkspaceId) -> Option<Arc<[TaskStatus]>> {
        MEMO.lock().unwrap_or_else(|p| p.into_inner()).get(workspace).cloned()
    }

    /// Keeps `statuses` unless there are none yet (a workspace being created reads them before
    /// its transaction commits them).
    pub(super) fn keep(workspace: &WorkspaceId, statuses: &[TaskStatus]) {
        if statuses.is_empty() {
            return;
        }
        let mut memo = MEMO.lock().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= WORKSPACES {
            memo.clear();
        }
        memo.insert(workspace.clone(), statuses.into());
    }
}

/// Gives tasks their short numbers: `(task, number)` pairs.
pub async fn set_short_numbers(conn: &mut Conn, numbers: &[(TaskId, i64)]) -> Result<(), StoreError> {
    // Three parameters a task; 100 tasks a statement stay far below every backend's limit.
    for chunk in numbers.chunks(100) {
        let cases: String = (0..chunk.len())
            .map(|n| format!(" WHEN ${} THEN CAST(${} AS BIGINT)", 2 * n + 1, 2 * n + 2))
            .collect();
        let ids: Vec<String> = (0..chunk.len())
            .map(|n| format!("${}", 2 * chunk.len() + n + 1))
            .collect();
        let sql = format!(
            "UPDATE tasks SET short_number = CASE id{cases} END WHERE id IN ({})",
            ids.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (task, number) in chunk {
            query = query.bind(task.as_str()).bind(*number);
        }
        for (task, _) in chunk {
            query = query.bind(task.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A task as a row of [`super::json_rows`].
#[derive(serde::Serialize)]
struct TaskRow<'a> {
    id: &'a str,
    workspace_id: &'a str,
    short_number: i64,
    title: &'a str,
    description: &'a str,
    status_id: &'a str,
    assignee_id: Option<&'a str>,
    created_by: &'a str,
    created_at: i64,
    updated_at: i64,
}

/// `tasks` as the JSON rows of an insert by [`super::json_rows`] (PostgreSQL).
pub(crate) fn json_rows(tasks: &[Task]) -> Result<String, StoreError> {
    let rows: Vec<TaskRow> = tasks
        .iter()
        .map(|t| TaskRow {
            id: t.id.as_str(),
            workspace_id: t.workspace_id.as_str(),
            short_number: t.short_number,
            title: &t.title,
            description: &t.description,
            status_id: t.status_id.as_str(),
            assignee_id: t.assignee_id.as_ref().map(|a| a.as_str()),
            created_by: t.created_by.as_str(),
            created_at: t.created_at.millis(),
            updated_at: t.updated_at.millis(),
        })
        .collect();
    super::json_rows::encode(&rows)
}

/// The insert of [`json_rows`] bound at `${parameter}`.
pub(crate) fn insert_json_sql(parameter: usize) -> String {
    super::json_rows::insert_sql("tasks", TASK_COLUMNS, parameter)
}

/// Writes back the editable fields of the tasks in [`json_rows`] bound at `${parameter}`
/// (PostgreSQL: the changes of a batch's units, written at its commit).
pub(crate) fn update_json_sql(parameter: usize) -> String {
    format!(
        "UPDATE tasks SET title = r.title, description = r.description, status_id = r.status_id, \
         assignee_id = r.assignee_id, updated_at = r.updated_at \
         FROM json_populate_recordset(NULL::tasks, ${parameter}::json) r \
         WHERE tasks.id = r.id AND tasks.id = ANY ({})",
        super::json_rows::keys_sql(parameter, Some("id"))
    )
}

/// Writes back the editable fields of `tasks`, one statement each (SQLite).
pub async fn update_each(conn: &mut Conn, tasks: &[Task]) -> Result<(), StoreError> {
    for task in tasks {
        update(conn, task).await?;
    }
    Ok(())
}

/// Inserts `tasks`, one statement each (SQLite, where a statement costs no round trip).
pub async fn insert_each(conn: &mut Conn, tasks: &[Task]) -> Result<(), StoreError> {
    for task in tasks {
        insert(conn, task).await?;
    }
    Ok(())
}

/// Inserts a task.
pub async fn insert(conn: &mut Conn, task: &Task) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(task.id.as_str())
    .bind(task.workspace_id.as_str())
    .bind(task.short_number)
    .bind(&task.title)
    .bind(&task.description)
    .bind(task.status_id.as_str())
    .bind(task.assignee_id.as_ref().map(|a| a.as_str()))
    .bind(task.created_by.as_str())
    .bind(task.created_at.millis())
    .bind(task.updated_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes a task's editable fields back.
pub async fn update(conn: &mut Conn, task: &Task) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE tasks SET title = $2, description = $3, status_id = $4, assignee_id = $5, updated_at = $6 WHERE id = $1",
    )
    .bind(task.id.as_str())
    .bind(&task.title)
    .bind(&task.description)
    .bind(task.status_id.as_str())
    .bind(task.assignee_id.as_ref().map(|a| a.as_str()))
    .bind(task.updated_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// The task of `workspace` named by `task_ref` (id or short number).
pub async fn find(conn: &mut Conn, workspace: &WorkspaceId, task_ref: &TaskRef) -> Result<Option<Task>, StoreError> {
    let task = match task_ref {
        TaskRef::Id(id) => {
            sqlx::query_as(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE workspace_id = $1 AND id = $2"
            ))
            .bind(workspace.as_str())
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?
        }
        TaskRef::ShortNumber(n) => {
            sqlx::query_as(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE workspace_id = $1 AND short_number = $2"
            ))
            .bind(workspace.as_str())
            .bind(*n)
            .fetch_optional(conn)
            .await?
        }
    };
    Ok(task)
}

/// The task `id` whatever its workspace (for internal lookups by a trusted id).
pub async fn get_any(conn: &mut Conn, id: &TaskId) -> Result<Option<Task>, StoreError> {
    Ok(
        sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// A page of `workspace`'s tasks, newest first, and the total count.
pub async fn page(
    conn: &mut Conn,
    workspace: &WorkspaceId,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Task>, i64), StoreError> {
    let tasks = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE workspace_id = $1 ORDER BY short_number DESC LIMIT $2 OFFSET $3"
    ))
    .bind(workspace.as_str())
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE workspace_id = $1")
        .bind(workspace.as_str())
        .fetch_one(conn)
        .await?;
    Ok((tasks, total))
}

/// Inserts a comment.
pub async fn insert_comment(conn: &mut Conn, comment: &Comment) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO task_comments ({COMMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(comment.id.as_str())
    .bind(comment.workspace_id.as_str())
    .bind(comment.task_id.as_str())
    .bind(comment.author_id.as_str())
    .bind(&comment.body)
    .bind(comment.created_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// The comments of `task`, oldest first.
pub async fn comments(conn: &mut Conn, task: &TaskId) -> Result<Vec<Comment>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COMMENT_COLUMNS} FROM task_comments WHERE task_id = $1 ORDER BY created_at, id"
    ))
    .bind(task.as_str())
    .fetch_all(conn)
    .await?)
}

/// The comment `id`.
pub async fn comment(conn: &mut Conn, id: &CommentId) -> Result<Option<Comment>, StoreError> {
    Ok(
        sqlx::query_as(&format!("SELECT {COMMENT_COLUMNS} FROM task_comments WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// Appends task history events, a statement per run of rows ([`super::runs_of_powers_of_two`]).
pub async fn insert_events(conn: &mut Conn, events: &[TaskEvent]) -> Result<(), StoreError> {
    for run in super::runs_of_powers_of_two(events) {
        let sql = format!(
            "INSERT INTO task_events (id, task_id, actor_id, kind, details, created_at) VALUES {}",
            super::values_rows(run.len(), 6)
        );
        let mut query = sqlx::query(&sql);
        for event in run {
            query = query
                .bind(event.id.as_str())
                .bind(event.task_id.as_str())
                .bind(event.actor_id.as_ref().map(|a| a.as_str()))
                .bind(&event.kind)
                .bind(&event.details)
                .bind(event.created_at.millis());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A task event as a row of [`super::json_rows`].
#[derive(serde::Serialize)]
struct EventRow<'a> {
    id: &'a str,
    task_id: &'a str,
    actor_id: Option<&'a str>,
    kind: &'a str,
    details: &'a str,
    created_at: i64,
}

/// `events` as the JSON rows of an insert by [`super::json_rows`] (PostgreSQL).
pub(crate) fn event_json_rows(events: &[TaskEvent]) -> Result<String, StoreError> {
    let rows: Vec<EventRow> = events
        .iter()
        .map(|e| EventRow {
            id: e.id.as_str(),
            task_id: e.task_id.as_str(),
            actor_id: e.actor_id.as_ref().map(|a| a.as_str()),
            kind: &e.kind,
            details: &e.details,
            created_at: e.created_at.millis(),
        })
        .collect();
    super::json_rows::encode(&rows)
}

/// The insert of [`event_json_rows`] bound at `${parameter}`.
pub(crate) fn insert_events_json_sql(parameter: usize) -> String {
    super::json_rows::insert_sql(
        "task_events",
        "id, task_id, actor_id, kind, details, created_at",
        parameter,
    )
}

/// The history events of `task`, oldest first.
pub async fn events(conn: &mut Conn, task: &TaskId) -> Result<Vec<TaskEvent>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, task_id, actor_id, kind, details, created_at FROM task_events WHERE task_id = $1 ORDER BY created_at, id",
    )
    .bind(task.as_str())
    .fetch_all(conn)
    .await?)
}
