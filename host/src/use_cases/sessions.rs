//! Agent sessions from trigger to result: opening a session when a task is assigned to a bot or a
//! bot is mentioned, starting it through the bot's connection plugin ([`worker`]), recording what
//! the wrapper or plugin reports (activities, status changes) — idempotently — and canceling.
//!
//! Every change is recorded in the audit trail in the transaction that makes it: by the caller
//! passed in, or as the host (`system`) for what the host decides on its own.

use serde_json::json;

use crate::app::App;
use crate::audit::{Actor, Entry};
use crate::commit::{TaskNumber, WriteTx};
use crate::domain::ids::{ActivityId, CommentId, SessionId, StatusChangeId, UserId};
use crate::domain::jobs::{JobKind, QueuedEvent};
use crate::domain::sessions as rules;
use crate::domain::sessions::{
    Activity, Connection, NewActivity, RecordSource, Session, SessionStatus, StatusAnswer, StatusChange, StatusWriter,
    Transition, TriggerKind,
};
use crate::domain::tasks::Task;
use crate::domain::time::Timestamp;
use crate::domain::users::User;
use crate::store::connection_types::Choice;
use crate::store::jobs::NewJob;
use crate::store::session_start::{NamedUser, StartRows};
use crate::store::{self, Conn, StoreError};
use crate::use_cases::caller::Caller;
use crate::use_cases::connection_types::{self, Usability};
use crate::use_cases::error::Error;

/// Why a bot cannot take a session at all (nothing is opened).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    BotDisabled(String),
    #[error("{0}")]
    NoConnection(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<OpenError> for Error {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::BotDisabled(reason) | OpenError::NoConnection(reason) => Error::Conflict(reason),
            OpenError::Store(error) => error.into(),
        }
    }
}

/// What opens a session.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// Who assigned or mentioned the bot.
    pub actor: Option<UserId>,
    /// The comment that mentioned the bot.
    pub comment: Option<CommentId>,
}

/// Opens a session of `bot` on `task` inside the caller's transaction, with the job that starts
/// it, so the session and its start commit (or roll back) together. The caller's own audit record
/// names the session. Once the batch is committed the start job is handed to this host's job
/// worker ([`crate::handoff`]: leased to it at insert, no claim), or, when the worker has no room,
/// the worker is woken to claim it.
///
/// A session whose connection type is not installed, or disabled in the workspace, is opened
/// already failed, with the reason on its card.
pub async fn open(
    wtx: &mut WriteTx,
    app: &App,
    task: &Task,
    bot: &User,
    trigger: Trigger,
) -> Result<Session, OpenError> {
    if !bot.is_enabled() {
        return open_on(wtx, app, task, bot, None, trigger, None).await;
    }
    let found = store::connections::for_bot_with_choice(wtx.conn(), &bot.id, &task.workspace_id).await?;
    open_on(wtx, app, task, bot, found, trigger, None).await
}

/// What the write opening a session already read of what its start shows, beyond the session,
/// task, bot and connection: with it, a start handed to this host's worker reads nothing.
#[derive(Debug, Clone)]
pub struct StartKnown {
    pub workspace_name: String,
    pub has_comments: bool,
    /// Who triggered the session, as the start names them.
    pub trigger_actor: Option<NamedUser>,
    /// A task created in this batch: its number, given at commit.
    pub number: Option<TaskNumber>,
}

