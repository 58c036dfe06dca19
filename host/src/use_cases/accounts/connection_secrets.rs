//! The secrets of a bot's connection (provider API keys): set, replace, remove, list by name.
//!
//! Only the names a connection type declares in its manifest can be set. Values are sealed before
//! they reach the database (`crate::secrets`) and are never returned; the audit trail records the
//! secret's name only.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use crate::app::App;
use crate::audit::{self, Entry};
use crate::domain::ids::ConnectionId;
use crate::domain::time::Timestamp;
use crate::runtime::SecretSpec;
use crate::runtime::{CallServices, CapabilityError};
use crate::secrets::SecretValue;
use crate::store::{self, StoreError};
use crate::use_cases::error::Error;

use super::Caller;
use super::bots::{connection_of, find_bot};

/// Longest secret value accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 8 << 10;

/// One secret a bot's connection type declares, and whether it is set.
#[derive(Debug, Clone)]
pub struct SecretStatus {
    pub spec: SecretSpec,
    /// When it was last set; `None` while unset.
    pub updated_at: Option<Timestamp>,
}

/// The secrets the bot's connection type declares, each with whether it is set.
pub async fn list(app: &App, caller: &Caller, bot_id: &str) -> Result<Vec<SecretStatus>, Error> {
    let mut conn = app.db.read().await?;
    let bot = find_bot(&mut conn, caller, bot_id).await?;
    let connection = connection_of(&mut conn, &bot).await?;
    let stored = store::connection_secrets::list(&mut conn, &connection.id).await?;
    let declared = declared_secrets(app, &connection.connection_type);
    Ok(declared
        .into_iter()
        .map(|spec| SecretStatus {
            updated_at: stored.iter().find(|s| s.name == spec.name).map(|s| s.updated_at),
            spec,
        })
        .collect())
}

/// Sets (or replaces) secret `name` on the bot's connection.
pub async fn set(app: &App, caller: &Caller, bot_id: &str, name: &str, value: String) -> Result<(), Error> {
    check_value(&value)?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let bot = find_bot(&mut tx, caller, bot_id).await?;
    let connection = connection_of(&mut tx, &bot).await?;
    check_declared(app, &connection.connection_type, name)?;
    let replaced = store::connection_secrets::get(&mut tx, &connection.id, name)
        .await?
        .is_some();
    let sealed = app.secrets.seal(connection.id.as_str(), name, &SecretValue::new(value));
    store::connection_secrets::put(&mut tx, &connection.id, name, &sealed, now).await?;
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new(
            "bot.secret.set",
            "bot",
            &bot.id,
            json!({"name": name, "replaced": replaced}),
        ),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// Removes secret `name` from the bot's connection; 404 when it is not set.
pub async fn remove(app: &App, caller: &Caller, bot_id: &str, name: &str) -> Result<(), Error> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let bot = find_bot(&mut tx, caller, bot_id).await?;
    let connection = connection_of(&mut tx, &bot).await?;
    if !store::connection_secrets::delete(&mut tx, &connection.id, name).await? {
        return Err(Error::NotFound(format!(
            "secret `{name}` is not set on @{}",
            bot.handle
        )));
    }
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("bot.secret.delete", "bot", &bot.id, json!({"name": name})),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

fn declared_secrets(app: &App, connection_type: &str) -> Vec<SecretSpec> {
    app.runtime
        .plugin(connection_type)
        .map(|plugin| plugin.manifest.secrets.clone())
        .unwrap_or_default()
}

/// Secrets other than the ones the connection type declares do not exist (404).
fn check_declared(app: &App, connection_type: &str, name: &str) -> Result<(), Error> {
    let declared = declared_secrets(app, connection_type);
    if declared.iter().any(|s| s.name == name) {
        return Ok(());
    }
    let known = if declared.is_empty() {
        format!("connection type `{connection_type}` declares no secrets")
    } else {
        let names: Vec<_> = declared.iter().map(|s| format!("`{}`", s.name)).collect();
        format!("connection type `{connection_type}` declares: {}", names.join(", "))
    };
    Err(Error::NotFound(format!("unknown secret `{name}`; {known}")))
}

/// Values end up in HTTP header values, so they must be one line of visible text.
fn check_value(value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid("value", "`value` must not be empty"));
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err(Error::invalid(
            "value",
            format!("`value` is at most {MAX_SECRET_BYTES} bytes"),
        ));
    }
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(Error::invalid(
            "value",
            "`value` must be one line of printable ASCII (it is sent in an HTTP header)",
        ));
    }
    Ok(())
}

/// The value of `connection`'s secret `name`, for an outbound request the host sends for its
/// plugin. Never returned to a plugin or an API caller.
pub async fn open(app: &App, connection: &ConnectionId, name: &str) -> Result<Option<SecretValue>, CapabilityError> {
    let mut conn = app.db.read().await.map_err(|error| {
        tracing::error!(%error, "database error while reading a connection secret");
        CapabilityError::Unavailable("the host could not read the secret; try again later".into())
    })?;
    let sealed = store::connection_secrets::get(&mut conn, connection, name)
        .await
        .map_err(|error| {
            tracing::error!(%error, "database error while reading a connection secret");
            CapabilityError::Unavailable("the host could not read the secret; try again later".into())
        })?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    app.secrets
        .open(connection.as_str(), name, &sealed)
        .map(Some)
        .map_err(|e| {
            tracing::error!(connection = %connection.as_str(), secret = name, "{e}");
            CapabilityError::Unavailable(format!(
                "secret `{name}` could not be read by the host; an operator must check the secrets key"
            ))
        })
}

/// What a `validate-config` call about a saved connection may reach: the connection's secrets,
/// by reference in its outbound requests, and no record at all.
pub struct SecretsOnly {
    app: Arc<App>,
}

impl SecretsOnly {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

/// Everything else is refused by the trait's defaults.
#[async_trait]
impl CallServices for SecretsOnly {
    async fn connection_secret(
        &self,
        connection: &ConnectionId,
        name: &str,
    ) -> Result<Option<SecretValue>, CapabilityError> {
        open(&self.app, connection, name).await
    }
}
