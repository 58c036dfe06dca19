//! The plugin runtime: one wasmtime engine, the registry of loaded plugins (connection types), and
//! the calls the host makes into them.
//!
//! Each plugin is compiled once (or loaded from the on-disk compile cache) and pre-instantiated
//! against a linker holding WASI (no files, no environment, no sockets) and the host capabilities
//! in [`capabilities`]. Every call gets a fresh `Store` with its own memory cap, wall-clock deadline
//! and host-call budgets; a trap, a timeout or a breached limit fails that call with a reason, never
//! the host.

pub mod bindings;
pub mod builtin;
pub mod capabilities;
pub mod check;
pub mod directory;
pub mod executor;
mod state;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::outbound::OutboundPolicy;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use executor::PluginExecutor;

use bindings::types::{FieldError, PluginError, SessionEvent, SessionRef, SessionStart};
use bindings::{ConnectionPlugin, ConnectionPluginPre};
pub use capabilities::http::{HttpLimits, HttpProblems};
use capabilities::http::{OutboundHooks, OutboundSetup};
use capabilities::log::LogRate;
pub use capabilities::{CallServices, CapabilityError};
use state::PluginState;
pub use state::{CallContext, CallEffects, QueuedTimer, QueuedWebhook};

/// The contract versions this host can load, newest first.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.1", "0.1.0"];
/// The exported interface every plugin must provide (without the version).
const PLUGIN_INTERFACE: &str = "leadtime:agent-runtime/plugin";
/// Plugin calls that can run at once (the pooling allocator's slots); more wait and retry.
const POOLED_CALLS: u32 = 128;
/// How often the epoch advances; call deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Per-call limits. Every guest-driven allocation or host call is bounded by one of these.
#[derive(Debug, Clone)]
pub struct CallLimits {
    /// Wall-clock time one call may take, host calls included.
    pub timeout: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Activities one call may post.
    pub activities: u32,
    /// Webhooks one call may queue.
    pub webhooks: u32,
    /// Largest webhook body, in bytes.
    pub webhook_body_bytes: usize,
    /// Log lines one call may write (more are dropped, and one line says so).
    pub log_lines: u32,
    /// Longest log line kept, in bytes.
    pub log_line_bytes: usize,
    /// Log lines one connection may write per second across calls, sustained.
    pub log_lines_per_second: u32,
    /// Log lines one connection may write in a burst above that rate.
    pub log_lines_burst: u32,
    /// kv operations one call may make.
    pub kv_operations: u32,
    /// Longest kv key, in bytes.
    pub kv_key_bytes: usize,
    /// Largest kv value, in bytes.
    pub kv_value_bytes: usize,
    /// Bytes of kv state one connection may keep.
    pub kv_connection_bytes: i64,
    /// Outbound HTTP (`wasi:http`) budgets and timeouts.
    pub http: HttpLimits,
    /// Timers one call may schedule.
    pub timers: u32,
    /// Timers one session may have pending.
    pub pending_timers_per_session: u64,
    /// Largest timer payload, in bytes.
    pub timer_payload_bytes: usize,
    /// wasi resources (HTTP requests, header fields, bodies, streams, pollables) one call may hold
    /// at once: with the per-resource bounds in [`HttpLimits`], this bounds the host memory a guest
    /// can make the host hold outside its linear memory.
    pub resources: usize,
    /// Bytes a guest may pass to the host in one host call (strings and lists crossing imports).
    pub host_call_bytes: usize,
    /// Bytes of effects (webhook bodies, timer payloads) one call may queue for commit.
    pub effect_bytes: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            memory_bytes: 64 << 20,
            activities: 1_000,
            webhooks: 16,
            webhook_body_bytes: 1 << 20,
            log_lines: 500,
            log_line_bytes: 4 << 10,
            log_lines_per_second: 50,
            log_lines_burst: 500,
            kv_operations: 1_000,
            kv_key_bytes: 256,
            kv_value_bytes: 64 << 10,
            kv_connection_bytes: 1 << 20,
            http: HttpLimits::default(),
            timers: 10,
            pending_timers_per_session: 20,
            timer_payload_bytes: 16 << 10,
            resources: 256,
            host_call_bytes: 4 << 20,
            effect_bytes: 4 << 20,
        }
    }
}

