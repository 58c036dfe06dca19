//! What assigning a task reads, in one query: the task (with its workspace's name and whether it
//! has comments), the user it is assigned to and, when that user is a bot with an agent
//! connection, the connection with the workspace's choice for its type. A `PATCH` that assigns a
//! bot read these in three statements, and the start it opened read them again; the opening
//! write now hands them to its start.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::ids::{TaskId, WorkspaceId};
use crate::domain::sessions::Connection;
use crate::domain::tasks::{Task, TaskRef};
use crate::domain::users::{Role, User, UserKind};

use super::connection_types::{Choice, choice};
use super::{Conn, StoreError};

/// How a request names the user to assign: by id, or by handle (lowercase, without `@`).
#[derive(Debug, Clone, PartialEq, Eq)]
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

const TASK: &str = "t.id AS t_id, t.workspace_id AS t_workspace_id, t.short_number AS t_short_number, \
    t.title AS t_title, t.description AS t_description, t.status_id AS t_status_id, \
    t.assignee_id AS t_assignee_id, t.created_by AS t_created_by, t.created_at AS t_created_at, \
    t.updated_at AS t_updated_at, w.name AS w_name, \
    (SELECT COUNT(*) FROM (SELECT 1 FROM task_comments tc WHERE tc.task_id = t.id LIMIT 1) one) AS has_comments";

const ASSIGNEE: &str = "u.id AS u_id, u.workspace_id AS u_workspace_id, u.kind AS u_kind, u.name AS u_name, \
    u.handle AS u_handle, u.email AS u_email, u.role AS u_role, u.avatar_url AS u_avatar_url, \
    u.disabled_at AS u_disabled_at, u.deleted_at AS u_deleted_at, u.created_at AS u_created_at, \
    u.updated_at AS u_updated_at, \
    c.id AS c_id, c.workspace_id AS c_workspace_id, c.bot_id AS c_bot_id, c.connection_type AS c_type, \
    c.config AS c_config, c.follow_ups AS c_follow_ups, c.budgets AS c_budgets, c.created_at AS c_created_at, \
    c.updated_at AS c_updated_at, wct.state AS wct_state, wct.outbound_hosts AS wct_hosts";

const ASSIGNEE_JOINS: &str = "LEFT JOIN agent_connections c ON c.bot_id = u.id \
    LEFT JOIN workspace_connection_types wct ON wct.workspace_id = u.workspace_id AND wct.connection_type = c.connection_type";

fn user_match(user: &UserRef) -> &'static str {
    match user {
        UserRef::Id(_) => "u.id",
        UserRef::Handle(_) => "u.handle",
    }
}

fn user_value(user: &UserRef) -> &str {
    match user {
        UserRef::Id(id) | UserRef::Handle(id) => id,
    }
}

/// The task of `workspace` named by `task_ref` and, if `assignee` is given, that user of the
/// workspace; `None` if there is no such task.
pub async fn task_and_assignee(
    conn: &mut Conn,
    workspace: &WorkspaceId,
    task_ref: &TaskRef,
    assignee: Option<&UserRef>,
) -> Result<Option<TaskRead>, StoreError> {
    let task_match = match task_ref {
        TaskRef::Id(_) => "t.id",
        TaskRef::ShortNumber(_) => "t.short_number",
    };
    let sql = match assignee {
        None => format!(
            "SELECT {TASK} FROM tasks t JOIN workspaces w ON w.id = t.workspace_id \
             WHERE t.workspace_id = $1 AND {task_match} = $2"
        ),
        Some(user) => format!(
            "SELECT {TASK}, {ASSIGNEE} FROM tasks t JOIN workspaces w ON w.id = t.workspace_id \
             LEFT JOIN users u ON u.workspace_id = t.workspace_id AND {} = $3 {ASSIGNEE_JOINS} \
             WHERE t.workspace_id = $1 AND {task_match} = $2",
            user_match(user)
        ),
    };
    let query = sqlx::query(&sql).bind(workspace.as_str());
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
    let task = Task {
        id: TaskId::from(row.try_get::<String, _>("t_id")?),
        workspace_id: row.try_get::<String, _>("t_workspace_id")?.into(),
        short_number: row.try_get("t_short_number")?,
        title: row.try_get("t_title")?,
        description: row.try_get("t_description")?,
        status_id: row.try_get::<String, _>("t_status_id")?.into(),
        assignee_id: row.try_get::<Option<String>, _>("t_assignee_id")?.map(Into::into),
        created_by: row.try_get::<String, _>("t_created_by")?.into(),
        created_at: row.try_get("t_created_at")?,
        updated_at: row.try_get("t_updated_at")?,
    };
    Ok(Some(TaskRead {
        task,
        workspace_name: row.try_get("w_name")?,
        has_comments: row.try_get::<i64, _>("has_comments")? > 0,
        assignee: match assignee {
            Some(_) => assignee_from(&row)?,
            None => None,
        },
    }))
}

/// The user of `workspace` named by `user`, with the workspace's name; `None` if there is none.
pub async fn assignee(
    conn: &mut Conn,
    workspace: &WorkspaceId,
    user: &UserRef,
) -> Result<Option<(String, AssigneeRead)>, StoreError> {
    let sql = format!(
        "SELECT {ASSIGNEE}, w.name AS w_name FROM users u JOIN workspaces w ON w.id = u.workspace_id \
         {ASSIGNEE_JOINS} WHERE u.workspace_id = $1 AND {} = $2",
        user_match(user)
    );
    let row = sqlx::query(&sql)
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
    let Some(id) = row.try_get::<Option<String>, _>("u_id")? else {
        return Ok(None);
    };
    let invalid = |e: String| sqlx::Error::Decode(e.into());
    let user = User {
        id: id.into(),
        workspace_id: row.try_get::<String, _>("u_workspace_id")?.into(),
        kind: UserKind::try_from(row.try_get::<String, _>("u_kind")?).map_err(invalid)?,
        name: row.try_get("u_name")?,
        handle: row.try_get("u_handle")?,
        email: row.try_get("u_email")?,
        role: Role::try_from(row.try_get::<String, _>("u_role")?).map_err(|e| invalid(e.to_string()))?,
        avatar_url: row.try_get("u_avatar_url")?,
        disabled_at: row.try_get("u_disabled_at")?,
        deleted_at: row.try_get("u_deleted_at")?,
        created_at: row.try_get("u_created_at")?,
        updated_at: row.try_get("u_updated_at")?,
    };
    let connection = match row.try_get::<Option<String>, _>("c_id")? {
        None => None,
        Some(id) => {
            let connection = Connection {
                id: id.into(),
                workspace_id: row.try_get::<String, _>("c_workspace_id")?.into(),
                bot_id: row.try_get::<String, _>("c_bot_id")?.into(),
                connection_type: row.try_get("c_type")?,
                config: row.try_get("c_config")?,
                follow_ups: row.try_get("c_follow_ups")?,
                budgets: row.try_get("c_budgets")?,
                created_at: row.try_get("c_created_at")?,
                updated_at: row.try_get("c_updated_at")?,
            };
            let state: Option<String> = row.try_get("wct_state")?;
            let hosts: Option<String> = row.try_get("wct_hosts")?;
            Some((connection, state.map(|state| choice(&state, hosts.as_deref()))))
        }
    };
    Ok(Some(AssigneeRead { user, connection }))
}
