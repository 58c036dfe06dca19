//! Task use cases: create, change and comment on tasks. These are the triggers of agent sessions:
//! assigning a task to a bot, or @mentioning a bot in a comment, opens a session in the same
//! transaction as the change that caused it.

use serde_json::json;

use super::sessions::{self, Mentioned, OpenError, StartKnown, Trigger};
use crate::app::{App, SharedApp};
use crate::audit::Entry;
use crate::commit::{TaskNumber, WriteTx};
use crate::domain::comments::{mentioned_handles, validate_comment};
use crate::domain::ids::{CommentId, SessionId, StatusId, TaskEventId, TaskId, UserId};
use crate::domain::sessions::{Session, TriggerKind};
use crate::domain::tasks::{
    Comment, DEFAULT_NEW_TASK_STATUS, Task, TaskEvent, TaskRef, validate_description, validate_title,
};
use crate::domain::time::Timestamp;
use crate::domain::users::{User, UserKind};
use crate::store::assignment::{AssigneeRead, UserRef};
use crate::store::session_start::NamedUser;
use crate::store::{self, Conn};
use crate::use_cases::accounts::Caller;
use crate::use_cases::error::Error;

/// A task to create.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub title: String,
    pub description: Option<String>,
    /// Defaults to the workspace's "To do"-like status.
    pub status_id: Option<String>,
    /// A user id or `@handle`.
    pub assignee: Option<String>,
}

/// Changes to a task; `None` leaves a field as it is. `assignee: Some(None)` unassigns.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub status_id: Option<String>,
    pub assignee: Option<Option<String>>,
}

impl TaskPatch {
    fn is_empty(&self) -> bool {
        self.title.is_none() && self.description.is_none() && self.status_id.is_none() && self.assignee.is_none()
    }
}

/// A task as a write left it, with the sessions the write opened and the people it read that the
/// task names (the caller, a new assignee), so showing the task need not read them again.
#[derive(Debug, Clone)]
pub struct TaskWritten {
    pub task: Task,
    pub opened: Vec<Session>,
    pub people: Vec<User>,
}

/// Creates a task. Assigning it to a bot opens a session. Group-committed: answers once written.
pub async fn create(app: &SharedApp, caller: &Caller, request: NewTask) -> Result<TaskWritten, Error> {
    let title = validate_title(&request.title)?;
    let description = validate_description(request.description.as_deref().unwrap_or(""))?;
    let now = app.clock.now();
    let (shared, acting) = (app.clone(), caller.clone());
    let (mut task, opened, assignee, number) = app
        .writer
        .write(move |tx| {
            let (app, caller, request) = (shared.clone(), acting.clone(), request.clone());
            let (title, description) = (title.clone(), description.clone());
            Box::pin(async move { create_in(tx, &app, &caller, request, title, description, now).await })
        })
        .await?;
    // The batch committed, so its tasks have their numbers.
    task.short_number = number
        .get()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a created task's batch committed without numbering it")))?;
    let people = [caller.user.clone()].into_iter().chain(assignee).collect();
    Ok(TaskWritten { task, opened, people })
}

async fn create_in(
    tx: &mut WriteTx,
    app: &App,
    caller: &Caller,
    request: NewTask,
    title: String,
    description: String,
    now: Timestamp,
) -> Result<(Task, Vec<Session>, Option<User>, TaskNumber), Error> {
    let workspace = caller.workspace_id().clone();
    let status_id = match &request.status_id {
        Some(id) => checked_status(tx.conn(), caller, id).await?,
        None => {
            let statuses = store::tasks::statuses(tx.conn(), &workspace).await?;
            statuses
                .get(DEFAULT_NEW_TASK_STATUS)
                .or_else(|| statuses.first())
                .map(|s| s.id.clone())
                .ok_or_else(|| Error::Conflict("this workspace has no task statuses".into()))?
        }
    };
    let (workspace_name, assignee) = match &request.assignee {
        Some(reference) => {
            let found = tx.assignee(&workspace, &user_ref(reference)).await?;
            let (name, read) = found.unzip();
            (name, Some(assignable(read, reference)?))
        }
        None => (None, None),
    };
    let id = TaskId::generate();
    let (placeholder, number) = tx.number_task(&workspace, &id);
    let task = Task {
        id,
        workspace_id: workspace.clone(),
        short_number: placeholder,
        title,
        description,
        status_id,
        assignee_id: assignee.as_ref().map(|a| a.user.id.clone()),
        created_by: caller.user.id.clone(),
        created_at: now,
        updated_at: now,
    };
    // Written with the batch, numbered (nothing else can name it before the batch commits).
    tx.insert_task_at_commit(task.clone());
    record_event(
        tx,
        &task.id,
        &caller.user.id,
        "created",
        json!({ "title": task.title }),
        now,
    );
    let mut opened = Vec::new();
    if let Some(read) = &assignee {
        record_event(
            tx,
            &task.id,
            &caller.user.id,
            "assignee_changed",
            json!({ "from": null, "to": read.user.id }),
            now,
        );
        if read.user.kind == UserKind::Bot {
            let known = StartKnown {
                workspace_name: workspace_name.unwrap_or_default(),
                has_comments: false,
                trigger_actor: Some(NamedUser::of(&caller.user)),
                number: Some(number.clone()),
            };
            let trigger = assigned_by(caller);
            let connection = read.connection.clone();
            opened.push(sessions::open_on(tx, app, &task, &read.user, connection, trigger, Some(known)).await?);
        }
    }
    let details = json!({"shortNumber": task.short_number, "title": task.title, "assigneeId": task.assignee_id});
    audit_change(tx, caller, "task.create", &task.id, details, &opened, now);
    Ok((task, opened, assignee.map(|a| a.user), number))
}

