//! Agent sessions, their activities and status changes.

use crate::domain::ids::{SessionId, TaskId, UserId, WorkspaceId};
use crate::domain::sessions::{Activity, Session, SessionStatus, StatusAnswer, StatusChange};
use crate::domain::time::Timestamp;

use super::{Conn, StoreError, conflict_or};

const SESSION_COLUMNS: &str = "id, workspace_id, task_id, bot_id, connection_id, connection_type, trigger_kind, \
     trigger_actor_id, comment_id, status, status_message, external_url, external_label, created_at, started_at, ended_at, updated_at, plugin_sha256, plugin_cpu_micros";
const ACTIVITY_COLUMNS: &str = "id, session_id, activity_type, body, action, parameter, result, provider_event_id, \
     provider_event_type, raw, idempotency_key, source, created_at";
const STATUS_CHANGE_COLUMNS: &str = "id, session_id, status, message, idempotency_key, source, created_at";

/// Inserts a session.
pub async fn insert(conn: &mut Conn, session: &Session) -> Result<(), StoreError> {
    insert_many(conn, std::slice::from_ref(session)).await
}

/// Inserts `sessions` in multi-row statements (runs of powers of two, see
/// [`super::runs_of_powers_of_two`]).
pub async fn insert_many(conn: &mut Conn, sessions: &[Session]) -> Result<(), StoreError> {
    for run in super::runs_of_powers_of_two(sessions) {
        let sql = format!(
            "INSERT INTO agent_sessions ({SESSION_COLUMNS}) VALUES {}",
            super::values_rows(run.len(), 19)
        );
        let mut query = sqlx::query(&sql);
        for s in run {
            query = query
                .bind(s.id.as_str())
                .bind(s.workspace_id.as_str())
                .bind(s.task_id.as_str())
                .bind(s.bot_id.as_str())
                .bind(s.connection_id.as_str())
                .bind(&s.connection_type)
                .bind(s.trigger_kind.as_str())
                .bind(s.trigger_actor_id.as_ref().map(|a| a.as_str()))
                .bind(s.comment_id.as_ref().map(|c| c.as_str()))
                .bind(s.status.as_str())
                .bind(s.status_message.as_deref())
                .bind(s.external_url.as_deref())
                .bind(s.external_label.as_deref())
                .bind(s.created_at.millis())
                .bind(s.started_at.map(Timestamp::millis))
                .bind(s.ended_at.map(Timestamp::millis))
                .bind(s.updated_at.millis())
                .bind(s.plugin_sha256.as_deref())
                .bind(s.plugin_cpu_micros);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A session as a row of [`super::json_rows`].
#[derive(serde::Serialize)]
struct SessionRow<'a> {
    id: &'a str,
    workspace_id: &'a str,
    task_id: &'a str,
    bot_id: &'a str,
    connection_id: &'a str,
    connection_type: &'a str,
    trigger_kind: &'a str,
    trigger_actor_id: Option<&'a str>,
    comment_id: Option<&'a str>,
    status: &'a str,
    status_message: Option<&'a str>,
    external_url: Option<&'a str>,
    external_label: Option<&'a str>,
    created_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    updated_at: i64,
    plugin_sha256: Option<&'a str>,
    plugin_cpu_micros: i64,
}

/// `sessions` as the JSON rows of an insert by [`super::json_rows`] (PostgreSQL).
pub(crate) fn json_rows(sessions: &[Session]) -> Result<String, StoreError> {
    let rows: Vec<SessionRow> = sessions
        .iter()
        .map(|s| SessionRow {
            id: s.id.as_str(),
            workspace_id: s.workspace_id.as_str(),
            task_id: s.task_id.as_str(),
            bot_id: s.bot_id.as_str(),
            connection_id: s.connection_id.as_str(),
            connection_type: &s.connection_type,
            trigger_kind: s.trigger_kind.as_str(),
            trigger_actor_id: s.trigger_actor_id.as_ref().map(|a| a.as_str()),
            comment_id: s.comment_id.as_ref().map(|c| c.as_str()),
            status: s.status.as_str(),
            status_message: s.status_message.as_deref(),
            external_url: s.external_url.as_deref(),
            external_label: s.external_label.as_deref(),
            created_at: s.created_at.millis(),
            started_at: s.started_at.map(Timestamp::millis),
            ended_at: s.ended_at.map(Timestamp::millis),
            updated_at: s.updated_at.millis(),
            plugin_sha256: s.plugin_sha256.as_deref(),
            plugin_cpu_micros: s.plugin_cpu_micros,
        })
        .collect();
    super::json_rows::encode(&rows)
}

/// The insert of [`json_rows`] bound at `${parameter}`.
pub(crate) fn insert_json_sql(parameter: usize) -> String {
    super::json_rows::insert_sql("agent_sessions", SESSION_COLUMNS, parameter)
}

/// What a plugin call leaves on its session, in one statement: one more step, `micros` more of
/// CPU time and, if given, the plugin version (wasm SHA-256) the session is pinned to.
pub async fn settle_call(
    conn: &mut Conn,
    session: &SessionId,
    pin: Option<&str>,
    micros: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE agent_sessions SET plugin_calls = plugin_calls + 1, plugin_cpu_micros = plugin_cpu_micros + $2, \
         plugin_sha256 = COALESCE($3, plugin_sha256) WHERE id = $1",
    )
    .bind(session.as_str())
    .bind(micros)
    .bind(pin)
    .execute(conn)
    .await?;
    Ok(())
}

/// A finished plugin call to settle on its session: as [`settle_call`].
#[derive(Debug, Clone)]
pub struct SettledCall {
    pub session: SessionId,
    pub pin: Option<String>,
    pub micros: i64,
}

/// A settled call as a row of [`super::json_rows`].
#[derive(serde::Serialize)]
struct SettledRow<'a> {
    session: &'a str,
    pin: Option<&'a str>,
    micros: i64,
}

