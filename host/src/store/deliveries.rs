//! The webhook outbox: deliveries and their attempts.

use crate::domain::ids::{AttemptId, ConnectionId, DeliveryId, SessionId, TaskId, WorkspaceId};
use crate::domain::time::Timestamp;

use super::{Backend, Conn, StoreError};

/// A query with its arguments, as `sqlx::query` builds it.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

const COLUMNS: &str = "id, workspace_id, connection_id, session_id, url, body, status, attempts, retry_base, next_attempt_at, \
     last_error, delivered_at, created_at";

/// A webhook delivery.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Delivery {
    /// Sent as `Leadtime-Webhook-Id` and `webhook-id`; the same on every attempt.
    pub id: DeliveryId,
    pub workspace_id: WorkspaceId,
    pub connection_id: ConnectionId,
    pub session_id: Option<SessionId>,
    pub url: String,
    pub body: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts made before the current retry schedule began.
    pub retry_base: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl Delivery {
    /// A new delivery of `body` to `url`, due at once.
    pub fn pending(
        id: DeliveryId,
        workspace_id: WorkspaceId,
        connection_id: ConnectionId,
        session_id: Option<SessionId>,
        url: String,
        body: String,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            workspace_id,
            connection_id,
            session_id,
            url,
            body,
            status: "pending".into(),
            attempts: 0,
            retry_base: 0,
            next_attempt_at: Some(now),
            last_error: None,
            delivered_at: None,
            created_at: now,
        }
    }
}

/// One attempt at sending a delivery.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Attempt {
    pub id: AttemptId,
    pub delivery_id: DeliveryId,
    /// 1 for the first attempt.
    pub attempt: i64,
    pub started_at: Timestamp,
    /// The HTTP status, when the receiver answered.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// The start of the response body.
    pub response_body: Option<String>,
    /// Why the attempt failed, when it did.
    pub error: Option<String>,
}

/// Queues a delivery for sending at `now`.
pub async fn insert(conn: &mut Conn, d: &Delivery) -> Result<(), StoreError> {
    insert_with_lease(conn, d, None).await
}

/// Inserts `d` already leased until `locked_until` to this host's delivery worker, as its claim
/// would (`d.attempts` counts that attempt): for a delivery handed straight to the worker
/// ([`crate::handoff`]).
pub async fn insert_leased(conn: &mut Conn, d: &Delivery, locked_until: Timestamp) -> Result<(), StoreError> {
    insert_with_lease(conn, d, Some(locked_until)).await
}

async fn insert_with_lease(conn: &mut Conn, d: &Delivery, locked_until: Option<Timestamp>) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO webhook_deliveries ({COLUMNS}, locked_until) VALUES {}",
        super::values_rows(1, 14)
    );
    bind_row(sqlx::query(&sql), d, locked_until).execute(conn).await?;
    Ok(())
}

/// Binds the 14 insert parameters of `d`'s row.
fn bind_row<'q>(query: AnyQuery<'q>, d: &'q Delivery, locked_until: Option<Timestamp>) -> AnyQuery<'q> {
    query
        .bind(d.id.as_str())
        .bind(d.workspace_id.as_str())
        .bind(d.connection_id.as_str())
        .bind(d.session_id.as_ref().map(SessionId::as_str))
        .bind(&d.url)
        .bind(&d.body)
        .bind(&d.status)
        .bind(d.attempts)
        .bind(d.retry_base)
        .bind(d.next_attempt_at.map(Timestamp::millis))
        .bind(d.last_error.as_deref())
        .bind(d.delivered_at.map(Timestamp::millis))
        .bind(d.created_at.millis())
        .bind(locked_until.map(Timestamp::millis))
}

