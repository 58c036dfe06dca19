//! Recording attempt outcomes. Attempts finish concurrently; one recorder task writes their
//! outcomes in batches — one unit of the group commit per batch, the attempt log and every
//! delivery that got through written together ([`store::deliveries::record_attempts`]) — so the database (SQLite's single writer in
//! particular) is not the bottleneck of delivery throughput.

use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::app::{App, HostEvent};
use crate::audit::{Actor, Entry};
use crate::commit::WriteTx;
use crate::domain::ids::{AttemptId, DeliveryId};
use crate::domain::time::Timestamp;
use crate::store::deliveries::Delivery;
use crate::store::endpoints::{AttemptRun, Endpoint};
use crate::store::{self, StoreError};
use crate::use_cases::sessions;

use super::policy::{self, AttemptResult, NextStep};

/// Outcomes written per transaction at most.
const BATCH: usize = 256;

/// One finished attempt, waiting to be recorded.
pub struct Outcome {
    pub delivery: Delivery,
    pub started: Timestamp,
    pub result: AttemptResult,
    /// Told once the outcome is committed (or could not be).
    pub recorded: oneshot::Sender<bool>,
}

/// Hands outcomes to the recorder task.
pub type Recorder = mpsc::Sender<Outcome>;

/// Starts the recorder task; it ends when every [`Recorder`] is dropped.
pub fn start(app: Arc<App>) -> (Recorder, tokio::task::JoinHandle<()>) {
    crate::commit::batching_task(BATCH * 4, BATCH, move |batch: Vec<Outcome>| {
        let app = app.clone();
        async move {
            let committed = match record_batch(&app, &batch).await {
                Ok(()) => true,
                Err(error) => {
                    // The leases run out and the deliveries are attempted again, with their ids.
                    tracing::error!(%error, outcomes = batch.len(), "could not record delivery attempts");
                    false
                }
            };
            for outcome in batch {
                app.announce(HostEvent::DeliveryAttempted {
                    delivery_id: outcome.delivery.id.clone(),
                    session_id: outcome.delivery.session_id.clone(),
                    delivered: committed && outcome.result.succeeded(),
                });
                let _ = outcome.recorded.send(committed);
            }
        }
    })
}

/// What the batch's transaction needs of an outcome.
struct Attempted {
    delivery: Delivery,
    started: Timestamp,
    result: AttemptResult,
}

/// Records a batch as one unit of the group commit.
async fn record_batch(app: &Arc<App>, batch: &[Outcome]) -> Result<(), StoreError> {
    let now = app.clock.now();
    let attempted: Arc<Vec<Attempted>> = Arc::new(
        batch
            .iter()
            .map(|o| Attempted {
                delivery: o.delivery.clone(),
                started: o.started,
                result: o.result.clone(),
            })
            .collect(),
    );
    let shared = app.clone();
    app.writer
        .write(move |tx| {
            let (app, attempted) = (shared.clone(), attempted.clone());
            Box::pin(async move { record_in(tx, &app, &attempted, now).await })
        })
        .await
}

async fn record_in(tx: &mut WriteTx, app: &App, batch: &[Attempted], now: Timestamp) -> Result<(), StoreError> {
    // One health update per endpoint for the whole batch.
    let mut runs: Vec<((&str, &str), AttemptRun)> = Vec::new();
    for outcome in batch {
        let key = (outcome.delivery.connection_id.as_str(), outcome.delivery.url.as_str());
        let index = runs.iter().position(|(k, _)| *k == key).unwrap_or_else(|| {
            runs.push((key, AttemptRun::default()));
            runs.len() - 1
        });
        runs[index].1.add(outcome.result.error.as_deref());
    }
    let mut endpoints: HashMap<&str, Endpoint> = HashMap::new();
    for ((connection, url), run) in &runs {
        let endpoint = store::endpoints::record_attempts(tx.conn(), &(*connection).into(), url, run, now).await?;
        endpoints.insert(connection, endpoint);
    }
    let mut delivered: Vec<&DeliveryId> = Vec::new();
    for outcome in batch {
        let Attempted { delivery, result, .. } = outcome;
        let disabled = endpoints
            .get(delivery.connection_id.as_str())
            .is_some_and(|e| e.disabled_at.is_some());
        let step = if disabled && !result.succeeded() {
            NextStep::Fail
        } else {
            let jitter = rand::rng().random_range(0.9..=1.1);
            let schedule = &app.config.delivery.retry_schedule;
            policy::next_step(result, delivery.attempts - delivery.retry_base, schedule, now, jitter)
        };
        let error = result.error.clone().unwrap_or_else(|| "unknown error".into());
        match step {
            NextStep::Delivered => {
                // The session stays as it is: the wrapper moves it to `running` (wire contract
                // §2); the card shows the delivery.
                delivered.push(&delivery.id);
            }
            NextStep::RetryAt(next) => {
                store::deliveries::schedule_retry(tx.conn(), &delivery.id, next, &error).await?;
                tracing::warn!(delivery = %delivery.id, attempt = delivery.attempts, %error, next_attempt = %next, "webhook attempt failed; will retry");
            }
            NextStep::Fail => {
                let reason = give_up_reason(delivery, result, &error);
                fail_delivery(tx, app, delivery, &reason, now).await?;
            }
            NextStep::DisableEndpoint => {
                let why = format!("the receiver at {} answered 410 Gone", delivery.url);
                disable_endpoint(tx, delivery, &why, now).await?;
                let reason =
                    format!("The agent wrapper's endpoint is gone: {why}. An admin can re-enable it once it is back.");
                fail_delivery(tx, app, delivery, &reason, now).await?;
            }
        }
    }
    // The attempt log and the deliveries that got through, together (one statement on PostgreSQL).
    store::deliveries::record_attempts(tx.conn(), &attempt_rows(batch), &delivered, now).await?;
    if !delivered.is_empty() {
        tracing::debug!(count = delivered.len(), "webhooks delivered");
    }
    Ok(())
}

