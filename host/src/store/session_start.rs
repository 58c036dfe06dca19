//! What starting a session reads, in one query: the session with its workspace, task, task status,
//! bot, connection, the people the start names (the task's assignee, who triggered it), whether
//! the task has comments, and the workspace's narrowing of the connection type's outbound hosts.
//! (The job worker reads this for every session it starts; a task without comments — the usual
//! assignment — needs nothing else, so one round trip instead of nine.)

use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::domain::ids::{SessionId, UserId};
use crate::domain::sessions::{Connection, Session};
use crate::domain::tasks::Task;

use super::aliased::{self, CONNECTION, TASK};
use super::{Conn, StoreError};

/// The rows a session start is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRows {
    pub session: Session,
    pub workspace_name: String,
    pub task: Task,
    pub status_name: String,
    pub bot_name: String,
    pub bot_handle: String,
    pub connection: Connection,
    /// The hosts the workspace lets this connection type's plugin call (`None`: all its manifest lists).
    pub workspace_hosts: Option<Vec<String>>,
    /// The task's assignee, if it has one and they exist.
    pub assignee: Option<NamedUser>,
    /// Who triggered the session, if anyone and they exist.
    pub trigger_actor: Option<NamedUser>,
    /// Whether the task has any comment (the snapshot then reads them and their authors).
    pub has_comments: bool,
}

/// A user as a session start names them.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedUser {
    pub id: UserId,
    pub name: String,
    /// `person` or `bot`.
    pub kind: String,
    pub handle: String,
}

impl NamedUser {
    /// `user` as a start names them.
    pub fn of(user: &crate::domain::users::User) -> Self {
        Self {
            id: user.id.clone(),
            name: user.name.clone(),
            kind: user.kind.as_str().to_owned(),
            handle: user.handle.clone(),
        }
    }

    /// The user `id` names in `row`'s `{prefix}_name`, `_kind` and `_handle` columns, if the
    /// subqueries found them.
    fn from_row(row: &AnyRow, id: Option<&UserId>, prefix: &str) -> Result<Option<Self>, sqlx::Error> {
        let (Some(id), Some(name)) = (id, row.try_get::<Option<String>, _>(format!("{prefix}_name").as_str())?) else {
            return Ok(None);
        };
        Ok(Some(Self {
            id: id.clone(),
            name,
            kind: row.try_get(format!("{prefix}_kind").as_str())?,
            handle: row.try_get(format!("{prefix}_handle").as_str())?,
        }))
    }
}

/// The name, kind and handle of the user whose id is in `id_column`, as scalar subqueries into
/// columns `{prefix}_name`, `_kind` and `_handle` (NULL when there is none).
///
/// Subqueries rather than two more joins: PostgreSQL plans each apart, and a query of nine
/// joined tables took it ~3 ms to plan against ~1 ms for six tables and these subqueries. A
/// connection plans a statement six times before it keeps a generic plan, and under load each
/// of those plans took 14 ms of the database's CPU (`pg_stat_statements`, trigger bench).
fn user_columns(id_column: &str, prefix: &str) -> String {
    ["name", "kind", "handle"]
        .map(|column| format!("(SELECT u.{column} FROM users u WHERE u.id = {id_column}) AS {prefix}_{column}"))
        .join(", ")
}

/// The start rows of `session`; `None` if the session or any row it refers to is gone.
pub async fn read(conn: &mut Conn, session: &SessionId) -> Result<Option<StartRows>, StoreError> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT s.id, s.workspace_id, s.task_id, s.bot_id, s.connection_id, s.connection_type, s.trigger_kind, \
            s.trigger_actor_id, s.comment_id, s.status, s.status_message, s.external_url, s.external_label, \
            s.created_at, s.started_at, s.ended_at, s.updated_at, s.plugin_sha256, s.plugin_cpu_micros, \
            w.name AS w_name, \
            {TASK}, \
            st.name AS st_name, b.name AS b_name, b.handle AS b_handle, \
            {CONNECTION}, \
            (SELECT wct.outbound_hosts FROM workspace_connection_types wct \
                WHERE wct.workspace_id = s.workspace_id AND wct.connection_type = s.connection_type) AS wct_hosts, \
            {assignee}, {trigger_actor}, \
            (SELECT COUNT(*) FROM (SELECT 1 FROM task_comments tc WHERE tc.task_id = s.task_id LIMIT 1) one) \
                AS has_comments \
         FROM agent_sessions s \
         JOIN workspaces w ON w.id = s.workspace_id \
         JOIN tasks t ON t.id = s.task_id \
         JOIN task_statuses st ON st.id = t.status_id AND st.workspace_id = t.workspace_id \
         JOIN users b ON b.id = s.bot_id \
         JOIN agent_connections c ON c.id = s.connection_id \
         WHERE s.id = $1",
            assignee = user_columns("t.assignee_id", "au"),
            trigger_actor = user_columns("s.trigger_actor_id", "tu"),
        )
    });
    let row = sqlx::query(SQL.as_str())
        .bind(session.as_str())
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let session = Session::from_row(&row)?;
    let task = aliased::task(&row)?;
    let connection = aliased::connection(&row)?.ok_or_else(|| sqlx::Error::ColumnNotFound("c_id".into()))?;
    let hosts: Option<String> = row.try_get("wct_hosts")?;
    Ok(Some(StartRows {
        assignee: NamedUser::from_row(&row, task.assignee_id.as_ref(), "au")?,
        trigger_actor: NamedUser::from_row(&row, session.trigger_actor_id.as_ref(), "tu")?,
        has_comments: row.try_get::<i64, _>("has_comments")? > 0,
        workspace_name: row.try_get("w_name")?,
        task,
        status_name: row.try_get("st_name")?,
        bot_name: row.try_get("b_name")?,
        bot_handle: row.try_get("b_handle")?,
        connection,
        workspace_hosts: hosts.map(|text| super::connection_types::parse_hosts(&text)),
        session,
    }))
}