/// Changes a task. Assigning it to a bot (from anyone else, or nobody) opens a session; sending
/// the current assignee again changes nothing.
pub async fn update(
    app: &SharedApp,
    caller: &Caller,
    task_ref: &TaskRef,
    patch: TaskPatch,
) -> Result<TaskWritten, Error> {
    if patch.is_empty() {
        return Err(Error::Invalid {
            field: None,
            message: "nothing to change: send at least one of title, description, statusId, assigneeId".into(),
        });
    }
    let title = patch.title.as_deref().map(validate_title).transpose()?;
    let description = patch.description.as_deref().map(validate_description).transpose()?;
    let now = app.clock.now();
    let (shared, acting, named) = (app.clone(), caller.clone(), task_ref.clone());
    // Changes to one task run on one writer (see `Writer::write_to_task`).
    let (task, opened, assignee, canceled) = app
        .writer
        .write_to_task(caller.workspace_id(), task_ref, move |tx| {
            let (app, caller, task_ref, patch) = (shared.clone(), acting.clone(), named.clone(), patch.clone());
            let (title, description) = (title.clone(), description.clone());
            Box::pin(async move { update_in(tx, &app, &caller, &task_ref, patch, title, description, now).await })
        })
        .await?;
    if canceled {
        app.jobs_queued.notify_one();
    }
    let people = [caller.user.clone()].into_iter().chain(assignee).collect();
    Ok(TaskWritten { task, opened, people })
}