/// `calls` as JSON rows (`session`, `pin`, `micros`) for [`super::start_outcomes`] (PostgreSQL).
pub(crate) fn settled_json_rows(calls: &[SettledCall]) -> Result<String, StoreError> {
    let rows: Vec<SettledRow> = calls
        .iter()
        .map(|c| SettledRow {
            session: c.session.as_str(),
            pin: c.pin.as_deref(),
            micros: c.micros,
        })
        .collect();
    super::json_rows::encode(&rows)
}

/// Whether `calls` settles a session more than once (one statement updates a row only once, so
/// such calls go one by one).
pub(crate) fn settles_a_session_twice(calls: &[SettledCall]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(calls.len());
    !calls.iter().all(|call| seen.insert(&call.session))
}

/// [`settle_call`] for many calls, a statement per run of rows
/// ([`super::runs_of_powers_of_two`]). A session settled twice in `calls` is settled twice.
pub async fn settle_calls(conn: &mut Conn, calls: &[SettledCall]) -> Result<(), StoreError> {
    if settles_a_session_twice(calls) {
        // One statement updates a row once: repeated sessions go one by one.
        for call in calls {
            settle_call(conn, &call.session, call.pin.as_deref(), call.micros).await?;
        }
        return Ok(());
    }
    for run in super::runs_of_powers_of_two(calls) {
        let (mut micros, mut pins, mut ids) = (String::new(), String::new(), Vec::with_capacity(run.len()));
        for n in 0..run.len() {
            let p = n * 3;
            micros.push_str(&format!(" WHEN ${} THEN ${}", p + 1, p + 2));
            pins.push_str(&format!(" WHEN ${} THEN ${}", p + 1, p + 3));
            ids.push(format!("${}", p + 1));
        }
        let sql = format!(
            "UPDATE agent_sessions SET plugin_calls = plugin_calls + 1, \
             plugin_cpu_micros = plugin_cpu_micros + CASE id{micros} ELSE 0 END, \
             plugin_sha256 = COALESCE(CASE id{pins} END, plugin_sha256) WHERE id IN ({})",
            ids.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for call in run {
            query = query
                .bind(call.session.as_str())
                .bind(call.micros)
                .bind(call.pin.as_deref());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Plugin calls made on `session`'s events so far (its steps).
pub async fn plugin_calls(conn: &mut Conn, session: &SessionId) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT plugin_calls FROM agent_sessions WHERE id = $1")
            .bind(session.as_str())
            .fetch_optional(conn)
            .await?
            .unwrap_or(0),
    )
}

/// The plugin versions (wasm SHA-256) unfinished sessions run on.
pub async fn plugin_versions_in_use(conn: &mut Conn) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT plugin_sha256 FROM agent_sessions          WHERE status IN ('queued', 'running') AND plugin_sha256 IS NOT NULL",
    )
    .fetch_all(conn)
    .await?)
}

