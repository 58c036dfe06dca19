//! The built-in plugins, compiled from `plugins/*` by `host/build.rs` and embedded in the binary.

/// `(source name, wasm bytes)` of every built-in plugin.
pub const BUILTIN_PLUGINS: &[(&str, &[u8])] = &[
    (
        "builtin:self-hosted",
        include_bytes!(env!("LEADTIME_BUILTIN_PLUGIN_SELF_HOSTED")),
    ),
    (
        "builtin:cursor-cloud",
        include_bytes!(env!("LEADTIME_BUILTIN_PLUGIN_CURSOR_CLOUD")),
    ),
    (
        "builtin:claude-agent",
        include_bytes!(env!("LEADTIME_BUILTIN_PLUGIN_CLAUDE_AGENT")),
    ),
    (
        "builtin:triage-agent",
        include_bytes!(env!("LEADTIME_BUILTIN_PLUGIN_TRIAGE_AGENT")),
    ),
];
