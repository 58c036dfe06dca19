//! The JSON shapes the API answers with, shared by the task and session resources, and the
//! lookups that fill in names of people and bots.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::ids::{SessionId, UserId};
use crate::domain::sessions::{
    Activity, ActivityType, RecordSource, Session, SessionStatus, StatusChange, TriggerKind,
};
use crate::domain::tasks::{Comment, StatusCategory, Task, TaskEvent, TaskStatus};
use crate::domain::time::Timestamp;
use crate::domain::users::{Role, User, UserKind};
use crate::store::deliveries::DeliverySummary;
use crate::store::{self, Conn, Db, StoreError};
use crate::use_cases::tasks::TaskWritten;

/// A person or bot, as named in other objects.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    pub id: String,
    pub kind: UserKind,
    pub name: String,
    /// Without `@`.
    pub handle: String,
}

/// A person or bot of the workspace.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub kind: UserKind,
    pub name: String,
    pub handle: String,
    pub email: Option<String>,
    pub role: Role,
    pub avatar_url: Option<String>,
    /// Disabled users cannot act or be assigned.
    pub enabled: bool,
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            kind: u.kind,
            name: u.name.clone(),
            handle: u.handle.clone(),
            email: u.email.clone(),
            role: u.role,
            avatar_url: u.avatar_url.clone(),
            enabled: u.is_enabled(),
            created_at: u.created_at.to_iso(),
        }
    }
}

/// A task status.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub id: String,
    pub name: String,
    pub category: StatusCategory,
    /// Board order, from 0.
    pub position: i64,
}

impl From<&TaskStatus> for StatusView {
    fn from(s: &TaskStatus) -> Self {
        Self {
            id: s.id.to_string(),
            name: s.name.clone(),
            category: s.category,
            position: s.position,
        }
    }
}

/// A task.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    pub id: String,
    /// Per-workspace number; `GET /tasks/{shortNumber}` finds the task by it.
    pub short_number: i64,
    pub title: String,
    pub description: String,
    pub status_id: String,
    pub status: Option<StatusView>,
    pub assignee_id: Option<String>,
    pub assignee: Option<UserRef>,
    pub created_by: Option<UserRef>,
    pub created_at: String,
    pub updated_at: String,
}

/// A task comment.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommentView {
    pub id: String,
    pub task_id: String,
    pub author: Option<UserRef>,
    pub body: String,
    pub created_at: String,
}

/// An entry of a session's activity feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivityView {
    pub id: String,
    pub session_id: String,
    pub activity_type: ActivityType,
    pub body: String,
    pub action: Option<String>,
    pub parameter: Option<String>,
    pub result: Option<String>,
    pub provider_event_id: Option<String>,
    pub provider_event_type: Option<String>,
    /// Any JSON the reporter attached.
    #[schema(value_type = Option<Object>)]
    pub raw: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    /// `api` (the bot through the session API) or `plugin`.
    pub source: RecordSource,
    pub created_at: String,
}

impl From<&Activity> for ActivityView {
    fn from(a: &Activity) -> Self {
        Self {
            id: a.id.to_string(),
            session_id: a.session_id.to_string(),
            activity_type: a.activity_type,
            body: a.body.clone(),
            action: a.action.clone(),
            parameter: a.parameter.clone(),
            result: a.result.clone(),
            provider_event_id: a.provider_event_id.clone(),
            provider_event_type: a.provider_event_type.clone(),
            raw: a.raw.as_deref().and_then(|r| serde_json::from_str(r).ok()),
            idempotency_key: a.idempotency_key.clone(),
            source: a.source,
            created_at: a.created_at.to_iso(),
        }
    }
}

/// A change of a session's status.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChangeView {
    pub status: SessionStatus,
    pub message: Option<String>,
    /// Who set it: `api` (the bot), `plugin`, or `host`.
    pub source: RecordSource,
    pub at: String,
}

impl From<&StatusChange> for StatusChangeView {
    fn from(c: &StatusChange) -> Self {
        Self {
            status: c.status,
            message: c.message.clone(),
            source: c.source,
            at: c.created_at.to_iso(),
        }
    }
}

/// What opened a session.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerView {
    #[serde(rename = "type")]
    pub kind: TriggerKind,
    /// Who assigned or mentioned the bot.
    pub actor: Option<UserRef>,
    /// The comment that mentioned the bot.
    pub comment_id: Option<String>,
}

