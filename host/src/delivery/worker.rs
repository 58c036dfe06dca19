//! The delivery worker: claims due deliveries (a bounded number at once, and a bounded number per
//! endpoint, so one slow receiver cannot stall the others), sends them signed, records every
//! attempt, and applies the delivery policy — retry, give up, or stop a gone endpoint. The session
//! moves along with it: `running` once the wrapper accepted the start webhook, `failed` with a
//! readable reason once the delivery failed for good.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::domain::ids::ConnectionId;
use crate::domain::time::Timestamp;
use crate::outbound;
use crate::secrets::WEBHOOK_SIGNING_SECRET;
use crate::store::connections::StoredSecret;
use crate::store::deliveries::Delivery;
use crate::store::{self, StoreError};

use super::policy::AttemptResult;
use super::record::{self, Outcome, Recorder};
use super::sender;

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
    let (recorder, recorder_task) = record::start(app.clone());
    let capacity = app.config.delivery.max_in_flight;
    let slots = Arc::new(Semaphore::new(capacity));
    let mut in_flight = tokio::task::JoinSet::new();
    // Whether there may be due work we have not claimed (new deliveries, a retry coming due).
    let mut maybe_due = true;
    loop {
        while in_flight.try_join_next().is_some() {}
        let free = slots.available_permits();
        // Claim in batches: when woken for new work, when idle, or once a quarter of the slots
        // are free — not once per finished attempt, which would cost a claim query each.
        let worth_claiming = free > 0 && (maybe_due || in_flight.is_empty() || free * 4 >= capacity);
        let mut full_batch = false;
        if worth_claiming {
            maybe_due = false;
            match claim(&app, free as i64).await {
                Ok((batch, endpoints)) => {
                    full_batch = batch.len() == free;
                    for delivery in batch {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            break;
                        };
                        let endpoint = endpoints.get(&delivery.connection_id).cloned();
                        let (app, client, recorder) = (app.clone(), client.clone(), recorder.clone());
                        in_flight.spawn(async move {
                            attempt(&app, &client, &recorder, delivery, endpoint).await;
                            drop(permit);
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "claiming deliveries failed"),
            }
        }
        // A full batch means the backlog may hold more; the next claim comes once a quarter of
        // the slots are free again (or at once if everything finished).
        let _ = full_batch;
        let wait = if in_flight.is_empty() {
            next_wait(&app).await
        } else {
            IDLE_POLL
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = app.deliveries_queued.notified() => maybe_due = true,
            _ = tokio::time::sleep(wait) => maybe_due = true,
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
    drop(recorder);
    let _ = recorder_task.await;
}

/// What every attempt at one connection's endpoint needs, read once per claimed batch.
#[derive(Debug, Clone)]
struct EndpointContext {
    /// The signing secrets, newest first.
    secrets: Arc<Vec<String>>,
    /// `(url, reason)` while the endpoint is disabled.
    disabled: Option<(String, String)>,
}

async fn claim(app: &App, limit: i64) -> Result<(Vec<Delivery>, HashMap<ConnectionId, EndpointContext>), StoreError> {
    let mut tx = app.db.begin().await?;
    let per_endpoint = app.config.delivery.per_endpoint_in_flight as i64;
    let now = app.clock.now();
    let batch =
        store::deliveries::claim_due(&mut tx, app.db.backend(), now, lease_ms(app), limit, per_endpoint).await?;
    tx.commit().await?;
    let mut endpoints = HashMap::new();
    if !batch.is_empty() {
        let mut conn = app.db.read().await?;
        for delivery in &batch {
            if endpoints.contains_key(&delivery.connection_id) {
                continue;
            }
            let secrets = store::connections::signing_secrets(&mut conn, &delivery.connection_id, now)
                .await?
                .into_iter()
                .filter_map(|stored| match stored {
                    StoredSecret::Plaintext(secret) => Some(secret),
                    StoredSecret::Sealed(sealed) => {
                        let key = delivery.connection_id.as_str();
                        match app.secrets.open(key, WEBHOOK_SIGNING_SECRET, &sealed) {
                            Ok(secret) => Some(secret.expose().to_owned()),
                            Err(error) => {
                                tracing::error!(connection = key, "{error}; this secret cannot sign");
                                None
                            }
                        }
                    }
                })
                .collect::<Vec<_>>();
            let disabled = store::endpoints::get(&mut conn, &delivery.connection_id)
                .await?
                .filter(|e| e.disabled_at.is_some())
                .map(|e| (e.url, e.disabled_reason.unwrap_or_default()));
            endpoints.insert(
                delivery.connection_id.clone(),
                EndpointContext {
                    secrets: Arc::new(secrets),
                    disabled,
                },
            );
        }
    }
    Ok((batch, endpoints))
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
async fn attempt(
    app: &App,
    client: &reqwest::Client,
    recorder: &Recorder,
    delivery: Delivery,
    endpoint: Option<EndpointContext>,
) {
    let started = app.clock.now();
    let result = match prepare(app, &delivery, endpoint.as_ref(), started) {
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
    // The slot stays taken until the outcome is committed: backpressure on a slow database.
    let (recorded, committed) = oneshot::channel();
    let outcome = Outcome {
        delivery,
        started,
        result,
        recorded,
    };
    if recorder.send(outcome).await.is_ok() {
        let _ = committed.await;
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

fn prepare(
    app: &App,
    delivery: &Delivery,
    endpoint: Option<&EndpointContext>,
    at: Timestamp,
) -> Result<Prepared, String> {
    let endpoint = endpoint.ok_or("the connection's endpoint was not loaded")?;
    if let Some((url, reason)) = &endpoint.disabled
        && *url == delivery.url
    {
        return Ok(Prepared::EndpointDisabled(format!(
            "the webhook endpoint is disabled ({reason})"
        )));
    }
    let url = url::Url::parse(&delivery.url).map_err(|e| format!("stored URL is invalid: {e}"))?;
    if let Err(forbidden) = app.config.outbound.check_url(&url) {
        return Ok(Prepared::Refused(forbidden.to_string()));
    }
    if endpoint.secrets.is_empty() {
        return Ok(Prepared::Refused("the connection has no webhook signing secret".into()));
    }
    let body = sender::stamped_body(&delivery.body, &at.to_iso());
    let headers = sender::signed_headers(delivery.id.as_str(), at, &body, &endpoint.secrets)?;
    Ok(Prepared::Send { headers, body })
}