#[allow(clippy::too_many_arguments)]
async fn update_in(
    tx: &mut WriteTx,
    app: &App,
    caller: &Caller,
    task_ref: &TaskRef,
    patch: TaskPatch,
    title: Option<String>,
    description: Option<String>,
    now: Timestamp,
) -> Result<(Task, Vec<Session>, Option<User>, bool), Error> {
    let wanted = patch.assignee.as_ref().and_then(|a| a.as_deref()).map(user_ref);
    let read = tx
        .task_to_change(caller.workspace_id(), task_ref, wanted.as_ref())
        .await?
        .ok_or_else(|| task_not_found(task_ref))?;
    let (mut task, mut found) = (tx.as_changed(read.task), read.assignee);
    let before = task.clone();
    let actor = caller.user.id.clone();
    if let Some(title) = title.filter(|t| *t != task.title) {
        record_event(
            tx,
            &task.id,
            &actor,
            "title_changed",
            json!({ "from": task.title, "to": title }),
            now,
        );
        task.title = title;
    }
    if let Some(description) = description.filter(|d| *d != task.description) {
        record_event(tx, &task.id, &actor, "description_changed", json!({}), now);
        task.description = description;
    }
    if let Some(status_id) = &patch.status_id {
        let status_id = checked_status(tx.conn(), caller, status_id).await?;
        if status_id != task.status_id {
            record_event(
                tx,
                &task.id,
                &actor,
                "status_changed",
                json!({ "from": task.status_id, "to": status_id }),
                now,
            );
            task.status_id = status_id;
        }
    }
    let mut newly_assigned_bot = None;
    let mut assignee_read = None;
    if let Some(assignee) = &patch.assignee {
        let user = match assignee {
            Some(reference) => Some(assignable(found.take(), reference)?),
            None => None,
        };
        let new_id = user.as_ref().map(|a| a.user.id.clone());
        if new_id != task.assignee_id {
            record_event(
                tx,
                &task.id,
                &actor,
                "assignee_changed",
                json!({ "from": task.assignee_id, "to": new_id }),
                now,
            );
            task.assignee_id = new_id;
            newly_assigned_bot = user.clone().filter(|a| a.user.kind == UserKind::Bot);
        }
        assignee_read = user.map(|a| a.user);
    }
    task.updated_at = now;
    tx.update_task_at_commit(task.clone());
    // The bot this task was taken from stops the work it was assigned (mentions keep going).
    let mut canceled = Vec::new();
    if let Some(previous) = before
        .assignee_id
        .as_ref()
        .filter(|p| Some(*p) != task.assignee_id.as_ref())
    {
        let reason = format!("unassigned by {}", caller.user.name);
        tx.write_new_rows().await?;
        for mut session in store::sessions::open_for_bot(tx.conn(), previous).await? {
            if session.task_id == task.id && session.trigger_kind == TriggerKind::Assigned {
                sessions::cancel(tx.conn(), &mut session, reason.clone(), now).await?;
                canceled.push(session.id.to_string());
            }
        }
    }
    let mut opened = Vec::new();
    if let Some(bot) = newly_assigned_bot {
        let known = StartKnown {
            workspace_name: read.workspace_name,
            has_comments: read.has_comments,
            trigger_actor: Some(NamedUser::of(&caller.user)),
            number: None,
        };
        let trigger = assigned_by(caller);
        opened.push(sessions::open_on(tx, app, &task, &bot.user, bot.connection, trigger, Some(known)).await?);
    }
    let changed: Vec<&str> = [
        ("title", before.title != task.title),
        ("description", before.description != task.description),
        ("statusId", before.status_id != task.status_id),
        ("assigneeId", before.assignee_id != task.assignee_id),
    ]
    .into_iter()
    .filter_map(|(field, differs)| differs.then_some(field))
    .collect();
    let details = json!({"changed": changed, "statusId": task.status_id, "assigneeId": task.assignee_id, "canceledSessions": canceled});
    audit_change(tx, caller, "task.update", &task.id, details, &opened, now);
    Ok((task, opened, assignee_read, !canceled.is_empty()))
}

/// A comment and what its @mentions came to.
#[derive(Debug, Clone)]
pub struct CommentAdded {
    pub comment: Comment,
    /// Sessions the mentions opened.
    pub opened: Vec<Session>,
    /// Open sessions the mentions continued (their plugins get the comment as a follow-up).
    pub followed_up: Vec<SessionId>,
}

/// Adds a comment. Every enabled bot it @mentions (other than its author) gets a session carrying
/// the comment — or, when the bot's latest session on the task is open and its connection
/// continues sessions, that session gets the comment as a follow-up.
pub async fn add_comment(
    app: &SharedApp,
    caller: &Caller,
    task_ref: &TaskRef,
    body: &str,
) -> Result<CommentAdded, Error> {
    let body = validate_comment(body)?;
    let now = app.clock.now();
    let (shared, caller, task_ref) = (app.clone(), caller.clone(), task_ref.clone());
    let added = app
        .writer
        .write(move |tx| {
            let (app, caller, task_ref, body) = (shared.clone(), caller.clone(), task_ref.clone(), body.clone());
            Box::pin(async move { add_comment_in(tx, &app, &caller, &task_ref, body, now).await })
        })
        .await?;
    if !added.followed_up.is_empty() {
        app.jobs_queued.notify_one();
    }
    Ok(added)
}

