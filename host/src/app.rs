//! The shared state of a running host: database, clock, plugin runtime, configuration, and the
//! wake-up signals of the background workers.

use std::sync::Arc;

use tokio::sync::{Notify, broadcast};

use crate::config::Config;
use crate::domain::ids::{DeliveryId, SessionId};
use crate::domain::time::SharedClock;
use crate::rate_limit::RateLimits;
use crate::runtime::PluginRuntime;
use crate::runtime::directory::PluginDirectory;
use crate::secrets::SecretBox;
use crate::store::Db;

/// Everything request handlers and workers share.
#[derive(Debug)]
pub struct App {
    pub db: Db,
    pub clock: SharedClock,
    pub runtime: Arc<PluginRuntime>,
    pub config: Config,
    /// Per-token request budgets.
    pub rate_limits: RateLimits,
    /// Failed authentications per client address.
    pub failed_auth: crate::rate_limit::FailedAuthLimits,
    /// The operator's key for connection secrets at rest.
    pub secrets: SecretBox,
    /// The keys the audit trail is chained and its checkpoints signed with (derived from the
    /// secrets key, never stored in the database).
    pub audit_keys: crate::audit::AuditKeys,
    /// The group-committed write path.
    pub writer: crate::commit::Writer,
    /// Tokens as authentication last read them (see [`crate::use_cases::token_memo`]).
    pub tokens: crate::use_cases::token_memo::TokenMemo,
    /// Where plugins beyond the built-in ones are loaded from, if anywhere.
    pub plugin_directory: Option<PluginDirectory>,
    /// Signals the session job worker that jobs were queued.
    pub jobs_queued: Arc<Notify>,
    /// Signals the delivery worker that deliveries were queued.
    pub deliveries_queued: Arc<Notify>,
    /// New sessions' start jobs, leased to this host's job worker as they are committed.
    pub job_handoff: crate::handoff::Handoff<crate::store::jobs::Job>,
    /// Webhooks a start or event queued, leased to this host's delivery worker as committed.
    pub delivery_handoff: crate::handoff::Handoff<crate::store::deliveries::Delivery>,
    /// What the workers finished.
    pub events: broadcast::Sender<HostEvent>,
    /// Connection counters of the HTTP server.
    pub server_stats: Arc<crate::server::ServerStats>,
    /// Where this host's API listens (set once the listener is bound): the MCP endpoint's full
    /// mode runs public API operations through it, as the REST calls they are.
    pub local_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Provider webhooks refused per connection (in memory, bounded).
    pub inbound_rejections: crate::use_cases::inbound::Rejections,
    /// Live session streams open, host-wide and per token (bounded).
    pub session_streams: Arc<crate::api::session_stream::StreamSlots>,
    /// Cancelled when the host starts shutting down (long-lived responses such as session streams
    /// end then, so the shutdown does not wait for them).
    pub stopping: tokio_util::sync::CancellationToken,
}

/// How long a job over its workspace's or connection's fair share of plugin calls waits in memory
/// for its turn before it is put back.
pub const SHARE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

impl App {
    /// How long a claimed (or handed) job is reserved for its worker: its wait for a share and a
    /// plugin call's time limit, plus a margin; a model call's lease covers its request's time
    /// limit and the writes around it. A worker that dies releases its jobs after this.
    pub fn job_leases(&self) -> crate::store::jobs::Leases {
        crate::store::jobs::Leases {
            plugin_ms: (self.config.plugin_limits.timeout + SHARE_PATIENCE).as_millis() as i64 + 5_000,
            model_ms: self.config.model_timeout.as_millis() as i64 + 60_000,
        }
    }
}

/// Something the background workers finished, broadcast to whoever listens (tests wait on these
/// instead of sleeping; later, live session feeds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// A session job (start, event) ran to an outcome.
    JobFinished {
        kind: String,
        session_id: Option<SessionId>,
        /// The plugin version (wasm SHA-256) that ran it, if a plugin was called.
        plugin_sha256: Option<String>,
    },
    /// A plugin from the plugins directory was loaded (new, or a new version).
    PluginLoaded {
        source: String,
        id: String,
        version: String,
        sha256: String,
    },
    /// A plugin file could not be loaded; the host runs on without it.
    PluginRejected { source: String, message: String },
    /// A plugin file was removed; its connection type takes no new sessions.
    PluginRemoved { source: String },
    /// A webhook delivery attempt was recorded.
    DeliveryAttempted {
        delivery_id: DeliveryId,
        session_id: Option<SessionId>,
        delivered: bool,
    },
}

/// The handle handlers and workers hold.
pub type SharedApp = Arc<App>;

impl App {
    /// Tells listeners (if any) about `event`.
    pub fn announce(&self, event: HostEvent) {
        let _ = self.events.send(event);
    }
}
