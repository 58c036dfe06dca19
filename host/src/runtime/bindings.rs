//! The host side of `leadtime:agent-runtime`, generated in exactly one place from the top-level
//! `wit/`. Everything else in the host uses these types through `runtime`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "connection-plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use exports::leadtime::agent_runtime::plugin as exported;
pub use leadtime::agent_runtime::{kv, log, session, types, webhook};
