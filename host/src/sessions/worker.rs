//! The session job worker: claims due jobs (a session to start, an event or a plugin's timer to
//! deliver) and runs them through the bot's connection plugin. A job row is deleted only in the transaction that commits its outcome, so a
//! crash at any point leaves the job to be claimed again once its lease ends.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::app::{App, HostEvent, SHARE_PATIENCE};
use crate::commit::WriteTx;
use crate::domain::ids::{CommentId, InboundEventId, JobId, SessionId};
use crate::domain::model::Budgets;
use crate::domain::sessions::Session;
use crate::runtime::bindings::types::{InboundRequest, SessionEvent};
use crate::runtime::grants::Capability;
use crate::runtime::{CallContext, CallEffects, CallError, LoadedPlugin};
use crate::store::{self, StoreError, jobs::Job};

use super::fair_share::{FairShare, JobSlot};
use super::model_calls::{Handled, ModelCalls};
use super::started::{self, StartRecorder, Started};
use super::{PluginServices, snapshot};
use crate::domain::jobs::{JobKind, QueuedEvent};
use crate::use_cases::sessions::{fail, fail_over_budget};

/// Jobs in hand at once (reading their session, waiting for their share, calling, committing),
/// besides the parked ones ([`PARKED`]).
const JOB_SLOTS: usize = 128;
/// Plugin calls at once (each holds an instance, up to its memory limit), shared fairly.
const CALLS: usize = 16;
/// Jobs parked at once: over their share with their line full, each gave its job slot back and
/// waits in memory for a place in the line ([`FairShare`]); more are put back in the queue.
const PARKED: usize = 2 * JOB_SLOTS;
/// New sessions' start jobs the job worker holds at most, handed to it but not yet running
/// ([`crate::handoff`]); more are claimed from the table as before.
pub const HANDOFF: usize = 2 * JOB_SLOTS;
/// How long a handed job may wait for a slot and still start: less than its lease's margin beyond
/// the call's limits, so it cannot outlive its lease and be claimed again while it runs.
const HANDED_WAIT_MS: i64 = 4_000;
/// Longest sleep between looks at the job table when nothing is due.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Attempts before a job that keeps failing temporarily fails its session.
const MAX_ATTEMPTS: i64 = 5;

/// How long a job over its workspace's or connection's fair share waits before it is tried again.
const DEFER_MS: i64 = 50;

/// What every job the worker runs shares: the fair share of plugin calls, the model-call client,
/// and the recorder of start outcomes.
struct JobTools {
    share: FairShare,
    models: ModelCalls,
    starts: StartRecorder,
    /// Told when a job parks and so frees its job slot.
    slot_freed: Arc<Notify>,
}

/// What running a job came to.
enum Ran {
    /// It ran (on this plugin version, if a plugin was called).
    On(Option<String>),
    /// It was put back: its workspace or connection was at its fair share.
    Deferred,
}

