//! API tokens of people and bots: mint, list, revoke, rotate. Tokens are shown once and stored
//! as SHA-256 digests. Bot tokens can never manage tokens; nobody can mint a token with more scopes
//! than the token they call with.

use crate::app::App;
use crate::audit::{self, Entry};
use crate::domain::bounded_text;
use crate::domain::ids::TokenId;
use crate::domain::time::Timestamp;
use crate::domain::tokens::{self as rules, ApiToken, Scope, Scopes};
use crate::domain::users::{Role, User, UserKind};
use crate::store::{self, Conn, StoreError};
use crate::use_cases::error::Error;

use super::Caller;

/// Longest token lifetime, in days.
pub const MAX_EXPIRY_DAYS: u32 = 365;
/// Tokens one person or bot may have working at once.
pub const MAX_LIVE_TOKENS: i64 = 50;

/// Refuses another token for `user` when it already has [`MAX_LIVE_TOKENS`] working ones.
pub async fn ensure_room_for_token(tx: &mut Conn, user: &User, now: Timestamp) -> Result<(), Error> {
    let live = store::tokens::count_live(tx, &user.id, now).await?;
    if live >= MAX_LIVE_TOKENS {
        return Err(Error::Conflict(format!(
            "@{} already has {live} working tokens, the most one may have; revoke unused ones \
             (GET /api/public/tokens lists them) before creating another",
            user.handle
        )));
    }
    Ok(())
}

/// Mints a token for `user` and stores its digest; returns the record and the plaintext (shown once).
pub async fn mint(
    tx: &mut Conn,
    user: &User,
    name: &str,
    scopes: Scopes,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(ApiToken, String), StoreError> {
    let plaintext = rules::generate_token();
    let token = ApiToken {
        id: TokenId::generate(),
        workspace_id: user.workspace_id.clone(),
        user_id: user.id.clone(),
        name: name.to_owned(),
        scopes,
        expires_at,
        last_used_at: None,
        last_used_ip: None,
        revoked_at: None,
        created_at: now,
        session_id: None,
    };
    store::tokens::insert(tx, &token, &rules::token_digest(&plaintext)).await?;
    Ok((token, plaintext))
}

/// A token to mint.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    /// Scope names; each must be held by the calling token.
    pub scopes: Vec<String>,
    pub expires_in_days: Option<u32>,
    /// Whose token (a bot of the workspace, for admins); the caller when absent.
    pub user_id: Option<String>,
}

