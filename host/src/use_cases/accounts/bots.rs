//! Bots and their agent connections: create, change, disable, enable, delete, validate the
//! connection, rotate the webhook signing secret.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::app::App;
use crate::audit::{self, Entry};
use crate::domain::bounded_text;
use crate::domain::ids::{ConnectionId, SecretId, UserId};
use crate::domain::sessions::{Connection, FollowUps};
use crate::domain::time::Timestamp;
use crate::domain::tokens::{Scope, Scopes};
use crate::domain::users::{Role, User, UserKind, normalize_handle};
use crate::domain::webhook_signing as signing;
use crate::runtime::{CallContext, CallError, Capability, ConfigFieldError, LoadedPlugin};
use crate::secrets::{SecretValue, WEBHOOK_SIGNING_SECRET};
use crate::store::{self, Conn, StoreError};
use crate::use_cases::error::Error;
use crate::use_cases::sessions;

use super::connection_secrets::SecretsOnly;
use super::{Caller, handle_taken, tokens};
use crate::use_cases::connection_types;

/// A bot to create, with its connection.
#[derive(Debug, Clone)]
pub struct NewBot {
    pub name: String,
    pub handle: String,
    pub avatar_url: Option<String>,
    pub connection_type: String,
    pub config: serde_json::Value,
    /// `continue` or `newSession`; `None`: the connection type's default.
    pub follow_ups: Option<String>,
    /// Per-session budgets for model calls (`{modelCalls, steps, tokens, wallSeconds}`); `None`: the host's defaults.
    pub budgets: Option<serde_json::Value>,
}

/// A created bot; `token` and `webhook_secret` are shown once.
#[derive(Debug, Clone)]
pub struct CreatedBot {
    pub bot: User,
    pub connection: Connection,
    pub token: String,
    /// Present when the connection type delivers webhooks.
    pub webhook_secret: Option<String>,
}

/// Creates a bot with a connection of an enabled type whose config its plugin accepted, a bot token
/// (read, write) and — for webhook-delivering types — a signing secret.
pub async fn create(app: &App, caller: &Caller, request: NewBot) -> Result<CreatedBot, Error> {
    let name = bounded_text("name", &request.name, 1, 100)?;
    let handle = normalize_handle(&request.handle)?;
    let avatar_url = request
        .avatar_url
        .as_deref()
        .map(check_avatar_url)
        .transpose()?
        .flatten();
    {
        let mut conn = app.db.read().await?;
        connection_types::ensure_usable(&mut conn, app, caller.workspace_id(), &request.connection_type).await?;
    }
    let plugin = plugin(app, &request.connection_type)?;
    let follow_ups = request
        .follow_ups
        .as_deref()
        .map(|mode| checked_follow_ups(&plugin, mode))
        .transpose()?;
    let config = validated_config(app, &plugin, &request.config).await?;
    let budgets = request.budgets.as_ref().map(checked_budgets).transpose()?;

    let now = app.clock.now();
    let bot = User {
        id: UserId::generate_bot(),
        workspace_id: caller.workspace_id().clone(),
        kind: UserKind::Bot,
        name,
        handle,
        email: None,
        role: Role::Member,
        avatar_url,
        disabled_at: None,
        deleted_at: None,
        created_at: now,
        updated_at: now,
    };
    let connection = Connection {
        id: ConnectionId::generate(),
        workspace_id: bot.workspace_id.clone(),
        bot_id: bot.id.clone(),
        connection_type: plugin.manifest.id.clone(),
        config,
        follow_ups,
        budgets,
        created_at: now,
        updated_at: now,
    };
    let mut tx = app.db.begin().await?;
    store::users::insert(&mut tx, &bot)
        .await
        .map_err(|e| handle_taken(e, &bot.handle))?;
    store::connections::insert(&mut tx, &connection).await?;
    let webhook_secret = if delivers_webhooks(&plugin) {
        let secret = signing::generate_secret();
        add_webhook_secret(&mut tx, app, &connection.id, &secret, now).await?;
        Some(secret)
    } else {
        None
    };
    let scopes = Scopes::new([Scope::Read, Scope::Write]);
    let (token, plaintext) =
        tokens::mint(&mut tx, &bot, &format!("@{} bot token", bot.handle), scopes, None, now).await?;
    let details = json!({"name": bot.name, "handle": bot.handle, "connectionType": connection.connection_type, "tokenId": token.id});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("bot.create", "bot", &bot.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(CreatedBot {
        bot,
        connection,
        token: plaintext,
        webhook_secret,
    })
}

/// Changes to a bot; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct BotPatch {
    pub name: Option<String>,
    pub handle: Option<String>,
    /// `Some(None)` removes the avatar.
    pub avatar_url: Option<Option<String>>,
    /// A new connection config, validated by the connection's plugin.
    pub config: Option<serde_json::Value>,
    /// `continue` or `newSession`.
    pub follow_ups: Option<String>,
    /// New per-session budgets (all three replaced; absent ones take the defaults).
    pub budgets: Option<serde_json::Value>,
}