/// [`open`], with the bot's connection (and the workspace's choice for its type) already read —
/// `None`: the bot has none — and what else the write knows of the start.
pub async fn open_on(
    wtx: &mut WriteTx,
    app: &App,
    task: &Task,
    bot: &User,
    found: Option<(Connection, Option<Choice>)>,
    trigger: Trigger,
    known: Option<StartKnown>,
) -> Result<Session, OpenError> {
    if !bot.is_enabled() {
        return Err(OpenError::BotDisabled(format!(
            "bot @{} is disabled and takes no new work",
            bot.handle
        )));
    }
    let (connection, choice) = found.ok_or_else(|| {
        OpenError::NoConnection(format!(
            "bot @{} has no agent connection; give it one first",
            bot.handle
        ))
    })?;
    let now = app.clock.now();
    let mut session = Session {
        id: SessionId::generate(),
        workspace_id: task.workspace_id.clone(),
        task_id: task.id.clone(),
        bot_id: bot.id.clone(),
        connection_id: connection.id.clone(),
        connection_type: connection.connection_type.clone(),
        trigger_kind: trigger.kind,
        trigger_actor_id: trigger.actor,
        comment_id: trigger.comment,
        status: SessionStatus::Queued,
        status_message: None,
        external_url: None,
        external_label: None,
        created_at: now,
        started_at: None,
        ended_at: None,
        updated_at: now,
        plugin_sha256: None,
        plugin_cpu_micros: 0,
    };
    let queued = new_change(&session.id, SessionStatus::Queued, None, None, RecordSource::Host, now);
    wtx.record_status_change(queued);
    let usability = connection_types::usability_by_choice(app, &connection.connection_type, choice.as_ref());
    let refusal = match usability {
        Usability::Usable => None,
        Usability::NotInstalled { .. } => Some(format!(
            "connection type `{}` is not installed on this host, so the session could not start",
            connection.connection_type
        )),
        Usability::Disabled => connection_types::unusable_reason(&connection.connection_type, &usability),
    };
    if refusal.is_none() {
        // Written with the batch (a later unit that reads sessions writes it first).
        wtx.insert_session_at_commit(session.clone());
    } else {
        // Its task may be new in this batch: written first.
        wtx.write_new_rows().await?;
        store::sessions::insert(wtx.conn(), &session).await?;
    }
    match refusal {
        None => match app.job_handoff.reserve() {
            Some(room) => {
                let until = now.plus_millis(app.job_leases().plugin_ms);
                let (row, mut job) = NewJob::leased(&JobKind::StartSession, &session.id, now, until);
                let number = known.as_ref().and_then(|k| k.number.clone());
                job.handed_start = known
                    .and_then(|known| known_start(&session, task, bot, &connection, choice.as_ref(), known))
                    .map(Box::new);
                // Nothing in the batch looks for a new session's start job (a cancel later in the
                // batch queues its own job, which runs after the start).
                wtx.insert_job_at_commit(row);
                wtx.after_commit(move || {
                    if let (Some(rows), Some(number)) = (job.handed_start.as_mut(), number.and_then(|n| n.get())) {
                        rows.task.short_number = number;
                    }
                    room.send(job);
                });
            }
            None => {
                wtx.insert_job_at_commit(NewJob::due(&JobKind::StartSession, &session.id, now));
                let queued = app.jobs_queued.clone();
                wtx.after_commit(move || queued.notify_one());
            }
        },
        Some(reason) => {
            host_transition(wtx.conn(), &mut session, SessionStatus::Failed, Some(reason), now).await?;
        }
    }
    Ok(session)
}

/// A new session's start rows from what its opening write knows; `None` when the write does not
/// know them all (a status this process keeps no name for, an assignee other than the bot).
fn known_start(
    session: &Session,
    task: &Task,
    bot: &User,
    connection: &Connection,
    choice: Option<&Choice>,
    known: StartKnown,
) -> Option<StartRows> {
    let statuses = store::tasks::kept_statuses(&task.workspace_id)?;
    let status_name = statuses.iter().find(|s| s.id == task.status_id)?.name.clone();
    let assignee = match &task.assignee_id {
        None => None,
        Some(id) if *id == bot.id => Some(NamedUser::of(bot)),
        Some(_) => return None,
    };
    Some(StartRows {
        session: session.clone(),
        workspace_name: known.workspace_name,
        task: task.clone(),
        status_name,
        bot_name: bot.name.clone(),
        bot_handle: bot.handle.clone(),
        connection: connection.clone(),
        workspace_hosts: choice.and_then(|c| c.outbound_hosts.clone()),
        assignee,
        trigger_actor: known.trigger_actor,
        has_comments: known.has_comments,
    })
}

