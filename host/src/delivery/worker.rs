//! The delivery worker: claims due deliveries, sends them concurrently (bounded), records every
//! attempt, and moves the session along — `running` once the wrapper accepted the start webhook,
//! `failed` with a readable reason once the last retry failed.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::{App, HostEvent};
use crate::domain::ids::AttemptId;
use crate::domain::time::Timestamp;
use crate::sessions;
use crate::store::deliveries::{Attempt, Delivery};
use crate::store::{self, StoreError};

use super::sender::{self, AttemptResult};

/// Longest sleep between looks at the outbox when nothing is due.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// Runs the delivery worker until `shutdown`.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let client = match sender::client(app.config.delivery.attempt_timeout) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; deliveries are stopped");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(app.config.delivery.max_in_flight));
    // A claimed delivery stays reserved for the attempt timeout plus a margin.
    let lease_ms = app.config.delivery.attempt_timeout.as_millis() as i64 + 30_000;
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let free = slots.available_permits() as i64;
        let claimed = if free > 0 {
            claim(&app, free, lease_ms).await
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

async fn claim(app: &App, limit: i64, lease_ms: i64) -> Result<Vec<Delivery>, StoreError> {
    let mut tx = app.db.begin().await?;
    let batch = store::deliveries::claim_due(&mut tx, app.db.backend(), app.clock.now(), lease_ms, limit).await?;
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
    let result = match signing_secrets(app, &delivery, started).await {
        Ok(secrets) if secrets.is_empty() => failed_before_sending("the connection has no webhook signing secret"),
        Ok(secrets) => {
            let body = sender::stamped_body(&delivery.body, &started.to_iso());
            match sender::signed_headers(delivery.id.as_str(), started, &body, &secrets) {
                Ok(headers) => sender::send(client, &delivery.url, headers, body).await,
                Err(error) => failed_before_sending(&error),
            }
        }
        Err(error) => {
            tracing::error!(delivery = %delivery.id, %error, "could not read signing secrets; will retry");
            failed_before_sending("the host could not read the signing secret")
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

async fn signing_secrets(app: &App, delivery: &Delivery, now: Timestamp) -> Result<Vec<String>, StoreError> {
    let mut conn = app.db.read().await?;
    store::connections::signing_secrets(&mut conn, &delivery.connection_id, now).await
}

fn failed_before_sending(reason: &str) -> AttemptResult {
    AttemptResult {
        status_code: None,
        latency: Duration::ZERO,
        response_body: None,
        error: Some(reason.to_owned()),
    }
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
    let schedule = &app.config.delivery.retry_schedule;
    if result.succeeded() {
        store::deliveries::mark_delivered(&mut tx, &delivery.id, now).await?;
        if let Some(session) = &delivery.session_id {
            sessions::mark_delivered(&mut tx, session, now).await?;
        }
        tracing::info!(delivery = %delivery.id, attempt = attempt_no, status = ?result.status_code, "webhook delivered");
    } else {
        let error = result.error.clone().unwrap_or_else(|| "unknown error".into());
        match schedule.get((attempt_no - 1).max(0) as usize) {
            Some(wait) => {
                let next = now.plus_millis(with_jitter(*wait).as_millis() as i64);
                store::deliveries::schedule_retry(&mut tx, &delivery.id, next, &error).await?;
                tracing::warn!(delivery = %delivery.id, attempt = attempt_no, %error, next_attempt = %next, "webhook attempt failed; will retry");
            }
            None => {
                store::deliveries::mark_failed(&mut tx, &delivery.id, &error).await?;
                if let Some(session) = &delivery.session_id {
                    let reason = format!(
                        "The agent wrapper at {} did not accept the session after {attempt_no} attempt{} (last: {error}). \
                         Check that the wrapper is running and reachable, then assign the task again.",
                        delivery.url,
                        if attempt_no == 1 { "" } else { "s" }
                    );
                    sessions::fail(&mut tx, session, reason, now).await?;
                }
                tracing::warn!(delivery = %delivery.id, attempts = attempt_no, %error, "webhook delivery failed for good");
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// `wait` ± 10 %, so retries of many deliveries spread out.
fn with_jitter(wait: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..=1.1);
    wait.mul_f64(factor)
}