/// Runs the job worker until `shutdown`.
///
/// Jobs reach it two ways: new sessions' start jobs handed over in memory as their write commits
/// ([`crate::handoff`], already leased to this host), and everything else claimed from the table —
/// when woken for queued work, when the next job comes due (or a lease ends), or while a claim may
/// have left due jobs behind. A handed job takes a free slot at once; one that finds none, or
/// whose lease ran short while it waited, goes back to the table for a claim.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(JOB_SLOTS));
    // Half the job slots may wait for one workspace's or connection's share; the rest stay free
    // for everyone else's jobs (more of theirs park, giving their slots back).
    let share = FairShare::new(CALLS, JOB_SLOTS / 2, PARKED);
    let models = match ModelCalls::new(&app) {
        Ok(models) => models,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "the model-call HTTP client could not be built; the job worker stops"
            );
            return;
        }
    };
    let Some(mut handed) = app.job_handoff.take() else {
        tracing::error!("a job worker already runs on this host; this one stops");
        return;
    };
    let (starts, recording) = started::start(app.clone());
    let tools = Arc::new(JobTools {
        share,
        models,
        starts,
        slot_freed: Arc::new(Notify::new()),
    });
    let mut running = tokio::task::JoinSet::new();
    // Whether due jobs may wait in the table unclaimed (new work, a backlog, a timer come due).
    let mut maybe_due = true;
    let mut wake_at = tokio::time::Instant::now();
    loop {
        while running.try_join_next().is_some() {}
        let free = slots.available_permits() as i64;
        // Claim in batches: once a quarter of the slots are free (or nothing runs) — not once
        // per finished job, which would cost a claim query for every job or two.
        if maybe_due && free > 0 && (free * 4 >= JOB_SLOTS as i64 || running.is_empty()) {
            let got = match claim(&app, free).await {
                Ok(jobs) => jobs,
                Err(error) => {
                    tracing::error!(error = %error, "claiming session jobs failed");
                    Vec::new()
                }
            };
            // A full batch may have left more behind; otherwise nothing else is due until the
            // next job's time (a job due now but waiting for its session's running job is
            // claimed when that one finishes and says so, or after a short pause).
            maybe_due = !got.is_empty() && got.len() as i64 == free;
            for job in got {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    break;
                };
                spawn_job(&mut running, &app, &tools, job, permit);
            }
            if !maybe_due {
                let wait = next_wait(&app).await.max(Duration::from_millis(DEFER_MS as u64));
                wake_at = tokio::time::Instant::now() + wait;
            }
        }
        if maybe_due && slots.available_permits() * 4 >= JOB_SLOTS {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = app.jobs_queued.notified() => maybe_due = true,
            _ = tokio::time::sleep_until(wake_at) => {
                maybe_due = true;
                wake_at = tokio::time::Instant::now() + IDLE_POLL;
            }
            Some(job) = handed.recv(), if slots.available_permits() > 0 => {
                take_handed(&mut running, &app, &tools, &slots, job).await;
                while slots.available_permits() > 0 {
                    let Ok(job) = handed.try_recv() else { break };
                    take_handed(&mut running, &app, &tools, &slots, job).await;
                }
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
            // A job parked: its slot is free for a handed job.
            _ = tools.slot_freed.notified() => {}
        }
    }
    // Jobs handed over but not started go back to the table (their rows stay leased otherwise).
    handed.close();
    while let Ok(job) = handed.try_recv() {
        release_handed(&app, &job).await;
    }
    // Let jobs in flight finish so their outcome is committed.
    while running.join_next().await.is_some() {}
    // The recorder ends once it recorded what the jobs sent it.
    drop(tools);
    if let Err(error) = recording.await {
        tracing::error!(%error, "the start recorder failed");
    }
}

/// Starts a handed job in a free slot, or gives it back to the table when its lease ran short
/// while it waited (a claim may take it once the lease ends; it must not run twice).
async fn take_handed(
    running: &mut tokio::task::JoinSet<()>,
    app: &Arc<App>,
    tools: &Arc<JobTools>,
    slots: &Arc<Semaphore>,
    job: Job,
) {
    let fresh = job
        .handed_at
        .is_some_and(|at| app.clock.now().millis() - at.millis() < HANDED_WAIT_MS);
    match slots.clone().try_acquire_owned() {
        Ok(permit) if fresh => spawn_job(running, app, tools, job, permit),
        _ => release_handed(app, &job).await,
    }
}

async fn release_handed(app: &App, job: &Job) {
    let id = job.id.clone();
    let released = app
        .writer
        .write(move |tx| {
            let id = id.clone();
            Box::pin(async move { store::jobs::release_handed(tx.conn(), &id).await })
        })
        .await;
    match released {
        Ok(()) => app.jobs_queued.notify_one(),
        Err(error) => {
            tracing::error!(job = %job.id, %error, "could not give a handed job back; it is claimed once its lease ends")
        }
    }
}

fn spawn_job(
    running: &mut tokio::task::JoinSet<()>,
    app: &Arc<App>,
    tools: &Arc<JobTools>,
    job: Job,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (app, tools) = (app.clone(), tools.clone());
    running.spawn(async move {
        let mut slot = JobSlot::new(permit, tools.slot_freed.clone());
        run_job(&app, &tools, job, &mut slot).await;
        drop(slot);
    });
}

async fn claim(app: &App, limit: i64) -> Result<Vec<Job>, StoreError> {
    let mut tx = app.db.begin().await?;
    let jobs = store::jobs::claim_due(&mut tx, app.db.backend(), app.clock.now(), app.job_leases(), limit).await?;
    tx.commit().await?;
    Ok(jobs)
}