/// The attempt log rows of a batch.
fn attempt_rows(batch: &[Attempted]) -> Vec<store::deliveries::Attempt> {
    batch
        .iter()
        .map(|o| store::deliveries::Attempt {
            id: AttemptId::generate(),
            delivery_id: o.delivery.id.clone(),
            attempt: o.delivery.attempts,
            started_at: o.started,
            status_code: o.result.status_code.map(i64::from),
            latency_ms: o.result.latency.as_millis() as i64,
            response_body: o.result.response_body.clone(),
            error: o.result.error.clone(),
        })
        .collect()
}

fn give_up_reason(delivery: &Delivery, result: &AttemptResult, error: &str) -> String {
    let attempts = delivery.attempts;
    if result.refused.is_some() {
        return format!("The session could not be sent to the agent wrapper: {error}.");
    }
    if error.starts_with("the webhook endpoint is disabled") {
        return format!("The session could not be sent: {error}. An admin can re-enable the endpoint.");
    }
    format!(
        "The agent wrapper at {} did not accept the session after {attempts} attempt{} (last: {error}). \
         Check that the wrapper is running and reachable, then redeliver or assign the task again.",
        delivery.url,
        if attempts == 1 { "" } else { "s" }
    )
}

/// Marks the delivery failed for good, fails its session, counts it against the endpoint (which
/// may disable it), and records the failure in the audit trail.
async fn fail_delivery(
    tx: &mut WriteTx,
    app: &App,
    delivery: &Delivery,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    store::deliveries::mark_failed(tx.conn(), &delivery.id, reason).await?;
    if let Some(session) = &delivery.session_id {
        sessions::fail(tx, session, reason.to_owned(), now).await?;
    }
    let actor = Actor::system(Some(delivery.workspace_id.clone()));
    let details =
        json!({"url": delivery.url, "attempts": delivery.attempts, "reason": reason, "sessionId": delivery.session_id});
    tx.audit(
        &actor,
        Entry::new("delivery.fail", "delivery", &delivery.id, details),
        now,
    );
    let endpoint: Endpoint = store::endpoints::record_failed_delivery(tx.conn(), &delivery.connection_id).await?;
    let threshold = i64::from(app.config.delivery.auto_disable_after_failed_deliveries);
    if threshold > 0 && endpoint.failed_deliveries >= threshold && endpoint.disabled_at.is_none() {
        let why = format!(
            "disabled automatically after {} deliveries in a row failed (last: {})",
            endpoint.failed_deliveries,
            endpoint.last_error.as_deref().unwrap_or("unknown error")
        );
        disable_endpoint(tx, delivery, &why, now).await?;
    }
    tracing::warn!(delivery = %delivery.id, attempts = delivery.attempts, %reason, "webhook delivery failed for good");
    Ok(())
}

async fn disable_endpoint(tx: &mut WriteTx, delivery: &Delivery, why: &str, now: Timestamp) -> Result<(), StoreError> {
    // A batch may hold several failures of one endpoint: disable (and audit) it once.
    if store::endpoints::get(tx.conn(), &delivery.connection_id)
        .await?
        .is_some_and(|e| e.disabled_at.is_some())
    {
        return Ok(());
    }
    store::endpoints::disable(tx.conn(), &delivery.connection_id, why, now).await?;
    let actor = Actor::system(Some(delivery.workspace_id.clone()));
    let details = json!({"url": delivery.url, "reason": why});
    tx.audit(
        &actor,
        Entry::new(
            "webhook_endpoint.disable",
            "connection",
            &delivery.connection_id,
            details,
        ),
        now,
    );
    tracing::warn!(connection = %delivery.connection_id, url = %delivery.url, %why, "webhook endpoint disabled");
    Ok(())
}