/// Changes a bot's name, handle, avatar or connection config.
pub async fn update(app: &App, caller: &Caller, id: &str, patch: BotPatch) -> Result<(User, Connection), Error> {
    if patch.name.is_none()
        && patch.handle.is_none()
        && patch.avatar_url.is_none()
        && patch.config.is_none()
        && patch.follow_ups.is_none()
        && patch.budgets.is_none()
    {
        return Err(Error::Invalid {
            field: None,
            message:
                "nothing to change: send at least one of name, handle, avatarUrl, connection.config, connection.followUps, connection.budgets"
                    .into(),
        });
    }
    let name = patch
        .name
        .as_deref()
        .map(|n| bounded_text("name", n, 1, 100))
        .transpose()?;
    let handle = patch.handle.as_deref().map(normalize_handle).transpose()?;
    let avatar_url = match &patch.avatar_url {
        Some(Some(url)) => Some(check_avatar_url(url)?),
        Some(None) => Some(None),
        None => None,
    };
    let (mut bot, mut connection) = {
        let mut conn = app.db.read().await?;
        let bot = find_bot(&mut conn, caller, id).await?;
        let connection = connection_of(&mut conn, &bot).await?;
        (bot, connection)
    };
    let config = match &patch.config {
        Some(config) => Some(validated_config(app, &*plugin(app, &connection.connection_type)?, config).await?),
        None => None,
    };
    let follow_ups = match patch.follow_ups.as_deref() {
        Some(mode) => Some(checked_follow_ups(&*plugin(app, &connection.connection_type)?, mode)?),
        None => None,
    };
    let budgets = patch.budgets.as_ref().map(checked_budgets).transpose()?;
    let now = app.clock.now();
    let mut changed = Vec::new();
    if let Some(name) = name.filter(|n| *n != bot.name) {
        bot.name = name;
        changed.push("name");
    }
    if let Some(handle) = handle.filter(|h| *h != bot.handle) {
        bot.handle = handle;
        changed.push("handle");
    }
    if let Some(avatar_url) = avatar_url.filter(|a| *a != bot.avatar_url) {
        bot.avatar_url = avatar_url;
        changed.push("avatarUrl");
    }
    bot.updated_at = now;
    let mut tx = app.db.begin().await?;
    store::users::update_profile(&mut tx, &bot)
        .await
        .map_err(|e| handle_taken(e, &bot.handle))?;
    let mut connection_changed = false;
    if let Some(config) = config {
        connection.config = config;
        connection_changed = true;
        changed.push("connection.config");
    }
    if let Some(mode) = follow_ups.filter(|m| connection.follow_ups.as_deref() != Some(m)) {
        connection.follow_ups = Some(mode);
        connection_changed = true;
        changed.push("connection.followUps");
    }
    if let Some(budgets) = budgets.filter(|b| connection.budgets.as_deref() != Some(b)) {
        connection.budgets = Some(budgets);
        connection_changed = true;
        changed.push("connection.budgets");
    }
    if connection_changed {
        connection.updated_at = now;
        store::connections::update_config(&mut tx, &connection).await?;
    }
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("bot.update", "bot", &bot.id, json!({"changed": changed})),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    app.tokens.forget_all();
    Ok((bot, connection))
}

/// Disables a bot: its tokens stop working at once, its unfinished sessions are canceled (the
/// plugin hears of it through `on-event`), and it takes no new work. Or enables it again.
pub async fn set_disabled(app: &App, caller: &Caller, id: &str, disabled: bool) -> Result<User, Error> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let mut bot = find_bot(&mut tx, caller, id).await?;
    if bot.disabled_at.is_some() == disabled {
        return Err(Error::Conflict(format!(
            "@{} is already {}",
            bot.handle,
            if disabled { "disabled" } else { "enabled" }
        )));
    }
    bot.disabled_at = disabled.then_some(now);
    bot.updated_at = now;
    store::users::set_disabled(&mut tx, &bot).await?;
    let (action, details) = if disabled {
        let canceled = cancel_open_sessions(
            &mut tx,
            &bot,
            &format!("@{} was disabled by {}", bot.handle, caller.user.name),
            now,
        )
        .await?;
        ("bot.disable", json!({"canceledSessions": canceled}))
    } else {
        ("bot.enable", json!({}))
    };
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new(action, "bot", &bot.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    app.tokens.forget_all();
    app.jobs_queued.notify_one();
    Ok(bot)
}

