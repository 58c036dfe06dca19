//! `leadtime:agent-runtime/log`: plugin logs, tagged with plugin, connection and session, capped
//! per call in count and line length.

use crate::runtime::bindings::log::{Host, Level};
use crate::runtime::state::PluginState;

impl Host for PluginState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.require("log").is_err() {
            return Ok(());
        }
        if self.budget.log_lines == 0 {
            return Ok(());
        }
        self.budget.log_lines -= 1;
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
