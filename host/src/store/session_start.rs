//! What starting a session reads, in one query: the session with its workspace, task, task status,
//! bot, connection and the workspace's narrowing of the connection type's outbound hosts. (The job
//! worker reads this for every session it starts; one round trip instead of seven.)

use sqlx::{FromRow, Row};

use crate::domain::ids::SessionId;
use crate::domain::sessions::{Connection, Session};
use crate::domain::tasks::Task;

use super::{Conn, StoreError};

/// The rows a session start is built from.
#[derive(Debug, Clone)]
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
}

/// The start rows of `session`; `None` if the session or any row it refers to is gone.
pub async fn read(conn: &mut Conn, session: &SessionId) -> Result<Option<StartRows>, StoreError> {
    let row = sqlx::query(
        "SELECT s.id, s.workspace_id, s.task_id, s.bot_id, s.connection_id, s.connection_type, s.trigger_kind, \
            s.trigger_actor_id, s.comment_id, s.status, s.status_message, s.external_url, s.external_label, \
            s.created_at, s.started_at, s.ended_at, s.updated_at, s.plugin_sha256, s.plugin_cpu_micros, \
            w.name AS w_name, \
            t.id AS t_id, t.short_number AS t_short_number, t.title AS t_title, t.description AS t_description, \
            t.status_id AS t_status_id, t.assignee_id AS t_assignee_id, t.created_by AS t_created_by, \
            t.created_at AS t_created_at, t.updated_at AS t_updated_at, \
            st.name AS st_name, b.name AS b_name, b.handle AS b_handle, \
            c.connection_type AS c_type, c.config AS c_config, c.follow_ups AS c_follow_ups, c.budgets AS c_budgets, c.created_at AS c_created_at, c.updated_at AS c_updated_at, \
            wct.outbound_hosts AS wct_hosts \
         FROM agent_sessions s \
         JOIN workspaces w ON w.id = s.workspace_id \
         JOIN tasks t ON t.id = s.task_id \
         JOIN task_statuses st ON st.id = t.status_id AND st.workspace_id = t.workspace_id \
         JOIN users b ON b.id = s.bot_id \
         JOIN agent_connections c ON c.id = s.connection_id \
         LEFT JOIN workspace_connection_types wct \
            ON wct.workspace_id = s.workspace_id AND wct.connection_type = s.connection_type \
         WHERE s.id = $1",
    )
    .bind(session.as_str())
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let session = Session::from_row(&row)?;
    let task = Task {
        id: row.try_get("t_id")?,
        workspace_id: session.workspace_id.clone(),
        short_number: row.try_get("t_short_number")?,
        title: row.try_get("t_title")?,
        description: row.try_get("t_description")?,
        status_id: row.try_get("t_status_id")?,
        assignee_id: row.try_get("t_assignee_id")?,
        created_by: row.try_get("t_created_by")?,
        created_at: row.try_get("t_created_at")?,
        updated_at: row.try_get("t_updated_at")?,
    };
    let connection = Connection {
        id: session.connection_id.clone(),
        workspace_id: session.workspace_id.clone(),
        bot_id: session.bot_id.clone(),
        connection_type: row.try_get("c_type")?,
        config: row.try_get("c_config")?,
        follow_ups: row.try_get("c_follow_ups")?,
        budgets: row.try_get("c_budgets")?,
        created_at: row.try_get("c_created_at")?,
        updated_at: row.try_get("c_updated_at")?,
    };
    let hosts: Option<String> = row.try_get("wct_hosts")?;
    Ok(Some(StartRows {
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