/// How a plugin describes itself (its `manifest()`), as the host keeps and serves it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Connection-type id, e.g. `self-hosted`.
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    /// JSON Schema of the connection config.
    #[schema(value_type = Object)]
    pub config_schema: serde_json::Value,
    /// Secrets an admin provides, by name.
    pub secrets: Vec<SecretSpec>,
    /// Hosts the plugin may call.
    pub outbound_hosts: Vec<String>,
    /// Host capabilities the plugin uses (`session`, `webhook`, `kv`, `log`, `timers`, `http`).
    pub capabilities: Vec<String>,
    /// The contract version the plugin was built against.
    pub wit_version: String,
}

/// A secret a connection type needs.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SecretSpec {
    pub name: String,
    pub description: String,
}

/// A loaded, pre-instantiated plugin.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    /// Lowercase hex SHA-256 of the `.wasm`.
    pub wasm_sha256: String,
    /// Where it came from (`builtin:self-hosted`, a file path).
    pub source: String,
    pre: ConnectionPluginPre<PluginState>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("id", &self.manifest.id)
            .field("version", &self.manifest.version)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Whether the plugin is built into the host (rather than loaded from the plugins directory).
    pub fn is_builtin(&self) -> bool {
        self.source.starts_with("builtin:")
    }

    /// `plugin `id` version`, the prefix of every message about this plugin.
    pub fn label(&self) -> String {
        format!("plugin `{}` {}", self.manifest.id, self.manifest.version)
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{origin}: not a valid WebAssembly component: {message}")]
    Compile { origin: String, message: String },
    #[error("{origin}: {message}")]
    Contract { origin: String, message: String },
    #[error("{origin}: its manifest() failed: {message}")]
    Manifest { origin: String, message: String },
    #[error("{origin}: connection type `{id}` is already provided by {existing}")]
    Duplicate {
        origin: String,
        id: String,
        existing: String,
    },
}

/// Why a call into a plugin did not return normally.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The plugin returned an error value.
    #[error("{0}")]
    Plugin(String),
    /// The plugin asked to be called again later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The connection config was refused by the plugin.
    #[error("the connection config is invalid: {}", field_errors_text(.0))]
    InvalidConfig(Vec<ConfigFieldError>),
    /// The plugin trapped, panicked, ran out of time or breached a limit.
    #[error("{0}")]
    Crashed(String),
}

/// One field error from `validate-config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConfigFieldError {
    /// The config field, e.g. `webhookUrl`.
    pub field: String,
    pub message: String,
}