async fn next_wait(app: &App) -> Duration {
    let next = match app.db.read().await {
        Ok(mut conn) => store::jobs::next_due(&mut conn).await.ok().flatten(),
        Err(_) => None,
    };
    match next {
        Some(at) => {
            let ms = (at.millis() - app.clock.now().millis()).clamp(0, IDLE_POLL.as_millis() as i64);
            Duration::from_millis(ms as u64)
        }
        None => IDLE_POLL,
    }
}

async fn run_job(app: &Arc<App>, tools: &JobTools, job: Job, slot: &mut JobSlot) {
    let outcome = match job.job_kind() {
        Ok(JobKind::StartSession) => start_session(app, tools, &job, slot).await,
        Ok(JobKind::SessionEvent(QueuedEvent::Cancel { reason })) => {
            deliver_event(app, tools, &job, SessionEvent::CancelRequested(reason), slot).await
        }
        Ok(JobKind::Timer { payload }) => {
            deliver_event(app, tools, &job, SessionEvent::TimerFired(payload), slot).await
        }
        Ok(JobKind::ModelCall(call)) => match tools.models.handle(app, &job, *call).await {
            Ok(Handled::Done | Handled::Retrying) => Ok(Ran::On(None)),
            Ok(Handled::Later) => Ok(Ran::Deferred),
            Err(error) => Err(error),
        },
        Ok(JobKind::SessionEvent(QueuedEvent::Inbound { event })) => match inbound_request(app, &event).await {
            Ok(Some(request)) => deliver_event(app, tools, &job, SessionEvent::InboundWebhook(request), slot).await,
            // Past the retention window: nothing left to hand over.
            Ok(None) => complete(app, &job).await.map(|()| Ran::On(None)),
            Err(error) => Err(error),
        },
        Ok(JobKind::SessionEvent(QueuedEvent::FollowUp { comment })) => match follow_up(app, &comment).await {
            Ok(Some(comment)) => deliver_event(app, tools, &job, SessionEvent::FollowUp(comment), slot).await,
            // The comment is gone: nothing to hand over.
            Ok(None) => complete(app, &job).await.map(|()| Ran::On(None)),
            Err(error) => Err(error),
        },
        Err(unreadable) => Err(anyhow::anyhow!("{unreadable}")),
    };
    let plugin_sha256 = match outcome {
        Ok(Ran::On(ran_on)) => ran_on,
        Ok(Ran::Deferred) => return,
        Err(error) => {
            host_failure(app, &job, error).await;
            None
        }
    };
    app.announce(HostEvent::JobFinished {
        kind: job.kind.clone(),
        session_id: job.session_id.clone(),
        plugin_sha256,
    });
}

/// A host-side failure (database down, bug): retry with backoff, then give up on the session.
async fn host_failure(app: &App, job: &Job, error: anyhow::Error) {
    tracing::error!(job = %job.id, kind = %job.kind, error = format!("{error:#}"), "session job failed");
    if let Err(e) = retry_or_fail(
        app,
        job,
        &format!("{error:#}"),
        "the host could not start this session",
        Duration::ZERO,
    )
    .await
    {
        tracing::error!(job = %job.id, error = %e, "could not record the job failure; it will be retried after its lease");
    }
}

/// Backoff between job attempts: 2 s, 8 s, 32 s, …
fn backoff_ms(attempts: i64) -> i64 {
    2_000 * 4_i64.pow(attempts.clamp(1, 6) as u32 - 1)
}

async fn retry_or_fail(app: &App, job: &Job, error: &str, reason: &str, cpu: Duration) -> Result<(), StoreError> {
    let now = app.clock.now();
    let (job, error, reason) = (job.clone(), error.to_owned(), reason.to_owned());
    let queued = app.jobs_queued.clone();
    app.writer
        .write(move |tx| {
            let (job, error, reason, queued) = (job.clone(), error.clone(), reason.clone(), queued.clone());
            Box::pin(async move {
                if let Some(session) = &job.session_id {
                    settle_call(tx.conn(), session, None, cpu).await?;
                }
                // The session's other jobs waited for this one: the worker looks again.
                let queued = queued.clone();
                tx.after_commit(move || queued.notify_one());
                if job.attempts >= MAX_ATTEMPTS {
                    if let Some(session) = &job.session_id {
                        let why = format!("{reason} after {} attempts: {error}", job.attempts);
                        fail(tx, session, why, now).await?;
                    }
                    store::jobs::complete(tx.conn(), &job.id).await
                } else {
                    store::jobs::retry_at(tx.conn(), &job.id, now.plus_millis(backoff_ms(job.attempts)), &error).await
                }
            })
        })
        .await
}

