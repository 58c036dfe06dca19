//! The Leadtime agent runtime host: a task tracker's agents as bot users. Assigning a task to a
//! bot, or @mentioning it, opens an agent session that the bot's connection plugin (a sandboxed
//! WebAssembly component) starts — for the built-in `self-hosted` type, by delivering a signed
//! webhook to the customer's wrapper, which reports back through the session API.
//!
//! [`start`] runs a host on a listener you provide (tests use port 0); `main.rs` is a thin CLI.

pub mod api;
pub mod app;
pub mod audit;
pub mod commit;
pub mod config;
pub mod console;
pub mod delivery;
pub mod domain;
pub mod handoff;
pub mod outbound;
pub mod rate_limit;
pub mod runtime;
pub mod secrets;
pub mod server;
pub mod sessions;
pub mod store;
pub mod use_cases;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use app::{App, SharedApp};
pub use config::Config;
use domain::time::{SharedClock, SystemClock};
use runtime::PluginRuntime;
use runtime::directory::{DirectoryChange, PluginDirectory};
use store::Db;

/// A running host.
#[derive(Debug)]
pub struct RunningHost {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The shared state (database, runtime, ...), for tests and tools.
    pub app: SharedApp,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningHost {
    /// Stops accepting requests, lets workers finish what they are doing, and waits for them.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.app.db.close().await;
    }

    /// Waits until the host stops (after [`RunningHost::shutdown`] or a fatal error).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
        self.app.db.close().await;
    }

    /// A token that stops the host when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Opens the database and plugin runtime for `config` (no server, no workers): what the CLI's
/// one-shot commands use.
pub async fn open(config: Config, clock: SharedClock) -> anyhow::Result<SharedApp> {
    config.validate()?;
    let db = Db::connect(&config.database_url)
        .await
        .with_context(|| format!("cannot open the database {}", store::redact_url(&config.database_url)))?;
    let secrets = secrets_key(&config, &db, clock.now()).await?;
    let runtime = Arc::new(PluginRuntime::new(
        config.plugin_limits.clone(),
        config.outbound,
        config.plugin_cache_dir.clone(),
        config.plugin_threads,
    )?);
    for (source, wasm) in runtime::builtin::BUILTIN_PLUGINS {
        // A plugin that fails to load is reported; the host runs without it.
        if let Err(error) = runtime.load(source, wasm).await {
            tracing::error!(%error, "built-in plugin failed to load");
        }
    }
    let plugin_directory = match &config.plugins_dir {
        Some(dir) => {
            let directory = PluginDirectory::new(dir.clone())
                .with_context(|| format!("cannot create the plugins directory {}", dir.display()))?;
            directory.scan(&runtime).await;
            Some(directory)
        }
        None => None,
    };
    seal_plaintext_webhook_secrets(&db, &secrets).await?;
    let audit_keys = audit::AuditKeys::derive(&secrets);
    let (writer, _) = commit::Writer::start(db.clone(), audit_keys.clone());
    let failed_auth =
        rate_limit::FailedAuthLimits::new(config.auth_failures_per_minute, config.auth_failures_per_minute);
    let rate_limits = rate_limit::RateLimits::new(config.rate_limit_per_minute, config.rate_limit_burst);
    let max_session_streams = config.max_session_streams;
    Ok(Arc::new(App {
        db,
        clock,
        runtime,
        config,
        rate_limits,
        failed_auth,
        secrets,
        audit_keys,
        writer,
        tokens: Default::default(),
        plugin_directory,
        jobs_queued: Arc::default(),
        deliveries_queued: Arc::default(),
        job_handoff: handoff::Handoff::new(sessions::worker::HANDOFF),
        delivery_handoff: handoff::Handoff::new(delivery::worker::HANDOFF),
        events: tokio::sync::broadcast::channel(1024).0,
        server_stats: Arc::default(),
        local_addr: Default::default(),
        inbound_rejections: Default::default(),
        session_streams: Arc::new(api::session_stream::StreamSlots::new(max_session_streams)),
        stopping: CancellationToken::new(),
    }))
}

