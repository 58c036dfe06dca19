//! Connector setup codes (wire contract §4): an admin creates a one-time, expiring `lt_conn_` code
//! for a bot; a wrapper claims it with its public URL and receives the bot's fresh token and
//! webhook secret, once.

use std::time::Duration;

use serde_json::json;

use crate::app::App;
use crate::audit::{self, Actor, ActorKind, Entry};
use crate::domain::connection_schema::{self, WEBHOOK_URL_ROLE};
use crate::domain::ids::new_id;
use crate::domain::time::Timestamp;
use crate::domain::tokens::{self as token_rules, Scope, Scopes};
use crate::domain::webhook_signing as signing;
use crate::store::{self, StoreError};
use crate::use_cases::error::Error;

use super::bots::{connection_of, find_bot};
use super::{Caller, RequestMeta, tokens};

/// Prefix of setup codes.
pub const SETUP_CODE_PREFIX: &str = "lt_conn_";
/// Where wrappers listen, appended to their public URL.
pub const WEBHOOK_PATH: &str = "/leadtime/webhook";
/// Lifetime of a setup code unless the admin asks otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Longest lifetime of a setup code.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 86_400);

/// Whether bots of `connection_type` take setup codes: its config names a webhook URL (the
/// wrapper's), which claiming a code fills in.
pub fn takes_setup_codes(app: &App, connection_type: &str) -> bool {
    app.runtime
        .plugin(connection_type)
        .is_some_and(|p| connection_schema::field_with_role(&p.manifest.config_schema, WEBHOOK_URL_ROLE).is_some())
}

/// Creates a one-time setup code for a self-hosted bot; returns it (shown once) and its expiry.
pub async fn create_code(
    app: &App,
    caller: &Caller,
    bot_id: &str,
    ttl: Option<Duration>,
) -> Result<(String, Timestamp), Error> {
    let ttl = ttl.unwrap_or(DEFAULT_TTL);
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(Error::invalid(
            "expiresInMinutes",
            format!("`expiresInMinutes` must be 1–{}", MAX_TTL.as_secs() / 60),
        ));
    }
    let now = app.clock.now();
    let expires_at = now.plus_millis(ttl.as_millis() as i64);
    let code = token_rules::generate_with_prefix(SETUP_CODE_PREFIX);
    let mut tx = app.db.begin().await?;
    let bot = find_bot(&mut tx, caller, bot_id).await?;
    let connection_type = connection_of(&mut tx, &bot).await?.connection_type;
    if !takes_setup_codes(app, &connection_type) {
        return Err(Error::Conflict(format!(
            "@{}'s connection type `{connection_type}` names no webhook URL in its config; setup codes are for \
             connections that deliver to a wrapper (such as self-hosted)",
            bot.handle
        )));
    }
    let id = new_id("stc");
    store::setup_codes::insert(
        &mut tx,
        &id,
        caller.workspace_id(),
        &bot.id,
        &token_rules::token_digest(&code),
        expires_at,
        &caller.user.id,
        now,
    )
    .await?;
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new(
            "bot.setup_code.create",
            "bot",
            &bot.id,
            json!({"setupCodeId": id, "expiresAt": expires_at}),
        ),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((code, expires_at))
}

/// A wrapper's claim.
#[derive(Debug, Clone)]
pub struct Claim {
    pub setup_token: String,
    /// The wrapper's public base URL; the webhook goes to it + [`WEBHOOK_PATH`].
    pub gateway_public_url: String,
    pub agent_id: Option<String>,
    pub runtime_version: Option<String>,
}

/// What a successful claim answers (secrets shown only here).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub bot_user_id: String,
    pub bot_pat: String,
    pub webhook_secret: String,
    pub bot_name: String,
    pub agent_id: Option<String>,
    pub mode: String,
    pub instructions: String,
    pub webhook_path: &'static str,
    pub expose_raw_api_credential_to_agent: bool,
}

