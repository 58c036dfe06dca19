//! Persistence with sqlx on SQLite (the embedded default) or PostgreSQL (`DATABASE_URL=postgres://…`).
//!
//! Queries are written once in the SQL both backends understand (`$1` parameters, `RETURNING`,
//! `ON CONFLICT`, partial indexes) and run through sqlx's `Any` driver; the few places that differ
//! ask [`Db::backend`]. Each backend has its own migrations folder, applied at start.
//!
//! On SQLite every write goes through one dedicated connection, so writers queue in-process
//! instead of failing with `SQLITE_BUSY`; reads use a separate pool (WAL lets them run alongside).
//! On PostgreSQL both share one pool.

pub mod audit;
pub mod connection_secrets;
pub mod connection_types;
pub mod connections;
pub mod deliveries;
pub mod endpoints;
pub mod host_keys;
pub mod jobs;
pub mod kv;
pub mod session_start;
pub mod sessions;
pub mod setup_codes;
pub mod tasks;
pub mod tokens;
pub mod users;
pub mod workspaces;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};

/// The connection type store functions take: a pooled connection or an open transaction.
pub type Conn = AnyConnection;
/// An open write transaction.
pub type Tx = Transaction<'static, Any>;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the row (e.g. a handle already taken).
    #[error("conflict with an existing record: {0}")]
    Conflict(String),
    /// The database failed or was unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration could not be applied.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// `DATABASE_URL` names no supported backend.
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Whether the database gave up on the transaction for a reason that running it again may
    /// not meet: a deadlock or a serialization failure (PostgreSQL's `40P01`, `40001`).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

/// Turns a unique-constraint violation into [`StoreError::Conflict`]; other errors pass through.
pub(crate) fn conflict_or(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::Conflict(db.message().to_owned())
        }
        _ => StoreError::Database(error),
    }
}

/// Which database the host runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database: a read pool and a write pool (the same pool on PostgreSQL).
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
}

impl Db {
    /// Connects to `url` (`sqlite://path` — created if missing — or `postgres://…`) and applies
    /// the backend's migrations.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let options = AnyConnectOptions::from_str(url)?;
        let db = match backend {
            Backend::Sqlite => {
                let write = sqlite_pool(1).connect_with(options.clone()).await?;
                // Migrate before the read pool opens, so readers never see a half-made schema.
                sqlx::migrate!("../migrations/sqlite").run(&write).await?;
                let read = sqlite_pool(8).connect_with(options).await?;
                Db { backend, read, write }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("../migrations/postgres").run(&pool).await?;
                Db {
                    backend,
                    read: pool.clone(),
                    write: pool,
                }
            }
        };
        Ok(db)
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(self.write.begin().await?)
    }

    /// A connection for reads outside any transaction.
    pub async fn read(&self) -> Result<PoolConnection<Any>, StoreError> {
        Ok(self.read.acquire().await?)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

fn sqlite_pool(max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        // A connection to a local file does not go stale; a ping per acquire is a thread hop.
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                )
                .await?;
                Ok(())
            })
        })
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable URL>".to_owned(),
    }
}