/// What an @mention of a bot came to.
#[derive(Debug, Clone)]
pub enum Mentioned {
    /// A new session opened.
    Opened(Box<Session>),
    /// The bot's open session on the task continues: the comment reached it as a follow-up.
    FollowedUp(SessionId),
}

/// Handles an @mention of `bot` in `comment` on `task`, inside the caller's transaction. When the
/// bot's latest session on the task is still open and its connection continues sessions
/// ([`rules::FollowUps`]), the comment is queued for that session's plugin as a `follow-up` event
/// (the plugin records it in the feed as it sees fit, e.g. as a `prompt`); otherwise a session
/// opens as for any trigger.
pub async fn mention(
    wtx: &mut WriteTx,
    app: &App,
    task: &Task,
    bot: &User,
    comment: &crate::domain::tasks::Comment,
) -> Result<Mentioned, OpenError> {
    let trigger = Trigger {
        kind: TriggerKind::Mentioned,
        actor: Some(comment.author_id.clone()),
        comment: Some(comment.id.clone()),
    };
    if !bot.is_enabled() {
        return open(wtx, app, task, bot, trigger)
            .await
            .map(|s| Mentioned::Opened(Box::new(s)));
    }
    wtx.write_new_rows().await?;
    let latest = store::sessions::latest_of_bot_on_task(wtx.conn(), &task.id, &bot.id).await?;
    let Some(latest) = latest.filter(|s| !s.status.is_terminal()) else {
        return open(wtx, app, task, bot, trigger)
            .await
            .map(|s| Mentioned::Opened(Box::new(s)));
    };
    let continues = match store::connections::get(wtx.conn(), &latest.connection_id).await? {
        Some(connection) => {
            let handles = app
                .runtime
                .plugin(&connection.connection_type)
                .is_some_and(|p| p.grants.contains(crate::runtime::Capability::FollowUp));
            connection.follow_ups(handles) == rules::FollowUps::Continue
        }
        None => false,
    };
    if !continues {
        return open(wtx, app, task, bot, trigger)
            .await
            .map(|s| Mentioned::Opened(Box::new(s)));
    }
    let now = app.clock.now();
    let job = JobKind::SessionEvent(QueuedEvent::FollowUp {
        comment: comment.id.to_string(),
    });
    store::jobs::insert(wtx.conn(), &job, Some(&latest.id), now).await?;
    Ok(Mentioned::FollowedUp(latest.id))
}

/// Appends an activity to a session on behalf of `actor`, after the checks every activity meets
/// (the API's and plugins' paths meet here). A repeated idempotency key returns the original
/// activity and `false`, and records nothing.
pub async fn record_activity(
    app: &App,
    session: &Session,
    activity: NewActivity,
    source: RecordSource,
    actor: &Actor,
) -> Result<(Activity, bool), Error> {
    let record = activity_record(app, session, activity, source)?;
    if let Some(key) = &record.idempotency_key {
        let mut conn = app.db.read().await?;
        if let Some(existing) = store::sessions::activity_by_key(&mut conn, &session.id, key).await? {
            return Ok((existing, false));
        }
    }
    let audited_as = actor.clone();
    let inserted = record.clone();
    let written = app
        .writer
        .write(move |tx| {
            let (record, actor) = (inserted.clone(), audited_as.clone());
            Box::pin(async move { write_activity(tx, &record, &actor).await })
        })
        .await;
    match written {
        Ok(()) => Ok((record, true)),
        // A concurrent request with the same key won the race: answer with its activity.
        Err(StoreError::Conflict(message)) => {
            if let Some(key) = &record.idempotency_key {
                let mut conn = app.db.read().await?;
                if let Some(existing) = store::sessions::activity_by_key(&mut conn, &session.id, key).await? {
                    return Ok((existing, false));
                }
            }
            Err(Error::Conflict(message))
        }
        Err(error) => Err(error.into()),
    }
}

