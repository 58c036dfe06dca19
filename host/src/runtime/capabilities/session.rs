//! `leadtime:agent-runtime/session`: the activity feed, status and link of the call's session.

use crate::domain::sessions::{ActivityType, NewActivity, SessionStatus};
use crate::runtime::bindings::session::Host;
use crate::runtime::bindings::types::{self as wit, HostError};
use crate::runtime::state::PluginState;

use super::{CapabilityError, spend};

impl Host for PluginState {
    async fn post_activity(&mut self, activity: wit::Activity) -> wasmtime::Result<Result<(), HostError>> {
        Ok(self.post(activity).await.map_err(Into::into))
    }

    async fn set_status(
        &mut self,
        status: wit::SessionStatus,
        message: Option<String>,
    ) -> wasmtime::Result<Result<(), HostError>> {
        let session = match self.require("session").and_then(|()| self.session().cloned()) {
            Ok(session) => session,
            Err(refused) => return Ok(Err(refused.into())),
        };
        let services = self.services.clone();
        Ok(services
            .set_status(&session, session_status(status), message)
            .await
            .map_err(Into::into))
    }

    async fn set_external_link(&mut self, url: String, label: String) -> wasmtime::Result<Result<(), HostError>> {
        let session = match self
            .require("session")
            .and_then(|()| self.session().cloned())
            .and_then(|s| check_link(&url, &label).map(|()| s))
        {
            Ok(session) => session,
            Err(refused) => return Ok(Err(refused.into())),
        };
        let services = self.services.clone();
        Ok(services
            .set_external_link(&session, &url, &label)
            .await
            .map_err(Into::into))
    }
}

fn check_link(url: &str, label: &str) -> Result<(), CapabilityError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| CapabilityError::Invalid(format!("external link `{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || url.len() > 2048 || label.len() > 200 {
        return Err(CapabilityError::Invalid(
            "external links must be http(s) URLs up to 2048 bytes with labels up to 200 bytes".into(),
        ));
    }
    Ok(())
}

impl PluginState {
    async fn post(&mut self, activity: wit::Activity) -> Result<(), CapabilityError> {
        let (session, activity) = self.check_activity(activity)?;
        let services = self.services.clone();
        services.post_activity(&session, activity).await
    }

    fn check_activity(
        &mut self,
        activity: wit::Activity,
    ) -> Result<(crate::domain::ids::SessionId, NewActivity), CapabilityError> {
        self.require("session")?;
        let session = self.session()?.clone();
        let limit = self.limits.activities;
        spend(&mut self.budget.activities, "activity posts", limit)?;
        let activity = NewActivity {
            activity_type: activity_type(activity.activity_type),
            body: activity.body,
            action: activity.action,
            parameter: activity.parameter,
            result: activity.result,
            provider_event_id: activity.provider_event_id,
            provider_event_type: activity.provider_event_type,
            raw: match activity.raw {
                Some(raw) => Some(
                    serde_json::from_str::<serde_json::Value>(&raw)
                        .map(|_| raw)
                        .map_err(|e| CapabilityError::Invalid(format!("activity `raw` is not JSON: {e}")))?,
                ),
                None => None,
            },
            idempotency_key: activity.idempotency_key,
        }
        .validated()
        .map_err(|e| CapabilityError::Invalid(e.to_string()))?;
        Ok((session, activity))
    }
}

/// The contract's status in domain terms.
pub(crate) fn session_status(status: wit::SessionStatus) -> SessionStatus {
    match status {
        wit::SessionStatus::Queued => SessionStatus::Queued,
        wit::SessionStatus::Running => SessionStatus::Running,
        wit::SessionStatus::Done => SessionStatus::Done,
        wit::SessionStatus::Failed => SessionStatus::Failed,
        wit::SessionStatus::Canceled => SessionStatus::Canceled,
    }
}

fn activity_type(t: wit::ActivityType) -> ActivityType {
    match t {
        wit::ActivityType::Thought => ActivityType::Thought,
        wit::ActivityType::Action => ActivityType::Action,
        wit::ActivityType::Elicitation => ActivityType::Elicitation,
        wit::ActivityType::Response => ActivityType::Response,
        wit::ActivityType::Error => ActivityType::Error,
        wit::ActivityType::Prompt => ActivityType::Prompt,
        wit::ActivityType::Log => ActivityType::Log,
        wit::ActivityType::ModelRequest => ActivityType::ModelRequest,
        wit::ActivityType::ModelResponse => ActivityType::ModelResponse,
        wit::ActivityType::ToolCall => ActivityType::ToolCall,
        wit::ActivityType::ToolResult => ActivityType::ToolResult,
    }
}
