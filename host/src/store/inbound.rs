//! Provider webhooks (`inbound`): each connection's endpoint spec, the route keys plugins bound to
//! sessions, and the events received (once per provider event id).

use crate::domain::ids::{ConnectionId, InboundEventId, SessionId};
use crate::domain::time::Timestamp;

use super::{Conn, StoreError};

/// An event as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct InboundEvent {
    pub id: InboundEventId,
    pub connection_id: ConnectionId,
    /// The provider's event id (the deduplication key).
    pub event_id: String,
    pub route_key: Option<String>,
    /// The session it goes to; `None` while no session routed its key.
    pub session_id: Option<SessionId>,
    pub method: String,
    pub path: String,
    /// JSON array of `[name, value]` pairs.
    pub headers: String,
    pub body: Vec<u8>,
    pub received_at: i64,
}

/// The spec (JSON) of `connection`'s endpoint, if its plugin opened one.
pub async fn endpoint(conn: &mut Conn, connection: &ConnectionId) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT spec FROM inbound_endpoints WHERE connection_id = $1")
            .bind(connection.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// Opens `connection`'s endpoint with `spec`, or replaces its spec.
pub async fn put_endpoint(
    conn: &mut Conn,
    connection: &ConnectionId,
    spec: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO inbound_endpoints (connection_id, spec, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (connection_id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
    )
    .bind(connection.as_str())
    .bind(spec)
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Serialises, per connection, the transactions that store events and bind routes (until the
/// transaction ends), so an event stored while its key is being routed is seen by one of the
/// two: on PostgreSQL a transaction-scoped advisory lock; SQLite's single writer already does it.
pub async fn lock_routes(conn: &mut Conn, connection: &ConnectionId) -> Result<(), StoreError> {
    if matches!(conn, Conn::Postgres(_)) {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(format!("inbound:{connection}"))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The session `key` routes to.
pub async fn route(conn: &mut Conn, connection: &ConnectionId, key: &str) -> Result<Option<SessionId>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT session_id FROM inbound_routes WHERE connection_id = $1 AND route_key = $2")
            .bind(connection.as_str())
            .bind(key)
            .fetch_optional(conn)
            .await?,
    )
}

/// Routes `key` to `session` (moving it if it routed elsewhere).
pub async fn put_route(
    conn: &mut Conn,
    connection: &ConnectionId,
    key: &str,
    session: &SessionId,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO inbound_routes (connection_id, route_key, session_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (connection_id, route_key) DO UPDATE SET session_id = excluded.session_id",
    )
    .bind(connection.as_str())
    .bind(key)
    .bind(session.as_str())
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores `event` unless the connection already has one with its event id; whether it was new.
pub async fn insert_event(conn: &mut Conn, event: &InboundEvent) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO inbound_events (id, connection_id, event_id, route_key, session_id, method, path, headers, body, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (connection_id, event_id) DO NOTHING",
    )
    .bind(event.id.as_str())
    .bind(event.connection_id.as_str())
    .bind(&event.event_id)
    .bind(event.route_key.as_deref())
    .bind(event.session_id.as_ref().map(SessionId::as_str))
    .bind(&event.method)
    .bind(&event.path)
    .bind(&event.headers)
    .bind(event.body.clone())
    .bind(event.received_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Events of `connection` no session has routed yet.
pub async fn count_waiting(conn: &mut Conn, connection: &ConnectionId) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM inbound_events WHERE connection_id = $1 AND session_id IS NULL")
            .bind(connection.as_str())
            .fetch_one(conn)
            .await?,
    )
}

/// How many events `connection` has stored, and when the last arrived (milliseconds).
pub async fn received(conn: &mut Conn, connection: &ConnectionId) -> Result<(i64, Option<i64>), StoreError> {
    Ok(
        sqlx::query_as("SELECT COUNT(*), MAX(received_at) FROM inbound_events WHERE connection_id = $1")
            .bind(connection.as_str())
            .fetch_one(conn)
            .await?,
    )
}

/// Hands the waiting events of `connection` with route `key` to `session`; their ids, oldest first.
pub async fn take_waiting(
    conn: &mut Conn,
    connection: &ConnectionId,
    key: &str,
    session: &SessionId,
) -> Result<Vec<InboundEventId>, StoreError> {
    let mut ids: Vec<(InboundEventId, i64)> = sqlx::query_as(
        "UPDATE inbound_events SET session_id = $3 WHERE connection_id = $1 AND route_key = $2 AND session_id IS NULL \
         RETURNING id, received_at",
    )
    .bind(connection.as_str())
    .bind(key)
    .bind(session.as_str())
    .fetch_all(conn)
    .await?;
    ids.sort_by(|a, b| (a.1, a.0.as_str()).cmp(&(b.1, b.0.as_str())));
    Ok(ids.into_iter().map(|(id, _)| id).collect())
}

/// The event `id`.
pub async fn get_event(conn: &mut Conn, id: &InboundEventId) -> Result<Option<InboundEvent>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, connection_id, event_id, route_key, session_id, method, path, headers, body, received_at \
         FROM inbound_events WHERE id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?)
}

/// Deletes events received before `before` (past the deduplication window), at most `limit`.
pub async fn delete_received_before(conn: &mut Conn, before: Timestamp, limit: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM inbound_events WHERE id IN (SELECT id FROM inbound_events WHERE received_at < $1 LIMIT $2)",
    )
    .bind(before.millis())
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
