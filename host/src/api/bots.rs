//! `/bots` and `/connection-types`: bots (bot users with an agent connection), their lifecycle and
//! credentials, and the installed connection types (plugins) a workspace may use.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Admin, Json, JsonOrEmpty, Reader, whole_number};
use super::schema::{Change, require_a_change};
use super::views::UserView;
use crate::api::error::{AppError, ErrorBody};
use crate::app::SharedApp;
use crate::domain::sessions::Connection;
use crate::domain::users::{User, UserKind};
use crate::runtime::directory::PluginProblem;
use crate::runtime::{ConfigFieldError, LoadedPlugin, Manifest};
use crate::store;
use crate::use_cases::accounts::bots::{self, BotPatch, NewBot};
use crate::use_cases::accounts::{connection_secrets, setup};
use crate::use_cases::connection_types;

pub fn router() -> OpenApiRouter<SharedApp> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(create_bot, list_bots))
        .routes(routes!(get_bot, update_bot, delete_bot))
        .routes(routes!(disable_bot))
        .routes(routes!(enable_bot))
        .routes(routes!(validate_connection))
        .routes(routes!(create_setup_code))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(list_bot_secrets))
        .routes(routes!(set_bot_secret, delete_bot_secret))
        .routes(routes!(list_connection_types))
        .routes(routes!(update_connection_type));
    let document = router.get_openapi_mut();
    require_a_change::<UpdateBot>(
        document,
        &[
            Change::Value("name"),
            Change::Value("handle"),
            Change::Present("avatarUrl"),
            Change::Value("connection"),
        ],
    );
    require_a_change::<UpdateConnectionType>(document, &[Change::Value("enabled"), Change::Present("outboundHosts")]);
    router
}

/// The connection of a new bot.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct NewConnection {
    /// A connection type id from `GET /api/public/connection-types`, e.g. `self-hosted` (one that
    /// is not installed is answered 404, a disabled one 409).
    #[serde(rename = "type")]
    #[schema(pattern = r"^[a-z][a-z0-9-]{0,63}$")]
    connection_type: String,
    /// The config the connection type's `configSchema` describes, e.g.
    /// `{"webhookUrl": "https://…", "mode": "basic"}`; the connection type checks it (400 with
    /// `fieldErrors` when it refuses it).
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// What an @mention of the bot does while its latest session on the task is open: `continue`
    /// it (the plugin gets the comment as a follow-up; only for connection types whose manifest
    /// lists the `follow-up` capability) or open a `newSession`. Absent: `continue` where the type
    /// supports it, else `newSession`.
    #[schema(value_type = Option<String>, pattern = "^(continue|newSession)$")]
    follow_ups: Option<String>,
    /// Per-session budgets of native agent sessions (`model` capability): `modelCalls` (default
    /// 30; every attempt counts, retries too), `steps` (plugin calls on the session's events;
    /// default 100), `tokens` (default 400000), `wallSeconds` (default 3600). A session that
    /// exhausts one fails with a reason naming it.
    #[schema(value_type = Option<Object>)]
    budgets: Option<serde_json::Value>,
}

/// A bot to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateBot {
    /// 1–100 characters once trimmed.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u0000]{0,98}[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    name: String,
    /// Unique in the workspace (a taken one is answered 409); people @mention the bot with it.
    /// 2–32 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit; a leading `@`
    /// is dropped and letters are lowercased.
    #[schema(pattern = r"^@?[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")]
    handle: String,
    /// An http(s) URL of at most 2048 characters; `""` or `null` for none.
    #[schema(
        max_length = 2048,
        pattern = r"^(?:https?://(?:(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(?:[/?#][!-~]*)?)?$"
    )]
    avatar_url: Option<String>,
    connection: NewConnection,
}

/// Changes to the bot's connection: at least one of `config` and `followUps`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConnectionPatch {
    /// The config the bot's connection type checks (400 with `fieldErrors` when it refuses it).
    #[schema(value_type = Option<Object>)]
    config: Option<serde_json::Value>,
    /// `continue` or `newSession` (see creating a bot).
    #[schema(value_type = Option<String>, pattern = "^(continue|newSession)$")]
    follow_ups: Option<String>,
    /// Per-session budgets (see creating a bot); all three are replaced.
    #[schema(value_type = Option<Object>)]
    budgets: Option<serde_json::Value>,
}

