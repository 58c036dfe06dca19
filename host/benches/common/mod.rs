//! What the benchmarks share: the database a run uses, and a host with one workspace.
// Each bench compiles this module and uses a part of it.
#![allow(dead_code)]

use std::path::Path;

use anyhow::{Context, Result};
use leadtime_host::use_cases::accounts::{self, Bootstrap};
use leadtime_host::{Config, RunningHost};
use sqlx::Connection;

/// The allocator the host binary runs with (`src/main.rs`), so the benches measure the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A host on a loopback port with one workspace: the host, its public API base URL and the
/// workspace admin's token. `configure` adjusts the benchmark's configuration (private targets
/// allowed, no rate limit) before the start.
pub async fn start_host(
    data_dir: &Path,
    database_url: &str,
    configure: impl FnOnce(&mut Config),
) -> Result<(RunningHost, String, String)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let public = format!("http://{}", listener.local_addr()?);
    let mut config = Config::new(data_dir.to_path_buf(), Some(database_url.to_owned()), public.clone());
    config.outbound.allow_private_targets = true;
    config.rate_limit_per_minute = 0;
    configure(&mut config);
    let host = leadtime_host::start(config, listener).await?;
    let workspace = accounts::bootstrap(
        &host.app,
        Bootstrap {
            workspace_name: "Bench".into(),
            admin_name: "Bench".into(),
            admin_handle: "bench".into(),
            admin_email: None,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((host, format!("{public}/api/public"), workspace.admin_token))
}

/// Creates a bot with a self-hosted connection whose webhook goes to `webhook_url`; the API's
/// answer (`bot`, `token`, `webhookSecret`).
pub async fn create_self_hosted_bot(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    handle: &str,
    webhook_url: &str,
) -> Result<serde_json::Value> {
    let created: serde_json::Value = client
        .post(format!("{base}/bots"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"name": handle, "handle": handle, "connection": {"type": "self-hosted", "config": {"webhookUrl": webhook_url}}}))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(created["bot"]["id"].is_string(), "no bot created: {created}");
    Ok(created)
}

/// The median and 99th percentile of `latencies`.
pub fn percentiles(mut latencies: Vec<std::time::Duration>) -> (std::time::Duration, std::time::Duration) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// The least, the median and the greatest of `values` (at least one).
pub fn spread(values: impl Iterator<Item = f64>) -> [f64; 3] {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    [values[0], values[values.len() / 2], values[values.len() - 1]]
}

/// Brings PostgreSQL's planner statistics up to date after a bench's set-up, as `pgbench` vacuums
/// before it measures: the run then measures the steady state a running host is in once
/// autovacuum has seen its tables (it analyzes a table after 50 + 10 % of its rows changed, within
/// a minute), not the first minute of a database that grew from nothing in the set-up's seconds.
/// Plans a connection cached while the tables were empty (a sequential scan of a table then
/// thought to hold a few rows) are planned again. SQLite's planner keeps no size statistics
/// unless asked, so it is left as it is.
///
/// Only tables the set-up filled are analyzed. Statistics saying a table is empty are worse than
/// none: PostgreSQL plans a never-analyzed table as at least ten pages (an index scan for a key),
/// but one analyzed empty as holding nothing — and the foreign-key checks' plans, which each
/// connection keeps until the table is analyzed again, would then scan the sessions a run adds
/// one by one for every row that refers to them (autovacuum is off on some servers, CI's among
/// them, so nothing would plan them again).
pub async fn analyze(db: &leadtime_host::store::Db) -> Result<()> {
    if db.backend() == leadtime_host::store::Backend::Postgres {
        let mut conn = db.read().await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
        )
        .fetch_all(&mut *conn)
        .await?;
        for table in tables {
            let filled: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM \"{table}\")"))
                .fetch_one(&mut *conn)
                .await?;
            if filled {
                sqlx::query(&format!("ANALYZE \"{table}\"")).execute(&mut *conn).await?;
            }
        }
    }
    Ok(())
}

/// The environment variable naming a PostgreSQL server to benchmark on (SQLite if unset).
pub const BENCH_DATABASE_URL: &str = "LEADTIME_BENCH_DATABASE_URL";

/// A database only this run uses: a new one on the PostgreSQL server named by
/// `LEADTIME_BENCH_DATABASE_URL` (dropped by [`BenchDb::drop_database`]), or a SQLite file in `dir`.
pub struct BenchDb {
    /// The URL to connect to.
    pub url: String,
    postgres: Option<(String, String)>,
}

impl BenchDb {
    /// A fresh database called `purpose_<random>` on PostgreSQL, or `dir/<purpose>.db`.
    pub async fn create(dir: &Path, purpose: &str) -> Result<BenchDb> {
        match std::env::var(BENCH_DATABASE_URL).ok().filter(|u| !u.trim().is_empty()) {
            Some(admin) => {
                let name = format!("lt_bench_{purpose}_{}", ulid::Ulid::new().to_string().to_lowercase());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .with_context(|| format!("{BENCH_DATABASE_URL} must name a reachable PostgreSQL server"))?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                let mut url = url::Url::parse(&admin)?;
                url.set_path(&name);
                Ok(BenchDb {
                    url: url.to_string(),
                    postgres: Some((admin, name)),
                })
            }
            None => Ok(BenchDb {
                url: format!("sqlite://{}?mode=rwc", dir.join(format!("{purpose}.db")).display()),
                postgres: None,
            }),
        }
    }

    /// `PostgreSQL` or `SQLite`, for the report.
    pub fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    }

    /// Drops the PostgreSQL database (after every connection to it is closed).
    pub async fn drop_database(self) -> Result<()> {
        if let Some((admin, name)) = self.postgres {
            let mut conn = sqlx::PgConnection::connect(&admin).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        Ok(())
    }
}
