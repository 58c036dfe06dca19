//! What one plugin call is about and what its host capabilities act on ([`CallData`]): who the
//! call is for and what it may touch, its remaining budgets, and the effects it queued for the
//! host to commit with its outcome.

use std::sync::Arc;

use crate::domain::ids::{ConnectionId, DeliveryId, JobId, SessionId, WorkspaceId};

use super::grants::{Capability, Grants};
use super::limits::CallLimits;
use super::log_rate::LogRate;
use super::manifest::Manifest;
use super::services::{CallServices, CapabilityError};

/// Who a call is for and what it may touch.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The plugin's connection-type id (for logs and messages).
    pub plugin_id: String,
    /// Capabilities granted: those the manifest declares (parsed at load), as this kind of call
    /// allows them.
    pub grants: Grants,
    /// Hosts outbound requests may reach (the manifest's `outbound-hosts`).
    pub outbound_hosts: Vec<String>,
    /// The workspace's narrowing of `outbound_hosts`, if its admins set one.
    pub workspace_outbound_hosts: Option<Vec<String>>,
    /// Secret names outbound requests may refer to (the manifest's `secrets`, and the generated
    /// `inbound-webhook` when the plugin has the `inbound` capability).
    pub secrets: Vec<String>,
    /// Whether request bodies may hold secret references too (plugins built against 0.1.2 on;
    /// for older ones a reference in a body travels as written, as their contract said).
    pub secrets_in_bodies: bool,
    pub workspace_id: Option<WorkspaceId>,
    pub connection_id: Option<ConnectionId>,
    /// The session the call is about; `session` capabilities act on it alone.
    pub session_id: Option<SessionId>,
}

impl CallContext {
    /// A call of the plugin with `manifest` and `grants` about `session` of `connection`.
    pub fn for_session(
        manifest: &Manifest,
        grants: Grants,
        workspace: WorkspaceId,
        connection: ConnectionId,
        session: SessionId,
    ) -> Self {
        let mut context = Self {
            session_id: Some(session),
            ..Self::of_connection(manifest, grants, workspace, connection)
        };
        if context.grants.contains(Capability::TaskTools) && context.secrets_in_bodies {
            // The session's token for the task tools, which the plugin hands its provider.
            context
                .secrets
                .push(crate::domain::session_tokens::SECRET_NAME.to_owned());
        }
        context
    }

    /// A call about `connection` and no session.
    fn of_connection(manifest: &Manifest, grants: Grants, workspace: WorkspaceId, connection: ConnectionId) -> Self {
        let mut secrets: Vec<String> = manifest.secrets.iter().map(|s| s.name.clone()).collect();
        if grants.contains(Capability::Inbound) {
            // The endpoint's host-generated secret, which the plugin hands to its provider.
            secrets.push(crate::domain::inbound::GENERATED_SECRET.to_owned());
        }
        Self {
            plugin_id: manifest.id.clone(),
            grants,
            outbound_hosts: manifest.outbound_hosts.clone(),
            workspace_outbound_hosts: None,
            secrets,
            secrets_in_bodies: !matches!(manifest.wit_version.as_str(), "0.1.0" | "0.1.1"),
            workspace_id: Some(workspace),
            connection_id: Some(connection),
            session_id: None,
        }
    }

    /// This context with the workspace's narrowing of the plugin's outbound hosts.
    pub fn with_workspace_outbound_hosts(mut self, hosts: Option<Vec<String>>) -> Self {
        self.workspace_outbound_hosts = hosts;
        self
    }

    /// A `validate-config` call about the saved connection `connection` (an admin's "validate
    /// connection", contract 0.1.2): `log`, and `http` to the manifest's hosts with the
    /// connection's secrets by reference, so the plugin can check its config with the provider.
    pub fn for_connection(
        manifest: &Manifest,
        grants: Grants,
        workspace: WorkspaceId,
        connection: ConnectionId,
    ) -> Self {
        Self {
            grants: grants.only(&[Capability::Log, Capability::Http]),
            ..Self::of_connection(manifest, grants, workspace, connection)
        }
    }

    /// A call of the plugin with `manifest` and `grants` outside any session (`validate-config`):
    /// only `log` is usable.
    pub fn without_session(manifest: &Manifest, grants: Grants) -> Self {
        Self {
            plugin_id: manifest.id.clone(),
            grants: grants.only(&[Capability::Log]),
            outbound_hosts: Vec::new(),
            workspace_outbound_hosts: None,
            secrets: Vec::new(),
            secrets_in_bodies: false,
            workspace_id: None,
            connection_id: None,
            session_id: None,
        }
    }

    /// The `manifest()` call at load time: no capability at all.
    pub fn for_manifest() -> Self {
        Self {
            plugin_id: "(loading)".into(),
            grants: Grants::NONE,
            outbound_hosts: Vec::new(),
            workspace_outbound_hosts: None,
            secrets: Vec::new(),
            secrets_in_bodies: false,
            workspace_id: None,
            connection_id: None,
            session_id: None,
        }
    }
}

/// A webhook a call queued; it is sent only if the call succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedWebhook {
    /// The delivery id returned to the plugin.
    pub id: DeliveryId,
    pub url: String,
    pub body: String,
}

/// A timer a call scheduled; it is committed only if the call succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTimer {
    /// The timer id returned to the plugin (the id of the job that fires it).
    pub id: JobId,
    pub delay_ms: u64,
    /// JSON handed back in `timer-fired`.
    pub payload: String,
}