async fn add_comment_in(
    tx: &mut WriteTx,
    app: &App,
    caller: &Caller,
    task_ref: &TaskRef,
    body: String,
    now: Timestamp,
) -> Result<CommentAdded, Error> {
    let task = find_task(tx.conn(), caller, task_ref).await?;
    let task = tx.as_changed(task);
    let comment = Comment {
        id: CommentId::generate(),
        workspace_id: task.workspace_id.clone(),
        task_id: task.id.clone(),
        author_id: caller.user.id.clone(),
        body,
        created_at: now,
    };
    store::tasks::insert_comment(tx.conn(), &comment).await?;
    // A change to the task later in the batch reads that it has comments.
    tx.forget_task_read(&task.id);
    let handles = mentioned_handles(&comment.body);
    let bots = store::users::bots_by_handle(tx.conn(), &task.workspace_id, &handles).await?;
    let (mut opened, mut followed_up) = (Vec::new(), Vec::new());
    for bot in bots.iter().filter(|b| b.is_enabled() && b.id != caller.user.id) {
        match sessions::mention(tx, app, &task, bot, &comment).await {
            Ok(Mentioned::Opened(session)) => opened.push(*session),
            Ok(Mentioned::FollowedUp(session)) => followed_up.push(session),
            // A mentioned bot without a connection is named in the comment but does no work.
            Err(OpenError::NoConnection(reason) | OpenError::BotDisabled(reason)) => {
                tracing::info!(bot = %bot.id, %reason, "mention opened no session")
            }
            Err(OpenError::Store(error)) => return Err(error.into()),
        }
    }
    let details = json!({"commentId": comment.id, "mentions": handles, "followedUpSessions": followed_up});
    audit_change(tx, caller, "task.comment.create", &task.id, details, &opened, now);
    Ok(CommentAdded {
        comment,
        opened,
        followed_up,
    })
}

/// The task of the caller's workspace named by `task_ref`, or 404.
pub async fn find_task(conn: &mut Conn, caller: &Caller, task_ref: &TaskRef) -> Result<Task, Error> {
    store::tasks::find(conn, caller.workspace_id(), task_ref)
        .await?
        .ok_or_else(|| task_not_found(task_ref))
}

fn task_not_found(task_ref: &TaskRef) -> Error {
    let shown = match task_ref {
        TaskRef::Id(id) => id.clone(),
        TaskRef::ShortNumber(n) => n.to_string(),
    };
    Error::not_found("task", &shown)
}

fn assigned_by(caller: &Caller) -> Trigger {
    Trigger {
        kind: TriggerKind::Assigned,
        actor: Some(caller.user.id.clone()),
        comment: None,
    }
}

/// Buffers the caller's audit record of a change, naming the sessions it opened.
fn audit_change(
    tx: &mut WriteTx,
    caller: &Caller,
    action: &'static str,
    task: &TaskId,
    mut details: serde_json::Value,
    opened: &[Session],
    now: Timestamp,
) {
    details["openedSessions"] = json!(opened.iter().map(|s| s.id.to_string()).collect::<Vec<_>>());
    tx.audit(&caller.actor(), Entry::new(action, "task", task, details), now);
}

/// The status named by `reference`: a status id, or (for agents that pass what they read) a
/// status name, case-insensitively; 404 when the workspace has none such.
async fn checked_status(conn: &mut Conn, caller: &Caller, reference: &str) -> Result<StatusId, Error> {
    if let Some(status) = store::tasks::status(conn, caller.workspace_id(), reference).await? {
        return Ok(status.id);
    }
    let statuses = store::tasks::statuses(conn, caller.workspace_id()).await?;
    let wanted = reference.trim().to_lowercase();
    statuses
        .into_iter()
        .find(|s| s.name.to_lowercase() == wanted)
        .map(|s| s.id)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no task status `{reference}` in this workspace; GET /api/public/tasks/statuses lists them"
            ))
        })
}

/// How `reference` (a user id or `@handle`) names a user.
fn user_ref(reference: &str) -> UserRef {
    let reference = reference.trim();
    match reference.strip_prefix('@') {
        Some(handle) => UserRef::Handle(handle.to_lowercase()),
        None => UserRef::Id(reference.to_owned()),
    }
}

/// The user `found` for `reference` in the caller's workspace, if they may be assigned work: 404
/// when there is none, 409 when they are disabled.
fn assignable(found: Option<AssigneeRead>, reference: &str) -> Result<AssigneeRead, Error> {
    let read = found.ok_or_else(|| Error::not_found("user", reference.trim()))?;
    if !read.user.is_enabled() {
        return Err(Error::Conflict(format!(
            "@{} is disabled and cannot be assigned work",
            read.user.handle
        )));
    }
    Ok(read)
}

fn record_event(
    tx: &mut WriteTx,
    task: &TaskId,
    actor: &UserId,
    kind: &str,
    details: serde_json::Value,
    at: Timestamp,
) {
    tx.record_task_event(TaskEvent {
        id: TaskEventId::generate(),
        task_id: task.clone(),
        actor_id: Some(actor.clone()),
        kind: kind.to_owned(),
        details: details.to_string(),
        created_at: at,
    });
}
