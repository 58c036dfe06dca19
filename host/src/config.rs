//! Host configuration: defaults, overridden by command-line flags or environment variables
//! (`leadtime-host serve --help` lists every one), validated once at start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::outbound::OutboundPolicy;
use crate::runtime::CallLimits;
use crate::secrets::SecretValue;

/// Everything the host needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Where SQLite, the plugin compile cache and other local state live.
    pub data_dir: PathBuf,
    /// The URL wrappers and agents use to reach this host, without a trailing slash
    /// (e.g. `https://agents.example.com`). The public API is at `{public_url}/api/public`.
    pub public_url: String,
    /// Webhook delivery settings.
    pub delivery: DeliveryConfig,
    /// Which outbound targets user-chosen URLs may reach.
    pub outbound: OutboundPolicy,
    /// Per-call plugin limits.
    pub plugin_limits: CallLimits,
    /// Time one model request (`model` capability) may take, connect to the answer's last byte.
    pub model_timeout: Duration,
    /// Live session streams (`GET /agent-sessions/{id}/stream`) open at once on this host.
    pub max_session_streams: usize,
    /// Requests per minute one API token may make (0: unlimited).
    pub rate_limit_per_minute: u32,
    /// Requests one API token may make in a burst.
    pub rate_limit_burst: u32,
    /// Failed authentications one client address may make per minute (and in a burst) before it
    /// is locked out until its budget refills (0: no lockout).
    pub auth_failures_per_minute: u32,
    /// Where compiled plugins are cached across restarts (`data_dir/plugin-cache` by default);
    /// `None` compiles at every start.
    pub plugin_cache_dir: Option<PathBuf>,
    /// The key sealing connection secrets, base64 of 32 bytes; when unset, the key file is used.
    pub secrets_key: Option<SecretValue>,
    /// Where the secrets key is kept when `secrets_key` is unset (created on first start).
    pub secrets_key_file: PathBuf,
    /// Directory of extra plugins (`*.wasm`); `None`: built-in plugins only.
    pub plugins_dir: Option<PathBuf>,
    /// How often the plugins directory is rescanned for new or changed files (zero: never).
    pub plugin_reload_interval: Duration,
    /// What clients may make the HTTP server hold (connections, time, header sizes).
    pub server: crate::server::ServerLimits,
    /// Threads guest code runs on (apart from the API's), at lowered priority.
    pub plugin_threads: usize,
    /// Where signed checkpoints of the audit chain are written (keep a copy off this machine).
    pub audit_checkpoint_dir: PathBuf,
    /// How often the audit chain's head is checkpointed when it moved.
    pub audit_checkpoint_interval: Duration,
}

/// The SQLite database's file in the data directory, when no database URL is given.
pub const DEFAULT_DATABASE_FILE: &str = "leadtime.db";

/// Webhook attempts in flight at once, across all receivers (each holds an outbound connection
/// and its body until the receiver answers or the attempt times out).
pub const DEFAULT_DELIVERY_CONCURRENCY: usize = 512;
/// Webhook attempts in flight at once to one endpoint: a quarter of the slots, so one busy
/// endpoint is served with ample concurrency while a slow one (holding its attempts until they
/// time out) leaves three quarters to everyone else. An attempt counts until its outcome is
/// committed (so a killed host re-sends at most this many per endpoint): the limit divided by the
/// commit latency caps one endpoint's rate. At 32, PostgreSQL under load (commits of ~300 ms)
/// delivered ~100 webhooks/s to one busy endpoint; at 128, ~420/s, as fast as tasks came in.
pub const DEFAULT_DELIVERY_PER_ENDPOINT: usize = 128;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Waits before each retry; the first attempt is immediate, so attempts = retries + 1.
    pub retry_schedule: Vec<Duration>,
    /// Time one attempt may take, connect to last byte.
    pub attempt_timeout: Duration,
    /// Attempts in flight at once, across all receivers.
    pub max_in_flight: usize,
    /// Attempts in flight at once to one endpoint (so one slow receiver cannot take every slot).
    pub per_endpoint_in_flight: usize,
    /// Deliveries in a row that may fail for good before their endpoint is disabled (0: never).
    pub auto_disable_after_failed_deliveries: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            // Svix-like: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts over ~27.6 h).
            retry_schedule: parse_schedule("5s,5m,30m,2h,5h,10h,10h").unwrap_or_default(),
            attempt_timeout: Duration::from_secs(15),
            max_in_flight: DEFAULT_DELIVERY_CONCURRENCY,
            per_endpoint_in_flight: DEFAULT_DELIVERY_PER_ENDPOINT,
            auto_disable_after_failed_deliveries: 10,
        }
    }
}

