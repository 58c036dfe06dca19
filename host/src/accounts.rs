//! Workspaces, people, bots and their credentials: bootstrapping a workspace with its first admin,
//! creating a bot with its agent connection, and resolving a bearer token to its caller.

use crate::app::App;
use crate::delivery::signing;
use crate::domain::bounded_text;
use crate::domain::ids::{ConnectionId, StatusId, TokenId, UserId, WorkspaceId};
use crate::domain::sessions::Connection;
use crate::domain::tasks::{DEFAULT_STATUSES, TaskStatus};
use crate::domain::time::Timestamp;
use crate::domain::tokens::{self, ApiToken, Scope, Scopes};
use crate::domain::users::{Role, User, UserKind, Workspace, normalize_handle};
use crate::error::AppError;
use crate::runtime::CallError;
use crate::store::{self, Conn, StoreError};

/// A new workspace and the admin who owns it.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub workspace_name: String,
    pub admin_name: String,
    pub admin_handle: String,
    pub admin_email: Option<String>,
}

/// What bootstrapping returns; `admin_token` is shown once.
#[derive(Debug, Clone)]
pub struct Bootstrapped {
    pub workspace: Workspace,
    pub admin: User,
    pub admin_token: String,
}

/// Creates a workspace with the default task statuses, its first admin, and an admin token
/// (scopes read, write, admin).
pub async fn bootstrap(app: &App, request: Bootstrap) -> Result<Bootstrapped, AppError> {
    let now = app.clock.now();
    let workspace = Workspace {
        id: WorkspaceId::generate(),
        name: bounded_text("workspaceName", &request.workspace_name, 1, 100)?,
        created_at: now,
    };
    let admin = User {
        id: UserId::generate(),
        workspace_id: workspace.id.clone(),
        kind: UserKind::Person,
        name: bounded_text("name", &request.admin_name, 1, 100)?,
        handle: normalize_handle(&request.admin_handle)?,
        email: request
            .admin_email
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty()),
        role: Role::Admin,
        avatar_url: None,
        disabled_at: None,
        created_at: now,
        updated_at: now,
    };
    let mut tx = app.db.begin().await?;
    store::workspaces::insert(&mut tx, &workspace).await?;
    for (position, (name, category)) in DEFAULT_STATUSES.iter().enumerate() {
        let status = TaskStatus {
            id: StatusId::generate(),
            workspace_id: workspace.id.clone(),
            name: (*name).to_owned(),
            category: *category,
            position: position as i64,
        };
        store::tasks::insert_status(&mut tx, &status).await?;
    }
    store::users::insert(&mut tx, &admin).await?;
    let admin_token = mint_token(
        &mut tx,
        &admin,
        "bootstrap admin token",
        Scopes::new(Scope::ALL),
        None,
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(Bootstrapped {
        workspace,
        admin,
        admin_token,
    })
}

