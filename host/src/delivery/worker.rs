//! The delivery worker: claims due deliveries (a bounded number at once, and a bounded number per
//! endpoint, so one slow receiver cannot stall the others), sends them signed, records every
//! attempt, and applies the delivery policy — retry, give up, or stop a gone endpoint. The session
//! moves along with it: `running` once the wrapper accepted the start webhook, `failed` with a
//! readable reason once the delivery failed for good.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::{App, HostEvent};
use crate::audit::{self, Actor, Entry};
use crate::domain::ids::AttemptId;
use crate::domain::time::Timestamp;
use crate::outbound;
use crate::sessions;
use crate::store::deliveries::{Attempt, Delivery};
use crate::store::{self, Conn, StoreError, endpoints::Endpoint};

use super::policy::{self, NextStep};
use super::sender::{self, AttemptResult};

/// Longest sleep between looks at the outbox when nothing is due.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// How long a claimed delivery stays reserved for its worker: the attempt timeout plus a margin.
pub fn lease_ms(app: &App) -> i64 {
    app.config.delivery.attempt_timeout.as_millis() as i64 + 5_000
}

/// Runs the delivery worker until `shutdown`.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let client = match outbound::client(app.config.outbound, app.config.delivery.attempt_timeout) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; deliveries are stopped");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(app.config.delivery.max_in_flight));
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let free = slots.available_permits() as i64;
        let claimed = if free > 0 {
            claim(&app, free).await
        } else {
            Ok(Vec::new())
        };
        let batch = match claimed {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(%error, "claiming deliveries failed");
                Vec::new()
            }
        };
        let full_batch = !batch.is_empty() && batch.len() as i64 == free;
        for delivery in batch {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (app, client) = (app.clone(), client.clone());
            in_flight.spawn(async move {
                attempt(&app, &client, delivery).await;
                drop(permit);
            });
        }
        while in_flight.try_join_next().is_some() {}
        if full_batch {
            continue;
        }
        let wait = next_wait(&app).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = app.deliveries_queued.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
}

async fn claim(app: &App, limit: i64) -> Result<Vec<Delivery>, StoreError> {
    let mut tx = app.db.begin().await?;
    let per_endpoint = app.config.delivery.per_endpoint_in_flight as i64;
    let batch = store::deliveries::claim_due(
        &mut tx,
        app.db.backend(),
        app.clock.now(),
        lease_ms(app),
        limit,
        per_endpoint,
    )
    .await?;
    tx.commit().await?;
    Ok(batch)
}

async fn next_wait(app: &App) -> Duration {
    let next = match app.db.read().await {
        Ok(mut conn) => store::deliveries::next_due(&mut conn).await.ok().flatten(),
        Err(_) => None,
    };
    match next {
        Some(at) => Duration::from_millis(
            (at.millis() - app.clock.now().millis()).clamp(0, IDLE_POLL.as_millis() as i64) as u64,
        ),
        None => IDLE_POLL,
    }
}

/// Sends one attempt of `delivery` and records its outcome.
async fn attempt(app: &App, client: &reqwest::Client, delivery: Delivery) {
    let started = app.clock.now();
    let result = match prepare(app, &delivery, started).await {
        Ok(Prepared::Send { headers, body }) => sender::send(client, &delivery.url, headers, body, started).await,
        Ok(Prepared::Refused(reason)) => sender::refused(reason),
        Ok(Prepared::EndpointDisabled(reason)) => AttemptResult {
            status_code: None,
            latency: Duration::ZERO,
            response_body: None,
            error: Some(reason),
            retry_after: None,
            refused: None,
        },
        Err(error) => {
            // Nothing was sent: give the lease back and try again shortly.
            tracing::error!(delivery = %delivery.id, %error, "could not prepare a delivery attempt; will retry");
            if let Ok(mut tx) = app.db.begin().await {
                let _ = store::deliveries::release(&mut tx, &delivery.id, started.plus_millis(5_000)).await;
                let _ = tx.commit().await;
            }
            return;
        }
    };
    let recorded = record(app, &delivery, started, &result).await;
    app.announce(HostEvent::DeliveryAttempted {
        delivery_id: delivery.id.clone(),
        session_id: delivery.session_id.clone(),
        delivered: recorded.is_ok() && result.succeeded(),
    });
    if let Err(error) = recorded {
        // The lease runs out and the delivery is attempted again, with the same id.
        tracing::error!(delivery = %delivery.id, %error, "could not record a delivery attempt");
    }
}

/// What to do with a claimed delivery before any byte is sent.
enum Prepared {
    Send {
        headers: reqwest::header::HeaderMap,
        body: Vec<u8>,
    },
    /// The URL is an IP literal in a blocked range.
    Refused(String),
    /// The endpoint is disabled; nothing is sent.
    EndpointDisabled(String),
}