/// A model request a call queued (`model`); it is sent only if the call succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedModelCall {
    /// The id returned to the plugin (the id of the job that sends it).
    pub id: JobId,
    pub call: crate::domain::jobs::ModelCall,
}

/// What a successful call leaves for the host to commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallEffects {
    pub webhooks: Vec<QueuedWebhook>,
    pub timers: Vec<QueuedTimer>,
    pub model_calls: Vec<QueuedModelCall>,
    /// Ids of earlier timers the call canceled.
    pub canceled_timers: Vec<String>,
    /// Outbound requests the host refused or saw fail, each with its reason.
    pub http_problems: HttpProblems,
}

/// Why a call's outbound requests were refused or failed, as the host reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpProblems {
    /// The first few, in order.
    pub first: Vec<String>,
    /// How many there were in all.
    pub total: usize,
}

/// Counts of host calls still allowed in this call.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    pub activities: u32,
    pub webhooks: u32,
    pub log_lines: u32,
    pub kv_operations: u32,
    pub timers: u32,
    pub timer_cancels: u32,
    /// `inbound` calls (`open`, `route`): each may write a row.
    pub inbound: u32,
    /// `tasks` calls: each acts on the workspace's records.
    pub task_calls: u32,
    /// `model` requests.
    pub model_requests: u32,
    /// Bytes of queued effects (webhook bodies, timer payloads) the call may still hold.
    pub effect_bytes: usize,
}

/// What the host capabilities of one call act on. Each capability module implements its WIT
/// `Host` trait for this type (the store's data hands it out), so capabilities can be called —
/// and tested — without wasm.
pub struct CallData {
    pub(crate) context: CallContext,
    pub(crate) services: Arc<dyn CallServices>,
    pub(crate) limits: CallLimits,
    pub(crate) budget: Budget,
    pub(crate) effects: CallEffects,
    pub(crate) log_rate: Arc<LogRate>,
}

impl std::fmt::Debug for CallData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallData")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl CallData {
    /// A call's data with full budgets.
    pub fn new(
        context: CallContext,
        services: Arc<dyn CallServices>,
        log_rate: Arc<LogRate>,
        limits: &CallLimits,
    ) -> Self {
        Self {
            context,
            services,
            limits: limits.clone(),
            budget: Budget {
                activities: limits.activities,
                webhooks: limits.webhooks,
                log_lines: limits.log_lines,
                kv_operations: limits.kv_operations,
                timers: limits.timers,
                timer_cancels: limits.timers,
                inbound: super::capabilities::INBOUND_CALLS,
                task_calls: super::capabilities::TASK_CALLS,
                model_requests: super::capabilities::MODEL_REQUESTS,
                effect_bytes: limits.effect_bytes,
            },
            effects: CallEffects::default(),
            log_rate,
        }
    }

    /// Refuses a capability the manifest did not declare (or this kind of call does not allow).
    pub(crate) fn require(&self, capability: Capability) -> Result<(), CapabilityError> {
        if self.context.grants.contains(capability) {
            Ok(())
        } else {
            Err(CapabilityError::NotAllowed(format!(
                "plugin `{}` did not declare the `{}` capability in its manifest (or it is not available in this call)",
                self.context.plugin_id,
                capability.as_str()
            )))
        }
    }

    /// The session of this call, or why there is none.
    pub(crate) fn session(&self) -> Result<&SessionId, CapabilityError> {
        self.context
            .session_id
            .as_ref()
            .ok_or_else(|| CapabilityError::NotAllowed("this call is not about a session".into()))
    }

    /// The connection of this call, or why there is none.
    pub(crate) fn connection(&self) -> Result<&ConnectionId, CapabilityError> {
        self.context
            .connection_id
            .as_ref()
            .ok_or_else(|| CapabilityError::NotAllowed("this call is not about a connection".into()))
    }

    /// Takes `bytes` from the call's budget for queued effects, or says which limit refused them.
    pub(crate) fn hold_effect_bytes(&mut self, bytes: usize) -> Result<(), CapabilityError> {
        match self.budget.effect_bytes.checked_sub(bytes) {
            Some(left) => {
                self.budget.effect_bytes = left;
                Ok(())
            }
            None => Err(CapabilityError::LimitExceeded(format!(
                "a plugin call may queue at most {} MiB of webhooks and timers",
                self.limits.effect_bytes >> 20
            ))),
        }
    }

    /// The effects the call queued.
    pub(crate) fn into_effects(self, http_problems: HttpProblems) -> CallEffects {
        let mut effects = self.effects;
        effects.http_problems = http_problems;
        effects
    }
}

/// A call's data for capability tests: a session call of a plugin granted `grants`, over
/// `services`, under `limits`.
#[cfg(test)]
pub(crate) fn test_call(grants: &[&str], services: Arc<dyn CallServices>, limits: CallLimits) -> CallData {
    let grants = Grants::parse(&grants.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>()).expect("known grants");
    let context = CallContext {
        plugin_id: "test-plugin".into(),
        grants,
        outbound_hosts: Vec::new(),
        workspace_outbound_hosts: None,
        secrets: Vec::new(),
        secrets_in_bodies: true,
        workspace_id: Some(WorkspaceId::from("ws_test")),
        connection_id: Some(ConnectionId::from("con_test")),
        session_id: Some(SessionId::from("ses_test")),
    };
    CallData::new(context, services, Arc::new(LogRate::new(50, 500)), &limits)
}
