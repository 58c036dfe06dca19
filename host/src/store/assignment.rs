//! What assigning a task reads, in one query: the task (with its workspace's name and whether it
//! has comments), the user it is assigned to and, when that user is a bot with an agent
//! connection, the connection with the workspace's choice for its type. A `PATCH` that assigns a
//! bot read these in three statements, and the start it opened read them again; the opening
//! write now hands them to its start.

use std::sync::LazyLock;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::ids::WorkspaceId;
use crate::domain::sessions::Connection;
use crate::domain::tasks::{Task, TaskRef};
use crate::domain::users::User;

use super::aliased::{self, CONNECTION, TASK, USER};
use super::connection_types::{Choice, choice};
use super::{Conn, StoreError};

/// How a request names the user to assign: by id, or by handle (lowercase, without `@`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserRef {
    Id(String),
    Handle(String),
}

/// A user to assign, with their agent connection (bots that have one) and the workspace's
/// explicit choice for its connection type.
#[derive(Debug, Clone)]
pub struct AssigneeRead {
    pub user: User,
    pub connection: Option<(Connection, Option<Choice>)>,
}

/// A task as a change to it reads it.
#[derive(Debug, Clone)]
pub struct TaskRead {
    pub task: Task,
    pub workspace_name: String,
    pub has_comments: bool,
    /// The user asked for, if one was and the workspace has them.
    pub assignee: Option<AssigneeRead>,
}

/// What a change to a task reads of it beyond its own columns.
const TASK_EXTRA: &str = "w.name AS w_name, \
    (SELECT COUNT(*) FROM (SELECT 1 FROM task_comments tc WHERE tc.task_id = t.id LIMIT 1) one) AS has_comments";

/// A task with what a change reads beyond its columns ([`TASK_EXTRA`]), before any `WHERE`.
const TASK_FROM: &str = "FROM tasks t JOIN workspaces w ON w.id = t.workspace_id";

/// The workspace's choice for the connection's type.
const CHOICE: &str = "wct.state AS wct_state, wct.outbound_hosts AS wct_hosts";

const ASSIGNEE_JOINS: &str = "LEFT JOIN agent_connections c ON c.bot_id = u.id \
    LEFT JOIN workspace_connection_types wct ON wct.workspace_id = u.workspace_id AND wct.connection_type = c.connection_type";

/// How a [`UserRef`] matches a user: index 0 by id, 1 by handle.
const USER_MATCH: [&str; 2] = ["u.id", "u.handle"];

fn user_index(user: &UserRef) -> usize {
    match user {
        UserRef::Id(_) => 0,
        UserRef::Handle(_) => 1,
    }
}

/// The text of [`task_and_assignee`]'s statement, built once per shape (a task by id or by
/// number; no user, a user by id or by handle; on PostgreSQL, the task's row locked).
fn task_sql(task_ref: &TaskRef, assignee: Option<&UserRef>, postgres: bool) -> &'static str {
    static SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut all = Vec::with_capacity(12);
        // PostgreSQL's writers run batches side by side: the row is locked until the batch
        // commits, so a change read from it is not overwritten by one read before it. `NO KEY`:
        // rows that refer to the task (a session, a comment, an event) may still be written
        // meanwhile — their foreign-key checks' key-share lock does not wait for it.
        for lock in ["", " FOR NO KEY UPDATE OF t"] {
            for task_match in ["t.id", "t.short_number"] {
                all.push(format!(
                    "SELECT {TASK}, {TASK_EXTRA} {TASK_FROM} WHERE t.workspace_id = $1 AND {task_match} = $2{lock}"
                ));
                for user_match in USER_MATCH {
                    all.push(format!(
                        "SELECT {TASK}, {TASK_EXTRA}, {USER}, {CONNECTION}, {CHOICE} {TASK_FROM} \
                         LEFT JOIN users u ON u.workspace_id = t.workspace_id AND {user_match} = $3 {ASSIGNEE_JOINS} \
                         WHERE t.workspace_id = $1 AND {task_match} = $2{lock}"
                    ));
                }
            }
        }
        all
    });
    let task = match task_ref {
        TaskRef::Id(_) => 0,
        TaskRef::ShortNumber(_) => 1,
    };
    &SQL[usize::from(postgres) * 6 + task * 3 + assignee.map_or(0, |user| 1 + user_index(user))]
}