/// Inserts many deliveries, each leased until its `Some(locked_until)` (as [`insert_leased`]) or
/// not (as [`insert`]), a statement per run of rows ([`super::runs_of_powers_of_two`]).
pub async fn insert_many(conn: &mut Conn, deliveries: &[(Delivery, Option<Timestamp>)]) -> Result<(), StoreError> {
    for run in super::runs_of_powers_of_two(deliveries) {
        let sql = format!(
            "INSERT INTO webhook_deliveries ({COLUMNS}, locked_until) VALUES {}",
            super::values_rows(run.len(), 14)
        );
        let mut query = sqlx::query(&sql);
        for (d, locked_until) in run {
            query = bind_row(query, d, *locked_until);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A delivery as a row of [`super::json_rows`], its body left out: the row says where the body
/// stands in the batch's bodies (see [`json_rows`]).
#[derive(serde::Serialize)]
struct DeliveryRow<'a> {
    id: &'a str,
    workspace_id: &'a str,
    connection_id: &'a str,
    session_id: Option<&'a str>,
    url: &'a str,
    /// The body's first byte in the bodies, counted from 1 (as `substring` counts), and its length.
    body_from: usize,
    body_len: usize,
    status: &'a str,
    attempts: i64,
    retry_base: i64,
    next_attempt_at: Option<i64>,
    last_error: Option<&'a str>,
    delivered_at: Option<i64>,
    created_at: i64,
    locked_until: Option<i64>,
}

/// `deliveries` as an insert by [`super::json_rows`] (PostgreSQL) takes them, as [`insert_many`]
/// writes them: their rows, and their bodies one after the other as bytes (bound as `bytea`).
///
/// A body is itself JSON (a session's start is ~2–5 KB): inside a JSON row it would be escaped
/// quote by quote on the way in and read back a character at a time by PostgreSQL's JSON lexer.
/// As bytes it is copied: PostgreSQL's CPU per trigger in the trigger bench fell ~14 %.
pub(crate) fn json_rows(deliveries: &[(Delivery, Option<Timestamp>)]) -> Result<(String, Vec<u8>), StoreError> {
    let mut bodies = Vec::with_capacity(deliveries.iter().map(|(d, _)| d.body.len()).sum());
    let rows: Vec<DeliveryRow> = deliveries
        .iter()
        .map(|(d, locked_until)| {
            let body_from = bodies.len() + 1;
            bodies.extend_from_slice(d.body.as_bytes());
            DeliveryRow {
                id: d.id.as_str(),
                workspace_id: d.workspace_id.as_str(),
                connection_id: d.connection_id.as_str(),
                session_id: d.session_id.as_ref().map(SessionId::as_str),
                url: &d.url,
                body_from,
                body_len: d.body.len(),
                status: &d.status,
                attempts: d.attempts,
                retry_base: d.retry_base,
                next_attempt_at: d.next_attempt_at.map(Timestamp::millis),
                last_error: d.last_error.as_deref(),
                delivered_at: d.delivered_at.map(Timestamp::millis),
                created_at: d.created_at.millis(),
                locked_until: locked_until.map(Timestamp::millis),
            }
        })
        .collect();
    Ok((super::json_rows::encode(&rows)?, bodies))
}

/// The insert of [`json_rows`]: its rows bound at `${rows}`, its bodies at `${bodies}`.
pub(crate) fn insert_json_sql(rows: usize, bodies: usize) -> String {
    format!(
        "INSERT INTO webhook_deliveries ({COLUMNS}, locked_until) \
         SELECT r.id, r.workspace_id, r.connection_id, r.session_id, r.url, \
            convert_from(substring(${bodies}::bytea FROM r.body_from FOR r.body_len), 'UTF8'), \
            r.status, r.attempts, r.retry_base, r.next_attempt_at, r.last_error, r.delivered_at, r.created_at, \
            r.locked_until \
         FROM json_to_recordset(${rows}::json) AS r(id text, workspace_id text, connection_id text, \
            session_id text, url text, body_from int, body_len int, status text, attempts bigint, \
            retry_base bigint, next_attempt_at bigint, last_error text, delivered_at bigint, created_at bigint, \
            locked_until bigint)"
    )
}

/// Leases up to `limit` due pending deliveries until `now + lease_ms`, counting the attempt, while
/// keeping every connection's endpoint at no more than `per_endpoint` leased deliveries (across all
/// hosts sharing the database), so one slow receiver cannot take every slot.
pub async fn claim_due(
    conn: &mut Conn,
    backend: Backend,
    now: Timestamp,
    lease_ms: i64,
    limit: i64,
    per_endpoint: i64,
) -> Result<Vec<Delivery>, StoreError> {
    let skip_locked = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // Candidates are the earliest due deliveries (a bounded window, so a large backlog costs the
    // same as a small one); each endpoint's place in line starts after its already leased ones.
    Ok(sqlx::query_as(&format!(
        "WITH due AS (\
            SELECT id, connection_id, next_attempt_at FROM webhook_deliveries \
            WHERE status = 'pending' AND next_attempt_at <= $2 AND (locked_until IS NULL OR locked_until <= $2) \
            ORDER BY next_attempt_at, id LIMIT $5), \
         busy AS (\
            SELECT connection_id, COUNT(*) AS leased FROM webhook_deliveries \
            WHERE status = 'pending' AND locked_until > $2 GROUP BY connection_id), \
         ranked AS (\
            SELECT due.id, due.next_attempt_at, \
                ROW_NUMBER() OVER (PARTITION BY due.connection_id ORDER BY due.next_attempt_at, due.id) \
                    + COALESCE(busy.leased, 0) AS place \
            FROM due LEFT JOIN busy ON busy.connection_id = due.connection_id) \
         UPDATE webhook_deliveries SET locked_until = $1, attempts = attempts + 1 WHERE id IN (\
            SELECT id FROM webhook_deliveries WHERE id IN (\
                SELECT id FROM ranked WHERE place <= $4 ORDER BY next_attempt_at, id LIMIT $3) {skip_locked}) \
         RETURNING {COLUMNS}"
    ))
    .bind(now.plus_millis(lease_ms).millis())
    .bind(now.millis())
    .bind(limit)
    .bind(per_endpoint)
    .bind(limit.saturating_mul(8).max(256))
    .fetch_all(conn)
    .await?)
}

/// Whether any pending delivery is due now and not leased (a claim left it behind).
pub async fn any_due_unleased(conn: &mut Conn, now: Timestamp) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
         AND (locked_until IS NULL OR locked_until <= $1) LIMIT 1",
    )
    .bind(now.millis())
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Frees every lease (SQLite at start: one host owns the file, so no lease can be live).
pub async fn release_all_leases(conn: &mut Conn) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE webhook_deliveries SET locked_until = NULL WHERE status = 'pending' AND locked_until IS NOT NULL",
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// When the next pending delivery is due (its lease end if leased), if any.
pub async fn next_due(conn: &mut Conn) -> Result<Option<Timestamp>, StoreError> {
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(CASE WHEN locked_until IS NOT NULL AND locked_until > next_attempt_at THEN locked_until ELSE next_attempt_at END) \
         FROM webhook_deliveries WHERE status = 'pending'",
    )
    .fetch_one(conn)
    .await?;
    Ok(next.map(Timestamp::from_millis))
}