fn field_errors_text(errors: &[ConfigFieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            if e.field.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<FieldError> for ConfigFieldError {
    fn from(e: FieldError) -> Self {
        Self {
            field: e.field,
            message: e.message,
        }
    }
}

/// The engine, the linker and the loaded plugins.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    /// The current version of each connection type, by id: what new sessions start on.
    plugins: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
    /// Every version loaded since start, by wasm SHA-256: sessions keep running on the version
    /// they started with after a newer one replaces it.
    versions: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
    limits: CallLimits,
    outbound: OutboundSetup,
    log_rate: Arc<LogRate>,
    cache_dir: Option<PathBuf>,
    ticker_stop: Arc<AtomicBool>,
    /// The threads guest code runs on (never the API's).
    executor: PluginExecutor,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PluginRuntime {
    /// An engine with no plugins loaded. Plugins' outbound requests follow `outbound` (the same
    /// SSRF policy as webhook delivery); `cache_dir` keeps compiled plugins across restarts.
    pub fn new(
        limits: CallLimits,
        outbound: OutboundPolicy,
        cache_dir: Option<PathBuf>,
        plugin_threads: usize,
    ) -> anyhow::Result<Self> {
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
            .max_memory_size(limits.memory_bytes);
        config.memory_reservation(limits.memory_bytes as u64);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&config).map_err(wasmtime_error)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wasmtime_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(wasmtime_error)?;
        bindings::ConnectionPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(wasmtime_error)?;
        let outbound = OutboundSetup {
            client: crate::outbound::client(outbound, limits.http.total_timeout)?,
            policy: outbound,
            limits: limits.http.clone(),
        };

        // The epoch advances on a plain thread so deadlines hold even when the async runtime is busy.
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (ticking_engine, stop) = (engine.weak(), ticker_stop.clone());
        std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match ticking_engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;

        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        let log_rate = Arc::new(LogRate::new(limits.log_lines_per_second, limits.log_lines_burst));
        Ok(Self {
            engine,
            linker,
            plugins: RwLock::new(HashMap::new()),
            versions: RwLock::new(HashMap::new()),
            limits,
            outbound,
            log_rate,
            cache_dir,
            ticker_stop,
            executor: PluginExecutor::new(plugin_threads)?,
        })
    }

    /// The per-call limits.
    pub fn limits(&self) -> &CallLimits {
        &self.limits
    }

    /// Forgets idle per-connection log buckets.
    pub fn forget_idle_log_buckets(&self) {
        self.log_rate.forget_idle();
    }

    /// Compiles (or loads from cache), checks and registers a plugin. The plugin's `manifest()`
    /// gives its connection-type id.
    pub async fn load(&self, source: &str, wasm: &[u8]) -> Result<Arc<LoadedPlugin>, LoadError> {
        if let Some(message) = not_a_component(wasm) {
            return Err(LoadError::Compile {
                origin: source.to_owned(),
                message: message.to_owned(),
            });
        }
        let sha = hex::encode(Sha256::digest(wasm));
        let component = self.compile(source, wasm, &sha).await?;
        let plugin = self.prepare(source, sha, component).await?;
        let mut plugins = self.plugins.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = plugins.get(&plugin.manifest.id)
            && existing.source != plugin.source
        {
            return Err(LoadError::Duplicate {
                origin: source.to_owned(),
                id: plugin.manifest.id.clone(),
                existing: existing.source.clone(),
            });
        }
        // A new build of a file may have changed its id: the old id no longer comes from it.
        plugins.retain(|id, existing| existing.source != plugin.source || *id == plugin.manifest.id);
        plugins.insert(plugin.manifest.id.clone(), plugin.clone());
        drop(plugins);
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(plugin.wasm_sha256.clone(), plugin.clone());
        tracing::info!(plugin = %plugin.manifest.id, version = %plugin.manifest.version, source, sha256 = %plugin.wasm_sha256, "plugin loaded");
        Ok(plugin)
    }

    /// Checks a compiled component against the contract, pre-instantiates it and reads its
    /// manifest.
    async fn prepare(&self, source: &str, sha: String, component: Component) -> Result<Arc<LoadedPlugin>, LoadError> {
        let wit_version = contract_version(&self.engine, &component).map_err(|message| LoadError::Contract {
            origin: source.to_owned(),
            message,
        })?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Contract {
                origin: source.to_owned(),
                message: format!("it needs imports this host does not provide: {e:#}"),
            })?;
        let pre = ConnectionPluginPre::new(instance_pre).map_err(|e| LoadError::Contract {
            origin: source.to_owned(),
            message: format!("it does not export the plugin interface: {e:#}"),
        })?;

        let raw = self.call_manifest(&pre).await.map_err(|message| LoadError::Manifest {
            origin: source.to_owned(),
            message,
        })?;
        let manifest = check_manifest(raw, wit_version).map_err(|message| LoadError::Manifest {
            origin: source.to_owned(),
            message,
        })?;

        Ok(Arc::new(LoadedPlugin {
            manifest,
            wasm_sha256: sha,
            source: source.to_owned(),
            pre,
        }))
    }

    /// The plugin version with wasm SHA-256 `sha256` for a session pinned to it: loaded since
    /// start, or else brought back from the compile cache (a version replaced before a restart).
    /// It serves that session only; new sessions keep starting on the current version.
    pub async fn pinned_version(&self, sha256: &str) -> Option<Arc<LoadedPlugin>> {
        if let Some(plugin) = self.plugin_version(sha256) {
            return Some(plugin);
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let path = self.cache_path(sha256)?;
        if !path.is_file() {
            return None;
        }
        let engine = self.engine.clone();
        // SAFETY: as in `compile_cached`: a file this host wrote into its own cache directory,
        // named by the wasm's SHA-256 and this engine's compatibility hash.
        let component = tokio::task::spawn_blocking(move || unsafe { Component::deserialize_file(&engine, &path) })
            .await
            .ok()?
            .map_err(|e| tracing::warn!(sha256, error = %e, "cannot bring back a pinned plugin version"))
            .ok()?;
        let source = format!("cache:{sha256}");
        let plugin = self
            .prepare(&source, sha256.to_owned(), component)
            .await
            .map_err(|e| tracing::warn!(sha256, error = %e, "cannot bring back a pinned plugin version"))
            .ok()?;
        tracing::info!(plugin = %plugin.manifest.id, sha256, "brought back a replaced plugin version for the sessions pinned to it");
        self.versions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha256.to_owned(), plugin.clone());
        Some(plugin)
    }

    /// Stops offering the plugin loaded from `source` to new sessions (its file was removed);
    /// sessions already running on it keep it. Returns what was unloaded.
    pub fn unload(&self, source: &str) -> Option<Arc<LoadedPlugin>> {
        let mut plugins = self.plugins.write().unwrap_or_else(|p| p.into_inner());
        let id = plugins.values().find(|p| p.source == source)?.manifest.id.clone();
        let removed = plugins.remove(&id);
        if let Some(plugin) = &removed {
            tracing::info!(plugin = %plugin.manifest.id, source, "plugin unloaded");
        }
        removed
    }

    /// Forgets replaced versions no unfinished session needs (`in_use`: their SHA-256s), so
    /// reloading a plugin many times does not keep every old build in memory.
    pub fn forget_unused_versions(&self, in_use: &std::collections::HashSet<String>) -> usize {
        let current: std::collections::HashSet<String> = self
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|p| p.wasm_sha256.clone())
            .collect();
        let mut versions = self.versions.write().unwrap_or_else(|p| p.into_inner());
        let before = versions.len();
        versions.retain(|sha, _| current.contains(sha) || in_use.contains(sha));
        before - versions.len()
    }

    /// The plugin version with wasm SHA-256 `sha256`, if it was loaded since start.
    pub fn plugin_version(&self, sha256: &str) -> Option<Arc<LoadedPlugin>> {
        self.versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(sha256)
            .cloned()
    }

    /// The plugin providing connection type `id`.
    pub fn plugin(&self, id: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// Every loaded plugin, by id.
    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        let mut all: Vec<_> = self
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.manifest.id.cmp(&b.manifest.id));
        all
    }

    /// Asks the plugin whether `config` (JSON) is a usable connection config.
    pub async fn validate_config(&self, plugin: &LoadedPlugin, config: &str) -> Result<(), CallError> {
        let context = CallContext::without_session(&plugin.manifest);
        let services: Arc<dyn CallServices> = Arc::new(capabilities::NoServices);
        match self
            .call(
                &plugin.pre,
                &plugin.label(),
                context,
                services,
                Export::ValidateConfig(config.to_owned()),
            )
            .await
            .0?
        {
            (Returned::Config(result), _) => {
                result.map_err(|errors| CallError::InvalidConfig(errors.into_iter().map(Into::into).collect()))
            }
            _ => Err(CallError::Crashed("unexpected result from validate-config".into())),
        }
    }

    /// Calls `start-session`. On success returns what the call queued (webhooks to deliver).
    pub async fn start_session(
        &self,
        plugin: &LoadedPlugin,
        context: CallContext,
        services: Arc<dyn CallServices>,
        start: SessionStart,
    ) -> Called<CallEffects> {
        let (outcome, cpu) = self
            .call(
                &plugin.pre,
                &plugin.label(),
                context,
                services,
                Export::StartSession(Box::new(start)),
            )
            .await;
        Called {
            result: unit_outcome(outcome, "start-session"),
            cpu,
        }
    }

    /// Calls `on-event`. On success returns what the call queued.
    pub async fn on_event(
        &self,
        plugin: &LoadedPlugin,
        context: CallContext,
        services: Arc<dyn CallServices>,
        session: SessionRef,
        event: SessionEvent,
    ) -> Called<CallEffects> {
        let (outcome, cpu) = self
            .call(
                &plugin.pre,
                &plugin.label(),
                context,
                services,
                Export::OnEvent(Box::new((session, event))),
            )
            .await;
        Called {
            result: unit_outcome(outcome, "on-event"),
            cpu,
        }
    }

    async fn call_manifest(
        &self,
        pre: &ConnectionPluginPre<PluginState>,
    ) -> Result<bindings::types::PluginManifest, String> {
        let services: Arc<dyn CallServices> = Arc::new(capabilities::NoServices);
        match self
            .call(
                pre,
                "the plugin",
                CallContext::for_manifest(),
                services,
                Export::Manifest,
            )
            .await
            .0
        {
            Ok((Returned::Manifest(manifest), _)) => Ok(manifest),
            Ok(_) => Err("unexpected result from manifest()".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs one export in a fresh instance under the call limits, on the plugin threads; returns
    /// its outcome and the CPU time it used.
    async fn call(
        &self,
        pre: &ConnectionPluginPre<PluginState>,
        label: &str,
        context: CallContext,
        services: Arc<dyn CallServices>,
        export: Export,
    ) -> (Result<(Returned, CallEffects), CallError>, Duration) {
        let hooks = OutboundHooks::new(
            &self.outbound,
            &context.plugin_id,
            http_grant(&context),
            services.clone(),
        );
        let state = PluginState::new(context, services, hooks, self.log_rate.clone(), &self.limits);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Host-side resources a guest can make the host hold (see `CallLimits::resources`).
        store.set_max_component_handles(self.limits.resources);
        store.set_hostcall_fuel(self.limits.host_call_bytes);
        // Guest code yields to the plugin threads at every epoch tick, so calls take turns, and is
        // interrupted at its deadline even when it never calls the host.
        let deadline = Instant::now() + self.limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        let (pre, limits, label) = (pre.clone(), self.limits.clone(), label.to_owned());
        let work = async move {
            let run = async {
                let instance = pre.instantiate_async(&mut store).await?;
                invoke(&instance, &mut store, &export).await
            };
            // The epoch deadline stops runaway guest code; this timeout also covers host calls.
            let outcome = tokio::time::timeout(limits.timeout + EPOCH_TICK * 10, run).await;
            let returned = match outcome {
                Ok(Ok(value)) => value,
                Ok(Err(trap)) if trap.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => {
                    // Every pooled slot is busy: not the plugin's fault, so the caller retries later.
                    return Err(CallError::Transient(describe_trap(&label, &trap, &store, &limits)));
                }
                Ok(Err(trap)) => {
                    let reason = describe_trap(&label, &trap, &store, &limits);
                    return Err(CallError::Crashed(with_problems(reason, &store.data().http_problems())));
                }
                Err(_) => {
                    let reason = format!(
                        "{label} did not finish within its {} s time limit",
                        limits.timeout.as_secs()
                    );
                    return Err(CallError::Crashed(with_problems(reason, &store.data().http_problems())));
                }
            };
            Ok((returned, store.into_data().into_effects()))
        };
        match self.executor.run(work).await {
            Some((outcome, cpu)) => (outcome, cpu),
            None => (
                Err(CallError::Transient(
                    "the host is shutting down its plugin threads; the call will be retried".into(),
                )),
                Duration::ZERO,
            ),
        }
    }

    /// Where the compiled form of the wasm with SHA-256 `sha` is cached for this engine.
    fn cache_path(&self, sha: &str) -> Option<PathBuf> {
        self.cache_dir.as_ref().map(|dir| {
            let mut hasher = DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut hasher);
            dir.join(format!("{sha}-{:016x}.cwasm", hasher.finish()))
        })
    }

    async fn compile(&self, source: &str, wasm: &[u8], sha: &str) -> Result<Component, LoadError> {
        let engine = self.engine.clone();
        let cache_path = self.cache_path(sha);
        let wasm = wasm.to_vec();
        let source_name = source.to_owned();
        tokio::task::spawn_blocking(move || compile_cached(&engine, &wasm, cache_path.as_deref()))
            .await
            .map_err(|e| LoadError::Compile {
                origin: source_name.clone(),
                message: e.to_string(),
            })?
            .map_err(|e| LoadError::Compile {
                origin: source_name,
                message: format!("{e:#}"),
            })
    }
}

/// The outcome of a session call, with the CPU time the plugin used (recorded on the session).
#[derive(Debug)]
pub struct Called<T> {
    pub result: Result<T, CallError>,
    pub cpu: Duration,
}

/// What a `start-session` or `on-event` call left, or why it failed.
fn unit_outcome(outcome: Result<(Returned, CallEffects), CallError>, export: &str) -> Result<CallEffects, CallError> {
    match outcome? {
        (Returned::Unit(result), effects) => result
            .map_err(|e| plugin_error(e, &effects.http_problems))
            .map(|()| effects),
        _ => Err(CallError::Crashed(format!("unexpected result from {export}"))),
    }
}

/// An export to call, with its arguments (boxed: the records are large and calls are few).
enum Export {
    Manifest,
    ValidateConfig(String),
    StartSession(Box<SessionStart>),
    OnEvent(Box<(SessionRef, SessionEvent)>),
}

/// What an export returned.
enum Returned {
    Manifest(bindings::types::PluginManifest),
    Config(Result<(), Vec<FieldError>>),
    Unit(Result<(), PluginError>),
}

async fn invoke(
    instance: &ConnectionPlugin,
    store: &mut Store<PluginState>,
    export: &Export,
) -> wasmtime::Result<Returned> {
    let guest = instance.leadtime_agent_runtime_plugin();
    Ok(match export {
        Export::Manifest => Returned::Manifest(guest.call_manifest(&mut *store).await?),
        Export::ValidateConfig(config) => Returned::Config(guest.call_validate_config(&mut *store, config).await?),
        Export::StartSession(start) => Returned::Unit(guest.call_start_session(&mut *store, start).await?),
        Export::OnEvent(args) => Returned::Unit(guest.call_on_event(&mut *store, &args.0, &args.1).await?),
    })
}

/// Loads a compiled component from `cache`, or compiles `wasm` and writes the cache.
fn compile_cached(engine: &Engine, wasm: &[u8], cache: Option<&Path>) -> wasmtime::Result<Component> {
    if let Some(path) = cache.filter(|p| p.is_file()) {
        // SAFETY: the file is one this host wrote with `Component::serialize` into its own cache
        // directory, named by the wasm's SHA-256 and this engine's compatibility hash; wasmtime
        // additionally refuses artifacts from an incompatible engine.
        match unsafe { Component::deserialize_file(engine, path) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compile cache entry")
            }
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Some(path) = cache {
        let bytes = component.serialize()?;
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        if let Err(e) = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, path)) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compile cache");
        }
    }
    Ok(component)
}

