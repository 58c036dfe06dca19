//! The host side of `leadtime:agent-runtime`, generated in exactly one place from the top-level
//! `wit/`. Everything else in the host uses these types through `runtime`.
//!
//! Plugins built against an older `0.1.x` of the contract link against these same bindings:
//! wasmtime resolves their imports and exports to the semver-compatible `0.1.x` ones here, and
//! the interfaces they do not import are simply left unused.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "connection-plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use exports::leadtime::agent_runtime::plugin as exported;
pub use leadtime::agent_runtime::{inbound, kv, log, model, session, tasks, timers, types, webhook};
