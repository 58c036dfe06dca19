//! One plugin call through the host's real path (fresh store from the pooled, pre-instantiated
//! component, limits, epoch deadline, host capabilities linked) against a bare wasmtime
//! fresh-instance call of the same component and export, in the same run. Also: cold start (compile)
//! and warm start (from the compile cache) of the built-in plugin.
//!
//! Run with `./dev bench` (or `cargo bench -p leadtime-host --bench plugin_call`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use leadtime_host::runtime::{CallLimits, PluginRuntime, builtin::BUILTIN_PLUGINS};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentType, Lift, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const CALLS: usize = 2_000;
const CONFIG: &str = r#"{"webhookUrl":"https://agents.example.com/leadtime/webhook","mode":"basic"}"#;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

/// The `field-error` record of the contract, for the bare call's typed result.
#[derive(ComponentType, Lift)]
#[component(record)]
#[allow(dead_code)]
struct FieldError {
    field: String,
    message: String,
}

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn wasmtime_error(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

/// Per-call times of a bare wasmtime fresh-instance call of `validate-config`.
async fn bare_calls(wasm: &[u8]) -> Result<Vec<Duration>> {
    let engine = Engine::new(&Config::new()).map_err(wasmtime_error)?;
    let component = Component::new(&engine, wasm).map_err(wasmtime_error)?;
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasmtime_error)?;
    // The leadtime:agent-runtime imports are stubs (validate-config calls none of them).
    for (name, item) in component.component_type().imports(&engine) {
        let (true, ComponentItem::ComponentInstance(instance)) = (name.starts_with("leadtime:"), item.ty) else {
            continue;
        };
        let mut stubs = linker.instance(name).map_err(wasmtime_error)?;
        for (function, kind) in instance.exports(&engine) {
            if matches!(kind.ty, ComponentItem::ComponentFunc(_)) {
                stubs
                    .func_new(function, |_, _, _, _| {
                        Err(wasmtime::format_err!("not linked in the bare benchmark"))
                    })
                    .map_err(wasmtime_error)?;
            }
        }
    }
    let pre = linker.instantiate_pre(&component).map_err(wasmtime_error)?;
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        let mut store = Store::new(
            &engine,
            Bare {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        let instance = pre.instantiate_async(&mut store).await.map_err(wasmtime_error)?;
        let interface = instance
            .get_export_index(&mut store, None, "leadtime:agent-runtime/plugin@0.1.0")
            .context("the plugin interface")?;
        let func = instance
            .get_export_index(&mut store, Some(&interface), "validate-config")
            .context("validate-config")?;
        let validate = instance
            .get_typed_func::<(&str,), (Result<(), Vec<FieldError>>,)>(&mut store, func)
            .map_err(wasmtime_error)?;
        let (result,) = validate
            .call_async(&mut store, (CONFIG,))
            .await
            .map_err(wasmtime_error)?;
        anyhow::ensure!(result.is_ok(), "the config was refused");
        times.push(started.elapsed());
    }
    Ok(times)
}

/// Per-call times of the same call through the host's runtime.
async fn host_calls(runtime: &PluginRuntime, id: &str) -> Result<Vec<Duration>> {
    let plugin = runtime.plugin(id).context("the plugin is loaded")?;
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let started = Instant::now();
        runtime
            .validate_config(&plugin, CONFIG)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(started.elapsed());
    }
    Ok(times)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn p99(times: &[Duration]) -> Duration {
    times[(times.len() * 99 / 100).min(times.len() - 1)]
}

async fn run() -> Result<()> {
    let (source, wasm) = BUILTIN_PLUGINS.first().context("a built-in plugin")?;
    let cache = tempfile::tempdir()?;

    // Cold: compile the component; warm: load it from the compile cache a restart would find.
    let started = Instant::now();
    let cold_runtime = PluginRuntime::new(
        CallLimits::default(),
        Default::default(),
        Some(cache.path().to_path_buf()),
        leadtime_host::runtime::executor::default_threads(),
    )?;
    cold_runtime.load(source, wasm).await?;
    let cold = started.elapsed();
    let started = Instant::now();
    let runtime = PluginRuntime::new(
        CallLimits::default(),
        Default::default(),
        Some(cache.path().to_path_buf()),
        leadtime_host::runtime::executor::default_threads(),
    )?;
    let plugin = runtime.load(source, wasm).await?;
    let warm = started.elapsed();

    // Warm both paths up, then measure alternately so neither gets the quieter machine.
    let id = plugin.manifest.id.clone();
    bare_calls(wasm).await?;
    host_calls(&runtime, &id).await?;
    let mut bare = bare_calls(wasm).await?;
    let mut host = host_calls(&runtime, &id).await?;
    let (bare_median, host_median) = (median(&mut bare), median(&mut host));

    println!(
        "plugin call: `validate-config` of the built-in `{id}` plugin, {CALLS} calls each, fresh instance per call"
    );
    println!("{:<52} {:>10} {:>10} {:>8}", "path", "median", "p99", "ratio");
    println!(
        "{:<52} {:>10.1?} {:>10.1?} {:>8.2}",
        "baseline: bare wasmtime (default config, WASI only)",
        bare_median,
        p99(&bare),
        1.0
    );
    println!(
        "{:<52} {:>10.1?} {:>10.1?} {:>8.2}",
        "host: pooled, limits, epoch deadline, capabilities",
        host_median,
        p99(&host),
        host_median.as_secs_f64() / bare_median.as_secs_f64()
    );
    println!("start of the built-in plugin: cold (compile) {cold:.1?}, warm (compile cache) {warm:.1?}");
    Ok(())
}