/// The text of [`assignee`]'s statement, built once per way of naming the user.
fn assignee_sql(user: &UserRef) -> &'static str {
    static SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
        USER_MATCH
            .iter()
            .map(|user_match| {
                format!(
                    "SELECT {USER}, {CONNECTION}, {CHOICE}, w.name AS w_name FROM users u \
                     JOIN workspaces w ON w.id = u.workspace_id \
                     {ASSIGNEE_JOINS} WHERE u.workspace_id = $1 AND {user_match} = $2"
                )
            })
            .collect()
    });
    &SQL[user_index(user)]
}

fn user_value(user: &UserRef) -> &str {
    match user {
        UserRef::Id(id) | UserRef::Handle(id) => id,
    }
}

/// The task of `workspace` named by `task_ref` and, if `assignee` is given, that user of the
/// workspace; `None` if there is no such task. For a change: on PostgreSQL the task's row stays
/// locked until the transaction ends.
pub async fn task_and_assignee(
    conn: &mut Conn,
    workspace: &WorkspaceId,
    task_ref: &TaskRef,
    assignee: Option<&UserRef>,
) -> Result<Option<TaskRead>, StoreError> {
    let postgres = conn.is_postgres();
    let query = sqlx::query(task_sql(task_ref, assignee, postgres)).bind(workspace.as_str());
    let query = match task_ref {
        TaskRef::Id(id) => query.bind(id.as_str()),
        TaskRef::ShortNumber(n) => query.bind(*n),
    };
    let query = match assignee {
        Some(user) => query.bind(user_value(user)),
        None => query,
    };
    let Some(row) = query.fetch_optional(conn).await? else {
        return Ok(None);
    };
    let assignee = match assignee {
        Some(_) => assignee_from(&row)?,
        None => None,
    };
    Ok(Some(task_read(&row, assignee)?))
}

/// The [`TaskRead`] of a row with [`TASK`] and [`TASK_EXTRA`].
fn task_read(row: &AnyRow, assignee: Option<AssigneeRead>) -> Result<TaskRead, StoreError> {
    Ok(TaskRead {
        task: aliased::task(row)?,
        workspace_name: row.try_get("w_name")?,
        has_comments: row.try_get::<i64, _>("has_comments")? > 0,
        assignee,
    })
}

/// The tasks with `ids` as changes to them read them ([`TaskRead`], no assignee), their rows
/// locked until the transaction ends, in one statement: how a PostgreSQL write batch reads the
/// tasks its units will change at its start, one round trip instead of one a unit
/// ([`crate::commit::WriteTx::task_to_change`]). Rows are locked in id order. Tasks that do not
/// exist are missing from the answer. PostgreSQL only (a SQLite statement costs no round trip).
pub async fn tasks_to_change(conn: &mut Conn, ids: &[&str]) -> Result<Vec<TaskRead>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {TASK}, {TASK_EXTRA} {TASK_FROM} WHERE t.id = ANY ({}) ORDER BY t.id FOR NO KEY UPDATE OF t",
            super::json_rows::keys_sql(1, None)
        )
    });
    let rows = sqlx::query(&SQL)
        .bind(super::json_rows::encode(ids)?)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|row| task_read(row, None)).collect()
}

/// The user of `workspace` named by `user`, with the workspace's name; `None` if there is none.
pub async fn assignee(
    conn: &mut Conn,
    workspace: &WorkspaceId,
    user: &UserRef,
) -> Result<Option<(String, AssigneeRead)>, StoreError> {
    let row = sqlx::query(assignee_sql(user))
        .bind(workspace.as_str())
        .bind(user_value(user))
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let workspace_name: String = row.try_get("w_name")?;
    Ok(assignee_from(&row)?.map(|read| (workspace_name, read)))
}

fn assignee_from(row: &AnyRow) -> Result<Option<AssigneeRead>, StoreError> {
    let Some(user) = aliased::user(row)? else {
        return Ok(None);
    };
    let connection = match aliased::connection(row)? {
        None => None,
        Some(connection) => {
            let state: Option<String> = row.try_get("wct_state")?;
            let hosts: Option<String> = row.try_get("wct_hosts")?;
            Some((connection, state.map(|state| choice(&state, hosts.as_deref()))))
        }
    };
    Ok(Some(AssigneeRead { user, connection }))
}
