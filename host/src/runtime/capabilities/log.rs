//! `leadtime:agent-runtime/log`: plugin logs, tagged with plugin, connection and session, capped
//! per call in count and line length, and rate-limited per connection across calls (so a plugin
//! called often cannot flood the host's logs either).

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::runtime::bindings::log::{Host, Level};
use crate::runtime::state::PluginState;

/// Token buckets of log lines, keyed by connection (or plugin, outside a connection).
pub struct LogRate {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for LogRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogRate")
    }
}

impl LogRate {
    /// `per_second` lines per key sustained, bursts of `burst`.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Spends one line of `key`'s budget; `false` when it is used up.
    pub fn allow(&self, key: &str) -> bool {
        self.limiter.check_key(&key.to_owned()).is_ok()
    }

    /// Forgets full buckets (bounded memory with many connections).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

impl Host for PluginState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.require("log").is_err() {
            return Ok(());
        }
        if self.budget.log_lines == 0 {
            return Ok(());
        }
        self.budget.log_lines -= 1;
        let context = &self.context;
        let key = context
            .connection_id
            .as_ref()
            .map_or_else(|| context.plugin_id.clone(), |c| c.as_str().to_owned());
        if !self.log_rate.allow(&key) {
            self.log_lines_dropped += 1;
            return Ok(());
        }
        let mut message = message;
        if message.len() > self.limits.log_line_bytes {
            let mut cut = self.limits.log_line_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" […]");
        }
        if self.budget.log_lines == 0 {
            message.push_str(" (log limit reached: further lines from this call are dropped)");
        }
        let context = &self.context;
        let plugin = context.plugin_id.as_str();
        let connection = context.connection_id.as_ref().map(|c| c.as_str()).unwrap_or("-");
        let session = context.session_id.as_ref().map(|s| s.as_str()).unwrap_or("-");
        match level {
            Level::Trace => {
                tracing::trace!(target: "plugin", plugin, connection, session, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "plugin", plugin, connection, session, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "plugin", plugin, connection, session, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "plugin", plugin, connection, session, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "plugin", plugin, connection, session, "{message}")
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_burst_are_refused_per_key() {
        let rate = LogRate::new(1, 3);
        assert!((0..3).all(|_| rate.allow("conn_a")));
        assert!(!rate.allow("conn_a"));
        assert!(rate.allow("conn_b"), "each connection has its own bucket");
    }
}