/// The record `activity` becomes on `session`, once it passed the checks every activity meets.
pub(crate) fn activity_record(
    app: &App,
    session: &Session,
    activity: NewActivity,
    source: RecordSource,
) -> Result<Activity, Error> {
    let activity = activity.validated()?;
    Ok(Activity {
        id: ActivityId::generate(),
        session_id: session.id.clone(),
        activity_type: activity.activity_type,
        body: activity.body,
        action: activity.action,
        parameter: activity.parameter,
        result: activity.result,
        provider_event_id: activity.provider_event_id,
        provider_event_type: activity.provider_event_type,
        raw: activity.raw,
        idempotency_key: activity.idempotency_key,
        source,
        created_at: app.clock.now(),
    })
}

/// Inserts `record` (from [`activity_record`]) with its audit record, in `tx`: for writers that
/// commit an activity together with other changes. A repeated idempotency key is a
/// [`StoreError::Conflict`].
pub(crate) async fn write_activity(tx: &mut WriteTx, record: &Activity, actor: &Actor) -> Result<(), StoreError> {
    store::sessions::insert_activity(tx.conn(), record).await?;
    let details =
        json!({"activityId": record.id, "activityType": record.activity_type.as_str(), "bytes": record.body.len()});
    let entry = Entry::new("session.activity.create", "agent_session", &record.session_id, details);
    tx.audit(&actor.clone().in_session(&record.session_id), entry, record.created_at);
    Ok(())
}

/// The result of a status request.
#[derive(Debug, Clone)]
pub struct StatusOutcome {
    /// The session after the request.
    pub session: Session,
    /// The answer: this request's, or the original one's for a repeated idempotency key.
    pub answer: StatusAnswer,
}

/// Moves a session to `status` on behalf of `actor` (its message and key checked here, where the
/// API's and plugins' paths meet).
///
/// Repeating the current status changes nothing; a finished session refuses to change. A request
/// with an idempotency key records its answer, whether or not it changed anything, and a repeat of
/// the key gets that answer back — even after the session finished, was canceled or failed since
/// (connectors re-send their keys whenever a webhook is redelivered). A new key asking for a
/// transition the session cannot make is refused.
pub async fn change_status(
    app: &App,
    session_id: &SessionId,
    request: StatusRequest,
    source: RecordSource,
    actor: &Actor,
) -> Result<StatusOutcome, Error> {
    let request = StatusRequest {
        message: rules::status_message(request.message)?,
        idempotency_key: rules::idempotency_key(request.idempotency_key)?,
        ..request
    };
    let now = app.clock.now();
    let (session_id, actor) = (session_id.clone(), actor.clone());
    app.writer
        .write(move |tx| {
            let (session_id, request, actor) = (session_id.clone(), request.clone(), actor.clone());
            Box::pin(async move { change_status_in(tx, &session_id, request, source, &actor, now).await })
        })
        .await
}

async fn change_status_in(
    tx: &mut WriteTx,
    session_id: &SessionId,
    request: StatusRequest,
    source: RecordSource,
    actor: &Actor,
    now: Timestamp,
) -> Result<StatusOutcome, Error> {
    let mut session = store::sessions::get_locked(tx.conn(), session_id)
        .await?
        .ok_or_else(|| Error::not_found("agent session", session_id.as_str()))?;
    if let Some(key) = &request.idempotency_key
        && let Some(answer) = store::sessions::status_answer_by_key(tx.conn(), session_id, key).await?
    {
        return Ok(StatusOutcome { session, answer });
    }
    let answer = match session.status.transition(request.status, StatusWriter::Agent)? {
        Transition::Unchanged => StatusAnswer {
            status: session.status,
            message: session.status_message.clone(),
            changed: false,
            at: session.updated_at,
        },
        Transition::Changed => {
            let from = session.status;
            let change = write_status(
                tx.conn(),
                &mut session,
                request.status,
                request.message,
                request.idempotency_key.clone(),
                source,
                now,
            )
            .await?;
            let details = json!({"from": from.as_str(), "to": change.status.as_str(), "message": change.message});
            let entry = Entry::new("session.status.change", "agent_session", &session.id, details);
            tx.audit(&actor.clone().in_session(&session.id), entry, now);
            StatusAnswer {
                status: change.status,
                message: change.message,
                changed: true,
                at: change.created_at,
            }
        }
    };
    if let Some(key) = &request.idempotency_key {
        store::sessions::insert_status_answer(tx.conn(), &session.id, key, &answer).await?;
    }
    Ok(StatusOutcome { session, answer })
}

