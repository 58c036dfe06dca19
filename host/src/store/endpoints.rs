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

/// What a run of attempts at one endpoint came to (attempts in the order they finished).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptRun {
    /// Whether any attempt succeeded.
    pub succeeded: bool,
    /// Failures after the last success (all failures when none succeeded).
    pub trailing_failures: i64,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
}

impl AttemptRun {
    /// Adds one attempt's outcome (`error` is `None` for a success).
    pub fn add(&mut self, error: Option<&str>) {
        match error {
            None => {
                self.succeeded = true;
                self.trailing_failures = 0;
            }
            Some(error) => {
                self.trailing_failures += 1;
                self.last_error = Some(error.to_owned());
            }
        }
    }
}

/// Records a run of attempts at `url` in one statement: a success clears the failure counters, the
/// failures after it add up; a new URL starts a fresh record (the old URL's health says nothing
/// about the new one). Returns the endpoint after.
pub async fn record_attempts(
    conn: &mut Conn,
    connection: &ConnectionId,
    url: &str,
    run: &AttemptRun,
    at: Timestamp,
) -> Result<Endpoint, StoreError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO webhook_endpoints (connection_id, url, consecutive_failures, failed_deliveries, last_error, \
            last_attempt_at, last_success_at, updated_at) VALUES ($1, $2, $3, 0, $4, $5, $6, $5) \
         ON CONFLICT (connection_id) DO UPDATE SET \
            consecutive_failures = CASE WHEN $7 = 1 OR webhook_endpoints.url <> excluded.url THEN $3 \
                ELSE webhook_endpoints.consecutive_failures + $3 END, \
            failed_deliveries = CASE WHEN $7 = 1 OR webhook_endpoints.url <> excluded.url THEN 0 \
                ELSE webhook_endpoints.failed_deliveries END, \
            last_error = COALESCE(excluded.last_error, webhook_endpoints.last_error), \
            last_attempt_at = excluded.last_attempt_at, \
            last_success_at = COALESCE(excluded.last_success_at, webhook_endpoints.last_success_at), \
            disabled_at = CASE WHEN webhook_endpoints.url = excluded.url THEN webhook_endpoints.disabled_at ELSE NULL END, \
            disabled_reason = CASE WHEN webhook_endpoints.url = excluded.url THEN webhook_endpoints.disabled_reason ELSE NULL END, \
            url = excluded.url, updated_at = excluded.updated_at \
         RETURNING {COLUMNS}"
    ))
    .bind(connection.as_str())
    .bind(url)
    .bind(run.trailing_failures)
    .bind(run.last_error.as_deref())
    .bind(at.millis())
    .bind(run.succeeded.then_some(at.millis()))
    .bind(i64::from(run.succeeded))
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

#[cfg(test)]
mod tests {
    use super::AttemptRun;

    #[test]
    fn a_run_counts_the_failures_after_its_last_success() {
        let mut run = AttemptRun::default();
        run.add(Some("HTTP 500"));
        run.add(None);
        run.add(Some("HTTP 502"));
        run.add(Some("timeout"));
        assert_eq!(
            run,
            AttemptRun {
                succeeded: true,
                trailing_failures: 2,
                last_error: Some("timeout".into())
            }
        );
        let mut failing = AttemptRun::default();
        failing.add(Some("HTTP 500"));
        assert_eq!((failing.succeeded, failing.trailing_failures), (false, 1));
    }
}
