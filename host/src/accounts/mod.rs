//! Workspaces, people, bots and their credentials: bootstrapping a workspace, people and tokens,
//! bots and their connections, connector setup codes, and resolving a bearer token to its caller.

pub mod bots;
pub mod connection_secrets;
pub mod connection_types;
pub mod setup;
pub mod tokens;

use crate::app::App;
use crate::audit::{self, Actor, ActorKind, Entry};
use crate::domain::bounded_text;
use crate::domain::ids::{StatusId, UserId, WorkspaceId};
use crate::domain::tasks::{DEFAULT_STATUSES, TaskStatus};
use crate::domain::tokens::{self as token_rules, ApiToken, Scope, Scopes};
use crate::domain::users::{Role, User, UserKind, Workspace, normalize_handle};
use crate::error::AppError;
use crate::store::{self, StoreError};

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
    let admin = new_person(
        &workspace.id,
        &request.admin_name,
        &request.admin_handle,
        request.admin_email,
        Role::Admin,
        now,
    )?;
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
    let (token, admin_token) = tokens::mint(
        &mut tx,
        &admin,
        "bootstrap admin token",
        Scopes::new(Scope::ALL),
        None,
        now,
    )
    .await?;
    let actor = Actor::system(Some(workspace.id.clone()));
    let details = serde_json::json!({"name": workspace.name, "adminId": admin.id, "adminHandle": admin.handle, "tokenId": token.id});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &actor,
        Entry::new("workspace.create", "workspace", &workspace.id, details),
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

fn new_person(
    workspace: &WorkspaceId,
    name: &str,
    handle: &str,
    email: Option<String>,
    role: Role,
    now: crate::domain::time::Timestamp,
) -> Result<User, AppError> {
    Ok(User {
        id: UserId::generate(),
        workspace_id: workspace.clone(),
        kind: UserKind::Person,
        name: bounded_text("name", name, 1, 100)?,
        handle: normalize_handle(handle)?,
        email: email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()),
        role,
        avatar_url: None,
        disabled_at: None,
        deleted_at: None,
        created_at: now,
        updated_at: now,
    })
}

/// A person an admin adds to the workspace.
#[derive(Debug, Clone)]
pub struct NewPerson {
    pub name: String,
    pub handle: String,
    pub email: Option<String>,
    pub role: Role,
}

/// Adds a person and mints their first token (read and write, plus admin for admins); the token
/// is returned once.
pub async fn add_person(app: &App, caller: &Caller, request: NewPerson) -> Result<(User, ApiToken, String), AppError> {
    let now = app.clock.now();
    let person = new_person(
        caller.workspace_id(),
        &request.name,
        &request.handle,
        request.email,
        request.role,
        now,
    )?;
    let scopes = match person.role {
        Role::Admin => Scopes::new(Scope::ALL),
        Role::Member => Scopes::new([Scope::Read, Scope::Write]),
    };
    let mut tx = app.db.begin().await?;
    store::users::insert(&mut tx, &person)
        .await
        .map_err(|e| handle_taken(e, &person.handle))?;
    let (token, plaintext) = tokens::mint(&mut tx, &person, "first token", scopes, None, now).await?;
    let details = serde_json::json!({"name": person.name, "handle": person.handle, "role": person.role.as_str(), "tokenId": token.id});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("person.create", "user", &person.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((person, token, plaintext))
}

/// A taken handle as a 409 that names it.
pub(crate) fn handle_taken(error: StoreError, handle: &str) -> AppError {
    match error {
        StoreError::Conflict(_) => {
            AppError::Conflict(format!("the handle @{handle} is already taken in this workspace"))
        }
        other => other.into(),
    }
}

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The caller behind a valid bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub token: ApiToken,
    pub request: RequestMeta,
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

    /// Refuses bots.
    pub fn require_person(&self) -> Result<(), AppError> {
        if self.user.kind != UserKind::Person {
            return Err(AppError::Forbidden(
                "bot tokens cannot manage tokens or the workspace".into(),
            ));
        }
        Ok(())
    }

    /// Whether the caller is a person admin with the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.require(Scope::Admin).is_ok()
    }

    /// The caller as the audit trail records them.
    pub fn actor(&self) -> Actor {
        Actor {
            kind: Some(match self.user.kind {
                UserKind::Person => ActorKind::Person,
                UserKind::Bot => ActorKind::Bot,
            }),
            id: Some(self.user.id.clone()),
            workspace_id: Some(self.user.workspace_id.clone()),
            token_id: Some(self.token.id.clone()),
            session_id: None,
            request_id: self.request.request_id.clone(),
            ip: self.request.ip.clone(),
            user_agent: self.request.user_agent.clone(),
        }
    }
}

/// Skip rewriting `last_used_at` more often than this, so reads stay reads.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Resolves a bearer token: checks its format offline, then finds it by digest and checks it is
/// not revoked or expired and its user is enabled.
pub async fn authenticate(app: &App, bearer: &str, request: RequestMeta) -> Result<Caller, AppError> {
    let unauthorized = |why: &str| AppError::Unauthorized(why.to_owned());
    token_rules::check_token_format(bearer, token_rules::TOKEN_PREFIX)
        .map_err(|_| unauthorized("the bearer token is not a valid Leadtime API token"))?;
    let digest = token_rules::token_digest(bearer);
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
    if token.revoked_at.is_some() || user.deleted_at.is_some() {
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
        store::tokens::touch(&mut tx, &token.id, now, request.ip.as_deref()).await?;
        tx.commit().await.map_err(StoreError::from)?;
    }
    Ok(Caller { user, token, request })
}