/// A link shown on a session card.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkView {
    pub url: String,
    pub label: String,
}

/// An agent session card: one bot's piece of work on a task, with its feed and result.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub task_id: String,
    pub bot: Option<UserRef>,
    pub connection_type: String,
    pub trigger: TriggerView,
    pub status: SessionStatus,
    pub status_message: Option<String>,
    pub external_link: Option<LinkView>,
    /// The body of the last `response` activity: the agent's answer.
    pub result: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub updated_at: String,
    /// CPU time the session's plugin calls used, in milliseconds.
    pub plugin_cpu_ms: f64,
    /// The session's start webhook (self-hosted connections): whether and when it was delivered.
    /// The wrapper, not the delivery, moves the session to `running`.
    pub delivery: Option<SessionDeliveryView>,
    pub activities: Vec<ActivityView>,
    pub status_history: Vec<StatusChangeView>,
}

/// Where a session's latest webhook delivery stands (its attempts are at
/// `GET /agent-sessions/{id}/deliveries`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionDeliveryView {
    /// The webhook id (`Leadtime-Webhook-Id`).
    pub id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    pub delivered_at: Option<String>,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
}

impl From<&DeliverySummary> for SessionDeliveryView {
    fn from(d: &DeliverySummary) -> Self {
        Self {
            id: d.id.to_string(),
            status: d.status.clone(),
            attempts: d.attempts,
            delivered_at: d.delivered_at.map(Timestamp::to_iso),
            next_attempt_at: d
                .next_attempt_at
                .filter(|_| d.status == "pending")
                .map(Timestamp::to_iso),
            last_error: d.last_error.clone(),
        }
    }
}

/// One entry of a task's history, oldest first. `type` says which fields are set:
/// `created`, `comment` (`comment`), `titleChanged`/`statusChanged`/`assigneeChanged` (`from`, `to`),
/// `descriptionChanged`, `agentSession` (`session`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub at: String,
    pub actor: Option<UserRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<CommentView>,
    /// What changed from: a title (text), a status or a person or bot (objects).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub from: Option<serde_json::Value>,
    /// What it changed to, in the same form as `from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub to: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionView>,
}

/// Names of the people and bots referred to by a response, loaded once.
#[derive(Debug, Default)]
pub struct People(HashMap<UserId, User>);

impl People {
    /// Loads `ids` (duplicates and unknown ids are fine).
    pub async fn load(conn: &mut Conn, ids: impl IntoIterator<Item = UserId>) -> Result<Self, StoreError> {
        let mut ids: Vec<UserId> = ids.into_iter().collect();
        ids.sort();
        ids.dedup();
        Ok(Self(
            store::users::get_many(conn, &ids)
                .await?
                .into_iter()
                .map(|u| (u.id.clone(), u))
                .collect(),
        ))
    }

    /// People already read, e.g. by the write whose result is shown.
    pub fn of(users: impl IntoIterator<Item = User>) -> Self {
        Self(users.into_iter().map(|u| (u.id.clone(), u)).collect())
    }

    /// The reference to `id`, if known.
    pub fn user_ref(&self, id: &UserId) -> Option<UserRef> {
        self.0.get(id).map(|u| UserRef {
            id: u.id.to_string(),
            kind: u.kind,
            name: u.name.clone(),
            handle: u.handle.clone(),
        })
    }
}

/// The task as the API shows it.
pub fn task_view(task: &Task, statuses: &[TaskStatus], people: &People) -> TaskView {
    TaskView {
        id: task.id.to_string(),
        short_number: task.short_number,
        title: task.title.clone(),
        description: task.description.clone(),
        status_id: task.status_id.to_string(),
        status: statuses.iter().find(|s| s.id == task.status_id).map(StatusView::from),
        assignee_id: task.assignee_id.as_ref().map(ToString::to_string),
        assignee: task.assignee_id.as_ref().and_then(|id| people.user_ref(id)),
        created_by: people.user_ref(&task.created_by),
        created_at: task.created_at.to_iso(),
        updated_at: task.updated_at.to_iso(),
    }
}

/// Loads what [`task_view`] needs and builds it.
pub async fn load_task_view(conn: &mut Conn, task: &Task) -> Result<TaskView, StoreError> {
    load_task_view_knowing(conn, task, People::default()).await
}

