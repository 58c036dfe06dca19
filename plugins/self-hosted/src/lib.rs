//! Built-in connection type `self-hosted`: the bot's work is done by the customer's own agent
//! wrapper (Leadtime's OpenClaw and Hermes connectors, or any wrapper speaking the wire contract).
//!
//! On `start-session` the plugin builds the agent-session webhook body of the wire contract
//! (`agent_session.created`, with a complete `promptContext`) and asks the host to deliver it,
//! signed, to the connection's `webhookUrl`. The wrapper then reports progress through the
//! session API; this plugin has nothing more to do.

mod body;
mod config;

use leadtime_plugin_sdk::{
    Activity, ActivityType, FieldError, Plugin, PluginError, PluginManifest, SessionEvent, SessionRef, SessionStart,
    export_plugin, log, session, webhook,
};

pub use body::{prompt_context, webhook_body};
pub use config::{Config, Mode};

/// The `self-hosted` connection type.
pub struct SelfHosted;

impl Plugin for SelfHosted {
    fn manifest() -> PluginManifest {
        PluginManifest {
            config_schema: config::SCHEMA.to_owned(),
            capabilities: vec!["session".into(), "webhook".into(), "log".into()],
            ..PluginManifest::new(
                "self-hosted",
                "Self-hosted agent",
                env!("CARGO_PKG_VERSION"),
                "Sends each agent session as a signed webhook to your own agent wrapper \
                 (OpenClaw, Hermes or your own), which reports progress through the session API.",
            )
        }
    }

    fn validate_config(config: &serde_json::Value) -> Result<(), Vec<FieldError>> {
        Config::parse(config).map(|_| ())
    }

    fn start_session(session: SessionStart) -> Result<(), PluginError> {
        let config = Config::parse(&session.connection.config_json()?).map_err(PluginError::InvalidConfig)?;
        let body = webhook_body(&session, &config);
        let delivery_id = webhook::deliver(&config.webhook_url, &body)?;
        // One line per session: detail, not news (the session card and delivery log show it).
        log::debug(&format!(
            "session {} queued for the wrapper as delivery {delivery_id}",
            session.session_id
        ));
        Ok(())
    }

    fn on_event(session: SessionRef, event: SessionEvent) -> Result<(), PluginError> {
        // The wire contract sends only session-start events to the wrapper (each accepted
        // delivery starts a new agent run), so events are recorded, not forwarded.
        match event {
            SessionEvent::CancelRequested(reason) => {
                let reason = reason.unwrap_or_else(|| "no reason given".into());
                let note = format!(
                    "Cancel requested: {reason}. The wrapper keeps its run going until it reports; \
                     self-hosted wrappers only receive session starts."
                );
                session::post_activity(
                    &Activity::new(ActivityType::Log, &note).with_idempotency_key("self-hosted:cancel"),
                )?;
            }
            other => {
                let kind = match other {
                    SessionEvent::TimerFired(_) => "timer",
                    SessionEvent::InboundWebhook(_) => "inbound webhook",
                    SessionEvent::FollowUp(_) => "follow-up",
                    SessionEvent::CancelRequested(_) => "cancel",
                };
                log::debug(&format!(
                    "session {}: {kind} not forwarded to the wrapper",
                    session.session_id
                ));
            }
        }
        Ok(())
    }
}

export_plugin!(SelfHosted);