/// Starts a session on its connection type's current plugin version, pinning the session to it
/// (a retried start stays on the version it was pinned to). Returns the version that ran.
async fn start_session(app: &Arc<App>, tools: &JobTools, job: &Job, slot: &mut JobSlot) -> anyhow::Result<Ran> {
    let session_id: SessionId = job.session_id.clone().context("start_session job without a session")?;
    let (session, start, workspace_hosts) = {
        // A start handed over by the write that opened its session comes with its rows as that
        // write had them (a cancel since then reaches the plugin after the start, as one made
        // while the start runs does); a claimed one reads them.
        let rows = match &job.handed_start {
            Some(rows) => rows.as_ref().clone(),
            None => {
                let mut conn = app.db.read().await?;
                store::session_start::read(&mut conn, &session_id)
                    .await?
                    .context("the session, or a row it refers to, is gone")?
            }
        };
        if rows.session.status.is_terminal() {
            return complete(app, job).await.map(|()| Ran::On(None));
        }
        let (session, hosts) = (rows.session.clone(), rows.workspace_hosts.clone());
        let start = snapshot::session_start(&app.db, rows, &app.config.api_base_url()).await?;
        (session, start, hosts)
    };

    let Some(plugin) = plugin_for(app, &session).await else {
        let reason = format!(
            "connection type `{}` is not installed on this host",
            session.connection_type
        );
        return finish_failed(app, job, &session, reason, None, Duration::ZERO)
            .await
            .map(|()| Ran::On(None));
    };
    let Some(ticket) = tools
        .share
        .enter(&session.workspace_id, &session.connection_id, SHARE_PATIENCE, slot)
        .await
    else {
        return defer(app, job).await;
    };
    // The session is pinned to this version with the start's outcome (no transaction of its own).
    let pin =
        (session.plugin_sha256.as_deref() != Some(plugin.wasm_sha256.as_str())).then_some(plugin.wasm_sha256.as_str());
    let ran_on = Some(plugin.wasm_sha256.clone());
    let (context, services) = call_for(app, &session, &plugin, workspace_hosts);
    let called = app
        .runtime
        .start_session(&plugin, context, services, start, ticket)
        .await;
    let cpu = called.cpu;
    match called.result {
        Ok(effects) => commit_effects(&tools.starts, job, &session, effects, pin, cpu).await?,
        Err(CallError::Transient(message)) => {
            if let Some(sha) = pin {
                // A retried start stays on this version.
                let (session, sha) = (session.id.clone(), sha.to_owned());
                app.writer
                    .write(move |tx| {
                        let (session, sha) = (session.clone(), sha.clone());
                        Box::pin(async move { store::sessions::set_plugin(tx.conn(), &session, &sha).await })
                    })
                    .await?;
            }
            let reason = format!("{} could not start the session", plugin.label());
            retry_or_fail(app, job, &message, &reason, cpu).await?;
        }
        Err(error) => {
            let reason = match &error {
                CallError::InvalidConfig(_) => {
                    format!("The bot's connection is misconfigured: {error}")
                }
                _ => format!("The session could not start: {error}"),
            };
            tracing::warn!(session = %session.id, plugin = %plugin.manifest.id, %reason, "session start failed");
            finish_failed(app, job, &session, reason, pin, cpu).await?;
        }
    }
    Ok(Ran::On(ran_on))
}

/// What a plugin call about `session` gets: its identity and grants (narrowed by the workspace's
/// `workspace_hosts`), and the host records it may touch.
fn call_for(
    app: &Arc<App>,
    session: &Session,
    plugin: &LoadedPlugin,
    workspace_hosts: Option<Vec<String>>,
) -> (CallContext, Arc<PluginServices>) {
    let context = CallContext::for_session(
        &plugin.manifest,
        plugin.grants,
        session.workspace_id.clone(),
        session.connection_id.clone(),
        session.id.clone(),
    )
    .with_workspace_outbound_hosts(workspace_hosts);
    (context, Arc::new(PluginServices::new(app.clone())))
}