/// Mints a token for the caller, or (admins) for a bot or person of the workspace.
pub async fn create(app: &App, caller: &Caller, request: NewToken) -> Result<(ApiToken, String), Error> {
    caller.require_person()?;
    let name = bounded_text("name", &request.name, 1, 100)?;
    let scopes = Scopes::parse(&request.scopes.join(" "))?;
    if scopes.names().is_empty() {
        return Err(Error::invalid(
            "scopes",
            "give at least one scope: read, write or admin",
        ));
    }
    if let Some(missing) = Scope::ALL
        .into_iter()
        .find(|s| scopes.contains(*s) && !caller.token.scopes.contains(*s))
    {
        return Err(Error::NotAllowed(format!(
            "a token cannot grant `{}`, which the token you call with does not have",
            missing.as_str()
        )));
    }
    let expires_at = match request.expires_in_days {
        Some(days) if days == 0 || days > MAX_EXPIRY_DAYS => {
            return Err(Error::invalid(
                "expiresInDays",
                format!("`expiresInDays` must be 1–{MAX_EXPIRY_DAYS}"),
            ));
        }
        Some(days) => Some(app.clock.now().plus_millis(i64::from(days) * 86_400_000)),
        None => None,
    };
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let owner = match request.user_id.as_deref().filter(|id| *id != caller.user.id.as_str()) {
        None => caller.user.clone(),
        Some(id) => {
            caller.require(Scope::Admin)?;
            store::users::get(&mut tx, caller.workspace_id(), id)
                .await?
                .filter(|u| u.deleted_at.is_none())
                .ok_or_else(|| Error::not_found("user", id))?
        }
    };
    if scopes.contains(Scope::Admin) && (owner.kind != UserKind::Person || owner.role != Role::Admin) {
        return Err(Error::Conflict(format!(
            "@{} is not an admin: only admins' tokens may have the `admin` scope; bot tokens never",
            owner.handle
        )));
    }
    ensure_room_for_token(&mut tx, &owner, now).await?;
    let (token, plaintext) = mint(&mut tx, &owner, &name, scopes, expires_at, now).await?;
    let details = serde_json::json!({"userId": owner.id, "name": token.name, "scopes": token.scopes.names(), "expiresAt": token.expires_at});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("token.create", "token", &token.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    app.tokens.forget_all();
    Ok((token, plaintext))
}

/// The tokens the caller may see: their own, or (admins) anyone's in the workspace, optionally of
/// one user.
pub async fn list(app: &App, caller: &Caller, user_id: Option<&str>) -> Result<Vec<ApiToken>, Error> {
    caller.require_person()?;
    let mut conn = app.db.read().await?;
    let user_filter = match user_id {
        Some(id) if id != caller.user.id.as_str() => {
            caller.require(Scope::Admin)?;
            Some(id.to_owned())
        }
        Some(id) => Some(id.to_owned()),
        None if caller.is_admin() => None,
        None => Some(caller.user.id.to_string()),
    };
    Ok(store::tokens::list(&mut conn, caller.workspace_id(), user_filter.as_deref()).await?)
}

/// The token `id` if the caller may manage it (their own, or any in the workspace for admins).
async fn manageable(conn: &mut Conn, caller: &Caller, id: &str) -> Result<ApiToken, Error> {
    let token = store::tokens::get(conn, caller.workspace_id(), id)
        .await?
        .ok_or_else(|| Error::not_found("token", id))?;
    if token.user_id != caller.user.id {
        caller.require(Scope::Admin)?;
    }
    Ok(token)
}

/// Revokes a token at once.
pub async fn revoke(app: &App, caller: &Caller, id: &str) -> Result<ApiToken, Error> {
    caller.require_person()?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let mut token = manageable(&mut tx, caller, id).await?;
    if token.revoked_at.is_some() {
        return Err(Error::Conflict(format!("token `{id}` is already revoked")));
    }
    store::tokens::revoke(&mut tx, &token.id, now).await?;
    token.revoked_at = Some(now);
    let details = serde_json::json!({"userId": token.user_id, "name": token.name});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("token.revoke", "token", &token.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    app.tokens.forget_all();
    Ok(token)
}

/// Replaces a token by a new one with the same owner, name, scopes and expiry; the old one stops
/// working at once. Returns the new token (shown once).
pub async fn rotate(app: &App, caller: &Caller, id: &str) -> Result<(ApiToken, String), Error> {
    caller.require_person()?;
    let now = app.clock.now();
    let mut tx = app.db.begin().await?;
    let old = manageable(&mut tx, caller, id).await?;
    if old.revoked_at.is_some() {
        return Err(Error::Conflict(format!(
            "token `{id}` is revoked; create a new one instead"
        )));
    }
    let owner = store::users::get_any(&mut tx, &old.user_id)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("token {} has no owner", old.id)))?;
    store::tokens::revoke(&mut tx, &old.id, now).await?;
    let (token, plaintext) = mint(&mut tx, &owner, &old.name, old.scopes.clone(), old.expires_at, now).await?;
    let details = serde_json::json!({"userId": owner.id, "replaces": old.id});
    audit::record(
        &mut tx,
        &app.audit_keys,
        &caller.actor(),
        Entry::new("token.rotate", "token", &token.id, details),
        now,
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok((token, plaintext))
}