/// Changes to a bot: at least one of `name`, `handle`, `avatarUrl` and `connection`; absent
/// fields (and `null` ones, except `avatarUrl`) stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UpdateBot {
    /// 1–100 characters once trimmed.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u0000]{0,98}[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    name: Option<String>,
    /// As when the bot was created: unique, 2–32 characters of a-z, 0-9, `-` and `_`.
    #[schema(pattern = r"^@?[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")]
    handle: Option<String>,
    /// An http(s) URL of at most 2048 characters; `null` or `""` removes the avatar.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable, max_length = 2048,
        pattern = r"^(?:https?://(?:(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(?:[/?#][!-~]*)?)?$")]
    avatar_url: Option<Option<String>>,
    connection: Option<ConnectionPatch>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// A bot's agent connection (never with secrets).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConnectionView {
    id: String,
    #[serde(rename = "type")]
    connection_type: String,
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// `continue`, `newSession`, or `null`: the connection type's default.
    follow_ups: Option<String>,
    /// Per-session budgets of model calls (the host's defaults when none were set).
    #[schema(value_type = Object)]
    budgets: serde_json::Value,
    updated_at: String,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.id.to_string(),
            connection_type: c.connection_type.clone(),
            config: serde_json::from_str(&c.config).unwrap_or_default(),
            follow_ups: c.follow_ups.clone(),
            budgets: serde_json::to_value(crate::domain::model::Budgets::from_stored(c.budgets.as_deref()))
                .unwrap_or_default(),
            updated_at: c.updated_at.to_iso(),
        }
    }
}

/// A bot and its connection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct BotView {
    #[serde(flatten)]
    user: UserView,
    connection: Option<ConnectionView>,
}

/// A created bot with its credentials, shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreatedBotView {
    bot: BotView,
    /// The bot's API token (`lt_pat_…`, scopes read and write). Store it now: it is never shown again.
    token: String,
    /// The webhook signing secret (`whsec_…`) for connection types that deliver webhooks. Shown once.
    webhook_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct BotList {
    bots: Vec<BotView>,
}

/// The outcome of validating a bot's connection.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ValidationResult {
    ok: bool,
    field_errors: Vec<ConfigFieldError>,
}

/// How long a new setup code lives.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SetupCodeRequest {
    /// Minutes until the code expires (1–10080, default 60).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 10080)]
    expires_in_minutes: Option<u64>,
}

/// A one-time setup code, shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SetupCodeView {
    /// `lt_conn_…`: give it to the wrapper, which claims it at `POST /api/public/agent-connectors/setup/claim`.
    setup_token: String,
    expires_at: String,
}

/// How long the old secrets keep signing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RotateSecret {
    /// Seconds the previous secrets keep signing after the new one (0–604800, default 86400).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 604800)]
    grace_seconds: Option<u64>,
}

/// The new primary secret, shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct RotatedSecret {
    webhook_secret: String,
    /// When the previous secrets stop signing.
    previous_secrets_retire_at: String,
}

/// A secret value to store. It is sealed at once and never shown again, not even to admins.
#[derive(Debug, Deserialize, ToSchema)]
struct SecretInput {
    /// The value, e.g. a provider API key: one line of printable ASCII (it is sent in an HTTP
    /// header), 1–8192 characters.
    #[schema(min_length = 1, max_length = 8192, pattern = r"^[ -~]+$")]
    value: String,
}

/// A secret the bot's connection type declares (never its value).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SecretStatusView {
    /// The name plugins refer to as `{{secret:NAME}}`.
    name: String,
    /// What to paste, from the connection type's manifest.
    description: String,
    /// Whether a value is stored.
    set: bool,
    /// When the value was last set.
    updated_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SecretList {
    secrets: Vec<SecretStatusView>,
}

/// An installed connection type and whether the caller's workspace may use it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConnectionTypeView {
    #[serde(flatten)]
    manifest: Manifest,
    /// Built into the host (enabled unless an admin disables it) or loaded from the plugins directory.
    builtin: bool,
    /// Whether bots of this workspace may use it.
    enabled: bool,
    /// The hosts this workspace lets the plugin call, when an admin narrowed them; `null`: every
    /// host in `outboundHosts`.
    allowed_outbound_hosts: Option<Vec<String>>,
}

