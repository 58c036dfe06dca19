//! `leadtime:agent-runtime/log`: plugin logs, tagged with plugin, connection and session, capped
//! per call in count and line length, and rate-limited per connection across calls (so a plugin
//! called often cannot flood the host's logs either).

use crate::runtime::bindings::log::{Host, Level};
use crate::runtime::call::CallData;
use crate::runtime::grants::Capability;

impl Host for CallData {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.require(Capability::Log).is_err() {
            return Ok(());
        }
        if self.budget.log_lines == 0 {
            return Ok(());
        }
        self.budget.log_lines -= 1;
        // A line the host's log filter would drop costs no share of the connection's rate.
        let enabled = match level {
            Level::Trace => tracing::enabled!(target: "plugin", tracing::Level::TRACE),
            Level::Debug => tracing::enabled!(target: "plugin", tracing::Level::DEBUG),
            Level::Info => tracing::enabled!(target: "plugin", tracing::Level::INFO),
            Level::Warn => tracing::enabled!(target: "plugin", tracing::Level::WARN),
            Level::Error => tracing::enabled!(target: "plugin", tracing::Level::ERROR),
        };
        if !enabled {
            return Ok(());
        }
        let context = &self.context;
        let key = context
            .connection_id
            .as_ref()
            .map_or_else(|| context.plugin_id.clone(), |c| c.as_str().to_owned());
        if !self.log_rate.allow(&key) {
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
    use std::sync::Arc;

    use super::*;
    use crate::runtime::CallLimits;
    use crate::runtime::call::test_call;
    use crate::runtime::services::fake::FakeServices;

    /// Logs of this thread at `level` and above, to the test's output.
    fn logging_at(level: tracing::Level) -> tracing::subscriber::DefaultGuard {
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_max_level(level)
                .with_test_writer()
                .finish(),
        )
    }

    #[tokio::test]
    async fn lines_are_capped_per_call_and_rate_limited_per_connection() {
        let _logs = logging_at(tracing::Level::DEBUG);
        let limits = CallLimits {
            log_lines: 3,
            ..CallLimits::default()
        };
        let mut call = test_call(&["log"], Arc::new(FakeServices::default()), limits.clone());
        for n in 0..10 {
            call.log(Level::Info, format!("line {n}")).await.unwrap();
        }
        assert_eq!(call.budget.log_lines, 0);
        assert_eq!(call.log_rate.take_dropped(), None);
        // Past the connection's burst of 500 lines, lines are dropped and counted.
        let unlimited = CallLimits {
            log_lines: 10_000,
            ..limits
        };
        let mut flood = test_call(&["log"], Arc::new(FakeServices::default()), unlimited);
        for n in 0..600 {
            flood.log(Level::Debug, format!("flood {n}")).await.unwrap();
        }
        let dropped = flood.log_rate.take_dropped().expect("lines dropped");
        assert!(dropped.total >= 90, "{dropped:?}");
        assert_eq!(dropped.top[0].0, "con_test");
    }

    #[tokio::test]
    async fn lines_the_log_filter_drops_spend_no_rate() {
        let _logs = logging_at(tracing::Level::INFO);
        let unlimited = CallLimits {
            log_lines: 10_000,
            ..CallLimits::default()
        };
        let mut call = test_call(&["log"], Arc::new(FakeServices::default()), unlimited);
        for n in 0..2_000 {
            call.log(Level::Debug, format!("detail {n}")).await.unwrap();
        }
        assert_eq!(
            call.log_rate.take_dropped(),
            None,
            "debug lines are filtered, not rate-limited"
        );
        for n in 0..600 {
            call.log(Level::Info, format!("line {n}")).await.unwrap();
        }
        assert!(call.log_rate.take_dropped().is_some(), "info lines are rate-limited");
    }
}