/// Deletes a bot: it keeps its place in history, but its tokens are revoked, its sessions
/// canceled, its handle freed, and it no longer appears in lists.
pub async fn delete(app: &App, caller: &Caller, id: &str) -> Result<(), Error> {
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let mut bot = find_bot(&mut tx, caller, id).await?;
    let handle = bot.handle.clone();
    let canceled = cancel_open_sessions(
        &mut tx,
        &bot,
        &format!("@{handle} was deleted by {}", caller.user.name),
        now,
    )
    .await?;
    let suffix: String = bot.id.as_str().chars().rev().take(20).collect();
    bot.handle = format!("deleted-{suffix}");
    bot.disabled_at = bot.disabled_at.or(Some(now));
    bot.deleted_at = Some(now);
    bot.updated_at = now;
    store::users::update_profile(&mut tx, &bot).await?;
    store::users::set_disabled(&mut tx, &bot).await?;
    store::users::mark_deleted(&mut tx, &bot.id, now).await?;
    let revoked = store::tokens::revoke_all_of(&mut tx, &bot.id, now).await?;
    let secrets = match store::connections::for_bot(&mut tx, &bot.id).await? {
        Some(connection) => store::connection_secrets::delete_all(&mut tx, &connection.id).await?,
        None => 0,
    };
    let details =
        json!({"handle": handle, "canceledSessions": canceled, "revokedTokens": revoked, "deletedSecrets": secrets});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("bot.delete", "bot", &bot.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    app.tokens.forget_all();
    app.jobs_queued.notify_one();
    Ok(())
}

/// Asks the connection's plugin whether the bot's stored config is (still) usable. The plugin may
/// check it with its provider (contract 0.1.2: `http` with the connection's secrets by
/// reference); what the host refused of its requests (a secret not set, a host not allowed) is
/// reported beside the plugin's own field errors.
pub async fn validate_connection(app: &Arc<App>, caller: &Caller, id: &str) -> Result<Vec<ConfigFieldError>, Error> {
    let (connection, workspace_hosts) = {
        let mut conn = app.db.read().await?;
        let bot = find_bot(&mut conn, caller, id).await?;
        let connection = connection_of(&mut conn, &bot).await?;
        let hosts =
            store::connection_types::outbound_hosts(&mut conn, &connection.workspace_id, &connection.connection_type)
                .await?;
        (connection, hosts)
    };
    let plugin = plugin(app, &connection.connection_type)?;
    let context = CallContext::for_connection(
        &plugin.manifest,
        plugin.grants,
        connection.workspace_id.clone(),
        connection.id.clone(),
    )
    .with_workspace_outbound_hosts(workspace_hosts);
    let services = Arc::new(SecretsOnly::new(app.clone()));
    match app
        .runtime
        .validate_saved(&plugin, context, services, &connection.config)
        .await
    {
        Ok(errors) => Ok(errors),
        Err(CallError::InvalidConfig(errors)) => Ok(errors),
        Err(other) => Err(Error::Internal(anyhow::anyhow!(
            "{}: validate-config failed: {other}",
            plugin.label()
        ))),
    }
}

/// Longest grace period during which a rotated-out secret keeps signing.
pub const MAX_SECRET_GRACE: Duration = Duration::from_secs(7 * 86_400);

/// Makes a new webhook secret the primary signer. Older secrets keep signing (after it) until
/// `grace` has passed, then retire. Returns the new secret (shown once) and when the old ones retire.
pub async fn rotate_webhook_secret(
    app: &App,
    caller: &Caller,
    id: &str,
    grace: Duration,
) -> Result<(String, Timestamp), Error> {
    if grace > MAX_SECRET_GRACE {
        return Err(Error::invalid(
            "graceSeconds",
            format!("`graceSeconds` is at most {}", MAX_SECRET_GRACE.as_secs()),
        ));
    }
    let now = app.clock.now();
    let retire_at = now.plus_millis(grace.as_millis() as i64);
    let mut tx = app.db.begin().await?;
    let bot = find_bot(&mut tx, caller, id).await?;
    let connection = connection_of(&mut tx, &bot).await?;
    if !delivers_webhooks(&*plugin(app, &connection.connection_type)?) {
        return Err(Error::Conflict(format!(
            "connection type `{}` does not sign webhooks",
            connection.connection_type
        )));
    }
    let retired = store::connections::retire_secrets(&mut tx, &connection.id, retire_at).await?;
    let secret = signing::generate_secret();
    let secret_id = add_webhook_secret(&mut tx, app, &connection.id, &secret, now).await?;
    let details = json!({"secretId": secret_id, "previousSecretsRetireAt": retire_at, "previousSecrets": retired});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("bot.webhook_secret.rotate", "bot", &bot.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((secret, retire_at))
}

/// Stores a new webhook signing secret of `connection`, sealed under the operator's key.
pub(crate) async fn add_webhook_secret(
    conn: &mut Conn,
    app: &App,
    connection: &ConnectionId,
    secret: &str,
    now: Timestamp,
) -> Result<SecretId, StoreError> {
    let sealed = app.secrets.seal(
        connection.as_str(),
        WEBHOOK_SIGNING_SECRET,
        &SecretValue::new(secret.to_owned()),
    );
    store::connections::insert_secret(conn, connection, &sealed, now).await
}

/// The bot `id` of the caller's workspace (not deleted), or 404.
pub async fn find_bot(conn: &mut Conn, caller: &Caller, id: &str) -> Result<User, Error> {
    store::users::get(conn, caller.workspace_id(), id)
        .await?
        .filter(|u| u.kind == UserKind::Bot && u.deleted_at.is_none())
        .ok_or_else(|| Error::not_found("bot", id))
}

/// The connection of `bot`.
pub async fn connection_of(conn: &mut Conn, bot: &User) -> Result<Connection, Error> {
    store::connections::for_bot(conn, &bot.id)
        .await?
        .ok_or_else(|| Error::Conflict(format!("bot @{} has no agent connection", bot.handle)))
}

/// Cancels every unfinished session of `bot` and queues the cancel for its plugin.
async fn cancel_open_sessions(
    tx: &mut Conn,
    bot: &User,
    reason: &str,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let mut canceled = Vec::new();
    for mut session in store::sessions::open_for_bot(tx, &bot.id).await? {
        sessions::cancel(tx, &mut session, reason.to_owned(), now).await?;
        canceled.push(session.id.to_string());
    }
    Ok(canceled)
}

fn plugin(app: &App, connection_type: &str) -> Result<std::sync::Arc<LoadedPlugin>, Error> {
    app.runtime.plugin(connection_type).ok_or_else(|| {
        Error::Conflict(format!(
            "connection type `{connection_type}` is not installed on this host"
        ))
    })
}

/// `mode` as stored, if the connection type supports it.
/// An admin's budgets in their stored form, or what to fix.
fn checked_budgets(value: &serde_json::Value) -> Result<String, Error> {
    let budgets = crate::domain::model::Budgets::parse(value).map_err(|m| Error::invalid("connection.budgets", m))?;
    Ok(serde_json::to_string(&budgets).unwrap_or_default())
}

fn checked_follow_ups(plugin: &LoadedPlugin, mode: &str) -> Result<String, Error> {
    match FollowUps::parse(mode) {
        Some(FollowUps::Continue) if !plugin.grants.contains(Capability::FollowUp) => Err(Error::invalid(
            "connection.followUps",
            format!(
                "connection type `{}` cannot continue a session (its manifest does not list the `follow-up` capability); use `newSession`",
                plugin.manifest.id
            ),
        )),
        Some(mode) => Ok(mode.as_str().to_owned()),
        None => Err(Error::invalid(
            "connection.followUps",
            format!(
                "`connection.followUps` is `continue` or `newSession`, not `{}`",
                mode.chars().take(40).collect::<String>()
            ),
        )),
    }
}

fn delivers_webhooks(plugin: &LoadedPlugin) -> bool {
    plugin.manifest.capabilities.iter().any(|c| c == "webhook")
}

/// The config as JSON text once the plugin accepted it; field errors otherwise.
async fn validated_config(app: &App, plugin: &LoadedPlugin, config: &serde_json::Value) -> Result<String, Error> {
    if !config.is_object() {
        return Err(Error::invalid(
            "connection.config",
            "`connection.config` must be a JSON object",
        ));
    }
    let text = config.to_string();
    match app.runtime.validate_config(plugin, &text).await {
        Ok(()) => Ok(text),
        Err(CallError::InvalidConfig(field_errors)) => Err(Error::InvalidConfig {
            message: format!(
                "the {} connection config is invalid: {}",
                plugin.manifest.id,
                CallError::InvalidConfig(field_errors.clone())
            ),
            field_errors,
        }),
        Err(other) => Err(Error::Internal(anyhow::anyhow!(
            "{}: validate-config failed: {other}",
            plugin.label()
        ))),
    }
}

/// `Ok(None)` for a blank URL, the URL when it is http(s) and not too long.
fn check_avatar_url(url: &str) -> Result<Option<String>, Error> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    let parsed =
        url::Url::parse(url).map_err(|e| Error::invalid("avatarUrl", format!("`avatarUrl` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || url.len() > 2048 {
        return Err(Error::invalid(
            "avatarUrl",
            "`avatarUrl` must be an http(s) URL of at most 2048 characters",
        ));
    }
    Ok(Some(url.to_owned()))
}