impl ConnectionTypeView {
    fn new(plugin: &LoadedPlugin, setting: connection_types::Setting) -> Self {
        Self {
            manifest: plugin.manifest.clone(),
            builtin: plugin.is_builtin(),
            enabled: setting.enabled,
            allowed_outbound_hosts: setting.outbound_hosts,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConnectionTypeList {
    connection_types: Vec<ConnectionTypeView>,
    /// Plugin files in the host's plugins directory that failed to load, with why (admins only;
    /// empty for others).
    plugin_problems: Vec<PluginProblem>,
}

/// How the workspace may use a connection type: at least one of `enabled` and `outboundHosts`;
/// absent fields (and a `null` `enabled`) stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UpdateConnectionType {
    enabled: Option<bool>,
    /// Narrows the hosts the plugin may call in this workspace to these; `null` allows all of them
    /// again. Each is a host name, an IP address or `*.example.com` (no scheme, port or path), and
    /// must be listed in, or below a wildcard of, the manifest's `outboundHosts` (409 otherwise).
    #[serde(default, deserialize_with = "present_list")]
    #[schema(value_type = Option<Vec<String>>, nullable, max_length = 253,
        pattern = r"^(?:\*\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)$")]
    outbound_hosts: Option<Option<Vec<String>>>,
}

fn present_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<Vec<String>>>, D::Error> {
    Option::<Vec<String>>::deserialize(deserializer).map(Some)
}

async fn bot_view(conn: &mut store::Conn, bot: &User) -> Result<BotView, AppError> {
    let connection = store::connections::for_bot(conn, &bot.id).await?;
    Ok(BotView {
        user: UserView::from(bot),
        connection: connection.as_ref().map(ConnectionView::from),
    })
}

/// Create a bot
///
/// Creates a bot user with an agent connection of an enabled type whose config the type accepted
/// (field errors otherwise), and returns the bot's token and webhook secret — once. Admins only.
#[utoipa::path(post, path = "/bots", tag = "bots", operation_id = "createBot", request_body = CreateBot,
    responses((status = 201, body = CreatedBotView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_bot(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Json(body): Json<CreateBot>,
) -> Result<(StatusCode, Json<CreatedBotView>), AppError> {
    let request = NewBot {
        name: body.name,
        handle: body.handle,
        avatar_url: body.avatar_url,
        connection_type: body.connection.connection_type,
        config: body.connection.config,
        follow_ups: body.connection.follow_ups,
        budgets: body.connection.budgets,
    };
    let created = bots::create(&app, &caller, request).await?;
    let view = CreatedBotView {
        bot: BotView {
            user: UserView::from(&created.bot),
            connection: Some(ConnectionView::from(&created.connection)),
        },
        token: created.token,
        webhook_secret: created.webhook_secret,
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// List bots
///
/// The workspace's bots with their connections.
#[utoipa::path(get, path = "/bots", tag = "bots", operation_id = "listBots", responses((status = 200, body = BotList)))]
async fn list_bots(State(app): State<SharedApp>, Reader(caller): Reader) -> Result<Json<BotList>, AppError> {
    let mut conn = app.db.read().await?;
    let mut bots = Vec::new();
    for bot in store::users::list(&mut conn, caller.workspace_id(), Some(UserKind::Bot)).await? {
        bots.push(bot_view(&mut conn, &bot).await?);
    }
    Ok(Json(BotList { bots }))
}

/// Get a bot
///
/// One bot of the workspace with its connection.
#[utoipa::path(get, path = "/bots/{id}", tag = "bots", operation_id = "getBot",
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = BotView), (status = 404, body = ErrorBody)))]
async fn get_bot(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Path(id): Path<String>,
) -> Result<Json<BotView>, AppError> {
    let mut conn = app.db.read().await?;
    let bot = bots::find_bot(&mut conn, &caller, &id).await?;
    Ok(Json(bot_view(&mut conn, &bot).await?))
}

