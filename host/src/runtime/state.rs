//! What one plugin call carries in its `Store`: WASI state (empty), the resource table, the
//! outbound HTTP hooks, the memory limiter, and the [`CallData`] the host capabilities act on.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::call::HttpProblems;
use super::call::{CallData, CallEffects};
use super::capabilities::http::OutboundHooks;
use super::limits::CallLimits;

/// Caps linear memory and tables, and remembers whether the cap was hit so the failure can say so.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    max_memory: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The data of one call's `Store`.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    http_hooks: OutboundHooks,
    pub(crate) limiter: MemoryLimiter,
    /// What the host capabilities act on.
    pub(crate) call: CallData,
}

impl PluginState {
    pub(crate) fn new(call: CallData, http_hooks: OutboundHooks, limits: &CallLimits) -> Self {
        // No arguments, environment, preopened directories, stdin, or sockets: a plugin reaches
        // the outside world only through the host capabilities (HTTP through `http_hooks`).
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(64 << 10)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.resources);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(limits.http.field_bytes);
        Self {
            wasi,
            table,
            http,
            http_hooks,
            limiter: MemoryLimiter {
                max_memory: limits.memory_bytes,
                hit: false,
            },
            call,
        }
    }

    /// Whether the memory cap refused a growth during this call.
    pub(crate) fn memory_limit_hit(&self) -> bool {
        self.limiter.hit
    }

    pub(crate) fn into_effects(self) -> CallEffects {
        let problems = self.http_hooks.problems();
        self.call.into_effects(problems)
    }

    /// Why outbound requests of this call were refused or failed.
    pub(crate) fn http_problems(&self) -> HttpProblems {
        self.http_hooks.problems()
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
