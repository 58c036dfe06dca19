//! The one wasmtime engine (component model, pooling allocator sized to the call limits, epoch
//! interruption with a ticker thread) and the linker every plugin is instantiated against: WASI
//! without files, environment or sockets, `wasi:http/outgoing-handler`, and the host capabilities.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use super::bindings;
use super::call::CallData;
use super::limits::CallLimits;
use super::state::PluginState;

/// Plugin calls that can run at once (the pooling allocator's slots); more wait and retry.
const POOLED_CALLS: u32 = 128;
/// Bytes of each pooled table and stack kept resident between instances (zeroed in place).
const KEEP_RESIDENT: usize = 1 << 20;
/// Bytes of each pooled linear memory kept resident between instances: more than a plugin's
/// usual memory (its stack — 256 KiB for the built-in plugins, `.cargo/config.toml` — data and
/// heap), so an ordinary call leaves nothing to decommit. What an instance used is zeroed in place
/// for the next one, so the memory a plugin starts with costs a memset on every call.
const KEEP_MEMORY_RESIDENT: usize = 4 << 20;
/// How often the epoch advances; guest code yields at every tick.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// An engine whose pooled instances are reserved at exactly the per-call memory cap.
pub(crate) fn engine(limits: &CallLimits) -> anyhow::Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    // Pooling: instances come from pre-reserved slots (fast instantiation, no mmap per call),
    // each memory reserved at exactly the per-call cap.
    let mut pooling = wasmtime::PoolingAllocationConfig::new();
    pooling
        .total_component_instances(POOLED_CALLS)
        .total_core_instances(POOLED_CALLS * 8)
        .total_memories(POOLED_CALLS * 2)
        .total_tables(POOLED_CALLS * 8)
        .total_stacks(POOLED_CALLS)
        .max_memory_size(limits.memory_bytes)
        // A finished instance's first pages are zeroed in place for the next one instead of
        // handed back to the kernel (madvise, then a page fault per page touched again): the
        // decommit's TLB flushes across cores cost ~3 % of the end-to-end bench's CPU.
        .linear_memory_keep_resident(KEEP_MEMORY_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .async_stack_keep_resident(KEEP_RESIDENT);
    config.memory_reservation(limits.memory_bytes as u64);
    // Data segments are copied into the (resident) memory at instantiation rather than mapped
    // copy-on-write: mapping the image in and out again per call cost page faults and TLB
    // flushes across cores (`smp_call_function_many_cond` ~4 % of the trigger bench's CPU).
    config.memory_init_cow(false);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config).map_err(wasmtime_error)
}

/// The linker: WASI (nothing granted but clocks and random), `wasi:http` (through the store's
/// outbound hooks), and the `leadtime:agent-runtime` capabilities, which act on each call's
/// [`CallData`].
pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasmtime_error)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wasmtime_error)?;
    bindings::ConnectionPlugin::add_to_linker::<PluginState, HasSelf<CallData>>(&mut linker, |state| &mut state.call)
        .map_err(wasmtime_error)?;
    Ok(linker)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a plain thread (so deadlines hold even when
/// every async thread is busy), until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ticking_engine, stopped) = (engine.weak(), stop.clone());
        std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match ticking_engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
        Ok(Self { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// wasmtime's error type as an `anyhow` error, keeping its whole chain of causes.
pub(crate) fn wasmtime_error(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{error:#}")
}
