//! What a batch of finished session starts writes ([`crate::sessions::started`]): each call settled
//! on its session, the webhooks it queued put in the outbox, its job deleted — and whether the
//! finished jobs' sessions have other jobs waiting.
//!
//! On PostgreSQL that is one statement whatever the batch holds (`WITH`, rows as
//! [`super::json_rows`], webhook bodies as bytes beside them); on SQLite, where a statement costs
//! no round trip, one per kind of write.

use std::sync::LazyLock;

use crate::domain::ids::JobId;
use crate::domain::time::Timestamp;

use super::deliveries::{self, Delivery};
use super::sessions::{self, SettledCall};
use super::{Conn, StoreError, jobs};

/// Settles `calls`, inserts `outbox` (each leased until its `Some(locked_until)` or not) and
/// deletes the `finished` jobs; whether any of their sessions has another job.
pub async fn write(
    conn: &mut Conn,
    calls: &[SettledCall],
    outbox: &[(Delivery, Option<Timestamp>)],
    finished: &[JobId],
) -> Result<bool, StoreError> {
    if !conn.is_postgres() || sessions::settles_a_session_twice(calls) {
        sessions::settle_calls(conn, calls).await?;
        deliveries::insert_many(conn, outbox).await?;
        return jobs::complete_many_and_look(conn, finished).await;
    }
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH settled AS (\
                UPDATE agent_sessions s SET plugin_calls = s.plugin_calls + 1, \
                    plugin_cpu_micros = s.plugin_cpu_micros + r.micros, plugin_sha256 = COALESCE(r.pin, s.plugin_sha256) \
                FROM json_to_recordset($1::json) AS r(session text, pin text, micros bigint) \
                WHERE s.id = r.session AND s.id = ANY ({})), \
             outbox AS ({}), \
             finished AS (SELECT json_array_elements_text($3::json) AS id), \
             done AS (DELETE FROM jobs WHERE id = ANY ({}) RETURNING session_id) \
             SELECT EXISTS (SELECT 1 FROM jobs later WHERE later.session_id IN (SELECT session_id FROM done) \
                AND later.id NOT IN (SELECT id FROM finished))",
            super::json_rows::keys_sql(1, Some("session")),
            deliveries::insert_json_sql(2, 4),
            super::json_rows::keys_sql(3, None),
        )
    });
    // The jobs' other rows as they were before the delete (a statement's parts see one snapshot),
    // minus the deleted ones: a job a concurrent batch deletes meanwhile may still count (a
    // wake-up too many, never one too few), as in `jobs::complete_many_and_look`.
    let (outbox_rows, outbox_bodies) = deliveries::json_rows(outbox)?;
    let others: bool = sqlx::query_scalar(&SQL)
        .bind(sessions::settled_json_rows(calls)?)
        .bind(outbox_rows)
        .bind(super::json_rows::encode(
            &finished.iter().map(JobId::as_str).collect::<Vec<_>>(),
        )?)
        .bind(outbox_bodies)
        .fetch_one(&mut *conn)
        .await?;
    Ok(others)
}
