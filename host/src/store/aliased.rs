//! Rows read under column prefixes, for queries that join several tables: a task's columns as
//! `t_…` (table alias `t`), a user's as `u_…` (alias `u`), an agent connection's as `c_…` (alias
//! `c`). One list and one reader per kind, so every query that joins them names them alike.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::sessions::Connection;
use crate::domain::tasks::Task;
use crate::domain::users::{Role, User, UserKind};

/// A task's columns, from the table aliased `t`.
pub const TASK: &str = "t.id AS t_id, t.workspace_id AS t_workspace_id, t.short_number AS t_short_number, \
    t.title AS t_title, t.description AS t_description, t.status_id AS t_status_id, \
    t.assignee_id AS t_assignee_id, t.created_by AS t_created_by, t.created_at AS t_created_at, \
    t.updated_at AS t_updated_at";

/// A user's columns, from the table aliased `u`.
pub const USER: &str = "u.id AS u_id, u.workspace_id AS u_workspace_id, u.kind AS u_kind, u.name AS u_name, \
    u.handle AS u_handle, u.email AS u_email, u.role AS u_role, u.avatar_url AS u_avatar_url, \
    u.disabled_at AS u_disabled_at, u.deleted_at AS u_deleted_at, u.created_at AS u_created_at, \
    u.updated_at AS u_updated_at";

/// An agent connection's columns, from the table aliased `c`.
pub const CONNECTION: &str = "c.id AS c_id, c.workspace_id AS c_workspace_id, c.bot_id AS c_bot_id, \
    c.connection_type AS c_type, c.config AS c_config, c.follow_ups AS c_follow_ups, c.budgets AS c_budgets, \
    c.created_at AS c_created_at, c.updated_at AS c_updated_at";

/// The task in `row`'s [`TASK`] columns.
pub fn task(row: &AnyRow) -> Result<Task, sqlx::Error> {
    Ok(Task {
        id: row.try_get::<String, _>("t_id")?.into(),
        workspace_id: row.try_get::<String, _>("t_workspace_id")?.into(),
        short_number: row.try_get("t_short_number")?,
        title: row.try_get("t_title")?,
        description: row.try_get("t_description")?,
        status_id: row.try_get::<String, _>("t_status_id")?.into(),
        assignee_id: row.try_get::<Option<String>, _>("t_assignee_id")?.map(Into::into),
        created_by: row.try_get::<String, _>("t_created_by")?.into(),
        created_at: row.try_get("t_created_at")?,
        updated_at: row.try_get("t_updated_at")?,
    })
}

/// The user in `row`'s [`USER`] columns; `None` when an outer join found none.
pub fn user(row: &AnyRow) -> Result<Option<User>, sqlx::Error> {
    let Some(id) = row.try_get::<Option<String>, _>("u_id")? else {
        return Ok(None);
    };
    let decode = |column: &str, error: String| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: error.into(),
    };
    Ok(Some(User {
        id: id.into(),
        workspace_id: row.try_get::<String, _>("u_workspace_id")?.into(),
        kind: UserKind::try_from(row.try_get::<String, _>("u_kind")?).map_err(|e| decode("u_kind", e))?,
        name: row.try_get("u_name")?,
        handle: row.try_get("u_handle")?,
        email: row.try_get("u_email")?,
        role: Role::try_from(row.try_get::<String, _>("u_role")?).map_err(|e| decode("u_role", e.to_string()))?,
        avatar_url: row.try_get("u_avatar_url")?,
        disabled_at: row.try_get("u_disabled_at")?,
        deleted_at: row.try_get("u_deleted_at")?,
        created_at: row.try_get("u_created_at")?,
        updated_at: row.try_get("u_updated_at")?,
    }))
}

/// The connection in `row`'s [`CONNECTION`] columns; `None` when an outer join found none.
pub fn connection(row: &AnyRow) -> Result<Option<Connection>, sqlx::Error> {
    let Some(id) = row.try_get::<Option<String>, _>("c_id")? else {
        return Ok(None);
    };
    Ok(Some(Connection {
        id: id.into(),
        workspace_id: row.try_get::<String, _>("c_workspace_id")?.into(),
        bot_id: row.try_get::<String, _>("c_bot_id")?.into(),
        connection_type: row.try_get("c_type")?,
        config: row.try_get("c_config")?,
        follow_ups: row.try_get("c_follow_ups")?,
        budgets: row.try_get("c_budgets")?,
        created_at: row.try_get("c_created_at")?,
        updated_at: row.try_get("c_updated_at")?,
    }))
}
