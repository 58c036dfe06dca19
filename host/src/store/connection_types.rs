//! Per-workspace enablement of connection types.

use std::collections::HashMap;

use crate::domain::ids::WorkspaceId;
use crate::domain::time::Timestamp;

use super::{Conn, StoreError};

/// The workspace's explicit choices: connection type → enabled.
pub async fn choices(conn: &mut Conn, workspace: &WorkspaceId) -> Result<HashMap<String, bool>, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT connection_type, state FROM workspace_connection_types WHERE workspace_id = $1")
            .bind(workspace.as_str())
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(t, state)| (t, state == "enabled")).collect())
}

/// Records the workspace's choice for `connection_type`.
pub async fn set(
    conn: &mut Conn,
    workspace: &WorkspaceId,
    connection_type: &str,
    enabled: bool,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO workspace_connection_types (workspace_id, connection_type, state, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace_id, connection_type) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
    )
    .bind(workspace.as_str())
    .bind(connection_type)
    .bind(if enabled { "enabled" } else { "disabled" })
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(())
}
