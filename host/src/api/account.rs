//! `/account`, `/workspace` and `/users`: who the caller is, their workspace, and its people and bots.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::http::StatusCode;

use super::extract::{Admin, Json, Query, Reader};
use super::views::{StatusView, UserView};
use crate::api::error::{AppError, ErrorBody};
use crate::app::SharedApp;
use crate::domain::users::Role;
use crate::domain::users::UserKind;
use crate::store;
use crate::use_cases::accounts::{self, Caller, NewPerson};

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(account_info))
        .routes(routes!(workspace_details))
        .routes(routes!(list_users))
        .routes(routes!(add_person))
}

/// The caller's token (never the token itself).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TokenView {
    id: String,
    name: String,
    scopes: Vec<&'static str>,
    expires_at: Option<String>,
}

/// A workspace, briefly.
#[derive(Debug, Serialize, ToSchema)]
struct WorkspaceRef {
    id: String,
    name: String,
}

/// Who is calling.
#[derive(Debug, Serialize, ToSchema)]
struct AccountInfo {
    user: UserView,
    workspace: WorkspaceRef,
    token: TokenView,
}

/// The caller's workspace.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct WorkspaceDetails {
    id: String,
    name: String,
    created_at: String,
    statuses: Vec<StatusView>,
    people: usize,
    bots: usize,
}

#[derive(Debug, Serialize, ToSchema)]
struct UserList {
    users: Vec<UserView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UserQuery {
    /// `person` or `bot`; both when absent or empty.
    #[param(pattern = r"^(?:person|bot)?$")]
    kind: Option<String>,
}

async fn workspace_ref(app: &SharedApp, caller: &Caller) -> Result<crate::domain::users::Workspace, AppError> {
    let mut conn = app.db.read().await?;
    store::workspaces::get(&mut conn, caller.workspace_id())
        .await?
        .ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!(
                "workspace {} of a valid token is missing",
                caller.workspace_id()
            ))
        })
}

/// Get the caller's account
///
/// The person or bot the token belongs to, their workspace and the token's scopes.
#[utoipa::path(get, path = "/account/info", tag = "account", operation_id = "getAccountInfo", responses((status = 200, body = AccountInfo)))]
async fn account_info(State(app): State<SharedApp>, Reader(caller): Reader) -> Result<Json<AccountInfo>, AppError> {
    let workspace = workspace_ref(&app, &caller).await?;
    Ok(Json(AccountInfo {
        user: UserView::from(&caller.user),
        workspace: WorkspaceRef {
            id: workspace.id.to_string(),
            name: workspace.name,
        },
        token: TokenView {
            id: caller.token.id.to_string(),
            name: caller.token.name.clone(),
            scopes: caller.token.scopes.names(),
            expires_at: caller.token.expires_at.map(|t| t.to_iso()),
        },
    }))
}

/// Get the workspace
///
/// The caller's workspace with its task statuses and how many people and bots it has.
#[utoipa::path(get, path = "/workspace/details", tag = "account", operation_id = "getWorkspaceDetails", responses((status = 200, body = WorkspaceDetails)))]
async fn workspace_details(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
) -> Result<Json<WorkspaceDetails>, AppError> {
    let workspace = workspace_ref(&app, &caller).await?;
    let mut conn = app.db.read().await?;
    let statuses = store::tasks::statuses(&mut conn, &workspace.id).await?;
    let users = store::users::list(&mut conn, &workspace.id, None).await?;
    Ok(Json(WorkspaceDetails {
        id: workspace.id.to_string(),
        name: workspace.name,
        created_at: workspace.created_at.to_iso(),
        statuses: statuses.iter().map(StatusView::from).collect(),
        people: users.iter().filter(|u| u.kind == UserKind::Person).count(),
        bots: users.iter().filter(|u| u.kind == UserKind::Bot).count(),
    }))
}

/// List people and bots
///
/// The workspace's users for an assignee picker: people first, then bots, each with `kind` and `enabled`.
#[utoipa::path(get, path = "/users", tag = "account", operation_id = "listUsers", params(UserQuery),
    responses((status = 200, body = UserList), (status = 400, body = ErrorBody)))]
async fn list_users(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Query(query): Query<UserQuery>,
) -> Result<Json<UserList>, AppError> {
    let kind = match query.kind.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            UserKind::parse(text)
                .ok_or_else(|| AppError::invalid("kind", format!("unknown kind `{text}`; allowed: person, bot")))?,
        ),
    };
    let mut conn = app.db.read().await?;
    let users = store::users::list(&mut conn, caller.workspace_id(), kind).await?;
    Ok(Json(UserList {
        users: users.iter().map(UserView::from).collect(),
    }))
}

/// A person to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AddPerson {
    /// 1–100 characters once trimmed.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u0000]{0,98}[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    name: String,
    /// Unique in the workspace (a taken one is answered 409). 2–32 characters of a-z, 0-9, `-` and
    /// `_`, starting with a letter or digit; a leading `@` is dropped and letters are lowercased.
    #[schema(pattern = r"^@?[A-Za-z0-9][A-Za-z0-9_-]{1,31}$")]
    handle: String,
    /// Kept as given (trimmed); blank means none.
    email: Option<String>,
    /// `admin` or `member` (the default).
    #[schema(value_type = Option<Role>)]
    role: Option<String>,
}

/// A person with their first API token, shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AddedPerson {
    user: UserView,
    token_id: String,
    /// `lt_pat_…` (read and write; also admin for admins). Hand it over now: it is never shown again.
    token: String,
}

/// Add a person
///
/// Adds a person to the workspace and mints their first API token. Admins only.
#[utoipa::path(post, path = "/people", tag = "account", operation_id = "addPerson", request_body = AddPerson,
    responses((status = 201, body = AddedPerson), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_person(
    State(app): State<SharedApp>,
    Admin(caller): Admin,
    Json(body): Json<AddPerson>,
) -> Result<(StatusCode, Json<AddedPerson>), AppError> {
    let role = Role::parse(body.role.as_deref().unwrap_or("member"))?;
    let request = NewPerson {
        name: body.name,
        handle: body.handle,
        email: body.email,
        role,
    };
    let (person, token, plaintext) = accounts::add_person(&app, &caller, request).await?;
    Ok((
        StatusCode::CREATED,
        Json(AddedPerson {
            user: UserView::from(&person),
            token_id: token.id.to_string(),
            token: plaintext,
        }),
    ))
}
