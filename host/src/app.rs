//! The shared state of a running host: database, clock, plugin runtime, configuration, and the
//! wake-up signals of the background workers.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Config;
use crate::domain::time::SharedClock;
use crate::rate_limit::RateLimits;
use crate::runtime::PluginRuntime;
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
    /// Signals the session job worker that jobs were queued.
    pub jobs_queued: Notify,
    /// Signals the delivery worker that deliveries were queued.
    pub deliveries_queued: Notify,
}

/// The handle handlers and workers hold.
pub type SharedApp = Arc<App>;