/// Records the plugin version (wasm SHA-256) `session` runs on.
pub async fn set_plugin(conn: &mut Conn, session: &SessionId, sha256: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE agent_sessions SET plugin_sha256 = $2 WHERE id = $1")
        .bind(session.as_str())
        .bind(sha256)
        .execute(conn)
        .await?;
    Ok(())
}

/// The session `id` of `workspace`.
pub async fn get(conn: &mut Conn, workspace: &WorkspaceId, id: &str) -> Result<Option<Session>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM agent_sessions WHERE workspace_id = $1 AND id = $2"
    ))
    .bind(workspace.as_str())
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// The session `id`, locked for the rest of `tx` so concurrent status changes (the wrapper's and
/// the host's) apply one after the other instead of both starting from the same status. A no-op
/// update takes the row lock on PostgreSQL; on SQLite the single writer already serialises.
pub async fn get_locked(tx: &mut Conn, id: &SessionId) -> Result<Option<Session>, StoreError> {
    sqlx::query("UPDATE agent_sessions SET updated_at = updated_at WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    get_any(tx, id).await
}

/// The session `id` whatever its workspace (workers, which hold a trusted id).
pub async fn get_any(conn: &mut Conn, id: &SessionId) -> Result<Option<Session>, StoreError> {
    Ok(
        sqlx::query_as(&format!("SELECT {SESSION_COLUMNS} FROM agent_sessions WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// The sessions of `task`, oldest first.
pub async fn for_task(conn: &mut Conn, task: &TaskId) -> Result<Vec<Session>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM agent_sessions WHERE task_id = $1 ORDER BY created_at, id"
    ))
    .bind(task.as_str())
    .fetch_all(conn)
    .await?)
}

/// Writes a session's status, message and lifecycle times.
pub async fn update_status(conn: &mut Conn, s: &Session) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE agent_sessions SET status = $2, status_message = $3, started_at = $4, ended_at = $5, updated_at = $6 WHERE id = $1",
    )
    .bind(s.id.as_str())
    .bind(s.status.as_str())
    .bind(s.status_message.as_deref())
    .bind(s.started_at.map(Timestamp::millis))
    .bind(s.ended_at.map(Timestamp::millis))
    .bind(s.updated_at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the link shown on the session card.
pub async fn set_external_link(
    conn: &mut Conn,
    id: &SessionId,
    url: &str,
    label: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE agent_sessions SET external_url = $2, external_label = $3, updated_at = $4 WHERE id = $1")
        .bind(id.as_str())
        .bind(url)
        .bind(label)
        .bind(at.millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts an activity.
pub async fn insert_activity(conn: &mut Conn, a: &Activity) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO session_activities ({ACTIVITY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(a.id.as_str())
    .bind(a.session_id.as_str())
    .bind(a.activity_type.as_str())
    .bind(&a.body)
    .bind(a.action.as_deref())
    .bind(a.parameter.as_deref())
    .bind(a.result.as_deref())
    .bind(a.provider_event_id.as_deref())
    .bind(a.provider_event_type.as_deref())
    .bind(a.raw.as_deref())
    .bind(a.idempotency_key.as_deref())
    .bind(a.source.as_str())
    .bind(a.created_at.millis())
    .execute(conn)
    .await
    .map_err(conflict_or)?;
    Ok(())
}

/// The activity recorded on `session` under `key`.
pub async fn activity_by_key(conn: &mut Conn, session: &SessionId, key: &str) -> Result<Option<Activity>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ACTIVITY_COLUMNS} FROM session_activities WHERE session_id = $1 AND idempotency_key = $2"
    ))
    .bind(session.as_str())
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// `columns` of `table`, each qualified with `alias.` (for joins).
fn qualified(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The activities of every session of `task`, by session, in the order they were recorded.
pub async fn activities_of_task(conn: &mut Conn, task: &TaskId) -> Result<Vec<Activity>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {} FROM session_activities a JOIN agent_sessions s ON s.id = a.session_id \
         WHERE s.task_id = $1 ORDER BY a.session_id, a.id",
        qualified(ACTIVITY_COLUMNS, "a")
    ))
    .bind(task.as_str())
    .fetch_all(conn)
    .await?)
}