/// Update a bot
///
/// Changes the bot's name, handle, avatar or connection config (validated by its connection type). Admins only.
#[utoipa::path(patch, path = "/bots/{id}", tag = "bots", operation_id = "updateBot", request_body = UpdateBot,
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = BotView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_bot(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Json(body): Json<UpdateBot>,
) -> Result<Json<BotView>, AppError> {
    let patch = BotPatch {
        name: body.name,
        handle: body.handle,
        avatar_url: body.avatar_url,
        config: body.connection.as_ref().and_then(|c| c.config.clone()),
        follow_ups: body.connection.as_ref().and_then(|c| c.follow_ups.clone()),
        budgets: body.connection.and_then(|c| c.budgets),
    };
    let (bot, connection) = bots::update(&app, &caller, &id, patch).await?;
    Ok(Json(BotView {
        user: UserView::from(&bot),
        connection: Some(ConnectionView::from(&connection)),
    }))
}

/// Delete a bot
///
/// Revokes the bot's tokens, cancels its unfinished sessions and frees its handle; its past work
/// stays in task histories. Admins only.
#[utoipa::path(delete, path = "/bots/{id}", tag = "bots", operation_id = "deleteBot",
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
async fn delete_bot(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    bots::delete(&app, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disable a bot
///
/// Its tokens stop working at once, its unfinished sessions are canceled (its connection is told),
/// and it can no longer be assigned work. Admins only.
#[utoipa::path(post, path = "/bots/{id}/disable", tag = "bots", operation_id = "disableBot",
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn disable_bot(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<UserView>, AppError> {
    Ok(Json(UserView::from(
        &bots::set_disabled(&app, &caller, &id, true).await?,
    )))
}

/// Enable a bot
///
/// Lets a disabled bot work again (its tokens work again unless revoked). Admins only.
#[utoipa::path(post, path = "/bots/{id}/enable", tag = "bots", operation_id = "enableBot",
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn enable_bot(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<UserView>, AppError> {
    Ok(Json(UserView::from(
        &bots::set_disabled(&app, &caller, &id, false).await?,
    )))
}

/// Validate a bot's connection
///
/// Asks the connection type whether the bot's stored config is usable, with field errors when not.
/// The plugin may check it with its provider (for example, that the API key is accepted); when the
/// host refused one of its requests (a secret not set yet), that reason is listed with field `""`.
/// Admins only.
#[utoipa::path(post, path = "/bots/{id}/validate-connection", tag = "bots", operation_id = "validateBotConnection",
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = ValidationResult), (status = 404, body = ErrorBody)))]
async fn validate_connection(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<ValidationResult>, AppError> {
    let field_errors = bots::validate_connection(&app, &caller, &id).await?;
    Ok(Json(ValidationResult {
        ok: field_errors.is_empty(),
        field_errors,
    }))
}

/// Create a connector setup code
///
/// A one-time, expiring `lt_conn_` code for a self-hosted bot. A wrapper claims it to receive the
/// bot's token and webhook secret. Admins only.
#[utoipa::path(post, path = "/bots/{id}/setup-codes", tag = "bots", operation_id = "createBotSetupCode",
    request_body = SetupCodeRequest,
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 201, body = SetupCodeView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_setup_code(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<SetupCodeRequest>,
) -> Result<(StatusCode, Json<SetupCodeView>), AppError> {
    let ttl = body
        .expires_in_minutes
        .map(|m| Duration::from_secs(m.saturating_mul(60)));
    let (setup_token, expires_at) = setup::create_code(&app, &caller, &id, ttl).await?;
    Ok((
        StatusCode::CREATED,
        Json(SetupCodeView {
            setup_token,
            expires_at: expires_at.to_iso(),
        }),
    ))
}

/// Rotate a bot's webhook secret
///
/// A new secret signs first from now on; the previous ones keep signing after it for the grace
/// period, then retire. The new secret is shown only in this response. Admins only.
#[utoipa::path(post, path = "/bots/{id}/webhook-secret/rotate", tag = "bots", operation_id = "rotateBotWebhookSecret",
    request_body = RotateSecret,
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = RotatedSecret), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rotate_webhook_secret(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<RotateSecret>,
) -> Result<Json<RotatedSecret>, AppError> {
    let grace = Duration::from_secs(body.grace_seconds.unwrap_or(86_400));
    let (webhook_secret, retire_at) = bots::rotate_webhook_secret(&app, &caller, &id, grace).await?;
    Ok(Json(RotatedSecret {
        webhook_secret,
        previous_secrets_retire_at: retire_at.to_iso(),
    }))
}