/// Mints a token for `user` and stores its digest; returns the plaintext (show it once).
pub async fn mint_token(
    tx: &mut Conn,
    user: &User,
    name: &str,
    scopes: Scopes,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<String, StoreError> {
    let plaintext = tokens::generate_token();
    let token = ApiToken {
        id: TokenId::generate(),
        workspace_id: user.workspace_id.clone(),
        user_id: user.id.clone(),
        name: name.to_owned(),
        scopes,
        expires_at,
        last_used_at: None,
        revoked_at: None,
        created_at: now,
    };
    store::tokens::insert(tx, &token, &tokens::token_digest(&plaintext)).await?;
    Ok(plaintext)
}

/// A bot to create, with its connection.
#[derive(Debug, Clone)]
pub struct NewBot {
    pub name: String,
    pub handle: String,
    pub avatar_url: Option<String>,
    pub connection_type: String,
    pub config: serde_json::Value,
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

/// Creates a bot in `workspace` with a connection whose config its plugin accepted, a bot token
/// (read, write) and — for webhook-delivering types — a signing secret.
pub async fn create_bot(app: &App, workspace: &WorkspaceId, request: NewBot) -> Result<CreatedBot, AppError> {
    let name = bounded_text("name", &request.name, 1, 100)?;
    let handle = normalize_handle(&request.handle)?;
    let avatar_url = match request
        .avatar_url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
    {
        Some(url) => Some(check_avatar_url(&url)?),
        None => None,
    };
    let plugin = app.runtime.plugin(&request.connection_type).ok_or_else(|| {
        let installed: Vec<String> = app.runtime.plugins().iter().map(|p| p.manifest.id.clone()).collect();
        AppError::invalid(
            "connection.type",
            format!(
                "unknown connection type `{}`; installed: {}",
                request.connection_type,
                installed.join(", ")
            ),
        )
    })?;
    if !request.config.is_object() {
        return Err(AppError::invalid(
            "connection.config",
            "`connection.config` must be a JSON object",
        ));
    }
    let config = request.config.to_string();
    match app.runtime.validate_config(&plugin, &config).await {
        Ok(()) => {}
        Err(CallError::InvalidConfig(field_errors)) => {
            return Err(AppError::InvalidConfig {
                message: format!(
                    "the {} connection config is invalid: {}",
                    plugin.manifest.id,
                    CallError::InvalidConfig(field_errors.clone())
                ),
                field_errors,
            });
        }
        Err(other) => {
            return Err(AppError::Internal(anyhow::anyhow!(
                "{}: validate-config failed: {other}",
                plugin.label()
            )));
        }
    }

    let now = app.clock.now();
    let bot = User {
        id: UserId::generate_bot(),
        workspace_id: workspace.clone(),
        kind: UserKind::Bot,
        name,
        handle,
        email: None,
        role: Role::Member,
        avatar_url,
        disabled_at: None,
        created_at: now,
        updated_at: now,
    };
    let connection = Connection {
        id: ConnectionId::generate(),
        workspace_id: workspace.clone(),
        bot_id: bot.id.clone(),
        connection_type: plugin.manifest.id.clone(),
        config,
        created_at: now,
        updated_at: now,
    };
    let mut tx = app.db.begin().await?;
    store::users::insert(&mut tx, &bot).await.map_err(|e| match e {
        StoreError::Conflict(_) => {
            AppError::Conflict(format!("the handle @{} is already taken in this workspace", bot.handle))
        }
        other => other.into(),
    })?;
    store::connections::insert(&mut tx, &connection).await?;
    let webhook_secret = if plugin.manifest.capabilities.iter().any(|c| c == "webhook") {
        let secret = signing::generate_secret();
        store::connections::insert_secret(&mut tx, &connection.id, &secret, now).await?;
        Some(secret)
    } else {
        None
    };
    let token = mint_token(
        &mut tx,
        &bot,
        &format!("@{} bot token", bot.handle),
        Scopes::new([Scope::Read, Scope::Write]),
        None,
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(CreatedBot {
        bot,
        connection,
        token,
        webhook_secret,
    })
}

fn check_avatar_url(url: &str) -> Result<String, AppError> {
    let parsed =
        url::Url::parse(url).map_err(|e| AppError::invalid("avatarUrl", format!("`avatarUrl` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || url.len() > 2048 {
        return Err(AppError::invalid(
            "avatarUrl",
            "`avatarUrl` must be an http(s) URL of at most 2048 characters",
        ));
    }
    Ok(url.to_owned())
}

/// The caller behind a valid bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub token: ApiToken,
}

impl Caller {
    /// The caller's workspace.
    pub fn workspace_id(&self) -> &WorkspaceId {
        &self.user.workspace_id
    }

    /// Refuses the call unless the token has `scope` (and, for `admin`, the user is a person admin).
    pub fn require(&self, scope: Scope) -> Result<(), AppError> {
        if scope == Scope::Admin && (self.user.kind != UserKind::Person || self.user.role != Role::Admin) {
            return Err(AppError::Forbidden(
                "only workspace admins may do this; bot tokens never can".into(),
            ));
        }
        if !self.token.scopes.contains(scope) {
            return Err(AppError::Forbidden(format!(
                "this token lacks the `{}` scope (it has: {})",
                scope.as_str(),
                self.token.scopes.names().join(", ")
            )));
        }
        Ok(())
    }
}

/// Skip rewriting `last_used_at` more often than this, so reads stay reads.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Resolves a bearer token: checks its format offline, then finds it by digest and checks it is
/// not revoked or expired and its user is enabled.
pub async fn authenticate(app: &App, bearer: &str, ip: Option<&str>) -> Result<Caller, AppError> {
    let unauthorized = |why: &str| AppError::Unauthorized(why.to_owned());
    tokens::check_token_format(bearer, tokens::TOKEN_PREFIX)
        .map_err(|_| unauthorized("the bearer token is not a valid Leadtime API token"))?;
    let digest = tokens::token_digest(bearer);
    let now = app.clock.now();
    let (token, user) = {
        let mut conn = app.db.read().await?;
        let token = store::tokens::find_by_digest(&mut conn, &digest)
            .await?
            .ok_or_else(|| unauthorized("unknown or revoked token"))?;
        let user = store::users::get_any(&mut conn, &token.user_id)
            .await?
            .ok_or_else(|| unauthorized("unknown or revoked token"))?;
        (token, user)
    };
    if token.revoked_at.is_some() {
        return Err(unauthorized("unknown or revoked token"));
    }
    if token.expires_at.is_some_and(|at| at <= now) {
        return Err(unauthorized("this token has expired; create a new one"));
    }
    if !user.is_enabled() {
        return Err(unauthorized(&format!("@{} is disabled", user.handle)));
    }
    if token
        .last_used_at
        .is_none_or(|at| now.millis() - at.millis() > TOUCH_INTERVAL_MS)
    {
        let mut tx = app.db.begin().await?;
        store::tokens::touch(&mut tx, &token.id, now, ip).await?;
        tx.commit().await.map_err(StoreError::from)?;
    }
    Ok(Caller { user, token })
}
