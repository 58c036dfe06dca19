//! Durable background jobs: a row exists while a job is pending. Workers claim due jobs by
//! leasing them (`locked_until`), so a job whose worker died is picked up again when the lease ends.

use crate::domain::ids::{JobId, SessionId};
use crate::domain::jobs::{self, JobKind};
use crate::domain::time::Timestamp;

use super::{Backend, Conn, StoreError};

/// A pending job, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Job {
    pub id: JobId,
    /// What to do, e.g. `start_session` ([`Job::kind`] reads it with its payload).
    pub kind: String,
    pub session_id: Option<SessionId>,
    /// JSON arguments.
    pub payload: String,
    /// Attempts so far, including the one that claimed it.
    pub attempts: i64,
    /// When it was leased to this host's worker at insert and handed over in memory (`None`:
    /// claimed from the table).
    #[sqlx(skip)]
    pub handed_at: Option<Timestamp>,
    /// A handed start's rows, as the write that opened its session had them (`None`: read them).
    #[sqlx(skip)]
    pub handed_start: Option<Box<super::session_start::StartRows>>,
}

impl Job {
    /// What the job does, typed.
    pub fn job_kind(&self) -> Result<JobKind, crate::domain::DomainError> {
        JobKind::parse(&self.kind, &self.payload)
    }
}

/// Queues `job` for `session` to run at `run_at`.
pub async fn insert(
    conn: &mut Conn,
    job: &JobKind,
    session: Option<&SessionId>,
    run_at: Timestamp,
) -> Result<JobId, StoreError> {
    let id = JobId::generate();
    let payload = job.payload(session.map(SessionId::as_str).unwrap_or_default());
    insert_row(conn, &id, job.name(), session, &payload, run_at, run_at, None).await?;
    Ok(id)
}

/// A job row to write with others ([`insert_many`]).
#[derive(Debug, Clone)]
pub struct NewJob {
    id: JobId,
    kind: &'static str,
    session: Option<SessionId>,
    payload: String,
    run_at: Timestamp,
    created_at: Timestamp,
    locked_until: Option<Timestamp>,
}

impl NewJob {
    /// The row of `job` for `session`, due at `now` and left for a claim.
    pub fn due(job: &JobKind, session: &SessionId, now: Timestamp) -> NewJob {
        NewJob {
            id: JobId::generate(),
            kind: job.name(),
            session: Some(session.clone()),
            payload: job.payload(session.as_str()),
            run_at: now,
            created_at: now,
            locked_until: None,
        }
    }

    /// The row of `job` for `session` due at `now`, already leased until `locked_until` as a claim
    /// by this host would (its first attempt counted): for a job handed straight to the worker
    /// ([`crate::handoff`]). With the job as a claim returns it.
    pub fn leased(job: &JobKind, session: &SessionId, now: Timestamp, locked_until: Timestamp) -> (NewJob, Job) {
        let (kind, payload) = (job.name(), job.payload(session.as_str()));
        let row = NewJob {
            id: JobId::generate(),
            kind,
            session: Some(session.clone()),
            payload,
            run_at: now,
            created_at: now,
            locked_until: Some(locked_until),
        };
        let leased = Job {
            id: row.id.clone(),
            kind: kind.to_owned(),
            session_id: Some(session.clone()),
            payload: row.payload.clone(),
            attempts: 1,
            handed_at: Some(now),
            handed_start: None,
        };
        (row, leased)
    }
}

