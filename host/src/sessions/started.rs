//! Recording what session starts queued, in batches. Every assignment ends in a start whose
//! outcome is the same three writes — the call settled on its session, its webhooks put in the
//! outbox, its job deleted — so one recorder task takes the outcomes waiting and writes them as
//! one unit of the group commit, all three kinds of write for the whole batch together
//! ([`store::start_outcomes`]: one statement on PostgreSQL), not three statements per start. As the delivery
//! recorder does for attempts. A start is answered once its outcome is committed.
//!
//! A batch that fails (one start's webhook id taken, say) is written again one start at a time,
//! so only the start at fault hears of it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::app::App;
use crate::commit::WriteTx;
use crate::domain::ids::JobId;
use crate::domain::jobs::{self, JobKind};
use crate::domain::sessions::Session;
use crate::domain::time::Timestamp;
use crate::runtime::CallEffects;
use crate::store::sessions::SettledCall;
use crate::store::{self, StoreError, deliveries::Delivery};

/// Start outcomes written per unit at most.
const BATCH: usize = 128;

/// A start that ran: what it queued, to commit with its job's completion.
pub struct Started {
    pub job: JobId,
    pub session: Session,
    pub effects: CallEffects,
    /// The plugin version to pin the session to, if it changed.
    pub pin: Option<String>,
    pub cpu: Duration,
    /// Told once the outcome is committed, or why it could not be.
    pub recorded: oneshot::Sender<Result<(), StoreError>>,
}

/// Hands start outcomes to the recorder task.
pub type StartRecorder = mpsc::Sender<Started>;

/// Starts the recorder task; it ends when every [`StartRecorder`] is dropped, after recording
/// what was sent.
pub fn start(app: Arc<App>) -> (StartRecorder, tokio::task::JoinHandle<()>) {
    crate::commit::batching_task(BATCH * 2, BATCH, move |batch: Vec<Started>| {
        let app = app.clone();
        async move { record(&app, batch).await }
    })
}

/// What the unit needs of a start.
#[derive(Clone)]
struct Outcome {
    job: JobId,
    session: Session,
    effects: CallEffects,
    pin: Option<String>,
    cpu: Duration,
}

async fn record(app: &Arc<App>, batch: Vec<Started>) {
    let (outcomes, answers): (Vec<Outcome>, Vec<_>) = batch
        .into_iter()
        .map(|s| {
            let outcome = Outcome {
                job: s.job,
                session: s.session,
                effects: s.effects,
                pin: s.pin,
                cpu: s.cpu,
            };
            (outcome, s.recorded)
        })
        .unzip();
    // Shared with the unit, not copied: the webhook bodies are most of an outcome's bytes.
    let outcomes = Arc::new(outcomes);
    if outcomes.len() == 1 {
        let result = write(app, outcomes).await;
        if let Some(answer) = answers.into_iter().next() {
            let _ = answer.send(result);
        }
        return;
    }
    match write(app, outcomes.clone()).await {
        Ok(()) => {
            for answer in answers {
                let _ = answer.send(Ok(()));
            }
        }
        Err(error) => {
            tracing::debug!(%error, starts = outcomes.len(), "a batch of start outcomes failed; writing them one by one");
            let alone = outcomes.iter().zip(answers).map(|(outcome, answer)| async move {
                let _ = answer.send(write(app, Arc::new(vec![outcome.clone()])).await);
            });
            futures_util::future::join_all(alone).await;
        }
    }
}

/// Writes `outcomes` as one unit; answers once it is committed.
async fn write(app: &Arc<App>, outcomes: Arc<Vec<Outcome>>) -> Result<(), StoreError> {
    let now = app.clock.now();
    let shared = app.clone();
    app.writer
        .write(move |wtx| {
            let (app, outcomes) = (shared.clone(), outcomes.clone());
            Box::pin(async move { write_in(wtx, &app, &outcomes, now).await })
        })
        .await
}

async fn write_in(wtx: &mut WriteTx, app: &App, outcomes: &[Outcome], now: Timestamp) -> Result<(), StoreError> {
    let settled: Vec<SettledCall> = outcomes
        .iter()
        .filter(|o| o.pin.is_some() || !o.cpu.is_zero())
        .map(|o| SettledCall {
            session: o.session.id.clone(),
            pin: o.pin.clone(),
            micros: o.cpu.as_micros().min(i64::MAX as u128) as i64,
        })
        .collect();
    let mut jobs_queued = false;
    for outcome in outcomes {
        let (session, effects) = (&outcome.session.id, &outcome.effects);
        for model_call in &effects.model_calls {
            let job = JobKind::ModelCall(Box::new(model_call.call.clone()));
            store::jobs::insert_with_id(wtx.conn(), &model_call.id, &job, session, now, now).await?;
            jobs_queued = true;
        }
        for timer in &effects.timers {
            let due = now.plus_millis(timer.delay_ms as i64);
            let job = JobKind::Timer {
                payload: timer.payload.clone(),
            };
            store::jobs::insert_with_id(wtx.conn(), &timer.id, &job, session, due, now).await?;
            jobs_queued = true;
        }
        for timer in &effects.canceled_timers {
            store::jobs::delete_pending(wtx.conn(), timer, jobs::TIMER, session, now).await?;
        }
    }
    // Each webhook is leased to this host's delivery worker and handed over once committed, or
    // left for its claim when the handoff has no room.
    let lease_ms = crate::delivery::worker::lease_ms(app);
    let (mut rows, mut rooms) = (Vec::new(), Vec::new());
    for outcome in outcomes {
        let session = &outcome.session;
        for webhook in &outcome.effects.webhooks {
            let mut delivery = Delivery::pending(
                webhook.id.clone(),
                session.workspace_id.clone(),
                session.connection_id.clone(),
                Some(session.id.clone()),
                webhook.url.clone(),
                webhook.body.clone(),
                now,
            );
            let room = app.delivery_handoff.reserve();
            let lease = room.as_ref().map(|_| {
                delivery.attempts = 1;
                now.plus_millis(lease_ms)
            });
            rows.push((delivery, lease));
            rooms.push(room);
        }
    }
    let finished: Vec<JobId> = outcomes.iter().map(|o| o.job.clone()).collect();
    // A finished job's session may have jobs that waited for it; timers and model calls are new.
    let others_waiting = store::start_outcomes::write(wtx.conn(), &settled, &rows, &finished).await?;
    let unhanded = rooms.iter().any(Option::is_none);
    let handed: Vec<_> = rooms
        .into_iter()
        .zip(rows)
        .filter_map(|(room, (delivery, _))| room.map(|room| (room, delivery)))
        .collect();
    if !handed.is_empty() {
        wtx.after_commit(move || {
            for (room, delivery) in handed {
                room.send(delivery);
            }
        });
    }
    if unhanded {
        let queued = app.deliveries_queued.clone();
        wtx.after_commit(move || queued.notify_one());
    }
    if others_waiting || jobs_queued {
        let queued = app.jobs_queued.clone();
        wtx.after_commit(move || queued.notify_one());
    }
    Ok(())
}