/// Claims a setup code: stores the webhook URL on the bot's connection, mints a fresh bot token and
/// webhook secret (older secrets retire at once), and marks the code used.
///
/// A malformed request is a 400; a well-formed code that was never issued a 404 (its checksum is
/// checked first, so look-alikes cost no lookup), a used one a 409, an expired one a 410.
pub async fn claim(app: &App, request: Claim, meta: RequestMeta) -> Result<Claimed, Error> {
    let setup_token = request.setup_token.trim();
    if !token_rules::has_token_shape(setup_token, SETUP_CODE_PREFIX) {
        return Err(Error::invalid(
            "setupToken",
            "`setupToken` is not a setup code (`lt_conn_` and 38 letters and digits); copy it whole",
        ));
    }
    let unknown = || Error::NotFound("this setup code is not valid; ask an admin for a new one".into());
    let gateway = request.gateway_public_url.trim().trim_end_matches('/');
    let parsed = url::Url::parse(gateway)
        .map_err(|e| Error::invalid("gatewayPublicUrl", format!("`gatewayPublicUrl` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::invalid(
            "gatewayPublicUrl",
            "`gatewayPublicUrl` must be an absolute http(s) URL",
        ));
    }
    let webhook_url = format!("{gateway}{WEBHOOK_PATH}");
    for (field, value) in [
        ("agentId", &request.agent_id),
        ("runtimeVersion", &request.runtime_version),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > 200) {
            return Err(Error::invalid(field, format!("`{field}` is at most 200 bytes")));
        }
    }
    token_rules::check_token_format(setup_token, SETUP_CODE_PREFIX).map_err(|_| unknown())?;

    let now = app.clock.now();
    // Read and check everything, and let the plugin validate the new config, before the write
    // transaction: no plugin call runs while it is held. The transaction then claims the code
    // only if nobody else did meanwhile, and the connection only if it did not change.
    let digest = token_rules::token_digest(setup_token);
    let (code, bot, mut connection) = {
        let mut conn = app.db.read().await?;
        let code = store::setup_codes::find_by_digest(&mut conn, &digest)
            .await?
            .ok_or_else(unknown)?;
        if code.claimed_at.is_some() {
            return Err(Error::Conflict(
                "this setup code was already used; ask an admin for a new one".into(),
            ));
        }
        if code.expires_at <= now {
            return Err(Error::Gone(
                "this setup code has expired; ask an admin for a new one".into(),
            ));
        }
        let bot = store::users::get_any(&mut conn, &code.bot_id)
            .await?
            .filter(|b| b.deleted_at.is_none() && b.is_enabled())
            .ok_or_else(|| Error::Conflict("the bot of this setup code is disabled or deleted".into()))?;
        let connection = connection_of(&mut conn, &bot).await?;
        (code, bot, connection)
    };
    let plugin = app.runtime.plugin(&connection.connection_type).ok_or_else(|| {
        Error::Conflict(format!(
            "connection type `{}` of this bot is not installed on this host",
            connection.connection_type
        ))
    })?;
    let schema = &plugin.manifest.config_schema;
    let webhook_field = connection_schema::field_with_role(schema, WEBHOOK_URL_ROLE).ok_or_else(|| {
        Error::Conflict(format!(
            "connection type `{}` names no webhook URL in its config, so it takes no setup codes",
            connection.connection_type
        ))
    })?;
    let previous_config = connection.config.clone();
    let mut config: serde_json::Value = serde_json::from_str(&connection.config).unwrap_or_else(|_| json!({}));
    config[webhook_field] = json!(webhook_url);
    let config_text = config.to_string();
    if let Err(error) = app.runtime.validate_config(&plugin, &config_text).await {
        return Err(Error::invalid(
            "gatewayPublicUrl",
            format!("the resulting connection is not valid: {error}"),
        ));
    }
    let answer = connection_schema::claim_fields(schema, &config);
    let answered = |field: &str| answer.iter().find(|(f, _)| f == field).map(|(_, v)| v.clone());

    let mut tx = app.db.begin().await?;
    if !store::setup_codes::mark_claimed(&mut tx, &code.id, now).await? {
        return Err(Error::Conflict(
            "this setup code was already used; ask an admin for a new one".into(),
        ));
    }
    if store::connections::for_bot(&mut tx, &bot.id)
        .await?
        .is_none_or(|c| c.id != connection.id || c.config != previous_config)
    {
        return Err(Error::Conflict(
            "the bot's connection changed while the code was claimed; ask an admin for a new code".into(),
        ));
    }
    connection.config = config_text;
    connection.updated_at = now;
    store::connections::update_config(&mut tx, &connection).await?;
    store::connections::retire_secrets(&mut tx, &connection.id, now).await?;
    let webhook_secret = signing::generate_secret();
    super::bots::add_webhook_secret(&mut tx, app, &connection.id, &webhook_secret, now).await?;
    let name = format!(
        "setup claim{}",
        request
            .agent_id
            .as_deref()
            .map(|a| format!(" by {a}"))
            .unwrap_or_default()
    );
    tokens::ensure_room_for_token(&mut tx, &bot, now).await?;
    let (token, bot_pat) = tokens::mint(
        &mut tx,
        &bot,
        &name,
        Scopes::new([Scope::Read, Scope::Write]),
        None,
        now,
    )
    .await?;
    let actor = Actor {
        kind: Some(ActorKind::Bot),
        id: Some(bot.id.clone()),
        workspace_id: Some(bot.workspace_id.clone()),
        token_id: None,
        session_id: None,
        request_id: meta.request_id,
        ip: meta.ip,
        user_agent: meta.user_agent,
    };
    let details = json!({
        "setupCodeId": code.id, "webhookUrl": webhook_url, "tokenId": token.id,
        "agentId": request.agent_id, "runtimeVersion": request.runtime_version,
    });
    audit::record(
        &mut tx,
        &app.audit_keys,
        &actor,
        Entry::new("bot.setup_code.claim", "bot", &bot.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;

    Ok(Claimed {
        bot_user_id: bot.id.to_string(),
        bot_pat,
        webhook_secret,
        bot_name: bot.name,
        agent_id: request.agent_id,
        // The answer's fields (wire contract §4), from the fields the connection type declares.
        mode: answered("mode")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "basic".into()),
        instructions: answered("guidance.instructions")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        webhook_path: WEBHOOK_PATH,
        expose_raw_api_credential_to_agent: answered("exposeRawApiCredentialToAgent")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}
