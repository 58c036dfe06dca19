//! Persistence on SQLite (the embedded default) or PostgreSQL (`DATABASE_URL=postgres://…`).
//!
//! Queries are written once in the SQL both backends understand (`$1` parameters, `RETURNING`,
//! `ON CONFLICT`, partial indexes) with sqlx's query builders over its `Any` types; the few places
//! that differ ask [`Db::backend`]. Each backend has its own migrations folder, applied at start
//! (by sqlx's migrator).
//!
//! A [`Conn`] runs a query on PostgreSQL through sqlx's driver, and on SQLite in the calling task
//! ([`sqlite`]: no thread hand-over per statement). On SQLite every write goes through one
//! connection, so writers queue in-process instead of failing with `SQLITE_BUSY`; reads use a
//! few more (WAL lets them run alongside). On PostgreSQL both share one pool.

pub mod aliased;
pub mod assignment;
pub mod audit;
pub mod batch_rows;
pub mod connection_secrets;
pub mod connection_types;
pub mod connections;
pub mod console_links;
pub mod deliveries;
pub mod endpoints;
pub mod host_keys;
pub mod inbound;
pub mod jobs;
pub(crate) mod json_rows;
pub mod kv;
pub mod model_usage;
pub mod session_start;
pub mod sessions;
pub mod setup_codes;
pub mod sqlite;
pub mod start_outcomes;
pub mod tasks;
pub mod tokens;
pub mod users;
pub mod workspaces;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use either::Either;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Execute, Executor};

/// Readers SQLite keeps open at most.
const SQLITE_READERS: usize = 8;

/// A connection the store's functions run queries on: a reader, or the connection of an open
/// transaction ([`Tx`] dereferences to it).
pub enum Conn {
    Sqlite(sqlite::Handle),
    Postgres(PoolConnection<Any>),
    /// What a finished transaction leaves behind: every query fails.
    Released,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Sqlite(handle) => handle.fmt(f),
            Conn::Postgres(_) => f.write_str("postgres connection"),
            Conn::Released => f.write_str("released connection"),
        }
    }
}

/// Statements run through a [`Conn`] since the process started (benchmarks count a request's).
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many statements the store has run through its connections since the process started.
pub fn statements_run() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

fn count_statement() {
    STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

impl Conn {
    /// Whether this is a PostgreSQL connection (for the few statements written per backend).
    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Postgres(_))
    }
}

fn released() -> sqlx::Error {
    sqlx::Error::Protocol("the transaction is over; its connection was released".into())
}

impl<'c> Executor<'c> for &'c mut Conn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        mut query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        count_statement();
        match self {
            Conn::Postgres(conn) => (&mut **conn).fetch_many(query),
            Conn::Sqlite(handle) => {
                let ran = query
                    .take_arguments()
                    .map_err(sqlx::Error::Encode)
                    .and_then(|arguments| sqlite::run(handle, query.sql(), arguments, None));
                let items: Vec<Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> = match ran {
                    Ok(ran) => ran
                        .rows
                        .into_iter()
                        .map(|row| Ok(Either::Right(row)))
                        .chain(std::iter::once(Ok(Either::Left(ran.result))))
                        .collect(),
                    Err(error) => vec![Err(error)],
                };
                Box::pin(futures_util::stream::iter(items))
            }
            Conn::Released => Box::pin(futures_util::stream::iter(vec![Err(released())])),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, mut query: E) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        count_statement();
        match self {
            Conn::Postgres(conn) => (&mut **conn).fetch_optional(query),
            Conn::Sqlite(handle) => {
                let ran = query
                    .take_arguments()
                    .map_err(sqlx::Error::Encode)
                    .and_then(|arguments| sqlite::run(handle, query.sql(), arguments, Some(1)))
                    .map(|ran| ran.rows.into_iter().next());
                Box::pin(std::future::ready(ran))
            }
            Conn::Released => Box::pin(std::future::ready(Err(released()))),
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Conn::Postgres(conn) => (&mut **conn).prepare_with(sql, parameters),
            _ => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "prepared statement objects are not used on SQLite".into(),
            )))),
        }
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Conn::Postgres(conn) => (&mut **conn).describe(sql),
            _ => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "describe is not used on SQLite".into(),
            )))),
        }
    }
}

/// A connection for reads outside any transaction.
#[derive(Debug)]
pub struct ReadConn(Conn);

impl std::ops::Deref for ReadConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl std::ops::DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.0
    }
}

/// An open write transaction: committed by [`Tx::commit`], rolled back when dropped otherwise.
#[derive(Debug)]
pub struct Tx {
    conn: Conn,
}

