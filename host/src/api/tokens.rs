//! `/tokens`: people's and bots' API tokens. Only people manage tokens (their own; admins also any
//! in the workspace, and bots' tokens); a token is shown only when minted.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Query, Reader, Writer, whole_number};
use crate::api::error::{AppError, ErrorBody};
use crate::app::SharedApp;
use crate::domain::tokens::{ApiToken, Scope};
use crate::use_cases::accounts::tokens::{self, NewToken};

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(rotate_token))
}

/// An API token (never the token itself).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    id: String,
    user_id: String,
    name: String,
    scopes: Vec<&'static str>,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    last_used_ip: Option<String>,
    revoked_at: Option<String>,
    created_at: String,
}

impl From<&ApiToken> for TokenView {
    fn from(t: &ApiToken) -> Self {
        Self {
            id: t.id.to_string(),
            user_id: t.user_id.to_string(),
            name: t.name.clone(),
            scopes: t.scopes.names(),
            expires_at: t.expires_at.map(|at| at.to_iso()),
            last_used_at: t.last_used_at.map(|at| at.to_iso()),
            last_used_ip: t.last_used_ip.clone(),
            revoked_at: t.revoked_at.map(|at| at.to_iso()),
            created_at: t.created_at.to_iso(),
        }
    }
}

/// A minted token: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct MintedToken {
    #[serde(flatten)]
    token: TokenView,
    /// `lt_pat_…`. Store it now: it is never shown again.
    secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct TokenList {
    tokens: Vec<TokenView>,
}

/// A token to mint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateToken {
    /// What the token is for, e.g. "CI deploys": 1–100 characters once trimmed.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u0000]{0,98}[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    name: String,
    /// At least one of read, write, admin — each must be held by the token you call with (403
    /// otherwise); `admin` only for an admin's token.
    #[schema(value_type = Vec<Scope>, min_items = 1)]
    scopes: Vec<String>,
    /// Days until it expires (1–365); never when absent.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 365)]
    expires_in_days: Option<u32>,
    /// Whose token: a bot or person of the workspace (admins only; one the workspace does not have
    /// is answered 404). Yours when absent.
    user_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct TokenQuery {
    /// Only this user's tokens (admins may name anyone; others only themselves).
    user_id: Option<String>,
}

/// List API tokens
///
/// Your tokens; admins see every token of the workspace (or one user's with `userId`). Tokens
/// themselves are never shown. People only.
#[utoipa::path(get, path = "/tokens", tag = "tokens", operation_id = "listTokens", params(TokenQuery),
    responses((status = 200, body = TokenList), (status = 403, body = ErrorBody)))]
async fn list_tokens(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Query(query): Query<TokenQuery>,
) -> Result<Json<TokenList>, AppError> {
    let tokens = tokens::list(&app, &caller, query.user_id.as_deref()).await?;
    Ok(Json(TokenList {
        tokens: tokens.iter().map(TokenView::from).collect(),
    }))
}

/// Create an API token
///
/// Mints a token with the given scopes (never more than the calling token has) and optional
/// expiry, for yourself or — admins — for a bot of the workspace. Shown once. People only.
#[utoipa::path(post, path = "/tokens", tag = "tokens", operation_id = "createToken", request_body = CreateToken,
    responses((status = 201, body = MintedToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_token(
    State(app): State<SharedApp>,
    Writer(caller): Writer,
    Json(body): Json<CreateToken>,
) -> Result<(StatusCode, Json<MintedToken>), AppError> {
    let request = NewToken {
        name: body.name,
        scopes: body.scopes,
        expires_in_days: body.expires_in_days,
        user_id: body.user_id,
    };
    let (token, secret) = tokens::create(&app, &caller, request).await?;
    Ok((
        StatusCode::CREATED,
        Json(MintedToken {
            token: TokenView::from(&token),
            secret,
        }),
    ))
}

/// Revoke an API token
///
/// The token stops working at once. Your own tokens; admins any of the workspace. People only.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", operation_id = "revokeToken",
    params(("id" = String, Path, description = "Token id (`tok_…`)")),
    responses((status = 200, body = TokenView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn revoke_token(
    State(app): State<SharedApp>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, AppError> {
    Ok(Json(TokenView::from(&tokens::revoke(&app, &caller, &id).await?)))
}

/// Rotate an API token
///
/// Replaces the token by a new one with the same owner, name, scopes and expiry; the old one stops
/// working at once. The new token is shown once. People only.
#[utoipa::path(post, path = "/tokens/{id}/rotate", tag = "tokens", operation_id = "rotateToken",
    params(("id" = String, Path, description = "Token id (`tok_…`)")),
    responses((status = 201, body = MintedToken), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rotate_token(
    State(app): State<SharedApp>,
    Writer(caller): Writer,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<MintedToken>), AppError> {
    let (token, secret) = tokens::rotate(&app, &caller, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(MintedToken {
            token: TokenView::from(&token),
            secret,
        }),
    ))
}
