//! `/bots` and `/connection-types`: bots (bot users with an agent connection) and the installed
//! connection types (plugins) a bot's connection can use.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Admin, Json, Reader};
use super::views::UserView;
use crate::accounts::{self, NewBot};
use crate::app::SharedApp;
use crate::domain::sessions::Connection;
use crate::domain::users::{User, UserKind};
use crate::error::{AppError, ErrorBody};
use crate::runtime::Manifest;
use crate::store;

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(create_bot, list_bots))
        .routes(routes!(get_bot))
        .routes(routes!(list_connection_types))
}

/// The connection of a new bot.
#[derive(Debug, Deserialize, ToSchema)]
struct NewConnection {
    /// A connection type id from `GET /api/public/connection-types`, e.g. `self-hosted`.
    #[serde(rename = "type")]
    connection_type: String,
    /// The config the connection type's schema describes, e.g. `{"webhookUrl": "https://…", "mode": "basic"}`.
    #[schema(value_type = Object)]
    config: serde_json::Value,
}

/// A bot to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateBot {
    name: String,
    /// Unique in the workspace; people @mention the bot with it.
    handle: String,
    avatar_url: Option<String>,
    connection: NewConnection,
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
    updated_at: String,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.id.to_string(),
            connection_type: c.connection_type.clone(),
            config: serde_json::from_str(&c.config).unwrap_or_default(),
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

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ConnectionTypeList {
    connection_types: Vec<Manifest>,
}

/// Create a bot
///
/// Creates a bot user with an agent connection whose config its connection type accepted (field
/// errors otherwise), and returns the bot's token and webhook secret — once. Admins only.
#[utoipa::path(post, path = "/bots", tag = "bots", operation_id = "createBot", request_body = CreateBot,
    responses((status = 201, body = CreatedBotView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
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
    };
    let created = accounts::create_bot(&app, caller.workspace_id(), request).await?;
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

async fn bot_view(conn: &mut store::Conn, bot: &User) -> Result<BotView, AppError> {
    let connection = store::connections::for_bot(conn, &bot.id).await?;
    Ok(BotView {
        user: UserView::from(bot),
        connection: connection.as_ref().map(ConnectionView::from),
    })
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
    let bot = store::users::get(&mut conn, caller.workspace_id(), &id)
        .await?
        .filter(|u| u.kind == UserKind::Bot)
        .ok_or_else(|| AppError::not_found("bot", &id))?;
    Ok(Json(bot_view(&mut conn, &bot).await?))
}

/// List connection types
///
/// The installed connection types (plugins): id, name, version, description, config schema,
/// secrets and outbound hosts.
#[utoipa::path(get, path = "/connection-types", tag = "bots", operation_id = "listConnectionTypes",
    responses((status = 200, body = ConnectionTypeList)))]
async fn list_connection_types(State(app): State<SharedApp>, Reader(_caller): Reader) -> Json<ConnectionTypeList> {
    Json(ConnectionTypeList {
        connection_types: app.runtime.plugins().iter().map(|p| p.manifest.clone()).collect(),
    })
}
