//! The plugin runtime: one wasmtime engine, the registry of loaded plugins (connection types), and
//! the calls the host makes into them.
//!
//! Each plugin is compiled once (or loaded from the on-disk compile cache) and pre-instantiated
//! against a linker holding WASI (no files, no environment, no sockets) and the host capabilities
//! in [`capabilities`]. Every call gets a fresh `Store` with its own limits and host-call budgets,
//! and runs on the plugin threads ([`executor`]), never the API's; a trap, a timeout or a breached
//! limit fails that call with a reason, never the host.
//!
//! One concern per module: [`engine`] (engine, linker, epoch ticker), [`registry`] (versions),
//! [`compile_cache`], [`manifest`] (what a plugin says about itself, checked at load), [`grants`]
//! (capabilities as a typed set), [`limits`], [`call`] (what a call is about and may touch),
//! [`services`] (the host records calls reach), [`state`] (a call's store data), [`calls`] (running
//! one export), [`executor`] (the plugin threads).

pub mod bindings;
pub mod builtin;
pub mod call;
pub(crate) mod calls;
pub mod capabilities;
pub mod check;
mod compile_cache;
pub mod directory;
mod engine;
pub mod executor;
pub mod grants;
pub mod limits;
pub mod log_rate;
pub mod manifest;
mod registry;
pub mod services;
mod state;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::outbound::OutboundPolicy;
use bindings::ConnectionPluginPre;
use bindings::types::{SessionEvent, SessionRef, SessionStart};
use calls::{Export, Returned};
use capabilities::http::{OutboundHooks, OutboundSetup};
use compile_cache::CompileCache;
use engine::EpochTicker;
use executor::PluginExecutor;
use log_rate::LogRate;
use registry::Registry;
use state::PluginState;

pub use call::HttpProblems;
pub use call::{CallContext, CallData, CallEffects, QueuedModelCall, QueuedTimer, QueuedWebhook};
pub use calls::{CallError, Called, ConfigFieldError};
pub use grants::{Capability, Grants};
pub use limits::{CallLimits, HttpLimits};
pub use manifest::{Manifest, SUPPORTED_WIT_VERSIONS, SecretSpec, is_host_pattern, not_a_component};
pub use services::{CallServices, CapabilityError, ScriptedRequest, ScriptedResponse, kv_bytes_after};

/// A loaded, pre-instantiated plugin.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    /// The capabilities its manifest declares, parsed once at load.
    pub grants: Grants,
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

/// The engine, the linker and the loaded plugins.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    registry: Registry,
    limits: CallLimits,
    outbound: OutboundSetup,
    log_rate: Arc<LogRate>,
    cache: CompileCache,
    _ticker: EpochTicker,
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