/// A requested status change.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    pub status: SessionStatus,
    pub message: Option<String>,
    pub idempotency_key: Option<String>,
}

/// Sets the session's status fields and records the change, in `tx` (no audit record: callers
/// record the action that caused it). Only called once the transition table allowed the change:
/// this module is the one writer of session status.
async fn write_status(
    tx: &mut Conn,
    session: &mut Session,
    status: SessionStatus,
    message: Option<String>,
    key: Option<String>,
    source: RecordSource,
    now: Timestamp,
) -> Result<StatusChange, StoreError> {
    session.status = status;
    session.status_message = message.clone();
    session.updated_at = now;
    if status == SessionStatus::Running && session.started_at.is_none() {
        session.started_at = Some(now);
    }
    if status.is_terminal() {
        session.ended_at = Some(now);
    }
    store::sessions::update_status(tx, session).await?;
    insert_change(tx, &session.id, status, message, key, source, now).await
}

async fn insert_change(
    tx: &mut Conn,
    session: &SessionId,
    status: SessionStatus,
    message: Option<String>,
    key: Option<String>,
    source: RecordSource,
    now: Timestamp,
) -> Result<StatusChange, StoreError> {
    let change = new_change(session, status, message, key, source, now);
    store::sessions::insert_status_change(tx, &change).await?;
    Ok(change)
}

fn new_change(
    session: &SessionId,
    status: SessionStatus,
    message: Option<String>,
    key: Option<String>,
    source: RecordSource,
    now: Timestamp,
) -> StatusChange {
    StatusChange {
        id: StatusChangeId::generate(),
        session_id: session.clone(),
        status,
        message,
        idempotency_key: key,
        source,
        created_at: now,
    }
}

/// The host fails or cancels a session on its own, as the transition table allows: whether it
/// changed (a finished session stays as it is).
async fn host_transition(
    tx: &mut Conn,
    session: &mut Session,
    status: SessionStatus,
    message: Option<String>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    match session.status.transition(status, StatusWriter::Host) {
        Ok(Transition::Changed) => {
            write_status(tx, session, status, message, None, RecordSource::Host, now).await?;
            Ok(true)
        }
        Ok(Transition::Unchanged) => Ok(false),
        Err(refused) => {
            // A bug in the host, not the caller's doing: leave the session as it is.
            tracing::error!(session = %session.id, %refused, "the host asked for a status change the transition table refuses");
            Ok(false)
        }
    }
}

/// The host fails a session on its own (delivery given up, start failed), recording it as a
/// `system` action.
async fn host_status(
    tx: &mut WriteTx,
    session: &mut Session,
    status: SessionStatus,
    message: Option<String>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let from = session.status;
    if !host_transition(tx.conn(), session, status, message.clone(), now).await? {
        return Ok(());
    }
    let details = json!({"from": from.as_str(), "to": status.as_str(), "message": message});
    let actor = Actor::system(Some(session.workspace_id.clone())).in_session(&session.id);
    tx.audit(
        &actor,
        Entry::new("session.status.change", "agent_session", &session.id, details),
        now,
    );
    Ok(())
}

/// Fails a session (unless it already finished) with a reason a person understands.
pub(crate) async fn fail(
    tx: &mut WriteTx,
    session_id: &SessionId,
    reason: String,
    now: Timestamp,
) -> Result<(), StoreError> {
    if let Some(mut session) = store::sessions::get_locked(tx.conn(), session_id).await? {
        host_status(tx, &mut session, SessionStatus::Failed, Some(reason), now).await?;
    }
    Ok(())
}

