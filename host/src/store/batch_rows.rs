//! What a write batch writes just before it commits ([`crate::commit`]): the rows its units added
//! that nothing reads before then (new tasks, new sessions, task events, status changes, start
//! jobs), the changed tasks' new fields, and its audit records, appended to the chain with one
//! update of the head.
//!
//! On PostgreSQL that is two statements whatever the batch holds: the rows of all six writes in
//! one (`WITH` inserts from [`super::json_rows`]), the hashed records and the head's move in the
//! other ([`ChainHead`]), which locks the head until the commit. On SQLite, where a statement
//! costs no round trip, each table's rows go in multi-row `VALUES` statements.

use std::sync::LazyLock;

use crate::audit::{Actor, Entry};
use crate::domain::audit::ChainKey;
use crate::domain::sessions::{Session, StatusChange};
use crate::domain::tasks::{Task, TaskEvent};
use crate::domain::time::Timestamp;

use super::audit::ChainHead;
use super::jobs::NewJob;
use super::{Conn, StoreError, audit, jobs, sessions, tasks};

/// The rows a batch adds at commit.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchRows<'a> {
    pub tasks: &'a [Task],
    /// Tasks whose editable fields changed (each once, in id order).
    pub changed_tasks: &'a [Task],
    pub sessions: &'a [Session],
    pub task_events: &'a [TaskEvent],
    pub status_changes: &'a [StatusChange],
    pub jobs: &'a [NewJob],
}

impl BatchRows<'_> {
    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.changed_tasks.is_empty()
            && self.sessions.is_empty()
            && self.task_events.is_empty()
            && self.status_changes.is_empty()
            && self.jobs.is_empty()
    }
}

/// Writes `rows` (tasks first, then sessions: the others refer to them; changed tasks are
/// updated in the same statement, which cannot see the new rows — nothing updates a task its batch
/// created, whose id nobody outside the batch knows yet) and appends `audit` to
/// the chain keyed with `key` through `head`, in the caller's transaction.
pub async fn write(
    conn: &mut Conn,
    key: &ChainKey,
    head: &ChainHead,
    rows: BatchRows<'_>,
    audit: &[(Actor, Entry, Timestamp)],
) -> Result<(), StoreError> {
    if !conn.is_postgres() {
        tasks::insert_each(conn, rows.tasks).await?;
        tasks::update_each(conn, rows.changed_tasks).await?;
        sessions::insert_many(conn, rows.sessions).await?;
        tasks::insert_events(conn, rows.task_events).await?;
        sessions::insert_status_changes(conn, rows.status_changes).await?;
        jobs::insert_many(conn, rows.jobs).await?;
        return audit::append_many(conn, key, audit).await;
    }
    if !rows.is_empty() {
        // The five inserts and the update (foreign keys are checked at the statement's end).
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "WITH new_tasks AS ({}), changed_tasks AS ({}), new_sessions AS ({}), new_events AS ({}), \
                 new_changes AS ({}), new_jobs AS ({}) SELECT 1",
                tasks::insert_json_sql(1),
                tasks::update_json_sql(2),
                sessions::insert_json_sql(3),
                tasks::insert_events_json_sql(4),
                sessions::insert_status_changes_json_sql(5),
                jobs::insert_json_sql(6),
            )
        });
        sqlx::query(&SQL)
            .bind(tasks::json_rows(rows.tasks)?)
            .bind(tasks::json_rows(rows.changed_tasks)?)
            .bind(sessions::json_rows(rows.sessions)?)
            .bind(tasks::event_json_rows(rows.task_events)?)
            .bind(sessions::status_change_json_rows(rows.status_changes)?)
            .bind(jobs::json_rows(rows.jobs)?)
            .execute(&mut *conn)
            .await?;
    }
    head.append(conn, key, audit).await
}