/// List a bot's connection secrets
///
/// The secrets its connection type declares, each with whether it is set — never a value.
/// Admins only.
#[utoipa::path(get, path = "/bots/{id}/secrets", tag = "bots", operation_id = "listBotSecrets",
    params(("id" = String, Path, description = "Bot id")),
    responses((status = 200, body = SecretList), (status = 404, body = ErrorBody)))]
async fn list_bot_secrets(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<Json<SecretList>, AppError> {
    let secrets = connection_secrets::list(&app, &caller, &id)
        .await?
        .into_iter()
        .map(|s| SecretStatusView {
            name: s.spec.name,
            description: s.spec.description,
            set: s.updated_at.is_some(),
            updated_at: s.updated_at.map(|t| t.to_iso()),
        })
        .collect();
    Ok(Json(SecretList { secrets }))
}

/// Set a connection secret
///
/// Stores (or replaces) a secret the bot's connection type declares, e.g. its provider API key.
/// The value is encrypted at rest, is never returned by any call, and never enters the plugin:
/// the host inserts it into the plugin's outbound requests to allowed hosts. Admins only.
#[utoipa::path(put, path = "/bots/{id}/secrets/{name}", tag = "bots", operation_id = "setBotSecret",
    request_body = SecretInput,
    params(("id" = String, Path, description = "Bot id"), ("name" = String, Path, description = "Secret name from the connection type's manifest (another name is answered 404)")),
    responses((status = 204, description = "Stored"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn set_bot_secret(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path((id, name)): Path<(String, String)>,
    Json(body): Json<SecretInput>,
) -> Result<StatusCode, AppError> {
    connection_secrets::set(&app, &caller, &id, &name, body.value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove a connection secret
///
/// Requests that refer to it are refused from now on. Admins only.
#[utoipa::path(delete, path = "/bots/{id}/secrets/{name}", tag = "bots", operation_id = "deleteBotSecret",
    params(("id" = String, Path, description = "Bot id"), ("name" = String, Path, description = "Secret name")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody)))]
async fn delete_bot_secret(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path((id, name)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    connection_secrets::remove(&app, &caller, &id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List connection types
///
/// The installed connection types (plugins) with their config schema, secrets and outbound hosts,
/// and whether this workspace may use each.
#[utoipa::path(get, path = "/connection-types", tag = "bots", operation_id = "listConnectionTypes",
    responses((status = 200, body = ConnectionTypeList)))]
async fn list_connection_types(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
) -> Result<Json<ConnectionTypeList>, AppError> {
    let mut conn = app.db.read().await?;
    let choices = connection_types::choices(&mut conn, caller.workspace_id()).await?;
    let connection_types = app
        .runtime
        .plugins()
        .iter()
        .map(|plugin| ConnectionTypeView::new(plugin, connection_types::setting(plugin, &choices)))
        .collect();
    let plugin_problems = match &app.plugin_directory {
        Some(directory) if caller.is_admin() => directory.problems(),
        _ => Vec::new(),
    };
    Ok(Json(ConnectionTypeList {
        connection_types,
        plugin_problems,
    }))
}

/// Enable, disable or restrict a connection type
///
/// Decides whether this workspace's bots may use a connection type. While disabled, no bot can be
/// given a connection of that type and new sessions of its bots fail with a clear reason. An admin
/// may also narrow the hosts the plugin may call in this workspace. Admins only.
#[utoipa::path(patch, path = "/connection-types/{id}", tag = "bots", operation_id = "updateConnectionType",
    request_body = UpdateConnectionType,
    params(("id" = String, Path, description = "Connection type id, e.g. `self-hosted`")),
    responses((status = 200, body = ConnectionTypeView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_connection_type(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Path(id): Path<String>,
    Json(body): Json<UpdateConnectionType>,
) -> Result<Json<ConnectionTypeView>, AppError> {
    let change = connection_types::SettingChange {
        enabled: body.enabled,
        outbound_hosts: body.outbound_hosts,
    };
    let setting = connection_types::update(&app, &caller, &id, change).await?;
    let plugin = app
        .runtime
        .plugin(&id)
        .ok_or_else(|| AppError::not_found("connection type", &id))?;
    Ok(Json(ConnectionTypeView::new(&plugin, setting)))
}
