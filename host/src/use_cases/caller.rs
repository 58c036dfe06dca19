//! Who is calling: the person or bot behind a valid bearer token ([`authenticate`]), with where
//! the request came from (for the audit trail), and the checks every use case makes of it.

use crate::app::App;
use crate::audit::{Actor, ActorKind};
use crate::domain::ids::{SessionId, WorkspaceId};
use crate::domain::session_tokens;
use crate::domain::tokens::{self as token_rules, ApiToken, Scope, Scopes};
use crate::domain::users::{Role, User, UserKind};
use crate::store::{self, StoreError};
use crate::use_cases::error::Error;

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
    /// The agent session a bot's call is made for, when it names one (MCP tool calls do); the
    /// audit trail records it.
    pub session: Option<SessionId>,
}

impl Caller {
    /// The caller's workspace.
    pub fn workspace_id(&self) -> &WorkspaceId {
        &self.user.workspace_id
    }

    /// Refuses the call unless the token has `scope` (and, for `admin`, the user is a person admin).
    pub fn require(&self, scope: Scope) -> Result<(), Error> {
        if scope == Scope::Admin && (self.user.kind != UserKind::Person || self.user.role != Role::Admin) {
            return Err(Error::NotAllowed(
                "only workspace admins may do this; bot tokens never can".into(),
            ));
        }
        if !self.token.scopes.contains(scope) {
            return Err(Error::NotAllowed(format!(
                "this token lacks the `{}` scope (it has: {})",
                scope.as_str(),
                self.token.scopes.names().join(", ")
            )));
        }
        Ok(())
    }

    /// Refuses bots.
    pub fn require_person(&self) -> Result<(), Error> {
        if self.user.kind != UserKind::Person {
            return Err(Error::NotAllowed(
                "bot tokens cannot manage tokens or the workspace".into(),
            ));
        }
        Ok(())
    }

    /// Whether the caller is a person admin with the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.require(Scope::Admin).is_ok()
    }

    /// Says the call is made for agent session `session` (already checked to be the bot's own).
    /// A session token acts for its own session alone: naming another is refused.
    pub fn bind_session(&mut self, session: SessionId) -> Result<(), Error> {
        if let Some(bound) = &self.token.session_id
            && *bound != session
        {
            return Err(Error::NotAllowed(format!(
                "this token was issued for agent session `{bound}` and may act for it alone"
            )));
        }
        self.session = Some(session);
        Ok(())
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
            session_id: self.session.clone(),
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
pub async fn authenticate(app: &App, bearer: &str, request: RequestMeta) -> Result<Caller, Error> {
    let unauthorized = |why: &str| Error::Unauthenticated(why.to_owned());
    if session_tokens::looks_like(bearer) {
        return authenticate_session_token(app, bearer, request).await;
    }
    token_rules::check_token_format(bearer, token_rules::TOKEN_PREFIX)
        .map_err(|_| unauthorized("the bearer token is not a valid Leadtime API token"))?;
    let digest = token_rules::token_digest(bearer);
    let now = app.clock.now();
    let (mut token, user) = match app.tokens.get(&digest) {
        Some(found) => found,
        None => {
            let generation = app.tokens.generation();
            let mut conn = app.db.read().await?;
            let (token, user) = store::tokens::find_with_user(&mut conn, &digest)
                .await?
                .ok_or_else(|| unauthorized("unknown or revoked token"))?;
            app.tokens.keep(&digest, &token, &user, generation);
            (token, user)
        }
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
        // The memo's copy says so too, or each request until it is read again would touch.
        token.last_used_at = Some(now);
        let generation = app.tokens.generation();
        app.tokens.keep(&digest, &token, &user, generation);
    }
    Ok(Caller {
        user,
        token,
        request,
        session: None,
    })
}

/// Resolves a session token (see [`session_tokens`]): its MAC, then [`for_session`].
async fn authenticate_session_token(app: &App, bearer: &str, request: RequestMeta) -> Result<Caller, Error> {
    let key = app.secrets.derive_key(session_tokens::KEY_PURPOSE);
    let session_id = session_tokens::verify(&key, bearer)
        .ok_or_else(|| Error::Unauthenticated("the bearer token is not a valid Leadtime session token".into()))?;
    for_session(app, &session_id, request).await
}

/// The caller a session acts as — its bot, with `read` and `write`, bound to that session — while
/// the session is open and the bot enabled. Session tokens and a plugin's `tasks` calls act so.
pub async fn for_session(app: &App, session_id: &SessionId, request: RequestMeta) -> Result<Caller, Error> {
    let unauthorized = |why: String| Error::Unauthenticated(why);
    let (session, user) = {
        let mut conn = app.db.read().await?;
        let session = store::sessions::get_any(&mut conn, session_id)
            .await?
            .ok_or_else(|| unauthorized("this session token's agent session no longer exists".into()))?;
        let user = store::users::get_any(&mut conn, &session.bot_id)
            .await?
            .ok_or_else(|| unauthorized("this session token's bot no longer exists".into()))?;
        (session, user)
    };
    if session.status.is_terminal() {
        // Gone rather than unauthorized: the MAC proved the host issued the token, so an agent
        // calling after its session ended is not a guess, and its address is not locked out.
        return Err(Error::Gone(format!(
            "agent session `{}` has ended ({}); its session token ended with it",
            session.id,
            session.status.as_str()
        )));
    }
    if user.deleted_at.is_some() || !user.is_enabled() {
        return Err(unauthorized(format!("@{} is disabled", user.handle)));
    }
    let token = ApiToken {
        // One id per session, so rate limits and the audit trail see one token.
        id: format!("tok_{}", session.id).into(),
        workspace_id: session.workspace_id.clone(),
        user_id: user.id.clone(),
        name: format!("session token of {}", session.id),
        scopes: Scopes::new([Scope::Read, Scope::Write]),
        expires_at: None,
        last_used_at: None,
        last_used_ip: None,
        revoked_at: None,
        created_at: session.created_at,
        session_id: Some(session.id.clone()),
    };
    Ok(Caller {
        user,
        token,
        request,
        session: Some(session.id),
    })
}