/// Fails a session that ran out of a budget and tells its plugin, as a cancel, so it can stop what
/// it runs and drop the session's state (a plugin is told of its session's end only by a cancel).
pub(crate) async fn fail_over_budget(
    tx: &mut WriteTx,
    session_id: &SessionId,
    reason: String,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(mut session) = store::sessions::get_locked(tx.conn(), session_id).await? else {
        return Ok(());
    };
    if session.status.is_terminal() {
        return Ok(());
    }
    host_status(tx, &mut session, SessionStatus::Failed, Some(reason.clone()), now).await?;
    let event = JobKind::SessionEvent(QueuedEvent::Cancel { reason: Some(reason) });
    store::jobs::insert(tx.conn(), &event, Some(session_id), now).await?;
    Ok(())
}

/// Puts a session the host failed (its start webhook was not delivered) back in the queue, for a
/// manual redelivery. Sessions that finished for any other reason stay finished.
pub(crate) async fn reopen_for_redelivery(
    tx: &mut Conn,
    session_id: &SessionId,
    why: String,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let Some(mut session) = store::sessions::get_locked(tx, session_id).await? else {
        return Ok(false);
    };
    let changes = store::sessions::status_changes(tx, session_id).await?;
    let failed_by_host = changes.last().is_some_and(|c| c.source == RecordSource::Host);
    match session
        .status
        .transition(SessionStatus::Queued, StatusWriter::Redelivery)
    {
        Ok(Transition::Changed) if failed_by_host => {
            session.ended_at = None;
            write_status(
                tx,
                &mut session,
                SessionStatus::Queued,
                Some(why),
                None,
                RecordSource::Host,
                now,
            )
            .await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A person cancels session `id` of their workspace (its plugin is told, as for every cancel):
/// the session as it is now. A finished session cannot be canceled (409); a person only (bots
/// end their own sessions through the status API).
pub async fn cancel_by_person(app: &App, caller: &Caller, id: &str, reason: Option<String>) -> Result<Session, Error> {
    caller.require_person()?;
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| format!("canceled by @{}", caller.user.handle));
    if reason.len() > rules::MAX_STATUS_MESSAGE_BYTES {
        return Err(Error::invalid(
            "reason",
            format!("a reason is at most {} bytes", rules::MAX_STATUS_MESSAGE_BYTES),
        ));
    }
    let (workspace, id, now) = (caller.workspace_id().clone(), id.to_owned(), app.clock.now());
    let actor = caller.actor();
    let canceled = app
        .writer
        .write(move |tx| {
            let (workspace, id, reason, actor) = (workspace.clone(), id.clone(), reason.clone(), actor.clone());
            Box::pin(async move {
                let Some(found) = store::sessions::get(tx.conn(), &workspace, &id).await? else {
                    return Err(Error::NotFound(format!("no agent session `{id}` in this workspace")));
                };
                let Some(mut session) = store::sessions::get_locked(tx.conn(), &found.id).await? else {
                    return Err(Error::NotFound(format!("no agent session `{id}` in this workspace")));
                };
                if session.status.is_terminal() {
                    return Err(Error::Conflict(format!(
                        "agent session `{id}` has already finished ({}); there is nothing to cancel",
                        session.status.as_str()
                    )));
                }
                cancel(tx.conn(), &mut session, reason.clone(), now).await?;
                let details = json!({"reason": reason});
                tx.audit(
                    &actor.in_session(&session.id),
                    Entry::new("session.cancel", "agent_session", &session.id, details),
                    now,
                );
                Ok(session)
            })
        })
        .await?;
    app.jobs_queued.notify_one();
    Ok(canceled)
}

/// Cancels an unfinished session in `tx` and queues the cancel for its plugin's `on-event`
/// (a finished session is left as it is). The caller's audit record names the session.
pub async fn cancel(tx: &mut Conn, session: &mut Session, reason: String, now: Timestamp) -> Result<(), StoreError> {
    if !host_transition(tx, session, SessionStatus::Canceled, Some(reason.clone()), now).await? {
        return Ok(());
    }
    let event = JobKind::SessionEvent(QueuedEvent::Cancel { reason: Some(reason) });
    store::jobs::insert(tx, &event, Some(&session.id), now).await?;
    Ok(())
}
