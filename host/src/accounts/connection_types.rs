//! Which connection types (plugins) a workspace may use. Built-in types are enabled until an admin
//! disables them; types from the plugins directory stay disabled until an admin enables them.

use std::collections::HashMap;

use crate::app::App;
use crate::audit::{self, Entry};
use crate::domain::ids::WorkspaceId;
use crate::error::AppError;
use crate::runtime::LoadedPlugin;
use crate::store::{self, Conn, StoreError};

use super::Caller;

/// Whether `plugin` is enabled given the workspace's explicit choices.
pub fn is_enabled(plugin: &LoadedPlugin, choices: &HashMap<String, bool>) -> bool {
    choices
        .get(&plugin.manifest.id)
        .copied()
        .unwrap_or_else(|| plugin.is_builtin())
}

/// The workspace's explicit choices, by connection type.
pub async fn choices(conn: &mut Conn, workspace: &WorkspaceId) -> Result<HashMap<String, bool>, StoreError> {
    store::connection_types::choices(conn, workspace).await
}

/// Refuses `connection_type` unless it is installed and enabled in `workspace`.
pub async fn ensure_usable(
    conn: &mut Conn,
    app: &App,
    workspace: &WorkspaceId,
    connection_type: &str,
) -> Result<(), AppError> {
    let plugin = app.runtime.plugin(connection_type).ok_or_else(|| {
        let installed: Vec<String> = app.runtime.plugins().iter().map(|p| p.manifest.id.clone()).collect();
        AppError::invalid(
            "connection.type",
            format!(
                "unknown connection type `{connection_type}`; installed: {}",
                installed.join(", ")
            ),
        )
    })?;
    if !is_enabled(&plugin, &choices(conn, workspace).await?) {
        return Err(AppError::Conflict(format!(
            "connection type `{connection_type}` is disabled in this workspace; an admin can enable it (PATCH /api/public/connection-types/{connection_type})"
        )));
    }
    Ok(())
}

/// Enables or disables `connection_type` for the caller's workspace.
pub async fn set_enabled(app: &App, caller: &Caller, connection_type: &str, enabled: bool) -> Result<(), AppError> {
    if app.runtime.plugin(connection_type).is_none() {
        return Err(AppError::not_found("connection type", connection_type));
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    store::connection_types::set(&mut tx, caller.workspace_id(), connection_type, enabled, now).await?;
    let action = if enabled {
        "connection_type.enable"
    } else {
        "connection_type.disable"
    };
    audit::record(
        &mut tx,
        &caller.actor(),
        Entry::new(action, "connection_type", connection_type, serde_json::json!({})),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}