impl std::ops::Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl Tx {
    /// Commits the transaction.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.finish("COMMIT").await
    }

    /// Rolls the transaction back.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.finish("ROLLBACK").await
    }

    /// Ends the transaction with `statement`; the connection goes back once that succeeded (else
    /// the drop rolls back what is left).
    async fn finish(&mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        sqlx::query(statement).execute(&mut self.conn).await?;
        self.conn = Conn::Released;
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.conn, Conn::Released) {
            Conn::Released => {}
            // Runs here and now: the writer is free again when the drop returns.
            Conn::Sqlite(handle) => sqlite::roll_back(&handle),
            Conn::Postgres(mut conn) => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_err() {
                            conn.close_on_drop();
                        }
                    });
                }
                // No runtime to roll back on: the server rolls back when the connection closes.
                Err(_) => conn.close_on_drop(),
            },
        }
    }
}

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

/// A pooled PostgreSQL connection idle this long is pinged before it is handed out.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The database: SQLite's writer and readers, or PostgreSQL's pool.
#[derive(Debug, Clone)]
pub struct Db {
    backend: Backend,
    connections: Connections,
}

#[derive(Debug, Clone)]
enum Connections {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(AnyPool),
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
        let connections = match backend {
            Backend::Sqlite => {
                // sqlx's migrator applies the migrations (on a connection of its own, closed
                // before the host's connections open, so they never see a half-made schema).
                let migrator = AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("../migrations/sqlite").run(&migrator).await?;
                migrator.close().await;
                Connections::Sqlite(Arc::new(sqlite::Sqlite::open(url, SQLITE_READERS)?))
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    // sqlx pings every connection it hands out (a round trip and a wake-up of its
                    // backend, several per trigger under load); ping only those idle long enough
                    // to have been dropped (a database restart), and discard those that fail.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for < PING_IDLE_AFTER {
                                return Ok(true);
                            }
                            Ok(sqlx::Connection::ping(conn).await.is_ok())
                        })
                    })
                    .connect_with(options)
                    .await?;
                sqlx::migrate!("../migrations/postgres").run(&pool).await?;
                Connections::Postgres(pool)
            }
        };
        Ok(Db { backend, connections })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let mut tx = Tx {
            conn: match &self.connections {
                Connections::Sqlite(sqlite) => Conn::Sqlite(sqlite.writer().await),
                Connections::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
            },
        };
        if let Err(error) = sqlx::query("BEGIN").execute(&mut tx.conn).await {
            // Nothing to roll back.
            tx.conn = Conn::Released;
            return Err(error.into());
        }
        Ok(tx)
    }

    /// A connection for reads outside any transaction.
    pub async fn read(&self) -> Result<ReadConn, StoreError> {
        Ok(ReadConn(match &self.connections {
            Connections::Sqlite(sqlite) => Conn::Sqlite(sqlite.reader().await?),
            Connections::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
        }))
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match &self.connections {
            Connections::Sqlite(sqlite) => sqlite.close(),
            Connections::Postgres(pool) => pool.close().await,
        }
    }
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

/// Splits `items` into runs of 64, 32, …, 2 and 1 rows (the binary digits of its length), for
/// statements that write many rows at once: one statement per run, and at most seven statement
/// shapes per query, so the prepared statements stay few and cached whatever the batch's size.
pub(crate) fn runs_of_powers_of_two<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    const LARGEST: usize = 64;
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = if rest.len() >= LARGEST {
            LARGEST
        } else {
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (run, after) = rest.split_at(size);
        rest = after;
        Some(run)
    })
}

/// `($1, $2, …), ($n+1, …), …`: the `VALUES` rows of a multi-row insert of `rows` rows of `columns`
/// parameters, numbered from `$1`.
pub(crate) fn values_rows(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_follow_the_binary_digits_of_the_length_and_cover_every_item_in_order() {
        let sizes = |n: usize| {
            let items: Vec<usize> = (0..n).collect();
            let runs: Vec<&[usize]> = runs_of_powers_of_two(&items).collect();
            let flat: Vec<usize> = runs.iter().flat_map(|r| r.iter().copied()).collect();
            assert_eq!(flat, items, "every item once, in order, for {n}");
            runs.iter().map(|r| r.len()).collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(7), vec![4, 2, 1]);
        assert_eq!(sizes(64), vec![64]);
        assert_eq!(sizes(130), vec![64, 64, 2]);
        assert_eq!(sizes(45), vec![32, 8, 4, 1]);
    }

    #[test]
    fn values_rows_number_parameters_row_by_row() {
        assert_eq!(values_rows(1, 2), "($1, $2)");
        assert_eq!(values_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }
}
