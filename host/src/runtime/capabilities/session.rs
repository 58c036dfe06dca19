//! `leadtime:agent-runtime/session`: the activity feed, status and link of the call's session.

use crate::domain::sessions::{ActivityType, NewActivity, SessionStatus};
use crate::runtime::bindings::session::Host;
use crate::runtime::bindings::types::{self as wit, HostError};
use crate::runtime::call::CallData;
use crate::runtime::grants::Capability;

use crate::runtime::services::{CapabilityError, spend};

impl Host for CallData {
    async fn post_activity(&mut self, activity: wit::Activity) -> wasmtime::Result<Result<(), HostError>> {
        Ok(self.post(activity).await.map_err(Into::into))
    }

    async fn set_status(
        &mut self,
        status: wit::SessionStatus,
        message: Option<String>,
    ) -> wasmtime::Result<Result<(), HostError>> {
        let session = match self.require(Capability::Session).and_then(|()| self.session().cloned()) {
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
            .require(Capability::Session)
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

impl CallData {
    async fn post(&mut self, activity: wit::Activity) -> Result<(), CapabilityError> {
        let (session, activity) = self.check_activity(activity)?;
        let services = self.services.clone();
        services.post_activity(&session, activity).await
    }

    fn check_activity(
        &mut self,
        activity: wit::Activity,
    ) -> Result<(crate::domain::ids::SessionId, NewActivity), CapabilityError> {
        self.require(Capability::Session)?;
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
            raw: activity.raw,
            idempotency_key: activity.idempotency_key,
        };
        // Its content is checked where the API's and plugins' activities meet (the sessions use
        // case), not here.
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::CallLimits;
    use crate::runtime::call::test_call;
    use crate::runtime::services::fake::FakeServices;

    fn activity(body: &str, raw: Option<&str>) -> wit::Activity {
        wit::Activity {
            activity_type: wit::ActivityType::Thought,
            body: body.into(),
            action: None,
            parameter: None,
            result: None,
            provider_event_id: None,
            provider_event_type: None,
            raw: raw.map(Into::into),
            idempotency_key: None,
        }
    }

    #[tokio::test]
    async fn the_call_acts_on_its_own_session_within_its_budget() {
        let services = Arc::new(FakeServices::default());
        let limits = CallLimits {
            activities: 1,
            ..CallLimits::default()
        };
        let mut call = test_call(&["session"], services.clone(), limits);
        call.post_activity(activity("thinking", Some(r#"{"step":1}"#)))
            .await
            .unwrap()
            .unwrap();
        call.set_status(wit::SessionStatus::Running, Some("on it".into()))
            .await
            .unwrap()
            .unwrap();
        call.set_external_link("https://example.com/run/1".into(), "Run".into())
            .await
            .unwrap()
            .unwrap();
        let refused = call.post_activity(activity("again", None)).await.unwrap().unwrap_err();
        assert!(
            format!("{refused:?}").contains("at most 1 activity posts"),
            "{refused:?}"
        );
        let refused = call
            .set_external_link("javascript:alert(1)".into(), "x".into())
            .await
            .unwrap()
            .unwrap_err();
        assert!(format!("{refused:?}").contains("http(s) URLs"), "{refused:?}");

        let activities = services.activities.lock().unwrap();
        assert_eq!(activities.len(), 1);
        assert_eq!(activities[0].0.as_str(), "ses_test");
        assert_eq!(activities[0].1.body, "thinking");
        assert_eq!(services.statuses.lock().unwrap()[0].1, SessionStatus::Running);
        assert_eq!(services.links.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn without_the_grant_nothing_reaches_the_session() {
        let services = Arc::new(FakeServices::default());
        let mut call = test_call(&["kv"], services.clone(), CallLimits::default());
        let refused = call.post_activity(activity("x", None)).await.unwrap().unwrap_err();
        assert!(format!("{refused:?}").contains("`session` capability"), "{refused:?}");
        assert!(services.activities.lock().unwrap().is_empty());
    }
}
