//! Workspaces, people, bots and their credentials: bootstrapping a workspace, people and tokens,
//! bots and their connections, connector setup codes, and resolving a bearer token to its caller.

pub mod bots;
pub mod connection_secrets;
pub mod setup;
pub mod tokens;

pub use super::caller::{Caller, RequestMeta};

use crate::app::App;
use crate::audit::{self, Actor, Entry};
use crate::domain::bounded_text;
use crate::domain::ids::{StatusId, UserId, WorkspaceId};
use crate::domain::tasks::{DEFAULT_STATUSES, TaskStatus};
use crate::domain::tokens::{ApiToken, Scope, Scopes};
use crate::domain::users::{Role, User, UserKind, Workspace, normalize_handle};
use crate::store::{self, StoreError};
use crate::use_cases::error::Error;

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
pub async fn bootstrap(app: &App, request: Bootstrap) -> Result<Bootstrapped, Error> {
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
) -> Result<User, Error> {
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
pub async fn add_person(app: &App, caller: &Caller, request: NewPerson) -> Result<(User, ApiToken, String), Error> {
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
pub(crate) fn handle_taken(error: StoreError, handle: &str) -> Error {
    match error {
        StoreError::Conflict(_) => Error::Conflict(format!("the handle @{handle} is already taken in this workspace")),
        other => other.into(),
    }
}
