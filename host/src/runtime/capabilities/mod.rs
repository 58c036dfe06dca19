//! Host capabilities, one module per WIT interface: `session`, `webhook`, `kv`, `log`, `timers`, and
//! `wasi:http/outgoing-handler` (`http`).
//!
//! Each module implements the generated `Host` trait for [`PluginState`](super::state::PluginState):
//! it checks the grant (the manifest must declare the capability), the call's budget and the
//! argument sizes, then acts through [`CallServices`] — the host's records, reached without the
//! runtime knowing about SQL. Refusals are returned to the guest as its WIT `host-error`; only host
//! bugs become traps.

pub mod http;
mod kv;
pub mod log;
mod session;
mod timers;
mod webhook;

use async_trait::async_trait;

use crate::domain::ids::{ConnectionId, SessionId};
use crate::domain::sessions::{NewActivity, SessionStatus};
use crate::secrets::SecretValue;

use super::bindings::types::HostError;
use super::state::PluginState;

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
/// `sessions::PluginServices`; tests may substitute their own.
#[async_trait]
pub trait CallServices: Send + Sync {
    /// Appends an activity to `session` (idempotent on its key).
    async fn post_activity(&self, session: &SessionId, activity: NewActivity) -> Result<(), CapabilityError>;
    /// Moves `session` to `status`.
    async fn set_status(
        &self,
        session: &SessionId,
        status: SessionStatus,
        message: Option<String>,
    ) -> Result<(), CapabilityError>;
    /// Sets the link on `session`'s card.
    async fn set_external_link(&self, session: &SessionId, url: &str, label: &str) -> Result<(), CapabilityError>;
    /// Reads a kv entry of `connection`.
    async fn kv_get(&self, connection: &ConnectionId, key: &str) -> Result<Option<Vec<u8>>, CapabilityError>;
    /// Writes a kv entry of `connection`, refusing it when the connection would keep more than
    /// `max_total_bytes`.
    async fn kv_set(
        &self,
        connection: &ConnectionId,
        key: &str,
        value: &[u8],
        max_total_bytes: i64,
    ) -> Result<(), CapabilityError>;
    /// Removes a kv entry of `connection`.
    async fn kv_delete(&self, connection: &ConnectionId, key: &str) -> Result<(), CapabilityError>;
    /// The value of secret `name` of `connection`, for the outbound request being sent; never
    /// handed to the plugin.
    async fn connection_secret(
        &self,
        connection: &ConnectionId,
        name: &str,
    ) -> Result<Option<SecretValue>, CapabilityError>;
    /// Timers of `session` scheduled and not yet fired.
    async fn pending_timers(&self, session: &SessionId) -> Result<u64, CapabilityError>;
}

/// Services for calls that may touch no records (`manifest`, `validate-config`).
pub(crate) struct NoServices;

#[async_trait]
impl CallServices for NoServices {
    async fn post_activity(&self, _: &SessionId, _: NewActivity) -> Result<(), CapabilityError> {
        Err(none())
    }
    async fn set_status(&self, _: &SessionId, _: SessionStatus, _: Option<String>) -> Result<(), CapabilityError> {
        Err(none())
    }
    async fn set_external_link(&self, _: &SessionId, _: &str, _: &str) -> Result<(), CapabilityError> {
        Err(none())
    }
    async fn kv_get(&self, _: &ConnectionId, _: &str) -> Result<Option<Vec<u8>>, CapabilityError> {
        Err(none())
    }
    async fn kv_set(&self, _: &ConnectionId, _: &str, _: &[u8], _: i64) -> Result<(), CapabilityError> {
        Err(none())
    }
    async fn kv_delete(&self, _: &ConnectionId, _: &str) -> Result<(), CapabilityError> {
        Err(none())
    }
    async fn connection_secret(&self, _: &ConnectionId, _: &str) -> Result<Option<SecretValue>, CapabilityError> {
        Err(none())
    }
    async fn pending_timers(&self, _: &SessionId) -> Result<u64, CapabilityError> {
        Err(none())
    }
}

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

impl super::bindings::types::Host for PluginState {}