impl Config {
    /// A configuration with defaults for everything but where state lives and the public URL.
    pub fn new(data_dir: PathBuf, database_url: Option<String>, public_url: String) -> Self {
        let database_url = database_url
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join(DEFAULT_DATABASE_FILE).display()));
        Self {
            database_url,
            plugin_cache_dir: Some(data_dir.join("plugin-cache")),
            secrets_key: None,
            secrets_key_file: data_dir.join("secrets.key"),
            plugins_dir: Some(data_dir.join("plugins")),
            audit_checkpoint_dir: data_dir.join("audit-checkpoints"),
            plugin_reload_interval: Duration::from_secs(2),
            data_dir,
            public_url: public_url.trim_end_matches('/').to_owned(),
            delivery: DeliveryConfig::default(),
            outbound: OutboundPolicy::default(),
            plugin_limits: CallLimits::default(),
            model_timeout: Duration::from_secs(300),
            max_session_streams: 512,
            rate_limit_per_minute: 600,
            rate_limit_burst: 120,
            auth_failures_per_minute: 30,
            server: crate::server::ServerLimits::default(),
            plugin_threads: crate::runtime::executor::default_threads(),
            audit_checkpoint_interval: Duration::from_secs(5),
        }
    }

    /// Base URL wrappers configure (`leadtimeBaseUrl`): `{public_url}/api`.
    pub fn api_base_url(&self) -> String {
        format!("{}/api", self.public_url)
    }

    /// Checks the configuration and creates the data directory.
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = url::Url::parse(&self.public_url)
            .with_context(|| format!("public URL `{}` is not a URL", self.public_url))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("public URL `{}` must be http or https", self.public_url);
        }
        if self.delivery.max_in_flight == 0 || self.delivery.per_endpoint_in_flight == 0 {
            bail!("delivery concurrency (overall and per endpoint) must be at least 1");
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("cannot create the data directory {}", self.data_dir.display()))?;
        Ok(())
    }
}