async fn prepare(app: &App, delivery: &Delivery, at: Timestamp) -> Result<Prepared, String> {
    let mut conn = app.db.read().await.map_err(|e| e.to_string())?;
    if let Some(endpoint) = store::endpoints::get(&mut conn, &delivery.connection_id)
        .await
        .map_err(|e| e.to_string())?
        && endpoint.url == delivery.url
        && endpoint.disabled_at.is_some()
    {
        let reason = endpoint.disabled_reason.unwrap_or_default();
        return Ok(Prepared::EndpointDisabled(format!(
            "the webhook endpoint is disabled ({reason})"
        )));
    }
    let url = url::Url::parse(&delivery.url).map_err(|e| format!("stored URL is invalid: {e}"))?;
    if let Err(forbidden) = app.config.outbound.check_url(&url) {
        return Ok(Prepared::Refused(forbidden.to_string()));
    }
    let secrets = store::connections::signing_secrets(&mut conn, &delivery.connection_id, at)
        .await
        .map_err(|e| e.to_string())?;
    if secrets.is_empty() {
        return Ok(Prepared::Refused("the connection has no webhook signing secret".into()));
    }
    let body = sender::stamped_body(&delivery.body, &at.to_iso());
    let headers = sender::signed_headers(delivery.id.as_str(), at, &body, &secrets)?;
    Ok(Prepared::Send { headers, body })
}

async fn record(app: &App, delivery: &Delivery, started: Timestamp, result: &AttemptResult) -> Result<(), StoreError> {
    let now = app.clock.now();
    let attempt_no = delivery.attempts;
    let mut tx = app.db.begin().await?;
    store::deliveries::insert_attempt(
        &mut tx,
        &Attempt {
            id: AttemptId::generate(),
            delivery_id: delivery.id.clone(),
            attempt: attempt_no,
            started_at: started,
            status_code: result.status_code.map(i64::from),
            latency_ms: result.latency.as_millis() as i64,
            response_body: result.response_body.clone(),
            error: result.error.clone(),
        },
    )
    .await?;
    let endpoint = store::endpoints::record_attempt(
        &mut tx,
        &delivery.connection_id,
        &delivery.url,
        result.error.as_deref(),
        now,
    )
    .await?;
    let jitter = rand::rng().random_range(0.9..=1.1);
    let schedule = &app.config.delivery.retry_schedule;
    let step = if endpoint.disabled_at.is_some() {
        NextStep::Fail
    } else {
        policy::next_step(result, attempt_no - delivery.retry_base, schedule, now, jitter)
    };
    let error = result.error.clone().unwrap_or_else(|| "unknown error".into());
    match step {
        NextStep::Delivered => {
            store::deliveries::mark_delivered(&mut tx, &delivery.id, now).await?;
            if let Some(session) = &delivery.session_id {
                sessions::mark_delivered(&mut tx, session, now).await?;
            }
            tracing::info!(delivery = %delivery.id, attempt = attempt_no, status = ?result.status_code, "webhook delivered");
        }
        NextStep::RetryAt(next) => {
            store::deliveries::schedule_retry(&mut tx, &delivery.id, next, &error).await?;
            tracing::warn!(delivery = %delivery.id, attempt = attempt_no, %error, next_attempt = %next, "webhook attempt failed; will retry");
        }
        NextStep::Fail => {
            let reason = give_up_reason(delivery, attempt_no, result, &error);
            fail_delivery(&mut tx, app, delivery, &reason, now).await?;
        }
        NextStep::DisableEndpoint => {
            let why = format!("the receiver at {} answered 410 Gone", delivery.url);
            disable_endpoint(&mut tx, delivery, &why, now).await?;
            let reason =
                format!("The agent wrapper's endpoint is gone: {why}. An admin can re-enable it once it is back.");
            fail_delivery(&mut tx, app, delivery, &reason, now).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn give_up_reason(delivery: &Delivery, attempt_no: i64, result: &AttemptResult, error: &str) -> String {
    if result.refused.is_some() {
        return format!("The session could not be sent to the agent wrapper: {error}.");
    }
    if error.starts_with("the webhook endpoint is disabled") {
        return format!("The session could not be sent: {error}. An admin can re-enable the endpoint.");
    }
    format!(
        "The agent wrapper at {} did not accept the session after {attempt_no} attempt{} (last: {error}). \
         Check that the wrapper is running and reachable, then redeliver or assign the task again.",
        delivery.url,
        if attempt_no == 1 { "" } else { "s" }
    )
}

/// Marks the delivery failed for good, fails its session, counts it against the endpoint (which
/// may disable it), and records the failure in the audit trail.
async fn fail_delivery(
    tx: &mut Conn,
    app: &App,
    delivery: &Delivery,
    reason: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    store::deliveries::mark_failed(tx, &delivery.id, reason).await?;
    if let Some(session) = &delivery.session_id {
        sessions::fail(tx, session, reason.to_owned(), now).await?;
    }
    let actor = Actor::system(Some(delivery.workspace_id.clone()));
    let details =
        json!({"url": delivery.url, "attempts": delivery.attempts, "reason": reason, "sessionId": delivery.session_id});
    audit::record(
        tx,
        &actor,
        Entry::new("delivery.fail", "delivery", &delivery.id, details),
        now,
    )
    .await?;
    let endpoint: Endpoint = store::endpoints::record_failed_delivery(tx, &delivery.connection_id).await?;
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

async fn disable_endpoint(tx: &mut Conn, delivery: &Delivery, why: &str, now: Timestamp) -> Result<(), StoreError> {
    store::endpoints::disable(tx, &delivery.connection_id, why, now).await?;
    let actor = Actor::system(Some(delivery.workspace_id.clone()));
    let details = json!({"url": delivery.url, "reason": why});
    audit::record(
        tx,
        &actor,
        Entry::new(
            "webhook_endpoint.disable",
            "connection",
            &delivery.connection_id,
            details,
        ),
        now,
    )
    .await?;
    tracing::warn!(connection = %delivery.connection_id, url = %delivery.url, %why, "webhook endpoint disabled");
    Ok(())
}