/// The `leadtime:agent-runtime` version a component was built against (from its export name).
fn contract_version(engine: &Engine, component: &Component) -> Result<String, String> {
    let ty = component.component_type();
    let mut found = Vec::new();
    for (name, _) in ty.exports(engine) {
        if let Some(version) = name
            .strip_prefix(PLUGIN_INTERFACE)
            .and_then(|rest| rest.strip_prefix('@'))
        {
            found.push(version.to_owned());
        }
    }
    match found.as_slice() {
        [] => Err(format!(
            "it does not export `{PLUGIN_INTERFACE}`; build it with leadtime-plugin-sdk (`export_plugin!`) against wit/ version {}",
            SUPPORTED_WIT_VERSIONS[0]
        )),
        [version] if SUPPORTED_WIT_VERSIONS.contains(&version.as_str()) => Ok(version.clone()),
        [version] => Err(format!(
            "it was built against {PLUGIN_INTERFACE}@{version}, which this host does not support (supported: {})",
            SUPPORTED_WIT_VERSIONS.join(", ")
        )),
        _ => Err(format!(
            "it exports several versions of `{PLUGIN_INTERFACE}`: {}",
            found.join(", ")
        )),
    }
}

fn check_manifest(raw: bindings::types::PluginManifest, wit_version: String) -> Result<Manifest, String> {
    let id_ok = !raw.id.is_empty()
        && raw.id.len() <= 64
        && raw
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && raw.id.starts_with(|c: char| c.is_ascii_lowercase());
    if !id_ok {
        return Err(format!(
            "id `{}` must be 1–64 characters of a-z, 0-9 and `-`, starting with a letter",
            raw.id
        ));
    }
    if raw.name.trim().is_empty() {
        return Err("name must not be empty".into());
    }
    let config_schema: serde_json::Value =
        serde_json::from_str(&raw.config_schema).map_err(|e| format!("config-schema is not JSON: {e}"))?;
    if !config_schema.is_object() {
        return Err("config-schema must be a JSON Schema object".into());
    }
    const KNOWN: [&str; 6] = ["session", "webhook", "kv", "log", "timers", "http"];
    if let Some(unknown) = raw.capabilities.iter().find(|c| !KNOWN.contains(&c.as_str())) {
        return Err(format!("unknown capability `{unknown}`; known: {}", KNOWN.join(", ")));
    }
    if let Some(bad) = raw.outbound_hosts.iter().find(|h| !is_host_pattern(h)) {
        return Err(format!(
            "outbound host `{bad}` must be a host name, an IP address or `*.example.com` — no scheme, port or path"
        ));
    }
    if !raw.outbound_hosts.is_empty() && !raw.capabilities.iter().any(|c| c == "http") {
        return Err("it lists outbound-hosts but not the `http` capability; add `http` to capabilities".into());
    }
    Ok(Manifest {
        id: raw.id,
        name: raw.name,
        version: raw.version,
        description: raw.description,
        config_schema,
        secrets: raw
            .secrets
            .into_iter()
            .map(|s| SecretSpec {
                name: s.name,
                description: s.description,
            })
            .collect(),
        outbound_hosts: raw.outbound_hosts,
        capabilities: raw.capabilities,
        wit_version,
    })
}