/// Records an attempt.
pub async fn insert_attempt(conn: &mut Conn, a: &Attempt) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_attempts (id, delivery_id, attempt, started_at, status_code, latency_ms, response_body, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(a.id.as_str())
    .bind(a.delivery_id.as_str())
    .bind(a.attempt)
    .bind(a.started_at.millis())
    .bind(a.status_code)
    .bind(a.latency_ms)
    .bind(a.response_body.as_deref())
    .bind(a.error.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a delivery delivered.
pub async fn mark_delivered(conn: &mut Conn, id: &DeliveryId, at: Timestamp) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $2, locked_until = NULL, last_error = NULL WHERE id = $1")
        .bind(id.as_str())
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Schedules the next attempt of a delivery.
pub async fn schedule_retry(
    conn: &mut Conn,
    id: &DeliveryId,
    next_attempt_at: Timestamp,
    error: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $2, locked_until = NULL, last_error = $3 WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(next_attempt_at.millis())
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a delivery failed for good.
pub async fn mark_failed(conn: &mut Conn, id: &DeliveryId, error: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, locked_until = NULL, last_error = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}

/// The deliveries of `session`, oldest first.
pub async fn for_session(conn: &mut Conn, session: &SessionId) -> Result<Vec<Delivery>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE session_id = $1 ORDER BY created_at, id"
    ))
    .bind(session.as_str())
    .fetch_all(conn)
    .await?)
}

/// Where a session's webhook delivery stands, without its body (for session cards).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeliverySummary {
    pub id: DeliveryId,
    pub session_id: SessionId,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

const SUMMARY_COLUMNS: &str =
    "d.id, d.session_id, d.status, d.attempts, d.next_attempt_at, d.last_error, d.delivered_at, d.created_at";

/// The delivery summaries of `session`, oldest first.
pub async fn summaries_of_session(conn: &mut Conn, session: &SessionId) -> Result<Vec<DeliverySummary>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM webhook_deliveries d WHERE d.session_id = $1 ORDER BY d.created_at, d.id"
    ))
    .bind(session.as_str())
    .fetch_all(conn)
    .await?)
}

/// The delivery summaries of every session of `task`, oldest first.
pub async fn summaries_of_task(conn: &mut Conn, task: &TaskId) -> Result<Vec<DeliverySummary>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM webhook_deliveries d JOIN agent_sessions s ON s.id = d.session_id \
         WHERE s.task_id = $1 ORDER BY d.created_at, d.id"
    ))
    .bind(task.as_str())
    .fetch_all(conn)
    .await?)
}

/// The attempts of `delivery`, in order.
pub async fn attempts(conn: &mut Conn, delivery: &DeliveryId) -> Result<Vec<Attempt>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, delivery_id, attempt, started_at, status_code, latency_ms, response_body, error \
         FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
    )
    .bind(delivery.as_str())
    .fetch_all(conn)
    .await?)
}

/// The delivery `id` of `workspace`.
pub async fn get(conn: &mut Conn, workspace: &WorkspaceId, id: &str) -> Result<Option<Delivery>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Filters for listing a connection's deliveries.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `pending`, `delivered` or `failed`; any when `None`.
    pub status: Option<String>,
    /// Created at or after (ms).
    pub since: Option<i64>,
    /// Created before (ms).
    pub until: Option<i64>,
    /// Created before this delivery (the previous page's last id).
    pub before_id: Option<String>,
}