/// The CLI/environment form of [`Config`] (`leadtime-host serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LEADTIME_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for the SQLite database and the plugin compile cache.
    #[arg(long, env = "LEADTIME_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Database: `postgres://user@host/db` for PostgreSQL; defaults to SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// URL wrappers use to reach this host; defaults to `http://<listen>`.
    #[arg(long, env = "LEADTIME_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Waits between webhook retries, comma-separated (`5s,5m,30m,2h`).
    #[arg(
        long,
        env = "LEADTIME_DELIVERY_RETRY_SCHEDULE",
        default_value = "5s,5m,30m,2h,5h,10h,10h"
    )]
    pub retry_schedule: String,
    /// Time one webhook attempt may take, in seconds.
    #[arg(long, env = "LEADTIME_DELIVERY_TIMEOUT_SECS", default_value_t = 15)]
    pub delivery_timeout_secs: u64,
    /// Let webhooks (and other user-chosen URLs) reach loopback, private and internal addresses.
    /// For local development only: in production it lets users aim the host at its own network.
    #[arg(long, env = "LEADTIME_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Webhook attempts in flight at once.
    #[arg(long, env = "LEADTIME_DELIVERY_CONCURRENCY", default_value_t = DEFAULT_DELIVERY_CONCURRENCY)]
    pub delivery_concurrency: usize,
    /// Webhook attempts in flight at once to one endpoint.
    #[arg(long, env = "LEADTIME_DELIVERY_PER_ENDPOINT", default_value_t = DEFAULT_DELIVERY_PER_ENDPOINT)]
    pub delivery_per_endpoint: usize,
    /// Disable an endpoint after this many deliveries in a row failed for good (0: never).
    #[arg(long, env = "LEADTIME_DELIVERY_AUTO_DISABLE_AFTER", default_value_t = 10)]
    pub delivery_auto_disable_after: u32,
    /// Time one plugin call may take, in seconds.
    #[arg(long, env = "LEADTIME_PLUGIN_TIMEOUT_SECS", default_value_t = 30)]
    pub plugin_timeout_secs: u64,
    /// Time one model request of a native agent may take (connect to the answer's last byte), in
    /// seconds; long completions of large models need minutes.
    #[arg(long, env = "LEADTIME_MODEL_TIMEOUT_SECS", default_value_t = 300)]
    pub model_timeout_secs: u64,
    /// Live session streams (Server-Sent Events) open at once; each token may hold 16.
    #[arg(long, env = "LEADTIME_MAX_SESSION_STREAMS", default_value_t = 512)]
    pub max_session_streams: usize,
    /// Requests per minute one API token may make; 0 turns the limit off.
    #[arg(long, env = "LEADTIME_RATE_LIMIT_PER_MINUTE", default_value_t = 600)]
    pub rate_limit_per_minute: u32,
    /// The key that seals connection secrets at rest: base64 of 32 random bytes
    /// (`openssl rand -base64 32`). Keep it out of the database's backups.
    #[arg(long, env = "LEADTIME_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<SecretValue>,
    /// File holding the secrets key when `--secrets-key` is not given; created with a random key
    /// on first start. Defaults to `<data dir>/secrets.key`.
    #[arg(long, env = "LEADTIME_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Directory of extra plugins (`*.wasm`), loaded at start and reloaded when a file changes.
    /// Defaults to `<data dir>/plugins`.
    #[arg(long, env = "LEADTIME_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// Seconds between looks at the plugins directory for new or changed files (0: only at start).
    #[arg(long, env = "LEADTIME_PLUGIN_RELOAD_SECS", default_value_t = 2)]
    pub plugin_reload_secs: u64,
    /// Requests one API token may make in a burst above the per-minute rate.
    #[arg(long, env = "LEADTIME_RATE_LIMIT_BURST", default_value_t = 120)]
    pub rate_limit_burst: u32,
    /// Failed authentications one client address may make per minute before every token it sends
    /// is refused (429) until its budget refills; 0 turns the lockout off.
    #[arg(long, env = "LEADTIME_AUTH_FAILURES_PER_MINUTE", default_value_t = 30)]
    pub auth_failures_per_minute: u32,
    /// HTTP connections open at once (lowered to fit the file-descriptor limit). At the cap the
    /// longest-idle connection is closed; if none is idle, new ones get 503 with Retry-After.
    #[arg(long, env = "LEADTIME_MAX_CONNECTIONS", default_value_t = 8_192)]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, and to start its next request on a
    /// kept-alive connection.
    #[arg(long, env = "LEADTIME_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Where signed checkpoints of the audit chain are written; defaults to
    /// `<data dir>/audit-checkpoints`. Copy them off this machine: they are what shows records
    /// removed from the end of the chain.
    #[arg(long, env = "LEADTIME_AUDIT_CHECKPOINT_DIR")]
    pub audit_checkpoint_dir: Option<PathBuf>,
    /// Seconds between checkpoints of the audit chain (written only when it moved).
    #[arg(long, env = "LEADTIME_AUDIT_CHECKPOINT_SECS", default_value_t = 5)]
    pub audit_checkpoint_secs: u64,
    /// Seconds a request body may stall before the request is answered 408.
    #[arg(long, env = "LEADTIME_BODY_READ_TIMEOUT_SECS", default_value_t = 15)]
    pub body_read_timeout_secs: u64,
    /// Threads plugin code runs on, apart from the API's (at lowered priority); defaults to one
    /// per core.
    #[arg(long, env = "LEADTIME_PLUGIN_THREADS")]
    pub plugin_threads: Option<usize>,
}

