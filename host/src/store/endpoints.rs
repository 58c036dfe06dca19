//! The health of each connection's webhook endpoint.

use crate::domain::ids::ConnectionId;
use crate::domain::time::Timestamp;

use super::{Conn, StoreError};

/// An endpoint's health.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Endpoint {
    pub connection_id: ConnectionId,
    pub url: String,
    /// Failed attempts in a row.
    pub consecutive_failures: i64,
    /// Deliveries in a row that failed for good.
    pub failed_deliveries: i64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    /// Set while deliveries to it are stopped (410 Gone, sustained failure).
    pub disabled_at: Option<Timestamp>,
    pub disabled_reason: Option<String>,
}

const COLUMNS: &str = "connection_id, url, consecutive_failures, failed_deliveries, last_error, last_attempt_at, \
     last_success_at, disabled_at, disabled_reason";

/// The endpoint of `connection`, if it was ever attempted.
pub async fn get(conn: &mut Conn, connection: &ConnectionId) -> Result<Option<Endpoint>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints WHERE connection_id = $1"
    ))
    .bind(connection.as_str())
    .fetch_optional(conn)
    .await?)
}

/// Records an attempt at `url`: a success clears the failure counters, a failure adds to them.
/// A new URL starts a fresh record (the old URL's health says nothing about the new one).
pub async fn record_attempt(
    conn: &mut Conn,
    connection: &ConnectionId,
    url: &str,
    error: Option<&str>,
    at: Timestamp,
) -> Result<Endpoint, StoreError> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (connection_id, url, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (connection_id) DO UPDATE SET url = excluded.url, \
         consecutive_failures = CASE WHEN webhook_endpoints.url = excluded.url THEN webhook_endpoints.consecutive_failures ELSE 0 END, \
         failed_deliveries = CASE WHEN webhook_endpoints.url = excluded.url THEN webhook_endpoints.failed_deliveries ELSE 0 END, \
         disabled_at = CASE WHEN webhook_endpoints.url = excluded.url THEN webhook_endpoints.disabled_at ELSE NULL END, \
         disabled_reason = CASE WHEN webhook_endpoints.url = excluded.url THEN webhook_endpoints.disabled_reason ELSE NULL END",
    )
    .bind(connection.as_str())
    .bind(url)
    .bind(at.millis())
    .execute(&mut *conn)
    .await?;
    let update = match error {
        None => {
            "UPDATE webhook_endpoints SET consecutive_failures = 0, failed_deliveries = 0, last_attempt_at = $2, \
                 last_success_at = $2, updated_at = $2 WHERE connection_id = $1 RETURNING "
        }
        Some(_) => {
            "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1, last_error = $3, \
                    last_attempt_at = $2, updated_at = $2 WHERE connection_id = $1 RETURNING "
        }
    };
    Ok(sqlx::query_as(&format!("{update}{COLUMNS}"))
        .bind(connection.as_str())
        .bind(at.millis())
        .bind(error)
        .fetch_one(conn)
        .await?)
}

/// Counts a delivery that failed for good; returns the endpoint after.
pub async fn record_failed_delivery(conn: &mut Conn, connection: &ConnectionId) -> Result<Endpoint, StoreError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE webhook_endpoints SET failed_deliveries = failed_deliveries + 1 WHERE connection_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(connection.as_str())
    .fetch_one(conn)
    .await?)
}

/// Stops deliveries to the endpoint, saying why.
pub async fn disable(
    conn: &mut Conn,
    connection: &ConnectionId,
    reason: &str,
    at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE webhook_endpoints SET disabled_at = $2, disabled_reason = $3, updated_at = $2 WHERE connection_id = $1",
    )
    .bind(connection.as_str())
    .bind(at.millis())
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Lets deliveries to the endpoint go out again, with clean counters.
pub async fn enable(conn: &mut Conn, connection: &ConnectionId, at: Timestamp) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0, \
         failed_deliveries = 0, updated_at = $2 WHERE connection_id = $1 AND disabled_at IS NOT NULL",
    )
    .bind(connection.as_str())
    .bind(at.millis())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
