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

/// Webhooks the delivery worker holds at most, handed to it but not yet sent
/// ([`crate::handoff`]); more are claimed from the outbox as before.
pub const HANDOFF: usize = 256;

/// The shortest wait before looking at the outbox again when due deliveries were left behind
/// (their endpoints at their limit: finished attempts at them wake the worker sooner).
const BLOCKED_POLL: Duration = Duration::from_millis(50);

/// Attempts that must finish before deliveries left behind are claimed again (short of
/// [`BLOCKED_POLL`]): a quarter of an endpoint's limit. Claiming at every finished attempt made
/// the claim — a query ranking the due rows per endpoint — a tenth of the host's CPU under a
/// backlog, for one row at a time.
fn claim_step(per_endpoint_limit: usize) -> usize {
    (per_endpoint_limit / 4).max(1)
}

/// Runs the delivery worker until `shutdown`.
///
/// Deliveries reach it two ways: the webhooks a plugin call queued, handed over in memory as
/// their write commits ([`crate::handoff`], already leased to this host), and everything else
/// claimed from the outbox — when woken for queued work, when a retry comes due (or a lease
/// ends), after a failed attempt, and while a claim may have left due deliveries behind (a full
/// batch, or an endpoint at its limit). A handed delivery goes out at once if a slot is free and
/// its endpoint is under its limit; otherwise it goes back to the outbox for a claim.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let client = match outbound::client(app.config.outbound, app.config.delivery.attempt_timeout) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; deliveries are stopped");
            return;
        }
    };
    let Some(mut handed) = app.delivery_handoff.take() else {
        tracing::error!("a delivery worker already runs on this host; this one stops");
        return;
    };
    let (recorder, recorder_task) = record::start(app.clone());
    let mut work = InFlight {
        slots: Arc::new(Semaphore::new(app.config.delivery.max_in_flight)),
        per_endpoint_limit: app.config.delivery.per_endpoint_in_flight,
        per_endpoint: HashMap::new(),
        finished_since_claim: 0,
        waiting: Default::default(),
        tasks: tokio::task::JoinSet::new(),
        client,
        recorder,
    };
    // Whether there may be due work we have not claimed (new deliveries, a retry coming due).
    let mut maybe_due = true;
    // Whether the last claim may have left due deliveries behind (then every few finished
    // attempts look again).
    let mut left_behind = false;
    let mut wake_at = tokio::time::Instant::now();
    loop {
        while let Some(done) = work.tasks.try_join_next() {
            maybe_due |= work.finished(done, left_behind);
        }
        if !work.waiting.is_empty() {
            let mut back = Vec::new();
            work.start_waiting(&app, &mut back);
            if !back.is_empty() {
                give_back(&app, back).await;
                maybe_due = true;
                left_behind = true;
            }
        }
        let free = work.slots.available_permits();
        if maybe_due && free > 0 {
            maybe_due = false;
            work.finished_since_claim = 0;
            match claim(&app, free as i64).await {
                Ok((batch, endpoints)) => {
                    left_behind = batch.len() == free;
                    let (now, mut back) = (tokio::time::Instant::now(), Vec::new());
                    for delivery in batch {
                        let endpoint = endpoints.get(&delivery.connection_id).cloned();
                        if let Some(delivery) = work.start(&app, delivery, endpoint.clone()) {
                            // The claim saw an attempt whose outcome was just committed as ended
                            // before it was counted out here: this one waits its turn like a
                            // handed delivery (left leased, it would wait for its lease to end).
                            work.wait_or_give_back(delivery, endpoint, now, &mut back);
                        }
                    }
                    if !back.is_empty() {
                        give_back(&app, back).await;
                    }
                    // An endpoint at its limit may have had due deliveries the claim left
                    // behind: look once (not at every finished attempt while it stays full).
                    if !left_behind && work.any_endpoint_full() {
                        left_behind = due_left_behind(&app).await;
                    }
                    let wait = if left_behind {
                        BLOCKED_POLL
                    } else {
                        next_wait(&app).await.max(BLOCKED_POLL)
                    };
                    wake_at = tokio::time::Instant::now() + wait;
                }
                Err(error) => {
                    tracing::error!(%error, "claiming deliveries failed");
                    wake_at = tokio::time::Instant::now() + BLOCKED_POLL;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = app.deliveries_queued.notified() => maybe_due = true,
            _ = tokio::time::sleep_until(wake_at) => {
                maybe_due = true;
                wake_at = tokio::time::Instant::now() + IDLE_POLL;
            }
            // The oldest waiting delivery's time is up: the loop gives it back.
            _ = tokio::time::sleep_until(work.waiting_deadline().unwrap_or(wake_at)), if !work.waiting.is_empty() => {}
            // While as many wait as may, the rest stay in the handoff's queue: once it is full,
            // new webhooks are inserted unleased for a claim, not handed and then given back.
            Some(first) = handed.recv(), if work.waiting.len() < HANDOFF => {
                let mut batch = vec![first];
                while work.waiting.len() + batch.len() < HANDOFF {
                    let Ok(next) = handed.try_recv() else { break };
                    batch.push(next);
                }
                if work.take_handed(&app, batch).await {
                    maybe_due = true;
                    left_behind = true;
                }
            }
            Some(done) = work.tasks.join_next(), if !work.tasks.is_empty() => {
                maybe_due |= work.finished(done, left_behind);
            }
        }
    }
    // Deliveries handed over but not sent go back to the outbox (their rows stay leased otherwise).
    handed.close();
    let mut unsent: Vec<Delivery> = work.waiting.drain(..).map(|w| w.delivery).collect();
    while let Ok(delivery) = handed.try_recv() {
        unsent.push(delivery);
    }
    give_back(&app, unsent).await;
    while work.tasks.join_next().await.is_some() {}
    drop(work);
    let _ = recorder_task.await;
}

/// How long a handed delivery may wait in memory for a slot or its endpoint's turn: less than its
/// lease's margin beyond the attempt's time limit, so it cannot outlive its lease and be claimed
/// again while it is sent. Longer waits go back to the outbox.
const HANDED_WAIT: Duration = Duration::from_secs(4);

/// A handed delivery waiting in memory for a slot or its endpoint's turn.
struct Waiting {
    delivery: Delivery,
    endpoint: Option<EndpointContext>,
    since: tokio::time::Instant,
}

/// The attempts in flight, bounded overall and per endpoint.
struct InFlight {
    /// Attempts sent or being recorded (a slot is held until the outcome is committed:
    /// backpressure on a slow database).
    slots: Arc<Semaphore>,
    per_endpoint_limit: usize,
    /// Attempts in flight per connection's endpoint (this host's), counted down once each
    /// attempt's outcome is committed: so a killed host leaves at most this many attempts per
    /// endpoint sent but unrecorded (sent again after the restart).
    per_endpoint: HashMap<ConnectionId, usize>,
    /// Attempts finished since the last claim.
    finished_since_claim: usize,
    /// Handed deliveries waiting for their turn, oldest first (at most [`HANDOFF`]).
    waiting: std::collections::VecDeque<Waiting>,
    /// Each attempt answers with its connection and whether it was delivered.
    tasks: tokio::task::JoinSet<(ConnectionId, bool)>,
    client: reqwest::Client,
    recorder: Recorder,
}

impl InFlight {
    /// Sends `delivery` if a slot is free and its endpoint is under its limit; else hands it back.
    #[must_use = "a delivery handed back must wait or go back to the outbox"]
    fn start(&mut self, app: &Arc<App>, delivery: Delivery, endpoint: Option<EndpointContext>) -> Option<Delivery> {
        let count = self.per_endpoint.entry(delivery.connection_id.clone()).or_default();
        if *count >= self.per_endpoint_limit {
            return Some(delivery);
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            return Some(delivery);
        };
        *count += 1;
        let (app, client, recorder) = (app.clone(), self.client.clone(), self.recorder.clone());
        self.tasks.spawn(async move {
            let connection = delivery.connection_id.clone();
            let delivered = attempt(&app, &client, &recorder, delivery, endpoint).await;
            drop(permit);
            (connection, delivered)
        });
        None
    }

    /// Counts a finished attempt out; whether the outbox should be looked at again: the attempt
    /// failed (its retry's time is read there), or the last claim `left_behind` due deliveries and
    /// a [`claim_step`] of attempts finished since.
    fn finished(&mut self, done: Result<(ConnectionId, bool), tokio::task::JoinError>, left_behind: bool) -> bool {
        self.finished_since_claim += 1;
        let enough = left_behind && self.finished_since_claim >= claim_step(self.per_endpoint_limit);
        let Ok((connection, delivered)) = done else {
            return true;
        };
        if let Some(count) = self.per_endpoint.get_mut(&connection) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_endpoint.remove(&connection);
            }
        }
        !delivered || enough
    }

    fn any_endpoint_full(&self) -> bool {
        self.per_endpoint
            .values()
            .any(|count| *count >= self.per_endpoint_limit)
    }

    /// Sends what can go now of the deliveries handed over; the rest wait in memory for their
    /// turn (briefly, and only so many: beyond that they go back to the outbox). Whether any went
    /// back.
    async fn take_handed(&mut self, app: &Arc<App>, batch: Vec<Delivery>) -> bool {
        let endpoints = match endpoint_contexts(app, &batch, app.clock.now()).await {
            Ok(endpoints) => endpoints,
            Err(error) => {
                tracing::error!(%error, "reading the endpoints of handed deliveries failed; they go back to the outbox");
                give_back(app, batch).await;
                return true;
            }
        };
        let (now, clock_now) = (tokio::time::Instant::now(), app.clock.now());
        let mut back = Vec::new();
        for delivery in batch {
            let endpoint = endpoints.get(&delivery.connection_id).cloned();
            // A handed delivery's lease began when it was written: its wait counts from there
            // (it may have waited in the handoff's queue).
            let queued = Duration::from_millis((clock_now.millis() - delivery.created_at.millis()).max(0) as u64);
            let since = now.checked_sub(queued).unwrap_or(now);
            if queued >= HANDED_WAIT {
                back.push(delivery);
                continue;
            }
            if !self.waiting.is_empty() {
                // Those waiting go first.
                self.wait_or_give_back(delivery, endpoint, since, &mut back);
                continue;
            }
            if let Some(delivery) = self.start(app, delivery, endpoint.clone()) {
                self.wait_or_give_back(delivery, endpoint, since, &mut back);
            }
        }
        self.start_waiting(app, &mut back);
        let any = !back.is_empty();
        give_back(app, back).await;
        any
    }

    fn wait_or_give_back(
        &mut self,
        delivery: Delivery,
        endpoint: Option<EndpointContext>,
        since: tokio::time::Instant,
        back: &mut Vec<Delivery>,
    ) {
        if self.waiting.len() < HANDOFF {
            self.waiting.push_back(Waiting {
                delivery,
                endpoint,
                since,
            });
        } else {
            back.push(delivery);
        }
    }

    /// Starts the waiting deliveries that may go now (in order, skipping endpoints at their
    /// limit); those that waited too long are moved to `back`.
    fn start_waiting(&mut self, app: &Arc<App>, back: &mut Vec<Delivery>) {
        let now = tokio::time::Instant::now();
        let mut still = std::collections::VecDeque::with_capacity(self.waiting.len());
        while let Some(waiting) = self.waiting.pop_front() {
            if now.duration_since(waiting.since) >= HANDED_WAIT {
                back.push(waiting.delivery);
                continue;
            }
            if self.slots.available_permits() == 0 {
                still.push_back(waiting);
                continue;
            }
            let Waiting {
                delivery,
                endpoint,
                since,
            } = waiting;
            if let Some(delivery) = self.start(app, delivery, endpoint.clone()) {
                still.push_back(Waiting {
                    delivery,
                    endpoint,
                    since,
                });
            }
        }
        self.waiting = still;
    }

    /// When the oldest waiting delivery must have gone (or gone back).
    fn waiting_deadline(&self) -> Option<tokio::time::Instant> {
        self.waiting.front().map(|w| w.since + HANDED_WAIT)
    }
}