impl PluginRuntime {
    /// An engine with no plugins loaded. Plugins' outbound requests follow `outbound` (the same
    /// SSRF policy as webhook delivery); `cache_dir` keeps compiled plugins across restarts; guest
    /// code runs on `plugin_threads` threads of its own.
    pub fn new(
        limits: CallLimits,
        outbound: OutboundPolicy,
        cache_dir: Option<std::path::PathBuf>,
        plugin_threads: usize,
    ) -> anyhow::Result<Self> {
        let engine = engine::engine(&limits)?;
        let linker = engine::linker(&engine)?;
        let outbound = OutboundSetup {
            client: crate::outbound::client(outbound, limits.http.total_timeout)?,
            policy: outbound,
            limits: limits.http.clone(),
        };
        let ticker = EpochTicker::start(&engine)?;
        let log_rate = Arc::new(LogRate::new(limits.log_lines_per_second, limits.log_lines_burst));
        Ok(Self {
            linker,
            registry: Registry::default(),
            outbound,
            log_rate,
            cache: CompileCache::new(cache_dir)?,
            _ticker: ticker,
            executor: PluginExecutor::new(plugin_threads)?,
            engine,
            limits,
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

    /// Logs one line for the plugin log lines dropped since the last report, if any.
    pub fn report_dropped_log_lines(&self, interval: std::time::Duration) {
        self.log_rate.report_dropped(interval);
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
        self.registry.install(plugin.clone())?;
        tracing::info!(plugin = %plugin.manifest.id, version = %plugin.manifest.version, source, sha256 = %plugin.wasm_sha256, "plugin loaded");
        Ok(plugin)
    }

    /// Checks a compiled component against the contract, pre-instantiates it and reads its
    /// manifest.
    async fn prepare(&self, source: &str, sha: String, component: Component) -> Result<Arc<LoadedPlugin>, LoadError> {
        let origin = || source.to_owned();
        let wit_version =
            manifest::contract_version(&self.engine, &component).map_err(|message| LoadError::Contract {
                origin: origin(),
                message,
            })?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Contract {
                origin: origin(),
                message: format!("it needs imports this host does not provide: {e:#}"),
            })?;
        let pre = ConnectionPluginPre::new(instance_pre).map_err(|e| LoadError::Contract {
            origin: origin(),
            message: format!("it does not export the plugin interface: {e:#}"),
        })?;
        let raw = self.call_manifest(&pre).await.map_err(|message| LoadError::Manifest {
            origin: origin(),
            message,
        })?;
        let (manifest, grants) = manifest::check_manifest(raw, wit_version).map_err(|message| LoadError::Manifest {
            origin: origin(),
            message,
        })?;
        Ok(Arc::new(LoadedPlugin {
            manifest,
            grants,
            wasm_sha256: sha,
            source: source.to_owned(),
            pre,
        }))
    }

    /// The plugin version with wasm SHA-256 `sha256` for a session pinned to it: loaded since
    /// start, or else brought back from the compile cache (a version replaced before a restart).
    /// It serves that session only; new sessions keep starting on the current version.
    pub async fn pinned_version(&self, sha256: &str) -> Option<Arc<LoadedPlugin>> {
        if let Some(plugin) = self.registry.version(sha256) {
            return Some(plugin);
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let path = self.cache.path(&self.engine, sha256)?;
        if !path.is_file() {
            return None;
        }
        let engine = self.engine.clone();
        let component = tokio::task::spawn_blocking(move || compile_cache::load_cached(&engine, &path))
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
        self.registry.remember(plugin.clone());
        Some(plugin)
    }

    /// Stops offering the plugin loaded from `source` to new sessions (its file was removed);
    /// sessions already running on it keep it. Returns what was unloaded.
    pub fn unload(&self, source: &str) -> Option<Arc<LoadedPlugin>> {
        let removed = self.registry.unload(source);
        if let Some(plugin) = &removed {
            tracing::info!(plugin = %plugin.manifest.id, source, "plugin unloaded");
        }
        removed
    }

    /// Forgets replaced versions no unfinished session needs (`in_use`: their SHA-256s), so
    /// reloading a plugin many times does not keep every old build in memory.
    pub fn forget_unused_versions(&self, in_use: &HashSet<String>) -> usize {
        self.registry.forget_unused_versions(in_use)
    }

    /// The plugin version with wasm SHA-256 `sha256`, if it was loaded since start.
    pub fn plugin_version(&self, sha256: &str) -> Option<Arc<LoadedPlugin>> {
        self.registry.version(sha256)
    }

    /// The plugin providing connection type `id`.
    pub fn plugin(&self, id: &str) -> Option<Arc<LoadedPlugin>> {
        self.registry.current(id)
    }

    /// Every loaded plugin, by id.
    pub fn plugins(&self) -> Vec<Arc<LoadedPlugin>> {
        self.registry.all()
    }

    /// Asks the plugin whether `config` (JSON) is a usable connection config (its shape only: the
    /// plugin may use no host capability but `log`).
    pub async fn validate_config(&self, plugin: &LoadedPlugin, config: &str) -> Result<(), CallError> {
        let context = CallContext::without_session(&plugin.manifest, plugin.grants);
        let (result, _) = self
            .call_validate(plugin, context, Arc::new(services::NoServices), config)
            .await?;
        result.map_err(CallError::InvalidConfig)
    }

    /// Calls `validate-config` about a saved connection (`context` from
    /// [`CallContext::for_connection`]): the plugin may check the config with its provider over
    /// `http`. Returns the plugin's field errors, followed by what the host refused or saw fail
    /// of its outbound requests (field `""`: e.g. a secret not set), so an admin sees why a check
    /// could not run.
    pub async fn validate_saved(
        &self,
        plugin: &LoadedPlugin,
        context: CallContext,
        services: Arc<dyn CallServices>,
        config: &str,
    ) -> Result<Vec<ConfigFieldError>, CallError> {
        let (result, effects) = self.call_validate(plugin, context, services, config).await?;
        let mut errors = result.err().unwrap_or_default();
        errors.extend(effects.http_problems.first.into_iter().map(|message| ConfigFieldError {
            field: String::new(),
            message,
        }));
        Ok(errors)
    }

    /// Runs `validate-config`: the plugin's verdict and what the call left.
    async fn call_validate(
        &self,
        plugin: &LoadedPlugin,
        context: CallContext,
        services: Arc<dyn CallServices>,
        config: &str,
    ) -> Result<(Result<(), Vec<ConfigFieldError>>, CallEffects), CallError> {
        match self
            .call(
                &plugin.pre,
                &plugin.label(),
                context,
                services,
                Export::ValidateConfig(config.to_owned()),
                (),
            )
            .await
            .0?
        {
            (Returned::Config(result), effects) => Ok((
                result.map_err(|errors| errors.into_iter().map(Into::into).collect()),
                effects,
            )),
            _ => Err(CallError::Crashed("unexpected result from validate-config".into())),
        }
    }

    /// Calls `start-session`. On success returns what the call queued (webhooks to deliver).
    /// `place` (the caller's place in a share of calls) is dropped on the plugin thread as soon as
    /// the call's instance is gone (see [`PluginRuntime::call`]).
    pub async fn start_session(
        &self,
        plugin: &LoadedPlugin,
        context: CallContext,
        services: Arc<dyn CallServices>,
        start: SessionStart,
        place: impl Send + 'static,
    ) -> Called<CallEffects> {
        let (outcome, cpu) = self
            .call(
                &plugin.pre,
                &plugin.label(),
                context,
                services,
                Export::StartSession(Box::new(start)),
                place,
            )
            .await;
        Called {
            result: calls::unit_outcome(outcome, "start-session"),
            cpu,
        }
    }

    /// Calls `on-event`. On success returns what the call queued. `place` as for
    /// [`PluginRuntime::start_session`].
    pub async fn on_event(
        &self,
        plugin: &LoadedPlugin,
        context: CallContext,
        services: Arc<dyn CallServices>,
        session: SessionRef,
        event: SessionEvent,
        place: impl Send + 'static,
    ) -> Called<CallEffects> {
        let (outcome, cpu) = self
            .call(
                &plugin.pre,
                &plugin.label(),
                context,
                services,
                Export::OnEvent(Box::new((session, event))),
                place,
            )
            .await;
        Called {
            result: calls::unit_outcome(outcome, "on-event"),
            cpu,
        }
    }

    async fn call_manifest(
        &self,
        pre: &ConnectionPluginPre<PluginState>,
    ) -> Result<bindings::types::PluginManifest, String> {
        let services: Arc<dyn CallServices> = Arc::new(services::NoServices);
        match self
            .call(
                pre,
                "the plugin",
                CallContext::for_manifest(),
                services,
                Export::Manifest,
                (),
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
    ///
    /// `place` is dropped on the plugin thread the moment the instance is gone, before the
    /// awaiting task is scheduled again: a share of calls held until then would stay taken while
    /// the API's busy threads get round to that task (~0.7 ms of a ~2.4 ms start under load),
    /// which capped the session worker's calls per second well below what the plugin threads run.
    async fn call(
        &self,
        pre: &ConnectionPluginPre<PluginState>,
        label: &str,
        context: CallContext,
        services: Arc<dyn CallServices>,
        export: Export,
        place: impl Send + 'static,
    ) -> (Result<(Returned, CallEffects), CallError>, Duration) {
        let hooks = OutboundHooks::new(
            &self.outbound,
            &context.plugin_id,
            calls::http_grant(&context),
            services.clone(),
        );
        let data = CallData::new(context, services, self.log_rate.clone(), &self.limits);
        let state = PluginState::new(data, hooks, &self.limits);
        let (engine, pre, limits, label) = (self.engine.clone(), pre.clone(), self.limits.clone(), label.to_owned());
        let work = async move {
            let outcome = calls::run(&engine, pre, state, limits, label, export).await;
            drop(place);
            outcome
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

    async fn compile(&self, source: &str, wasm: &[u8], sha: &str) -> Result<Component, LoadError> {
        let engine = self.engine.clone();
        let cache_path = self.cache.path(&self.engine, sha);
        let wasm = wasm.to_vec();
        let source_name = source.to_owned();
        tokio::task::spawn_blocking(move || compile_cache::compile_cached(&engine, &wasm, cache_path.as_deref()))
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