/// [`load_task_view`] for a task whose people in `known` were read already: reads the rest.
async fn load_task_view_knowing(conn: &mut Conn, task: &Task, mut known: People) -> Result<TaskView, StoreError> {
    let statuses = store::tasks::statuses(conn, &task.workspace_id).await?;
    let missing: Vec<UserId> = task_people(task)
        .filter(|id| !known.0.contains_key(*id))
        .cloned()
        .collect();
    if !missing.is_empty() {
        known.0.extend(People::load(conn, missing).await?.0);
    }
    Ok(task_view(task, &statuses, &known))
}

/// The people a task's view names: its assignee and its creator.
fn task_people(task: &Task) -> impl Iterator<Item = &UserId> {
    task.assignee_id.iter().chain([&task.created_by])
}

/// The view of a task a write returned. The people the write read are not read again, and when
/// they are everyone the task names (statuses are kept per process) no connection is taken at all:
/// the common create and assign answer without a read after their commit.
pub async fn written_task_view(db: &Db, written: &TaskWritten) -> Result<TaskView, StoreError> {
    let task = &written.task;
    let known = People::of(written.people.iter().cloned());
    let all_known = task_people(task).all(|id| known.0.contains_key(id));
    if all_known && let Some(statuses) = store::tasks::kept_statuses(&task.workspace_id) {
        return Ok(task_view(task, &statuses, &known));
    }
    let mut conn = db.read().await?;
    load_task_view_knowing(&mut conn, task, known).await
}

/// The comment as the API shows it.
pub fn comment_view(comment: &Comment, people: &People) -> CommentView {
    CommentView {
        id: comment.id.to_string(),
        task_id: comment.task_id.to_string(),
        author: people.user_ref(&comment.author_id),
        body: comment.body.clone(),
        created_at: comment.created_at.to_iso(),
    }
}

/// Loads the feed, status history and delivery of `session` and builds its card.
pub async fn load_session_view(conn: &mut Conn, session: &Session) -> Result<SessionView, StoreError> {
    let people = People::load(
        conn,
        session.trigger_actor_id.iter().cloned().chain([session.bot_id.clone()]),
    )
    .await?;
    let activities = store::sessions::activities(conn, &session.id).await?;
    let changes = store::sessions::status_changes(conn, &session.id).await?;
    let deliveries = store::deliveries::summaries_of_session(conn, &session.id).await?;
    Ok(session_view(session, &people, &activities, &changes, deliveries.last()))
}

/// Builds `session`'s card from its feed, status history and latest delivery; `people` must know
/// its bot and trigger actor.
pub fn session_view(
    session: &Session,
    people: &People,
    activities: &[Activity],
    changes: &[StatusChange],
    delivery: Option<&DeliverySummary>,
) -> SessionView {
    let result = activities
        .iter()
        .rev()
        .find(|a| a.activity_type == ActivityType::Response)
        .map(|a| a.body.clone());
    SessionView {
        id: session.id.to_string(),
        task_id: session.task_id.to_string(),
        bot: people.user_ref(&session.bot_id),
        connection_type: session.connection_type.clone(),
        trigger: TriggerView {
            kind: session.trigger_kind,
            actor: session.trigger_actor_id.as_ref().and_then(|id| people.user_ref(id)),
            comment_id: session.comment_id.as_ref().map(ToString::to_string),
        },
        status: session.status,
        status_message: session.status_message.clone(),
        external_link: session.external_url.as_ref().map(|url| LinkView {
            url: url.clone(),
            label: session.external_label.clone().unwrap_or_default(),
        }),
        result,
        created_at: session.created_at.to_iso(),
        started_at: session.started_at.map(Timestamp::to_iso),
        ended_at: session.ended_at.map(Timestamp::to_iso),
        updated_at: session.updated_at.to_iso(),
        plugin_cpu_ms: session.plugin_cpu_micros as f64 / 1000.0,
        delivery: delivery.map(SessionDeliveryView::from),
        activities: activities.iter().map(ActivityView::from).collect(),
        status_history: changes.iter().map(StatusChangeView::from).collect(),
    }
}