/// Whether due deliveries wait unclaimed (on error: yes, so the worker looks again).
async fn due_left_behind(app: &App) -> bool {
    match app.db.read().await {
        Ok(mut conn) => store::deliveries::any_due_unleased(&mut conn, app.clock.now())
            .await
            .unwrap_or(true),
        Err(_) => true,
    }
}

/// Returns handed deliveries to the outbox, due now, for a claim to take.
async fn give_back(app: &App, deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    let now = app.clock.now();
    let leases: Vec<_> = deliveries.into_iter().map(|d| (d.id, d.attempts)).collect();
    let count = leases.len();
    let released = app
        .writer
        .write(move |tx| {
            let leases = leases.clone();
            Box::pin(async move {
                for (id, attempt) in &leases {
                    store::deliveries::release(tx.conn(), id, *attempt, now).await?;
                }
                Ok::<(), StoreError>(())
            })
        })
        .await;
    if let Err(error) = released {
        tracing::error!(%error, count, "could not give handed deliveries back; they are claimed once their lease ends");
    }
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
    let endpoints = endpoint_contexts(app, &batch, now).await?;
    Ok((batch, endpoints))
}

/// The endpoint context of each connection `batch` goes to.
async fn endpoint_contexts(
    app: &App,
    batch: &[Delivery],
    now: Timestamp,
) -> Result<HashMap<ConnectionId, EndpointContext>, StoreError> {
    let mut endpoints = HashMap::new();
    if !batch.is_empty() {
        let mut conn = app.db.read().await?;
        for delivery in batch {
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
    Ok(endpoints)
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

/// Sends one attempt of `delivery` and records its outcome; whether the endpoint accepted it.
async fn attempt(
    app: &App,
    client: &reqwest::Client,
    recorder: &Recorder,
    delivery: Delivery,
    endpoint: Option<EndpointContext>,
) -> bool {
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
                let _ =
                    store::deliveries::release(&mut tx, &delivery.id, delivery.attempts, started.plus_millis(5_000))
                        .await;
                let _ = tx.commit().await;
            }
            return false;
        }
    };
    let delivered = result.succeeded();
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
    delivered
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
