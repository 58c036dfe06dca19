//! Which connection types (plugins) a workspace may use. Built-in types are enabled until an admin
//! disables them; types from the plugins directory stay disabled until an admin enables them.

use std::collections::HashMap;

use crate::app::App;
use crate::audit::{self, Entry};
use crate::domain::ids::WorkspaceId;
use crate::runtime::capabilities::http::within;
use crate::runtime::{LoadedPlugin, is_host_pattern};
use crate::store::connection_types::Choice;
use crate::store::{self, Conn, StoreError};
use crate::use_cases::error::Error;

use super::caller::Caller;

/// The workspace's setting of `plugin`, given its explicit choices: built-in types are enabled and
/// directory types disabled until an admin chooses otherwise.
pub fn setting(plugin: &LoadedPlugin, choices: &HashMap<String, Choice>) -> Setting {
    setting_by_choice(plugin, choices.get(&plugin.manifest.id))
}

/// The workspace's setting of `plugin`, given its explicit choice for it, if any.
fn setting_by_choice(plugin: &LoadedPlugin, choice: Option<&Choice>) -> Setting {
    match choice {
        Some(choice) => Setting {
            enabled: choice.enabled,
            outbound_hosts: choice.outbound_hosts.clone(),
        },
        None => Setting {
            enabled: plugin.is_builtin(),
            outbound_hosts: None,
        },
    }
}

/// The workspace's explicit choices, by connection type.
pub async fn choices(conn: &mut Conn, workspace: &WorkspaceId) -> Result<HashMap<String, Choice>, StoreError> {
    store::connection_types::choices(conn, workspace).await
}

/// Whether a workspace can use a connection type now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usability {
    Usable,
    /// No plugin provides it on this host; these do.
    NotInstalled {
        installed: Vec<String>,
    },
    /// Installed, but switched off in the workspace.
    Disabled,
}

/// Whether `workspace` can use `connection_type`.
pub async fn usability(
    conn: &mut Conn,
    app: &App,
    workspace: &WorkspaceId,
    connection_type: &str,
) -> Result<Usability, StoreError> {
    let choices = choices(conn, workspace).await?;
    Ok(usability_by_choice(app, connection_type, choices.get(connection_type)))
}

/// Whether a workspace whose explicit choice for `connection_type` is `choice` can use it.
pub fn usability_by_choice(app: &App, connection_type: &str, choice: Option<&Choice>) -> Usability {
    let Some(plugin) = app.runtime.plugin(connection_type) else {
        let installed = app.runtime.plugins().iter().map(|p| p.manifest.id.clone()).collect();
        return Usability::NotInstalled { installed };
    };
    if setting_by_choice(&plugin, choice).enabled {
        Usability::Usable
    } else {
        Usability::Disabled
    }
}

/// Why `connection_type` cannot be used, in words an admin can act on.
pub fn unusable_reason(connection_type: &str, usability: &Usability) -> Option<String> {
    match usability {
        Usability::Usable => None,
        Usability::NotInstalled { installed } => Some(format!(
            "unknown connection type `{connection_type}`; installed: {}",
            installed.join(", ")
        )),
        Usability::Disabled => Some(format!(
            "connection type `{connection_type}` is disabled in this workspace; an admin can enable it (PATCH /api/public/connection-types/{connection_type})"
        )),
    }
}

/// Refuses `connection_type` unless it is installed (not found) and enabled in `workspace`
/// (conflict).
pub async fn ensure_usable(
    conn: &mut Conn,
    app: &App,
    workspace: &WorkspaceId,
    connection_type: &str,
) -> Result<(), Error> {
    let usability = usability(conn, app, workspace, connection_type).await?;
    match (unusable_reason(connection_type, &usability), usability) {
        (None, _) => Ok(()),
        (Some(reason), Usability::NotInstalled { .. }) => Err(Error::NotFound(reason)),
        (Some(reason), _) => Err(Error::Conflict(reason)),
    }
}

/// A change to a workspace's setting of one connection type; absent fields stay.
#[derive(Debug, Clone, Default)]
pub struct SettingChange {
    pub enabled: Option<bool>,
    /// `Some(None)` lets the plugin call every host its manifest lists again.
    pub outbound_hosts: Option<Option<Vec<String>>>,
}

/// A workspace's setting of one connection type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub enabled: bool,
    /// Hosts the plugin may call in this workspace; `None`: all its manifest lists.
    pub outbound_hosts: Option<Vec<String>>,
}

/// Enables or disables `connection_type` for the caller's workspace and/or narrows the hosts its
/// plugin may call there (each must be one the plugin's manifest lists, or below one of its
/// wildcards).
pub async fn update(
    app: &App,
    caller: &Caller,
    connection_type: &str,
    change: SettingChange,
) -> Result<Setting, Error> {
    let plugin = app
        .runtime
        .plugin(connection_type)
        .ok_or_else(|| Error::not_found("connection type", connection_type))?;
    if change.enabled.is_none() && change.outbound_hosts.is_none() {
        return Err(Error::invalid("enabled", "give `enabled`, `outboundHosts`, or both"));
    }
    if let Some(Some(hosts)) = &change.outbound_hosts {
        check_hosts(&plugin, hosts)?;
    }
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let current = setting(&plugin, &choices(&mut tx, caller.workspace_id()).await?);
    let updated = Setting {
        enabled: change.enabled.unwrap_or(current.enabled),
        outbound_hosts: change.outbound_hosts.clone().unwrap_or(current.outbound_hosts),
    };
    store::connection_types::set(
        &mut tx,
        caller.workspace_id(),
        connection_type,
        updated.enabled,
        updated.outbound_hosts.as_deref(),
        now,
    )
    .await?;
    let action = match change.enabled {
        Some(true) => "connection_type.enable",
        Some(false) => "connection_type.disable",
        None => "connection_type.outbound_hosts",
    };
    let details = match &change.outbound_hosts {
        Some(hosts) => serde_json::json!({"outboundHosts": hosts}),
        None => serde_json::json!({}),
    };
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new(action, "connection_type", connection_type, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(updated)
}

/// Each host must be written as a host (400) and be one the plugin's manifest lets it call (409).
fn check_hosts(plugin: &LoadedPlugin, hosts: &[String]) -> Result<(), Error> {
    let manifest = &plugin.manifest.outbound_hosts;
    for host in hosts {
        if !is_host_pattern(host) {
            return Err(Error::invalid(
                "outboundHosts",
                format!("`{host}` is not a host name, an IP address or `*.example.com`"),
            ));
        }
        if !within(manifest, &host.to_ascii_lowercase()) {
            let listed = if manifest.is_empty() {
                "none".to_owned()
            } else {
                manifest.join(", ")
            };
            return Err(Error::Conflict(format!(
                "`{host}` is not a host connection type `{}` may call; its manifest lists: {listed}",
                plugin.manifest.id
            )));
        }
    }
    Ok(())
}