/// The task's whole history, oldest first: its own events, comments, and one card per session —
/// in a fixed number of queries, however many sessions the task has.
pub async fn task_history(conn: &mut Conn, task: &Task) -> Result<Vec<HistoryEntry>, StoreError> {
    let events = store::tasks::events(conn, &task.id).await?;
    let comments = store::tasks::comments(conn, &task.id).await?;
    let sessions = store::sessions::for_task(conn, &task.id).await?;
    let statuses = store::tasks::statuses(conn, &task.workspace_id).await?;
    let mut activities = group_by_session(store::sessions::activities_of_task(conn, &task.id).await?, |a| {
        &a.session_id
    });
    let mut changes = group_by_session(store::sessions::status_changes_of_task(conn, &task.id).await?, |c| {
        &c.session_id
    });
    // The latest delivery of each session (summaries come oldest first).
    let deliveries: HashMap<SessionId, DeliverySummary> = store::deliveries::summaries_of_task(conn, &task.id)
        .await?
        .into_iter()
        .map(|d| (d.session_id.clone(), d))
        .collect();

    let mut ids: Vec<UserId> = events.iter().filter_map(|e| e.actor_id.clone()).collect();
    ids.extend(comments.iter().map(|c| c.author_id.clone()));
    ids.extend(
        sessions
            .iter()
            .flat_map(|s| [Some(s.bot_id.clone()), s.trigger_actor_id.clone()])
            .flatten(),
    );
    for event in events.iter().filter(|e| e.kind == "assignee_changed") {
        let details: serde_json::Value = serde_json::from_str(&event.details).unwrap_or_default();
        for side in ["from", "to"] {
            if let Some(id) = details[side].as_str() {
                ids.push(UserId::from(id));
            }
        }
    }
    let people = People::load(conn, ids).await?;

    let mut entries: Vec<(Timestamp, String, HistoryEntry)> = Vec::new();
    for event in &events {
        entries.push((
            event.created_at,
            event.id.to_string(),
            event_entry(event, &people, &statuses),
        ));
    }
    for comment in &comments {
        let entry = HistoryEntry {
            kind: "comment",
            at: comment.created_at.to_iso(),
            actor: people.user_ref(&comment.author_id),
            comment: Some(comment_view(comment, &people)),
            from: None,
            to: None,
            session: None,
        };
        entries.push((comment.created_at, comment.id.to_string(), entry));
    }
    for session in &sessions {
        let view = session_view(
            session,
            &people,
            &activities.remove(&session.id).unwrap_or_default(),
            &changes.remove(&session.id).unwrap_or_default(),
            deliveries.get(&session.id),
        );
        let entry = HistoryEntry {
            kind: "agentSession",
            at: session.created_at.to_iso(),
            actor: people.user_ref(&session.bot_id),
            comment: None,
            from: None,
            to: None,
            session: Some(view),
        };
        entries.push((session.created_at, session.id.to_string(), entry));
    }
    // Same-millisecond entries keep their creation order: ids of one process increase.
    entries.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| ulid_part(&a.1).cmp(ulid_part(&b.1))));
    Ok(entries.into_iter().map(|(_, _, e)| e).collect())
}

/// Splits rows by their session, keeping their order.
fn group_by_session<T>(rows: Vec<T>, session: impl Fn(&T) -> &SessionId) -> HashMap<SessionId, Vec<T>> {
    let mut groups: HashMap<SessionId, Vec<T>> = HashMap::new();
    for row in rows {
        groups.entry(session(&row).clone()).or_default().push(row);
    }
    groups
}

fn ulid_part(id: &str) -> &str {
    id.split_once('_').map(|(_, rest)| rest).unwrap_or(id)
}

fn event_entry(event: &TaskEvent, people: &People, statuses: &[TaskStatus]) -> HistoryEntry {
    let details: serde_json::Value = serde_json::from_str(&event.details).unwrap_or_default();
    let user = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|id| people.user_ref(&UserId::from(id)))
            .map(|u| serde_json::to_value(u).unwrap_or_default())
    };
    let status = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|id| statuses.iter().find(|s| s.id.as_str() == id))
            .map(|s| serde_json::to_value(StatusView::from(s)).unwrap_or_default())
    };
    let (kind, from, to) = match event.kind.as_str() {
        "created" => ("created", None, None),
        "title_changed" => (
            "titleChanged",
            Some(details["from"].clone()),
            Some(details["to"].clone()),
        ),
        "description_changed" => ("descriptionChanged", None, None),
        "status_changed" => ("statusChanged", status(&details["from"]), status(&details["to"])),
        "assignee_changed" => ("assigneeChanged", user(&details["from"]), user(&details["to"])),
        _ => ("changed", None, None),
    };
    HistoryEntry {
        kind,
        at: event.created_at.to_iso(),
        actor: event.actor_id.as_ref().and_then(|id| people.user_ref(id)),
        comment: None,
        from,
        to,
        session: None,
    }
}