/// Writes `jobs` in multi-row statements (runs of powers of two, see
/// [`super::runs_of_powers_of_two`]).
pub async fn insert_many(conn: &mut Conn, jobs: &[NewJob]) -> Result<(), StoreError> {
    for run in super::runs_of_powers_of_two(jobs) {
        let sql = format!(
            "INSERT INTO jobs (id, kind, session_id, payload, run_at, locked_until, attempts, created_at) VALUES {}",
            super::values_rows(run.len(), 8)
        );
        let mut query = sqlx::query(&sql);
        for job in run {
            query = query
                .bind(job.id.as_str())
                .bind(job.kind)
                .bind(job.session.as_ref().map(SessionId::as_str))
                .bind(job.payload.as_str())
                .bind(job.run_at.millis())
                .bind(job.locked_until.map(Timestamp::millis))
                .bind(i64::from(job.locked_until.is_some()))
                .bind(job.created_at.millis());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A job as a row of [`super::json_rows`].
#[derive(serde::Serialize)]
struct JobRow<'a> {
    id: &'a str,
    kind: &'a str,
    session_id: Option<&'a str>,
    payload: &'a str,
    run_at: i64,
    locked_until: Option<i64>,
    attempts: i64,
    created_at: i64,
}

/// `jobs` as the JSON rows of an insert by [`super::json_rows`] (PostgreSQL), as [`insert_many`]
/// writes them.
pub(crate) fn json_rows(jobs: &[NewJob]) -> Result<String, StoreError> {
    let rows: Vec<JobRow> = jobs
        .iter()
        .map(|job| JobRow {
            id: job.id.as_str(),
            kind: job.kind,
            session_id: job.session.as_ref().map(SessionId::as_str),
            payload: &job.payload,
            run_at: job.run_at.millis(),
            locked_until: job.locked_until.map(Timestamp::millis),
            attempts: i64::from(job.locked_until.is_some()),
            created_at: job.created_at.millis(),
        })
        .collect();
    super::json_rows::encode(&rows)
}

/// The insert of [`json_rows`] bound at `${parameter}`.
pub(crate) fn insert_json_sql(parameter: usize) -> String {
    super::json_rows::insert_sql(
        "jobs",
        "id, kind, session_id, payload, run_at, locked_until, attempts, created_at",
        parameter,
    )
}

/// Queues `job` with a chosen `id` (a plugin's timer id), created at `now` and due at `run_at`.
pub async fn insert_with_id(
    conn: &mut Conn,
    id: &JobId,
    job: &JobKind,
    session: &SessionId,
    run_at: Timestamp,
    now: Timestamp,
) -> Result<(), StoreError> {
    let payload = job.payload(session.as_str());
    insert_row(conn, id, job.name(), Some(session), &payload, run_at, now, None).await
}

/// Writes one job row; leased (`locked_until`, its first attempt counted) or not.
#[allow(clippy::too_many_arguments)]
async fn insert_row(
    conn: &mut Conn,
    id: &JobId,
    kind: &str,
    session: Option<&SessionId>,
    payload: &str,
    run_at: Timestamp,
    created_at: Timestamp,
    locked_until: Option<Timestamp>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, session_id, payload, run_at, locked_until, attempts, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.as_str())
    .bind(kind)
    .bind(session.map(SessionId::as_str))
    .bind(payload)
    .bind(run_at.millis())
    .bind(locked_until.map(Timestamp::millis))
    .bind(i64::from(locked_until.is_some()))
    .bind(created_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes the pending job `id` of `kind` for `session`, unless a worker holds it; whether one was removed.
pub async fn delete_pending(
    conn: &mut Conn,
    id: &str,
    kind: &str,
    session: &SessionId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "DELETE FROM jobs WHERE id = $1 AND kind = $2 AND session_id = $3          AND (locked_until IS NULL OR locked_until < $4)",
    )
    .bind(id)
    .bind(kind)
    .bind(session.as_str())
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Jobs of `kind` of `session`, whether waiting or running now.
pub async fn count_of_session(conn: &mut Conn, kind: &str, session: &SessionId) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = $1 AND session_id = $2")
            .bind(kind)
            .bind(session.as_str())
            .fetch_one(conn)
            .await?,
    )
}

/// Jobs of `kind` waiting for `session` (not counting one a worker runs now, such as the timer
/// firing in the current call).
pub async fn count_waiting(
    conn: &mut Conn,
    kind: &str,
    session: &SessionId,
    now: Timestamp,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND session_id = $2 AND (locked_until IS NULL OR locked_until <= $3)",
    )
    .bind(kind)
    .bind(session.as_str())
    .bind(now.millis())
    .fetch_one(conn)
    .await?)
}

/// How long claimed jobs are leased to their worker.
#[derive(Debug, Clone, Copy)]
pub struct Leases {
    /// Every kind but model calls: a plugin call's time limit plus margins.
    pub plugin_ms: i64,
    /// Model calls ([`jobs::MODEL_CALL`]): the model request's time limit plus margins, so a slow
    /// completion is not claimed again while it is still being answered.
    pub model_ms: i64,
}

/// Leases up to `limit` due jobs (each until `now` plus its kind's lease) and returns them.
pub async fn claim_due(
    conn: &mut Conn,
    backend: Backend,
    now: Timestamp,
    leases: Leases,
    limit: i64,
) -> Result<Vec<Job>, StoreError> {
    let skip_locked = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // One job per session at a time, in order: a session's start, events and timers never run
    // side by side (e.g. a cancel waits for the start it cancels). Candidates are the earliest
    // due jobs (a bounded window, so a large backlog costs the same as a small one).
    Ok(sqlx::query_as(&format!(
        "WITH due AS (\
            SELECT id, session_id, run_at FROM jobs \
            WHERE run_at <= $2 AND (locked_until IS NULL OR locked_until <= $2) \
            ORDER BY run_at, id LIMIT $4), \
         ranked AS (\
            SELECT due.id, due.run_at, ROW_NUMBER() OVER (\
                PARTITION BY COALESCE(due.session_id, due.id) ORDER BY due.run_at, due.id) AS place \
            FROM due WHERE NOT EXISTS (\
                SELECT 1 FROM jobs busy WHERE busy.session_id = due.session_id AND busy.locked_until > $2)) \
         UPDATE jobs SET locked_until = CASE WHEN kind = '{model_call}' THEN $5 ELSE $1 END, \
            attempts = attempts + 1 WHERE id IN (\
            SELECT id FROM jobs WHERE id IN (\
                SELECT id FROM ranked WHERE place = 1 ORDER BY run_at, id LIMIT $3) {skip_locked}) \
         RETURNING id, kind, session_id, payload, attempts",
        model_call = jobs::MODEL_CALL
    ))
    .bind(now.plus_millis(leases.plugin_ms).millis())
    .bind(now.millis())
    .bind(limit)
    .bind(limit.saturating_mul(8).max(256))
    .bind(now.plus_millis(leases.model_ms).millis())
    .fetch_all(conn)
    .await?)
}