/// The status changes of every session of `task`, by session, oldest first.
pub async fn status_changes_of_task(conn: &mut Conn, task: &TaskId) -> Result<Vec<StatusChange>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {} FROM session_status_changes c JOIN agent_sessions s ON s.id = c.session_id \
         WHERE s.task_id = $1 ORDER BY c.session_id, c.id",
        qualified(STATUS_CHANGE_COLUMNS, "c")
    ))
    .bind(task.as_str())
    .fetch_all(conn)
    .await?)
}

/// The activities of `session`, in the order they were recorded.
pub async fn activities(conn: &mut Conn, session: &SessionId) -> Result<Vec<Activity>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ACTIVITY_COLUMNS} FROM session_activities WHERE session_id = $1 ORDER BY id"
    ))
    .bind(session.as_str())
    .fetch_all(conn)
    .await?)
}

/// Up to `limit` activities of `session` with ids above `after` (`act_…`), in id order.
pub async fn activities_after(
    conn: &mut Conn,
    session: &SessionId,
    after: &str,
    limit: i64,
) -> Result<Vec<Activity>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ACTIVITY_COLUMNS} FROM session_activities WHERE session_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(session.as_str())
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Up to `limit` status changes of `session` with ids above `after` (`ssc_…`), in id order.
pub async fn status_changes_after(
    conn: &mut Conn,
    session: &SessionId,
    after: &str,
    limit: i64,
) -> Result<Vec<StatusChange>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {STATUS_CHANGE_COLUMNS} FROM session_status_changes WHERE session_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    ))
    .bind(session.as_str())
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Inserts a status change record.
pub async fn insert_status_change(conn: &mut Conn, c: &StatusChange) -> Result<(), StoreError> {
    insert_status_changes(conn, std::slice::from_ref(c)).await
}

