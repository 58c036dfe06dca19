//! The session job worker: it claims due jobs (a session to start, an event or a plugin's timer
//! to deliver), runs them through the bot's connection plugin on the plugin threads, within each
//! workspace's and connection's fair share, and commits what the call queued with the job's
//! outcome. The plugin's host calls reach the host's records through [`PluginServices`].

pub mod fair_share;
mod model_calls;
mod plugin_services;
pub mod snapshot;
mod started;
pub mod worker;

pub use plugin_services::PluginServices;