/// Why `wasm` is plainly not a component, in words a plugin author can act on (wasmtime's own
/// parse errors cover the rest).
pub fn not_a_component(wasm: &[u8]) -> Option<&'static str> {
    if !wasm.starts_with(b"\0asm") {
        return Some("not a WebAssembly file (it does not start with `\\0asm`)");
    }
    // Byte 6 is the layer: 0 for a core module, 1 for a component.
    if wasm.get(6) == Some(&0) {
        return Some(
            "a core WebAssembly module, not a component: build the plugin with \
             `cargo build --target wasm32-wasip2` (leadtime-plugin-sdk does the rest), or wrap a core \
             module with `wasm-tools component new`",
        );
    }
    None
}

/// A manifest `outbound-hosts` entry: a host name, an IP address, or `*.` and a host name.
pub fn is_host_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return !pattern.starts_with("*.");
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// wasmtime's error type as an `anyhow` error, keeping its whole chain of causes.
fn wasmtime_error(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{error:#}")
}

/// The plugin's error, with what the host refused during the call (the plugin only hears an
/// error code; people should read why).
fn plugin_error(error: PluginError, http_problems: &HttpProblems) -> CallError {
    match error {
        PluginError::InvalidConfig(errors) => CallError::InvalidConfig(errors.into_iter().map(Into::into).collect()),
        PluginError::Failed(message) => CallError::Plugin(with_problems(message, http_problems)),
        PluginError::Transient(message) => CallError::Transient(with_problems(message, http_problems)),
    }
}

/// `message`, followed by the first outbound request the host refused or saw fail in the call
/// (and how many more there were).
fn with_problems(message: String, http_problems: &HttpProblems) -> String {
    match (http_problems.first.first(), http_problems.total) {
        (None, _) => message,
        (Some(first), 1) => format!("{message} (outbound request {first})"),
        (Some(first), total) => format!(
            "{message} (outbound request {first}; {} more refused or failed, see the host log)",
            total - 1
        ),
    }
}

/// Whether a call may use outbound HTTP, and with which hosts and secrets: only calls about a
/// session of a plugin that declared the `http` capability.
fn http_grant(context: &CallContext) -> Result<capabilities::http::Grant, String> {
    if !context.capabilities.iter().any(|c| c == "http") {
        return Err(format!(
            "plugin `{}` did not declare the `http` capability in its manifest (or it is not available in this call)",
            context.plugin_id
        ));
    }
    match (&context.connection_id, &context.session_id) {
        (Some(connection), Some(_)) => Ok(capabilities::http::Grant {
            hosts: context.outbound_hosts.clone(),
            workspace_hosts: context.workspace_outbound_hosts.clone(),
            secrets: context.secrets.clone(),
            connection: connection.clone(),
        }),
        _ => Err("outbound HTTP is only available in calls about a session".into()),
    }
}

/// A reason a person can act on for a trap, naming the plugin.
fn describe_trap(label: &str, error: &wasmtime::Error, store: &Store<PluginState>, limits: &CallLimits) -> String {
    if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
        return format!(
            "{label} could not start: the host is running as many plugin calls as it can; try again shortly"
        );
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::Interrupt => format!("{label} exceeded its {} s time limit", limits.timeout.as_secs()),
            wasmtime::Trap::UnreachableCodeReached if store.data().memory_limit_hit() => {
                format!("{label} exceeded its {} MiB memory limit", limits.memory_bytes >> 20)
            }
            wasmtime::Trap::UnreachableCodeReached => {
                format!("{label} crashed (it panicked or hit unreachable code)")
            }
            other => format!("{label} crashed: {other}"),
        };
    }
    if store.data().memory_limit_hit() {
        return format!("{label} exceeded its {} MiB memory limit", limits.memory_bytes >> 20);
    }
    // Host-side limits, named so the plugin's author knows which one (the error chain carries
    // wasmtime's wording; see `CallLimits::resources` and friends).
    let chain = format!("{error:#}");
    if chain.contains("resource table has no free keys") || chain.contains("store handle limit exceeded") {
        return format!(
            "{label} exceeded its limit of {} host resources held at once (wasi:http requests, header fields, \
             bodies, streams and pollables; drop the ones it no longer needs)",
            limits.resources
        );
    }
    if chain.contains("fuel allocated for hostcalls has been exhausted") {
        return format!(
            "{label} exceeded its limit of {} MiB passed to the host in one host call",
            limits.host_call_bytes >> 20
        );
    }
    if chain.contains("total size of fields exceeds limit") || chain.contains("too many fields in the field map") {
        return format!(
            "{label} exceeded its limit of {} KiB of HTTP header fields in one set of fields",
            limits.http.field_bytes >> 10
        );
    }
    format!("{label} failed: {chain}")
}