/// Inserts status change records, a statement per run of rows ([`super::runs_of_powers_of_two`]).
pub async fn insert_status_changes(conn: &mut Conn, changes: &[StatusChange]) -> Result<(), StoreError> {
    for run in super::runs_of_powers_of_two(changes) {
        let sql = format!(
            "INSERT INTO session_status_changes ({STATUS_CHANGE_COLUMNS}) VALUES {}",
            super::values_rows(run.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for c in run {
            query = query
                .bind(c.id.as_str())
                .bind(c.session_id.as_str())
                .bind(c.status.as_str())
                .bind(c.message.as_deref())
                .bind(c.idempotency_key.as_deref())
                .bind(c.source.as_str())
                .bind(c.created_at.millis());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A status change as a row of [`super::json_rows`].
#[derive(serde::Serialize)]
struct StatusChangeRow<'a> {
    id: &'a str,
    session_id: &'a str,
    status: &'a str,
    message: Option<&'a str>,
    idempotency_key: Option<&'a str>,
    source: &'a str,
    created_at: i64,
}

/// `changes` as the JSON rows of an insert by [`super::json_rows`] (PostgreSQL).
pub(crate) fn status_change_json_rows(changes: &[StatusChange]) -> Result<String, StoreError> {
    let rows: Vec<StatusChangeRow> = changes
        .iter()
        .map(|c| StatusChangeRow {
            id: c.id.as_str(),
            session_id: c.session_id.as_str(),
            status: c.status.as_str(),
            message: c.message.as_deref(),
            idempotency_key: c.idempotency_key.as_deref(),
            source: c.source.as_str(),
            created_at: c.created_at.millis(),
        })
        .collect();
    super::json_rows::encode(&rows)
}

/// The insert of [`status_change_json_rows`] bound at `${parameter}`.
pub(crate) fn insert_status_changes_json_sql(parameter: usize) -> String {
    super::json_rows::insert_sql("session_status_changes", STATUS_CHANGE_COLUMNS, parameter)
}

/// The answer recorded for `session`'s status request with idempotency `key`.
pub async fn status_answer_by_key(
    conn: &mut Conn,
    session: &SessionId,
    key: &str,
) -> Result<Option<StatusAnswer>, StoreError> {
    let row: Option<(String, Option<String>, i64, Timestamp)> = sqlx::query_as(
        "SELECT status, message, changed, at FROM session_status_requests WHERE session_id = $1 AND idempotency_key = $2",
    )
    .bind(session.as_str())
    .bind(key)
    .fetch_optional(conn)
    .await?;
    row.map(|(status, message, changed, at)| {
        Ok(StatusAnswer {
            status: SessionStatus::parse(&status).map_err(|e| StoreError::Database(sqlx::Error::Decode(e.into())))?,
            message,
            changed: changed != 0,
            at,
        })
    })
    .transpose()
}

/// Records the answer to `session`'s status request with idempotency `key`.
pub async fn insert_status_answer(
    conn: &mut Conn,
    session: &SessionId,
    key: &str,
    answer: &StatusAnswer,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO session_status_requests (session_id, idempotency_key, status, message, changed, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(session.as_str())
    .bind(key)
    .bind(answer.status.as_str())
    .bind(answer.message.as_deref())
    .bind(i64::from(answer.changed))
    .bind(answer.at.millis())
    .execute(conn)
    .await
    .map_err(conflict_or)?;
    Ok(())
}

/// The status changes of `session`, oldest first.
pub async fn status_changes(conn: &mut Conn, session: &SessionId) -> Result<Vec<StatusChange>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {STATUS_CHANGE_COLUMNS} FROM session_status_changes WHERE session_id = $1 ORDER BY id"
    ))
    .bind(session.as_str())
    .fetch_all(conn)
    .await?)
}

/// The latest session of `bot` on `task`, if any.
pub async fn latest_of_bot_on_task(
    conn: &mut Conn,
    task: &TaskId,
    bot: &UserId,
) -> Result<Option<Session>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM agent_sessions WHERE task_id = $1 AND bot_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1"
    ))
    .bind(task.as_str())
    .bind(bot.as_str())
    .fetch_optional(conn)
    .await?)
}

/// The unfinished sessions of `bot`.
pub async fn open_for_bot(conn: &mut Conn, bot: &UserId) -> Result<Vec<Session>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM agent_sessions WHERE bot_id = $1 AND status IN ('queued', 'running') ORDER BY created_at, id"
    ))
    .bind(bot.as_str())
    .fetch_all(conn)
    .await?)
}
