//! What the benchmarks share: the database a run uses.

use std::path::Path;

use anyhow::{Context, Result};
use sqlx::Connection;

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