/// When the next job is due, if any is pending and unleased (lets workers sleep exactly).
pub async fn next_due(conn: &mut Conn) -> Result<Option<Timestamp>, StoreError> {
    let next: Option<i64> = sqlx::query_scalar("SELECT MIN(COALESCE(locked_until, run_at)) FROM jobs")
        .fetch_one(conn)
        .await?;
    Ok(next.map(Timestamp::from_millis))
}

/// Removes a finished job.
pub async fn complete(conn: &mut Conn, id: &JobId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes a finished job; whether other jobs of its session are left (one may have waited for
/// this one: jobs of a session run one at a time).
pub async fn complete_and_look(conn: &mut Conn, id: &JobId) -> Result<bool, StoreError> {
    complete_many_and_look(conn, std::slice::from_ref(id)).await
}

/// [`complete_and_look`] for many jobs: whether any of their sessions has other jobs (a statement
/// per run of rows, [`super::runs_of_powers_of_two`]).
pub async fn complete_many_and_look(conn: &mut Conn, ids: &[JobId]) -> Result<bool, StoreError> {
    let mut others = false;
    for run in super::runs_of_powers_of_two(ids) {
        let ids = (1..=run.len()).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ");
        // The jobs deleted together do not count as each other's: a later run may still count
        // this one's (a wake-up too many, never one too few).
        let sql = format!(
            "DELETE FROM jobs WHERE id IN ({ids}) RETURNING (\
                SELECT COUNT(*) FROM jobs later WHERE later.session_id = jobs.session_id AND later.id NOT IN ({ids}))"
        );
        let mut query = sqlx::query_scalar::<_, i64>(&sql);
        for id in run {
            query = query.bind(id.as_str());
        }
        let counts = query.fetch_all(&mut *conn).await?;
        others |= counts.iter().any(|&count| count > 0);
    }
    Ok(others)
}

/// Gives a job handed to this host's worker back to the claim path (the worker had no room for
/// it), unless a claim took it meanwhile.
pub async fn release_handed(conn: &mut Conn, id: &JobId) -> Result<(), StoreError> {
    sqlx::query("UPDATE jobs SET locked_until = NULL, attempts = attempts - 1 WHERE id = $1 AND attempts = 1")
        .bind(id.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes a finished job if its claim numbered `attempts` is still the latest (a worker whose
/// lease ran out while it worked may have been overtaken by another claim); whether it was.
/// Fences the completions that must happen once, e.g. a model call's callback.
pub async fn complete_claimed(conn: &mut Conn, id: &JobId, attempts: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM jobs WHERE id = $1 AND attempts = $2")
        .bind(id.as_str())
        .bind(attempts)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// [`retry_at`] if the claim numbered `attempts` is still the latest; whether it was.
pub async fn retry_claimed_at(
    conn: &mut Conn,
    id: &JobId,
    attempts: i64,
    run_at: Timestamp,
    error: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE jobs SET run_at = $3, locked_until = NULL, last_error = $4 WHERE id = $1 AND attempts = $2",
    )
    .bind(id.as_str())
    .bind(attempts)
    .bind(run_at.millis())
    .bind(error)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Releases a job to run again at `run_at`, noting why the last attempt failed.
pub async fn retry_at(conn: &mut Conn, id: &JobId, run_at: Timestamp, error: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE jobs SET run_at = $2, locked_until = NULL, last_error = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(run_at.millis())
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}

/// Puts a claimed job back to run at `run_at` without counting the claim as an attempt (it never
/// ran: its workspace or connection was at its fair share).
pub async fn defer(conn: &mut Conn, id: &JobId, run_at: Timestamp) -> Result<(), StoreError> {
    sqlx::query("UPDATE jobs SET run_at = $2, locked_until = NULL, attempts = attempts - 1 WHERE id = $1")
        .bind(id.as_str())
        .bind(run_at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Frees every lease (SQLite at start: one host owns the file, so no lease can be live).
pub async fn release_all_leases(conn: &mut Conn) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("UPDATE jobs SET locked_until = NULL WHERE locked_until IS NOT NULL")
            .execute(conn)
            .await?
            .rows_affected(),
    )
}
