//! The host records a plugin call may touch ([`CallServices`]), over the database. Changes are
//! audited as the plugin acting as its bot in the session.

use std::sync::Arc;

use async_trait::async_trait;

use crate::app::App;
use crate::audit::Actor;
use crate::domain::ids::{ConnectionId, SessionId};
use crate::domain::inbound::EndpointSpec;
use crate::domain::jobs;
use crate::domain::session_tokens;
use crate::domain::sessions::{NewActivity, RecordSource, Session, SessionStatus};
use crate::runtime::{CallServices, CapabilityError, kv_bytes_after};
use crate::secrets::SecretValue;
use crate::store;
use crate::use_cases::Error;
use crate::use_cases::{inbound, sessions};

/// [`CallServices`] backed by the host's database.
pub struct PluginServices {
    app: Arc<App>,
}

impl PluginServices {
    /// Services acting on `app`'s records.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// The session, and the plugin acting as its bot (for the audit trail).
    async fn session_and_actor(&self, session: &SessionId) -> Result<(Session, Actor), CapabilityError> {
        let mut conn = self.app.db.read().await.map_err(unavailable)?;
        let session = store::sessions::get_any(&mut conn, session)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| CapabilityError::SessionClosed("the session no longer exists".into()))?;
        let actor = Actor::plugin(session.workspace_id.clone(), session.bot_id.clone(), session.id.clone());
        Ok((session, actor))
    }
}

/// A use case's refusal as the guest's `host-error`.
fn refused(error: Error) -> CapabilityError {
    match error {
        Error::Conflict(m) | Error::NotFound(m) => CapabilityError::SessionClosed(m),
        Error::Invalid { message, .. } => CapabilityError::Invalid(message),
        Error::Internal(cause) => {
            tracing::error!(
                error = format!("{cause:#}"),
                "host error during a plugin capability call"
            );
            CapabilityError::Unavailable("the host could not record this; try again later".into())
        }
        other => CapabilityError::Invalid(other.to_string()),
    }
}

/// A task tool's refusal as the guest's `host-error`, in the words the REST call would use.
fn tool_refused(error: crate::api::error::AppError) -> CapabilityError {
    use crate::api::error::AppError;
    match error {
        AppError::Forbidden(m) | AppError::Unauthorized(m) => CapabilityError::NotAllowed(m),
        AppError::RateLimited { .. } => CapabilityError::LimitExceeded(error.to_string()),
        AppError::Internal(cause) => {
            tracing::error!(error = format!("{cause:#}"), "host error during a plugin task call");
            CapabilityError::Unavailable("the host could not do this; try again later".into())
        }
        other => CapabilityError::Invalid(other.to_string()),
    }
}

/// A store failure as the guest's `host-error`: the host could not record it (logged here).
fn unavailable(error: store::StoreError) -> CapabilityError {
    tracing::error!(%error, "database error during a plugin capability call");
    CapabilityError::Unavailable("the host could not record this; try again later".into())
}

#[async_trait]
impl CallServices for PluginServices {
    async fn post_activity(&self, session: &SessionId, activity: NewActivity) -> Result<(), CapabilityError> {
        let (session, actor) = self.session_and_actor(session).await?;
        sessions::record_activity(&self.app, &session, activity, RecordSource::Plugin, &actor)
            .await
            .map(|_| ())
            .map_err(refused)
    }

    async fn set_status(
        &self,
        session: &SessionId,
        status: SessionStatus,
        message: Option<String>,
    ) -> Result<(), CapabilityError> {
        let (session, actor) = self.session_and_actor(session).await?;
        let request = sessions::StatusRequest {
            status,
            message,
            idempotency_key: None,
        };
        sessions::change_status(&self.app, &session.id, request, RecordSource::Plugin, &actor)
            .await
            .map(|_| ())
            .map_err(refused)
    }

    async fn set_external_link(&self, session: &SessionId, url: &str, label: &str) -> Result<(), CapabilityError> {
        let mut tx = self.app.db.begin().await.map_err(unavailable)?;
        store::sessions::set_external_link(&mut tx, session, url, label, self.app.clock.now())
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(|e| unavailable(e.into()))
    }

    async fn kv_get(&self, connection: &ConnectionId, key: &str) -> Result<Option<Vec<u8>>, CapabilityError> {
        let mut conn = self.app.db.read().await.map_err(unavailable)?;
        store::kv::get(&mut conn, connection, key).await.map_err(unavailable)
    }

