//! What plugin calls may do to the host's records ([`CallServices`], implemented over the
//! database by the sessions module), and how a refusal reads ([`CapabilityError`], the
//! guest's WIT `host-error`).

use async_trait::async_trait;

use crate::domain::ids::{ConnectionId, SessionId};
use crate::domain::inbound::EndpointSpec;
use crate::domain::sessions::{NewActivity, SessionStatus};
use crate::secrets::SecretValue;

use super::bindings::types::HostError;

/// Why the host refused a capability call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("session closed: {0}")]
    SessionClosed(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The bytes a connection's kv state comes to once `key` holds `value`, given what it stores
/// (`used`) and what `key` holds now (`freed`), or the refusal when that is over `max_total_bytes`.
/// Every [`CallServices::kv_set`] applies this rule.
pub fn kv_bytes_after(
    used: i64,
    freed: i64,
    key: &str,
    value: &[u8],
    max_total_bytes: i64,
) -> Result<i64, CapabilityError> {
    let after = used - freed + (key.len() + value.len()) as i64;
    if after > max_total_bytes {
        return Err(CapabilityError::LimitExceeded(format!(
            "this connection's kv state would grow to {after} bytes; at most {max_total_bytes} are allowed"
        )));
    }
    Ok(after)
}

impl From<CapabilityError> for HostError {
    fn from(error: CapabilityError) -> Self {
        match error {
            CapabilityError::NotAllowed(m) => HostError::NotAllowed(m),
            CapabilityError::Invalid(m) => HostError::Invalid(m),
            CapabilityError::LimitExceeded(m) => HostError::LimitExceeded(m),
            CapabilityError::SessionClosed(m) => HostError::SessionClosed(m),
            CapabilityError::Unavailable(m) => HostError::Unavailable(m),
        }
    }
}

/// The host's records as plugins may touch them. Implemented over the database by
/// the sessions module; tests may substitute their own.
#[async_trait]
#[allow(unused_variables)] // the refusing defaults name their parameters for the docs
pub trait CallServices: Send + Sync {
    /// Appends an activity to `session` (idempotent on its key).
    async fn post_activity(&self, session: &SessionId, activity: NewActivity) -> Result<(), CapabilityError> {
        Err(none())
    }
    /// Moves `session` to `status`.
    async fn set_status(
        &self,
        session: &SessionId,
        status: SessionStatus,
        message: Option<String>,
    ) -> Result<(), CapabilityError> {
        Err(none())
    }
    /// Sets the link on `session`'s card.
    async fn set_external_link(&self, session: &SessionId, url: &str, label: &str) -> Result<(), CapabilityError> {
        Err(none())
    }
    /// Reads a kv entry of `connection`.
    async fn kv_get(&self, connection: &ConnectionId, key: &str) -> Result<Option<Vec<u8>>, CapabilityError> {
        Err(none())
    }
    /// Writes a kv entry of `connection`, refusing it when the connection would keep more than
    /// `max_total_bytes`.
    async fn kv_set(
        &self,
        connection: &ConnectionId,
        key: &str,
        value: &[u8],
        max_total_bytes: i64,
    ) -> Result<(), CapabilityError> {
        Err(none())
    }
    /// Removes a kv entry of `connection`.
    async fn kv_delete(&self, connection: &ConnectionId, key: &str) -> Result<(), CapabilityError> {
        Err(none())
    }
    /// The value of secret `name` of `connection`, for the outbound request being sent; never
    /// handed to the plugin.
    async fn connection_secret(
        &self,
        connection: &ConnectionId,
        name: &str,
    ) -> Result<Option<SecretValue>, CapabilityError> {
        Err(none())
    }
    /// The session token of `session` (see [`crate::domain::session_tokens`]), for the outbound
    /// request being sent; never handed to the plugin.
    async fn session_token(&self, session: &SessionId) -> Result<SecretValue, CapabilityError> {
        Err(none())
    }
    /// Runs task tool `tool` (as the MCP endpoint names it) with `arguments` as `session`'s bot;
    /// its JSON answer.
    async fn task_tool(
        &self,
        session: &SessionId,
        tool: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value, CapabilityError> {
        Err(none())
    }
    /// Model requests of `session` queued and not yet answered.
    async fn pending_model_calls(&self, session: &SessionId) -> Result<u64, CapabilityError> {
        Err(none())
    }
    /// Timers of `session` scheduled and not yet fired.
    async fn pending_timers(&self, session: &SessionId) -> Result<u64, CapabilityError> {
        Err(none())
    }
    /// Opens (or re-specifies) the provider webhook endpoint of `connection` (of type
    /// `connection_type`) in a call about `session`; returns its URL.
    async fn open_inbound(
        &self,
        connection_type: &str,
        connection: &ConnectionId,
        session: &SessionId,
        spec: EndpointSpec,
    ) -> Result<String, CapabilityError> {
        Err(none())
    }
    /// Sends provider webhooks of `connection` with route `key` to `session`.
    async fn route_inbound(
        &self,
        connection: &ConnectionId,
        session: &SessionId,
        key: &str,
    ) -> Result<(), CapabilityError> {
        Err(none())
    }
    /// Whether [`CallServices::answer_http`] answers outbound requests instead of the network
    /// (a test harness scripting providers); the host's own services never do.
    fn scripts_http(&self) -> bool {
        false
    }
    /// The scripted answer to an outbound request that passed every check (manifest hosts, the
    /// workspace's narrowing, addresses) with its secret references filled in, as it would go out.
    /// Only asked when [`CallServices::scripts_http`] says so.
    async fn answer_http(&self, request: ScriptedRequest) -> ScriptedResponse {
        ScriptedResponse {
            status: 502,
            headers: Vec::new(),
            body: format!("nothing scripted for {} {}", request.method, request.url).into_bytes(),
        }
    }
}

/// An outbound request as a test harness sees it (see [`CallServices::answer_http`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A test harness's answer to an outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Services for calls that may touch no records (`manifest`, `validate-config`).
pub(crate) struct NoServices;

#[async_trait]
impl CallServices for NoServices {}

fn none() -> CapabilityError {
    CapabilityError::NotAllowed("no host records are reachable in this call".into())
}

/// Takes one unit from a budget counter, or says which limit was reached.
pub(crate) fn spend(counter: &mut u32, what: &str, limit: u32) -> Result<(), CapabilityError> {
    if *counter == 0 {
        return Err(CapabilityError::LimitExceeded(format!(
            "a plugin call may make at most {limit} {what}"
        )));
    }
    *counter -= 1;
    Ok(())
}

/// An in-memory [`CallServices`] for capability tests without wasm or a database.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub(crate) struct FakeServices {
        pub activities: Mutex<Vec<(SessionId, NewActivity)>>,
        pub statuses: Mutex<Vec<(SessionId, SessionStatus, Option<String>)>>,
        pub links: Mutex<Vec<(String, String)>>,
        pub kv: Mutex<HashMap<(String, String), Vec<u8>>>,
        pub pending_timers: Mutex<u64>,
        pub inbound_specs: Mutex<Vec<EndpointSpec>>,
        pub routes: Mutex<Vec<(SessionId, String)>>,
    }

    #[async_trait]
    impl CallServices for FakeServices {
        async fn post_activity(&self, session: &SessionId, activity: NewActivity) -> Result<(), CapabilityError> {
            self.activities.lock().unwrap().push((session.clone(), activity));
            Ok(())
        }
        async fn set_status(
            &self,
            session: &SessionId,
            status: SessionStatus,
            message: Option<String>,
        ) -> Result<(), CapabilityError> {
            self.statuses.lock().unwrap().push((session.clone(), status, message));
            Ok(())
        }
        async fn set_external_link(&self, _: &SessionId, url: &str, label: &str) -> Result<(), CapabilityError> {
            self.links.lock().unwrap().push((url.into(), label.into()));
            Ok(())
        }
        async fn kv_get(&self, connection: &ConnectionId, key: &str) -> Result<Option<Vec<u8>>, CapabilityError> {
            Ok(self
                .kv
                .lock()
                .unwrap()
                .get(&(connection.to_string(), key.into()))
                .cloned())
        }
        async fn kv_set(
            &self,
            connection: &ConnectionId,
            key: &str,
            value: &[u8],
            max_total_bytes: i64,
        ) -> Result<(), CapabilityError> {
            let mut kv = self.kv.lock().unwrap();
            let used: i64 = kv
                .iter()
                .filter(|((c, _), _)| c == connection.as_str())
                .map(|((_, k), v)| (k.len() + v.len()) as i64)
                .sum();
            let freed = kv
                .get(&(connection.to_string(), key.into()))
                .map_or(0, |v| (key.len() + v.len()) as i64);
            super::kv_bytes_after(used, freed, key, value, max_total_bytes)?;
            kv.insert((connection.to_string(), key.into()), value.to_vec());
            Ok(())
        }
        async fn kv_delete(&self, connection: &ConnectionId, key: &str) -> Result<(), CapabilityError> {
            self.kv.lock().unwrap().remove(&(connection.to_string(), key.into()));
            Ok(())
        }
        async fn connection_secret(&self, _: &ConnectionId, _: &str) -> Result<Option<SecretValue>, CapabilityError> {
            Ok(None)
        }
        async fn pending_timers(&self, _: &SessionId) -> Result<u64, CapabilityError> {
            Ok(*self.pending_timers.lock().unwrap())
        }
        async fn open_inbound(
            &self,
            connection_type: &str,
            connection: &ConnectionId,
            _: &SessionId,
            spec: EndpointSpec,
        ) -> Result<String, CapabilityError> {
            self.inbound_specs.lock().unwrap().push(spec);
            Ok(format!(
                "https://host.test/api/plugins/{connection_type}/inbound/{connection}"
            ))
        }
        async fn route_inbound(&self, _: &ConnectionId, session: &SessionId, key: &str) -> Result<(), CapabilityError> {
            self.routes.lock().unwrap().push((session.clone(), key.to_owned()));
            Ok(())
        }
    }
}