/// A page of `connection`'s deliveries, newest first.
pub async fn for_connection(
    conn: &mut Conn,
    connection: &ConnectionId,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries WHERE connection_id = $1 AND ($2 = '' OR status = $2) \
         AND created_at >= $3 AND created_at < $4 AND ($5 = '' OR id < $5) ORDER BY id DESC LIMIT $6"
    ))
    .bind(connection.as_str())
    .bind(filter.status.as_deref().unwrap_or(""))
    .bind(filter.since.unwrap_or(i64::MIN))
    .bind(filter.until.unwrap_or(i64::MAX))
    .bind(filter.before_id.as_deref().unwrap_or(""))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Queues a delivery again, with the same id and a fresh retry schedule.
pub async fn requeue(conn: &mut Conn, id: &DeliveryId, now: Timestamp) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2, locked_until = NULL, retry_base = attempts, \
         delivered_at = NULL WHERE id = $1",
    )
    .bind(id.as_str())
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends the lease of attempt `attempt` without an outcome (the attempt was not made). Fenced on
/// the attempt: a lease that ended and was claimed again by another attempt is left alone.
pub async fn release(
    conn: &mut Conn,
    id: &DeliveryId,
    attempt: i64,
    next_attempt_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET locked_until = NULL, next_attempt_at = $2, attempts = attempts - 1 \
         WHERE id = $1 AND attempts = $3 AND status = 'pending'",
    )
    .bind(id.as_str())
    .bind(next_attempt_at.millis())
    .bind(attempt)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records many attempts in one statement.
pub async fn insert_attempts(conn: &mut Conn, attempts: &[Attempt]) -> Result<(), StoreError> {
    if attempts.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO webhook_attempts (id, delivery_id, attempt, started_at, status_code, latency_ms, response_body, error) VALUES {}",
        super::values_rows(attempts.len(), 8)
    );
    let mut query = sqlx::query(&sql);
    for a in attempts {
        query = query
            .bind(a.id.as_str())
            .bind(a.delivery_id.as_str())
            .bind(a.attempt)
            .bind(a.started_at.millis())
            .bind(a.status_code)
            .bind(a.latency_ms)
            .bind(a.response_body.as_deref())
            .bind(a.error.as_deref());
    }
    query.execute(conn).await?;
    Ok(())
}

/// An attempt as a row of [`super::json_rows`].
#[derive(serde::Serialize)]
struct AttemptRow<'a> {
    id: &'a str,
    delivery_id: &'a str,
    attempt: i64,
    started_at: i64,
    status_code: Option<i64>,
    latency_ms: i64,
    response_body: Option<&'a str>,
    error: Option<&'a str>,
}

/// Records `attempts` and marks the `delivered` deliveries delivered at `at`: on PostgreSQL in one
/// statement (rows as [`super::json_rows`]), else as [`insert_attempts`] and [`mark_delivered_many`].
pub async fn record_attempts(
    conn: &mut Conn,
    attempts: &[Attempt],
    delivered: &[&DeliveryId],
    at: Timestamp,
) -> Result<(), StoreError> {
    if !conn.is_postgres() {
        insert_attempts(conn, attempts).await?;
        return mark_delivered_many(conn, delivered, at).await;
    }
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH attempts AS ({}) \
             UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $3, locked_until = NULL, last_error = NULL \
             WHERE id = ANY ({})",
            super::json_rows::insert_sql(
                "webhook_attempts",
                "id, delivery_id, attempt, started_at, status_code, latency_ms, response_body, error",
                1
            ),
            super::json_rows::keys_sql(2, None),
        )
    });
    let rows: Vec<AttemptRow> = attempts
        .iter()
        .map(|a| AttemptRow {
            id: a.id.as_str(),
            delivery_id: a.delivery_id.as_str(),
            attempt: a.attempt,
            started_at: a.started_at.millis(),
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response_body: a.response_body.as_deref(),
            error: a.error.as_deref(),
        })
        .collect();
    let delivered: Vec<&str> = delivered.iter().map(|id| id.as_str()).collect();
    sqlx::query(&SQL)
        .bind(super::json_rows::encode(&rows)?)
        .bind(super::json_rows::encode(&delivered)?)
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks many deliveries delivered in one statement.
pub async fn mark_delivered_many(conn: &mut Conn, ids: &[&DeliveryId], at: Timestamp) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let placeholders: Vec<String> = (0..ids.len()).map(|n| format!("${}", n + 2)).collect();
    let sql = format!(
        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $1, locked_until = NULL, last_error = NULL \
         WHERE id IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(at.millis());
    for id in ids {
        query = query.bind(id.as_str());
    }
    query.execute(conn).await?;
    Ok(())
}