/// The plugin version a session runs on: the one it was pinned to while that version can be had
/// (loaded, or in the compile cache), else its connection type's current version.
async fn plugin_for(app: &App, session: &Session) -> Option<Arc<LoadedPlugin>> {
    if let Some(sha) = session.plugin_sha256.as_deref()
        && let Some(plugin) = app.runtime.pinned_version(sha).await
        && plugin.manifest.id == session.connection_type
    {
        return Some(plugin);
    }
    app.runtime.plugin(&session.connection_type)
}

/// Calls `on-event` on the plugin version the session runs on. A timer, provider webhook or
/// follow-up of a finished session is dropped; a plugin that fails to handle an event of an unfinished session fails the session
/// with its reason. Returns the version that ran.
async fn deliver_event(
    app: &Arc<App>,
    tools: &JobTools,
    job: &Job,
    event: SessionEvent,
    slot: &mut JobSlot,
) -> anyhow::Result<Ran> {
    let session_id: SessionId = job.session_id.clone().context("session event job without a session")?;
    let (session, session_ref, workspace_hosts) = {
        let mut conn = app.db.read().await?;
        let session: Session = store::sessions::get_any(&mut conn, &session_id)
            .await?
            .context("the session is gone")?;
        let session_ref = snapshot::session_ref(&mut conn, &session).await?;
        let hosts =
            store::connection_types::outbound_hosts(&mut conn, &session.workspace_id, &session.connection_type).await?;
        (session, session_ref, hosts)
    };
    if !matches!(event, SessionEvent::CancelRequested(_)) && session.status.is_terminal() {
        return complete(app, job).await.map(|()| Ran::On(None));
    }
    let Some(plugin) = plugin_for(app, &session).await else {
        // Nobody to tell: the plugin is gone.
        return complete(app, job).await.map(|()| Ran::On(None));
    };
    if plugin.grants.contains(Capability::Model)
        && !matches!(event, SessionEvent::CancelRequested(_))
        && let Some(reason) = steps_exhausted(app, &session).await?
    {
        let (id, session) = (job.id.clone(), session.id.clone());
        let now = app.clock.now();
        app.writer
            .write(move |tx| {
                let (id, session, reason) = (id.clone(), session.clone(), reason.clone());
                Box::pin(async move {
                    fail_over_budget(tx, &session, reason, now).await?;
                    store::jobs::complete(tx.conn(), &id).await
                })
            })
            .await?;
        app.jobs_queued.notify_one();
        return Ok(Ran::On(None));
    }
    let Some(ticket) = tools
        .share
        .enter(&session.workspace_id, &session.connection_id, SHARE_PATIENCE, slot)
        .await
    else {
        return defer(app, job).await;
    };
    let ran_on = Some(plugin.wasm_sha256.clone());
    let (context, services) = call_for(app, &session, &plugin, workspace_hosts);
    let called = app
        .runtime
        .on_event(&plugin, context, services, session_ref, event, ticket)
        .await;
    let cpu = called.cpu;
    match called.result {
        Ok(effects) => commit_effects(&tools.starts, job, &session, effects, None, cpu).await?,
        Err(CallError::Transient(message)) => {
            retry_or_fail(
                app,
                job,
                &message,
                &format!("{} could not handle the event", plugin.label()),
                cpu,
            )
            .await?;
        }
        Err(error) => {
            tracing::warn!(session = %session.id, plugin = %plugin.manifest.id, %error, "plugin failed to handle a session event");
            if session.status.is_terminal() {
                complete(app, job).await?;
            } else {
                finish_failed(app, job, &session, format!("The session failed: {error}"), None, cpu).await?;
            }
        }
    }
    Ok(Ran::On(ran_on))
}

/// Why a native agent's session may take no further step (its connection's `steps` budget), if so.
async fn steps_exhausted(app: &App, session: &Session) -> anyhow::Result<Option<String>> {
    let mut conn = app.db.read().await?;
    let connection = store::connections::get(&mut conn, &session.connection_id).await?;
    let budgets = Budgets::from_stored(connection.as_ref().and_then(|c| c.budgets.as_deref()));
    let steps = store::sessions::plugin_calls(&mut conn, &session.id).await?;
    Ok(budgets.steps_exhausted(steps))
}