impl ServeArgs {
    /// The validated configuration these arguments describe.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let public_url = self.public_url.unwrap_or_else(|| format!("http://{}", self.listen));
        let mut config = Config::new(self.data_dir, self.database_url, public_url);
        config.delivery.retry_schedule = parse_schedule(&self.retry_schedule)?;
        config.delivery.attempt_timeout = Duration::from_secs(self.delivery_timeout_secs.max(1));
        config.outbound.allow_private_targets = self.allow_private_targets;
        config.plugin_limits.timeout = Duration::from_secs(self.plugin_timeout_secs.max(1));
        config.model_timeout = Duration::from_secs(self.model_timeout_secs.clamp(1, 3_600));
        config.max_session_streams = self.max_session_streams.max(1);
        config.delivery.max_in_flight = self.delivery_concurrency;
        config.delivery.per_endpoint_in_flight = self.delivery_per_endpoint;
        config.delivery.auto_disable_after_failed_deliveries = self.delivery_auto_disable_after;
        config.rate_limit_per_minute = self.rate_limit_per_minute;
        config.rate_limit_burst = self.rate_limit_burst;
        config.auth_failures_per_minute = self.auth_failures_per_minute;
        config.secrets_key = self.secrets_key;
        if let Some(file) = self.secrets_key_file {
            config.secrets_key_file = file;
        }
        if let Some(dir) = self.plugins_dir {
            config.plugins_dir = Some(dir);
        }
        config.plugin_reload_interval = Duration::from_secs(self.plugin_reload_secs);
        config.server.max_connections = self.max_connections.max(1);
        config.server.header_read_timeout = Duration::from_secs(self.header_read_timeout_secs.max(1));
        config.server.body_read_timeout = Duration::from_secs(self.body_read_timeout_secs.max(1));
        if let Some(dir) = self.audit_checkpoint_dir {
            config.audit_checkpoint_dir = dir;
        }
        config.audit_checkpoint_interval = Duration::from_secs(self.audit_checkpoint_secs.max(1));
        if let Some(threads) = self.plugin_threads {
            config.plugin_threads = threads.max(1);
        }
        config.validate()?;
        Ok(config)
    }
}

/// Parses `5s,5m,2h,1d` into durations.
pub fn parse_schedule(text: &str) -> anyhow::Result<Vec<Duration>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (number, unit) = part.split_at(part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len()));
            let n: u64 = number
                .parse()
                .with_context(|| format!("`{part}` is not a duration like 5s, 5m, 2h or 1d"))?;
            let seconds = match unit {
                "ms" => return Ok(Duration::from_millis(n)),
                "s" | "" => n,
                "m" => n * 60,
                "h" => n * 3600,
                "d" => n * 86_400,
                _ => bail!("`{part}` has an unknown unit; use ms, s, m, h or d"),
            };
            Ok(Duration::from_secs(seconds))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse() {
        assert_eq!(
            parse_schedule("5s, 5m,2h,1d,250ms").unwrap(),
            [
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(7200),
                Duration::from_secs(86_400),
                Duration::from_millis(250)
            ]
        );
        assert!(parse_schedule("5x").is_err());
        assert!(parse_schedule("soon").is_err());
        assert_eq!(DeliveryConfig::default().retry_schedule.len(), 7);
    }
}
