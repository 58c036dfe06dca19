//! Write a Leadtime agent-runtime plugin in Rust.
//!
//! A plugin is a WebAssembly component that decides how a bot's *connection* works: when a task is
//! assigned to the bot (or the bot is @mentioned), the host opens an agent session and calls the
//! plugin's [`Plugin::start_session`]. The plugin then reports progress on the session, delivers a
//! signed webhook, or calls a provider — through the host capabilities in [`session`],
//! [`webhook`], [`kv`], [`timers`], [`log`], [`http`], [`inbound`], [`model`] and [`tasks`].
//! Nothing else is reachable from the sandbox.
//!
//! ```
//! use leadtime_plugin_sdk::{export_plugin, Plugin, PluginError, PluginManifest, SessionStart};
//!
//! struct Echo;
//!
//! impl Plugin for Echo {
//!     fn manifest() -> PluginManifest {
//!         PluginManifest::new("echo", "Echo", env!("CARGO_PKG_VERSION"), "Answers every task at once.")
//!     }
//!     fn start_session(session: SessionStart) -> Result<(), PluginError> {
//!         leadtime_plugin_sdk::session::respond(&format!("Hello from #{}", session.task.short_number))?;
//!         leadtime_plugin_sdk::session::set_status(leadtime_plugin_sdk::SessionStatus::Done, None)?;
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Echo);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`; the `.wasm` it produces is the
//! component the host loads. The contract is `leadtime:agent-runtime@0.1.3` (see `wit/`).
//!
//! # A native agent
//!
//! A native agent's loop runs in the host: it asks the model through [`model`] (the call ends; the
//! host performs the request outside any instance, within the admin's budgets, and calls back with
//! the answer as a `timer-fired` event read by [`model::answer`]) and acts on tasks as its bot
//! through [`tasks`]. Keep what must survive between calls in [`kv`]. Test it with the
//! `leadtime-plugin-test` harness (`sdk-test/`): scripted model answers, no server, no model.
//!
//! ```
//! use leadtime_plugin_sdk::model::{self, ModelRequest, WireFormat};
//! use leadtime_plugin_sdk::*;
//!
//! struct OneLiner;
//!
//! impl Plugin for OneLiner {
//!     fn manifest() -> PluginManifest {
//!         PluginManifest {
//!             secrets: vec![SecretSpec { name: "api-key".into(), description: "Anthropic API key".into() }],
//!             outbound_hosts: vec!["api.anthropic.com".into()],
//!             capabilities: ["session", "model", "tasks"].map(String::from).to_vec(),
//!             ..PluginManifest::new("one-liner", "One-liner", "0.1.0", "Answers every task in one sentence.")
//!         }
//!     }
//!
//!     fn start_session(start: SessionStart) -> Result<(), PluginError> {
//!         let text = brief::brief(&start, None, "Answer in one sentence.");
//!         let request = ModelRequest {
//!             format: WireFormat::AnthropicMessages,
//!             base_url: "https://api.anthropic.com".into(),
//!             model: "claude-sonnet-4-5".into(),
//!             api_key_secret: Some("api-key".into()),
//!             system: None,
//!             messages: serde_json::json!([{"role": "user", "content": text}]).to_string(),
//!             tools: "[]".into(),
//!             max_tokens: 512,
//!         };
//!         model::request(&request, &serde_json::json!({}))?;
//!         Ok(())
//!     }
//!
//!     fn on_event(_: SessionRef, event: SessionEvent) -> Result<(), PluginError> {
//!         if let SessionEvent::TimerFired(payload) = event
//!             && let Some(answer) = model::answer(&payload)
//!         {
//!             match answer.result {
//!                 Ok(reply) => {
//!                     session::respond(&reply.text())?;
//!                     session::set_status(SessionStatus::Done, None)?;
//!                 }
//!                 Err(why) => session::set_status(SessionStatus::Failed, Some(&why))?,
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(OneLiner);
//! ```

#[doc(hidden)]
pub mod bindings;
pub mod brief;
mod capabilities;
pub mod http;
mod types;

pub use capabilities::{inbound, kv, log, model, session, tasks, timers, webhook};
pub use types::{FieldErrors, WIT_VERSION};

pub use bindings::leadtime::agent_runtime::types::{
    Activity, ActivityType, Actor, BotInfo, Comment, ConnectionInfo, FieldError, HostError, InboundRequest,
    PluginError, PluginManifest, SecretSpec, SessionEvent, SessionRef, SessionStart, SessionStatus, TaskSnapshot,
    Trigger,
};

/// A connection type, implemented by a plugin author and exported with [`export_plugin!`].
///
/// Every call runs in a fresh instance of the component, so a plugin keeps no state in memory
/// between calls; use [`kv`] for what must survive.
pub trait Plugin {
    /// Describes the plugin: id, name, version, config schema, secrets, outbound hosts.
    fn manifest() -> PluginManifest;

    /// Checks a connection config (already parsed as JSON) and returns every problem found.
    /// The default accepts any JSON object.
    fn validate_config(config: &serde_json::Value) -> Result<(), Vec<FieldError>> {
        let _ = config;
        Ok(())
    }

    /// Starts work on a new agent session.
    fn start_session(session: SessionStart) -> Result<(), PluginError>;

    /// Reacts to an event on a session this plugin started. The default ignores every event.
    fn on_event(session: SessionRef, event: SessionEvent) -> Result<(), PluginError> {
        let _ = (session, event);
        Ok(())
    }
}

/// Exports a [`Plugin`] implementation as the component's `leadtime:agent-runtime/plugin`.
///
/// Use it once per plugin crate (a `cdylib`): `export_plugin!(MyPlugin);`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __LeadtimePluginExport;

        impl $crate::__private::Guest for __LeadtimePluginExport {
            fn manifest() -> $crate::PluginManifest {
                <$plugin as $crate::Plugin>::manifest()
            }
            fn validate_config(config: String) -> Result<(), Vec<$crate::FieldError>> {
                $crate::__private::validate_config::<$plugin>(&config)
            }
            fn start_session(session: $crate::SessionStart) -> Result<(), $crate::PluginError> {
                <$plugin as $crate::Plugin>::start_session(session)
            }
            fn on_event(
                session: $crate::SessionRef,
                event: $crate::SessionEvent,
            ) -> Result<(), $crate::PluginError> {
                <$plugin as $crate::Plugin>::on_event(session, event)
            }
        }

        // Only wasm builds export the component ABI; native builds (the plugin's unit tests) keep
        // the plain Rust functions.
        #[cfg(target_arch = "wasm32")]
        $crate::__private::export_component!(__LeadtimePluginExport with_types_in $crate::__private::bindings);
    };
}

/// Plumbing for [`export_plugin!`]; not part of the SDK's API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::export as export_component;
    pub use crate::bindings::exports::leadtime::agent_runtime::plugin::Guest;

    /// Parses the config text and hands it to the plugin's validation.
    pub fn validate_config<P: crate::Plugin>(config: &str) -> Result<(), Vec<crate::FieldError>> {
        match serde_json::from_str::<serde_json::Value>(config) {
            Ok(value @ serde_json::Value::Object(_)) => P::validate_config(&value),
            Ok(_) => Err(vec![crate::FieldError {
                field: String::new(),
                message: "the connection config must be a JSON object".into(),
            }]),
            Err(e) => Err(vec![crate::FieldError {
                field: String::new(),
                message: format!("the connection config is not valid JSON: {e}"),
            }]),
        }
    }
}
