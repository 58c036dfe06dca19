//! Per-workspace enablement of connection types.

use std::collections::HashMap;

use crate::domain::ids::WorkspaceId;
use crate::domain::time::Timestamp;

use super::{Conn, StoreError};

/// A workspace's explicit choice for one connection type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub enabled: bool,
    /// The hosts its plugin may call, when narrowed.
    pub outbound_hosts: Option<Vec<String>>,
}

/// The workspace's explicit choices, by connection type.
pub async fn choices(conn: &mut Conn, workspace: &WorkspaceId) -> Result<HashMap<String, Choice>, StoreError> {
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT connection_type, state, outbound_hosts FROM workspace_connection_types WHERE workspace_id = $1",
    )
    .bind(workspace.as_str())
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(t, state, hosts)| (t, choice(&state, hosts.as_deref())))
        .collect())
}

/// The choice a stored `state` and `outbound_hosts` narrowing make.
pub(super) fn choice(state: &str, outbound_hosts: Option<&str>) -> Choice {
    Choice {
        enabled: state == "enabled",
        outbound_hosts: outbound_hosts.map(parse_hosts),
    }
}

/// A stored narrowing; one that cannot be read allows nothing rather than everything.
pub(super) fn parse_hosts(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Records the workspace's choice for `connection_type`: whether it is enabled, and the hosts
/// its plugin may call (`None`: all its manifest lists).
pub async fn set(
    conn: &mut Conn,
    workspace: &WorkspaceId,
    connection_type: &str,
    enabled: bool,
    outbound_hosts: Option<&[String]>,
    at: Timestamp,
) -> Result<(), StoreError> {
    let hosts = outbound_hosts.map(|h| serde_json::Value::from(h.to_vec()).to_string());
    sqlx::query(
        "INSERT INTO workspace_connection_types (workspace_id, connection_type, state, outbound_hosts, updated_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (workspace_id, connection_type) DO UPDATE SET state = excluded.state, \
         outbound_hosts = excluded.outbound_hosts, updated_at = excluded.updated_at",
    )
    .bind(workspace.as_str())
    .bind(connection_type)
    .bind(if enabled { "enabled" } else { "disabled" })
    .bind(hosts)
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// The hosts `workspace` lets `connection_type`'s plugin call, when it narrowed them.
pub async fn outbound_hosts(
    conn: &mut Conn,
    workspace: &WorkspaceId,
    connection_type: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    let text: Option<Option<String>> = sqlx::query_scalar(
        "SELECT outbound_hosts FROM workspace_connection_types WHERE workspace_id = $1 AND connection_type = $2",
    )
    .bind(workspace.as_str())
    .bind(connection_type)
    .fetch_optional(conn)
    .await?;
    Ok(text.flatten().map(|t| parse_hosts(&t)))
}
