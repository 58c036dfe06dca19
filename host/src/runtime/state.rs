//! What one plugin call carries in its `Store`: WASI state (empty), the memory limiter, the call's
//! identity and grants, its remaining host-call budgets and the effects it queued.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::domain::ids::{ConnectionId, DeliveryId, JobId, SessionId, WorkspaceId};

use super::capabilities::http::{HttpProblems, OutboundHooks};
use super::capabilities::log::LogRate;
use super::capabilities::{CallServices, CapabilityError};
use super::{CallLimits, Manifest};

/// Who a call is for and what it may touch.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The plugin's connection-type id (for logs and messages).
    pub plugin_id: String,
    /// Capabilities granted: those the manifest declares. Empty while reading the manifest.
    pub capabilities: Vec<String>,
    /// Hosts outbound requests may reach (the manifest's `outbound-hosts`).
    pub outbound_hosts: Vec<String>,
    /// The workspace's narrowing of `outbound_hosts`, if its admins set one.
    pub workspace_outbound_hosts: Option<Vec<String>>,
    /// Secret names header values may refer to (the manifest's `secrets`).
    pub secrets: Vec<String>,
    pub workspace_id: Option<WorkspaceId>,
    pub connection_id: Option<ConnectionId>,
    /// The session the call is about; `session` capabilities act on it alone.
    pub session_id: Option<SessionId>,
}

impl CallContext {
    /// A call about `session` of `connection`.
    pub fn for_session(
        manifest: &Manifest,
        workspace: WorkspaceId,
        connection: ConnectionId,
        session: SessionId,
    ) -> Self {
        Self {
            plugin_id: manifest.id.clone(),
            capabilities: manifest.capabilities.clone(),
            outbound_hosts: manifest.outbound_hosts.clone(),
            workspace_outbound_hosts: None,
            secrets: manifest.secrets.iter().map(|s| s.name.clone()).collect(),
            workspace_id: Some(workspace),
            connection_id: Some(connection),
            session_id: Some(session),
        }
    }

    /// This context with the workspace's narrowing of the plugin's outbound hosts.
    pub fn with_workspace_outbound_hosts(mut self, hosts: Option<Vec<String>>) -> Self {
        self.workspace_outbound_hosts = hosts;
        self
    }

    /// A call outside any session (`validate-config`): only `log` is usable.
    pub fn without_session(manifest: &Manifest) -> Self {
        Self {
            plugin_id: manifest.id.clone(),
            capabilities: manifest.capabilities.iter().filter(|c| *c == "log").cloned().collect(),
            outbound_hosts: Vec::new(),
            workspace_outbound_hosts: None,
            secrets: Vec::new(),
            workspace_id: None,
            connection_id: None,
            session_id: None,
        }
    }

    /// The `manifest()` call at load time: no capability at all.
    pub fn for_manifest() -> Self {
        Self {
            plugin_id: "(loading)".into(),
            capabilities: Vec::new(),
            outbound_hosts: Vec::new(),
            workspace_outbound_hosts: None,
            secrets: Vec::new(),
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

/// What a successful call leaves for the host to commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallEffects {
    pub webhooks: Vec<QueuedWebhook>,
    pub timers: Vec<QueuedTimer>,
    /// Ids of earlier timers the call canceled.
    pub canceled_timers: Vec<String>,
    /// Outbound requests the host refused or saw fail, each with its reason.
    pub http_problems: HttpProblems,
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
    /// Bytes of queued effects (webhook bodies, timer payloads) the call may still hold.
    pub effect_bytes: usize,
}

/// Caps linear memory and tables, and remembers whether the cap was hit so the failure can say so.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_memory: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The data of one call's `Store`.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    http_hooks: OutboundHooks,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) context: CallContext,
    pub(crate) services: Arc<dyn CallServices>,
    pub(crate) limits: CallLimits,
    pub(crate) budget: Budget,
    pub(crate) effects: CallEffects,
    pub(crate) log_rate: Arc<LogRate>,
    /// Log lines the per-connection rate limit dropped in this call.
    pub(crate) log_lines_dropped: u32,
}

impl PluginState {
    pub(crate) fn new(
        context: CallContext,
        services: Arc<dyn CallServices>,
        http_hooks: OutboundHooks,
        log_rate: Arc<LogRate>,
        limits: &CallLimits,
    ) -> Self {
        // No arguments, environment, preopened directories, stdin, or sockets: a plugin reaches
        // the outside world only through the host capabilities (HTTP through `http_hooks`).
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(64 << 10)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.resources);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(limits.http.field_bytes);
        Self {
            wasi,
            table,
            http,
            http_hooks,
            limiter: MemoryLimiter {
                max_memory: limits.memory_bytes,
                hit: false,
            },
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
                effect_bytes: limits.effect_bytes,
            },
            effects: CallEffects::default(),
            log_rate,
            log_lines_dropped: 0,
        }
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

    /// Whether the memory cap refused a growth during this call.
    pub(crate) fn memory_limit_hit(&self) -> bool {
        self.limiter.hit
    }

    pub(crate) fn into_effects(self) -> CallEffects {
        if self.log_lines_dropped > 0 {
            let context = &self.context;
            tracing::warn!(
                target: "plugin",
                plugin = %context.plugin_id,
                connection = context.connection_id.as_ref().map(|c| c.as_str()).unwrap_or("-"),
                session = context.session_id.as_ref().map(|s| s.as_str()).unwrap_or("-"),
                dropped = self.log_lines_dropped,
                "plugin log lines dropped by the per-connection rate limit"
            );
        }
        let mut effects = self.effects;
        effects.http_problems = self.http_hooks.problems();
        effects
    }

    /// Why outbound requests of this call were refused or failed.
    pub(crate) fn http_problems(&self) -> HttpProblems {
        self.http_hooks.problems()
    }

    /// Refuses a capability the manifest did not declare.
    pub(crate) fn require(&self, capability: &str) -> Result<(), CapabilityError> {
        if self.context.capabilities.iter().any(|c| c == capability) {
            Ok(())
        } else {
            Err(CapabilityError::NotAllowed(format!(
                "plugin `{}` did not declare the `{capability}` capability in its manifest (or it is not available in this call)",
                self.context.plugin_id
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
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