/// The stored provider webhook `event` as the plugin receives it, if it is still kept.
async fn inbound_request(app: &App, event: &str) -> anyhow::Result<Option<InboundRequest>> {
    let mut conn = app.db.read().await?;
    let Some(stored) = store::inbound::get_event(&mut conn, &InboundEventId::from(event)).await? else {
        return Ok(None);
    };
    let headers: Vec<(String, String)> =
        serde_json::from_str(&stored.headers).context("a stored provider webhook's headers")?;
    Ok(Some(InboundRequest {
        method: stored.method,
        path: stored.path,
        headers,
        body: stored.body,
    }))
}

/// The comment `id` as a `follow-up` event carries it, if it still exists.
async fn follow_up(app: &App, id: &str) -> anyhow::Result<Option<crate::runtime::bindings::types::Comment>> {
    let mut conn = app.db.read().await?;
    snapshot::follow_up(&mut conn, &CommentId::from(id)).await
}

/// Commits what a successful start queued, together with the job's completion (through the
/// start recorder, which batches the starts that finish together).
async fn commit_effects(
    starts: &StartRecorder,
    job: &Job,
    session: &Session,
    effects: CallEffects,
    pin: Option<&str>,
    cpu: Duration,
) -> anyhow::Result<()> {
    let (recorded, answer) = tokio::sync::oneshot::channel();
    let started = Started {
        job: job.id.clone(),
        session: session.clone(),
        effects,
        pin: pin.map(str::to_owned),
        cpu,
        recorded,
    };
    starts
        .send(started)
        .await
        .map_err(|_| anyhow::anyhow!("the start recorder is gone"))?;
    answer
        .await
        .map_err(|_| anyhow::anyhow!("the start recorder dropped the outcome"))??;
    Ok(())
}

async fn finish_failed(
    app: &Arc<App>,
    job: &Job,
    session: &Session,
    reason: String,
    pin: Option<&str>,
    cpu: Duration,
) -> anyhow::Result<()> {
    let now = app.clock.now();
    let (job, session, pin) = (job.id.clone(), session.id.clone(), pin.map(str::to_owned));
    let shared = app.clone();
    app.writer
        .write(move |tx| {
            let (job, session, pin, reason, app) = (
                job.clone(),
                session.clone(),
                pin.clone(),
                reason.clone(),
                shared.clone(),
            );
            Box::pin(async move {
                settle_call(tx.conn(), &session, pin.as_deref(), cpu).await?;
                fail(tx, &session, reason, now).await?;
                finish_job(tx, &app, &job).await
            })
        })
        .await?;
    Ok(())
}

/// Pins the session to the version that ran (if it changed) and adds the call's CPU time.
async fn settle_call(
    tx: &mut store::Conn,
    session: &SessionId,
    pin: Option<&str>,
    cpu: Duration,
) -> Result<(), StoreError> {
    if pin.is_none() && cpu.is_zero() {
        return Ok(());
    }
    store::sessions::settle_call(tx, session, pin, cpu.as_micros().min(i64::MAX as u128) as i64).await
}

/// Puts `job` back for a moment: its workspace or connection has its share of calls running.
async fn defer(app: &App, job: &Job) -> anyhow::Result<Ran> {
    let (job, at) = (job.id.clone(), app.clock.now().plus_millis(DEFER_MS));
    app.writer
        .write(move |tx| {
            let job = job.clone();
            Box::pin(async move { store::jobs::defer(tx.conn(), &job, at).await })
        })
        .await?;
    // The worker looks again (and so learns when the job is due).
    app.jobs_queued.notify_one();
    Ok(Ran::Deferred)
}

async fn complete(app: &Arc<App>, job: &Job) -> anyhow::Result<()> {
    let (job, shared) = (job.id.clone(), app.clone());
    app.writer
        .write(move |tx| {
            let (job, app) = (job.clone(), shared.clone());
            Box::pin(async move { finish_job(tx, &app, &job).await })
        })
        .await?;
    Ok(())
}

/// Deletes the finished `job` in `tx`; once that is committed, wakes the worker if its session has
/// other jobs (they waited for this one: a session's jobs run one at a time).
async fn finish_job(tx: &mut WriteTx, app: &App, job: &JobId) -> Result<(), StoreError> {
    if store::jobs::complete_and_look(tx.conn(), job).await? {
        let queued = app.jobs_queued.clone();
        tx.after_commit(move || queued.notify_one());
    }
    Ok(())
}