    async fn kv_set(
        &self,
        connection: &ConnectionId,
        key: &str,
        value: &[u8],
        max_total_bytes: i64,
    ) -> Result<(), CapabilityError> {
        let mut tx = self.app.db.begin().await.map_err(unavailable)?;
        let used = store::kv::lock_usage(&mut tx, connection).await.map_err(unavailable)?;
        let freed = store::kv::stored_size(&mut tx, connection, key)
            .await
            .map_err(unavailable)?
            .unwrap_or(0);
        let after = kv_bytes_after(used, freed, key, value, max_total_bytes)?;
        store::kv::set(&mut tx, connection, key, value, self.app.clock.now())
            .await
            .map_err(unavailable)?;
        store::kv::set_usage(&mut tx, connection, after)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(|e| unavailable(e.into()))
    }

    async fn kv_delete(&self, connection: &ConnectionId, key: &str) -> Result<(), CapabilityError> {
        let mut tx = self.app.db.begin().await.map_err(unavailable)?;
        let used = store::kv::lock_usage(&mut tx, connection).await.map_err(unavailable)?;
        if let Some(freed) = store::kv::stored_size(&mut tx, connection, key)
            .await
            .map_err(unavailable)?
        {
            store::kv::delete(&mut tx, connection, key).await.map_err(unavailable)?;
            store::kv::set_usage(&mut tx, connection, used - freed)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(|e| unavailable(e.into()))
    }

    async fn pending_timers(&self, session: &SessionId) -> Result<u64, CapabilityError> {
        let mut conn = self.app.db.read().await.map_err(unavailable)?;
        let count = store::jobs::count_waiting(&mut conn, jobs::TIMER, session, self.app.clock.now())
            .await
            .map_err(unavailable)?;
        Ok(count.max(0) as u64)
    }

    async fn open_inbound(
        &self,
        connection_type: &str,
        connection: &ConnectionId,
        session: &SessionId,
        spec: EndpointSpec,
    ) -> Result<String, CapabilityError> {
        inbound::open_endpoint(&self.app, connection_type, connection, session, spec)
            .await
            .map_err(refused)
    }

    async fn route_inbound(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
        key: &str,
    ) -> Result<(), CapabilityError> {
        inbound::route(&self.app, connection, key, session)
            .await
            .map_err(refused)
    }

    async fn session_token(&self, session: &SessionId) -> Result<SecretValue, CapabilityError> {
        let key = self.app.secrets.derive_key(session_tokens::KEY_PURPOSE);
        Ok(SecretValue::new(session_tokens::issue(&key, session)))
    }

    async fn task_tool(
        &self,
        session: &SessionId,
        tool: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value, CapabilityError> {
        let caller = crate::use_cases::caller::for_session(&self.app, session, Default::default())
            .await
            .map_err(|e| match e {
                Error::Internal(_) => refused(e),
                other => CapabilityError::SessionClosed(other.to_string()),
            })?;
        // The same per-token budget as the session token's REST and MCP calls: a plugin looping
        // over task tools is throttled like a client looping over the API.
        self.app
            .rate_limits
            .check(&caller.token.id)
            .map_err(|limited| CapabilityError::LimitExceeded(format!("task tools: {limited}")))?;
        let tools = crate::api::mcp_tools::Tools {
            full: false,
            authorization: String::new(),
        };
        match crate::api::mcp_tools::call(&self.app, &caller, &tools, tool, &arguments).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(refused)) => Err(tool_refused(refused)),
            Err(_) => Err(CapabilityError::Invalid(format!("no task tool `{tool}`"))),
        }
    }

    async fn pending_model_calls(&self, session: &SessionId) -> Result<u64, CapabilityError> {
        let mut conn = self.app.db.read().await.map_err(unavailable)?;
        let count = store::jobs::count_of_session(&mut conn, jobs::MODEL_CALL, session)
            .await
            .map_err(unavailable)?;
        Ok(count.max(0) as u64)
    }

    async fn connection_secret(
        &self,
        connection: &ConnectionId,
        name: &str,
    ) -> Result<Option<SecretValue>, CapabilityError> {
        crate::use_cases::accounts::connection_secrets::open(&self.app, connection, name).await
    }
}