/// The operator's secrets key: `LEADTIME_SECRETS_KEY`, else the key file (created on the first
/// start of a database). Refuses a key other than the one the database's secrets were sealed with,
/// and refuses to invent a new one for a database that already has secrets.
async fn secrets_key(config: &Config, db: &Db, now: domain::time::Timestamp) -> anyhow::Result<secrets::SecretBox> {
    const NAME: &str = "secrets";
    let recorded = {
        let mut conn = db.read().await?;
        store::host_keys::fingerprint(&mut conn, NAME).await?
    };
    let file = &config.secrets_key_file;
    let vault = match &config.secrets_key {
        Some(key) => secrets::SecretBox::from_base64(key.expose()).context("LEADTIME_SECRETS_KEY")?,
        None if !file.exists() && recorded.is_some() => anyhow::bail!(
            "the secrets key file {} is missing, but this database's secrets were sealed with a key; \
             restore the file or set LEADTIME_SECRETS_KEY to that key (a new key could not open them)",
            file.display()
        ),
        None => secrets::SecretBox::from_key_file(file)?,
    };
    match recorded {
        Some(fingerprint) if fingerprint != vault.fingerprint() => anyhow::bail!(
            "the secrets key given (fingerprint {}…) is not the one this database's secrets were sealed with \
             (fingerprint {}…); start with that key (LEADTIME_SECRETS_KEY or LEADTIME_SECRETS_KEY_FILE)",
            &vault.fingerprint()[..12],
            fingerprint.get(..12).unwrap_or_default()
        ),
        Some(_) => {}
        None => {
            let mut tx = db.begin().await?;
            store::host_keys::record(&mut tx, NAME, vault.fingerprint(), now).await?;
            tx.commit().await.map_err(store::StoreError::from)?;
        }
    }
    Ok(vault)
}

/// Seals webhook signing secrets stored in plaintext by hosts from before sealing existed.
async fn seal_plaintext_webhook_secrets(db: &Db, vault: &secrets::SecretBox) -> anyhow::Result<()> {
    let mut tx = db.begin().await?;
    let plaintext = store::connections::plaintext_secrets(&mut tx).await?;
    for (id, connection, secret) in &plaintext {
        let sealed = vault.seal(
            connection,
            secrets::WEBHOOK_SIGNING_SECRET,
            &secrets::SecretValue::new(secret.clone()),
        );
        store::connections::seal_secret(&mut tx, id, &sealed).await?;
    }
    tx.commit().await.map_err(store::StoreError::from)?;
    if !plaintext.is_empty() {
        tracing::info!(
            count = plaintext.len(),
            "sealed webhook signing secrets stored in plaintext"
        );
    }
    Ok(())
}

/// Starts a host on `listener` with the system clock.
pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<RunningHost> {
    start_with_clock(config, listener, Arc::new(SystemClock)).await
}

/// Starts a host on `listener`: API server, session job worker and delivery worker.
pub async fn start_with_clock(
    config: Config,
    listener: TcpListener,
    clock: SharedClock,
) -> anyhow::Result<RunningHost> {
    let app = open(config, clock).await?;
    if app.db.backend() == store::Backend::Sqlite {
        // One host owns a SQLite file, so leases left by a host that died are nobody's.
        let mut tx = app.db.begin().await?;
        let jobs = store::jobs::release_all_leases(&mut tx).await?;
        let deliveries = store::deliveries::release_all_leases(&mut tx).await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        if jobs + deliveries > 0 {
            tracing::info!(jobs, deliveries, "released work left leased by a previous run");
        }
    }
    let addr = listener.local_addr()?;
    let _ = app.local_addr.set(addr);
    let shutdown = app.stopping.clone();
    let mut tasks = JoinSet::new();

    tasks.spawn(sessions::worker::run(app.clone(), shutdown.clone()));
    tasks.spawn(delivery::worker::run(app.clone(), shutdown.clone()));
    tasks.spawn(forget_idle_rate_limits(app.clone(), shutdown.clone()));
    tasks.spawn(checkpoint_audit_trail(app.clone(), shutdown.clone()));
    if app.plugin_directory.is_some() && !app.config.plugin_reload_interval.is_zero() {
        tasks.spawn(watch_plugin_directory(app.clone(), shutdown.clone()));
    }

    let router = api::router(app.clone());
    tasks.spawn(server::serve(
        listener,
        router,
        app.config.server.clone(),
        app.server_stats.clone(),
        shutdown.clone(),
    ));
    tracing::info!(%addr, public_url = %app.config.public_url, "leadtime host listening");
    Ok(RunningHost {
        addr,
        app,
        shutdown,
        tasks,
    })
}

