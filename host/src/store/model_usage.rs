//! What each session's model calls used (`session_model_usage`).

use crate::domain::ids::SessionId;
use crate::domain::model::Usage;
use crate::domain::time::Timestamp;

use super::{Conn, StoreError};

/// A session's attempts at model calls so far (retries and failures included) and the tokens
/// their answers used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionUsage {
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// The usage of `session` (zero before its first call).
pub async fn get(conn: &mut Conn, session: &SessionId) -> Result<SessionUsage, StoreError> {
    let row: Option<(i64, i64, i64)> =
        sqlx::query_as("SELECT calls, input_tokens, output_tokens FROM session_model_usage WHERE session_id = $1")
            .bind(session.as_str())
            .fetch_optional(conn)
            .await?;
    Ok(row
        .map(|(calls, input_tokens, output_tokens)| SessionUsage {
            calls,
            input_tokens,
            output_tokens,
        })
        .unwrap_or_default())
}

/// Adds one attempt at a model call to `session`, with the tokens its answer used (`None`: it
/// failed or is retried; it still counts against the session's `modelCalls`).
pub async fn add(conn: &mut Conn, session: &SessionId, usage: Option<Usage>, now: Timestamp) -> Result<(), StoreError> {
    let usage = usage.unwrap_or_default();
    sqlx::query(
        "INSERT INTO session_model_usage (session_id, calls, input_tokens, output_tokens, updated_at) \
         VALUES ($1, 1, $2, $3, $4) \
         ON CONFLICT (session_id) DO UPDATE SET calls = session_model_usage.calls + 1, \
         input_tokens = session_model_usage.input_tokens + $2, \
         output_tokens = session_model_usage.output_tokens + $3, updated_at = $4",
    )
    .bind(session.as_str())
    .bind(usage.input_tokens.min(i64::MAX as u64) as i64)
    .bind(usage.output_tokens.min(i64::MAX as u64) as i64)
    .bind(now.millis())
    .execute(conn)
    .await?;
    Ok(())
}