/// Rescans the plugins directory every `plugin_reload_interval`, so new and changed plugins load
/// without a restart (a scan is a directory listing; files are read only when they changed).
async fn watch_plugin_directory(app: SharedApp, shutdown: CancellationToken) {
    let Some(directory) = &app.plugin_directory else {
        return;
    };
    let mut tick = tokio::time::interval(app.config.plugin_reload_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let changes = directory.scan(&app.runtime).await;
                if !changes.is_empty() {
                    forget_unused_plugin_versions(&app).await;
                }
                for change in changes {
                    app.announce(match change {
                        DirectoryChange::Loaded { source, id, version, sha256 } => {
                            app::HostEvent::PluginLoaded { source, id, version, sha256 }
                        }
                        DirectoryChange::Rejected { source, message } => app::HostEvent::PluginRejected { source, message },
                        DirectoryChange::Removed { source } => app::HostEvent::PluginRemoved { source },
                    });
                }
            }
        }
    }
}

async fn forget_unused_plugin_versions(app: &App) {
    let in_use = match app.db.read().await {
        Ok(mut conn) => store::sessions::plugin_versions_in_use(&mut conn).await,
        Err(error) => Err(error),
    };
    match in_use {
        Ok(shas) => {
            let forgotten = app.runtime.forget_unused_versions(&shas.into_iter().collect());
            if forgotten > 0 {
                tracing::info!(forgotten, "dropped plugin versions no unfinished session uses");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot tell which plugin versions are in use; keeping them all"),
    }
}

/// Signs the audit chain's head into the checkpoint directory whenever it moved, every
/// `audit_checkpoint_interval` and once more when the host stops.
async fn checkpoint_audit_trail(app: SharedApp, shutdown: CancellationToken) {
    let mut writer = audit::checkpoints::CheckpointWriter::new(app.config.audit_checkpoint_dir.clone());
    let mut tick = tokio::time::interval(app.config.audit_checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        if let Err(error) = writer.write_if_moved(&app.db, &app.audit_keys, app.clock.now()).await {
            tracing::error!(error = format!("{error:#}"), dir = %app.config.audit_checkpoint_dir.display(), "could not write an audit checkpoint");
        }
        if stopping {
            break;
        }
    }
}

/// How often dropped plugin log lines are reported (one line per report, with counts).
const LOG_DROP_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Drops full rate-limit buckets now and then, so memory stays bounded however many tokens call,
/// deletes provider webhooks past their deduplication window (a bounded batch a minute), and reports the plugin log lines the per-connection limit dropped, once per interval.
async fn forget_idle_rate_limits(app: SharedApp, shutdown: CancellationToken) {
    let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
    let mut report_drops = tokio::time::interval(LOG_DROP_REPORT_INTERVAL);
    report_drops.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                app.runtime.report_dropped_log_lines(LOG_DROP_REPORT_INTERVAL);
                break;
            }
            _ = report_drops.tick() => app.runtime.report_dropped_log_lines(LOG_DROP_REPORT_INTERVAL),
            _ = every_minute.tick() => {
                app.rate_limits.forget_idle();
                app.failed_auth.forget_idle();
                app.runtime.forget_idle_log_buckets();
                if let Err(error) = use_cases::inbound::forget_old_events(&app).await {
                    tracing::warn!(%error, "could not delete provider webhooks past their retention");
                }
            }
        }
    }
}
