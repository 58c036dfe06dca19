//! `/agent-sessions`: the session API wrappers speak (wire contract §2). Only the session's own
//! bot may read its context or report on it; repeated idempotency keys answer with the original
//! result.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Reader, Writer};
use super::views::{self, ActivityView, CommentView, HistoryEntry, People, SessionView, TaskView, UserRef};
use crate::api::error::{AppError, ErrorBody};
use crate::app::{App, SharedApp};
use crate::domain::sessions::{ActivityType, NewActivity, RecordSource, Session, SessionStatus, TriggerKind};
use crate::store;
use crate::use_cases::accounts::Caller;
use crate::use_cases::sessions;

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new()
        .routes(routes!(get_session))
        .routes(routes!(super::session_stream::stream_session))
        .routes(routes!(get_context))
        .routes(routes!(post_activity))
        .routes(routes!(set_status))
        .routes(routes!(cancel_session))
}

/// Why a person cancels a session.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CancelSession {
    /// Shown on the card and handed to the plugin; default "canceled by @handle". At most 16384 bytes.
    #[schema(max_length = 16384)]
    reason: Option<String>,
}

/// Cancel an agent session
///
/// A person stops a session that has not finished: it becomes `canceled` and its connection is
/// told (a self-hosted wrapper gets the cancel; a provider's agent is stopped). A finished session
/// answers 409. Bots end their own sessions through the status API instead.
#[utoipa::path(post, path = "/agent-sessions/{id}/cancel", tag = "agent-sessions", operation_id = "cancelAgentSession",
    request_body = CancelSession,
    params(("id" = String, Path, description = "Agent session id (agentRunId)")),
    responses((status = 200, body = SessionView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_session(
    State(app): State<SharedApp>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Json(body): Json<CancelSession>,
) -> Result<Json<SessionView>, AppError> {
    let session = sessions::cancel_by_person(&app, &caller, &id, body.reason).await?;
    let mut conn = app.db.read().await?;
    Ok(Json(views::load_session_view(&mut conn, &session).await?))
}

/// An activity to append to the session's feed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct PostActivity {
    /// One of thought, action, elicitation, response, error, prompt, log, modelRequest,
    /// modelResponse, toolCall, toolResult.
    #[schema(value_type = ActivityType)]
    activity_type: String,
    /// Text shown in the feed (markdown); may be long: at most 524288 bytes (UTF-8).
    #[serde(default)]
    #[schema(max_length = 524288)]
    body: Option<String>,
    /// At most 65536 bytes (UTF-8).
    #[schema(value_type = Option<String>, max_length = 65536)]
    action: Option<serde_json::Value>,
    /// At most 65536 bytes (UTF-8).
    #[schema(value_type = Option<String>, max_length = 65536)]
    parameter: Option<serde_json::Value>,
    /// At most 65536 bytes (UTF-8).
    #[schema(value_type = Option<String>, max_length = 65536)]
    result: Option<serde_json::Value>,
    /// At most 65536 bytes (UTF-8).
    #[schema(max_length = 65536)]
    provider_event_id: Option<String>,
    /// At most 65536 bytes (UTF-8).
    #[schema(max_length = 65536)]
    provider_event_type: Option<String>,
    /// Any JSON to keep with the activity, at most 524288 bytes once serialized.
    #[schema(value_type = Option<Object>)]
    raw: Option<serde_json::Value>,
    /// Repeating a key within the session answers with the original activity and records nothing.
    /// At most 255 bytes (UTF-8); blank means none.
    #[schema(max_length = 255)]
    idempotency_key: Option<String>,
}

/// A status to move the session to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SetStatus {
    /// One of queued, running, done, failed, canceled.
    #[schema(value_type = SessionStatus)]
    status: String,
    /// Shown on the session card (e.g. why it failed); `""` means none. At most 16384 bytes (UTF-8).
    #[schema(max_length = 16384)]
    message: Option<String>,
    /// Repeating a key within the session answers with the original result and changes nothing.
    /// At most 255 bytes (UTF-8); blank means none.
    #[schema(max_length = 255)]
    idempotency_key: Option<String>,
}

/// The outcome of a status request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct StatusResult {
    session_id: String,
    /// The status this request set (or, if nothing changed, the session's status).
    status: SessionStatus,
    message: Option<String>,
    /// Whether this request (or the original request with this idempotency key) changed the status.
    changed: bool,
    /// When the status was set.
    at: String,
}

/// The session part of a context.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ContextSession {
    id: String,
    status: SessionStatus,
    status_message: Option<String>,
    bot: Option<UserRef>,
    connection_type: String,
    created_at: String,
    started_at: Option<String>,
    ended_at: Option<String>,
}

/// What opened the session, with the mentioning comment when there is one.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ContextTrigger {
    #[serde(rename = "type")]
    kind: TriggerKind,
    actor: Option<UserRef>,
    comment_id: Option<String>,
    comment: Option<CommentView>,
}

/// What the session's work is aimed at.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Targets {
    task_id: String,
    comment_id: Option<String>,
}

/// Everything a wrapper needs to work on the session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionContext {
    session: ContextSession,
    trigger: ContextTrigger,
    task: TaskView,
    /// The task's comments, oldest first.
    comments: Vec<CommentView>,
    /// The task's history, oldest first.
    history: Vec<HistoryEntry>,
    /// This session's feed so far.
    activities: Vec<ActivityView>,
    targets: Targets,
}

/// The session of the caller's workspace with `id`, or 404.
pub(crate) async fn find(app: &App, caller: &Caller, id: &str) -> Result<Session, AppError> {
    let mut conn = app.db.read().await?;
    store::sessions::get(&mut conn, caller.workspace_id(), id)
        .await?
        .ok_or_else(|| AppError::not_found("agent session", id))
}

/// Like [`find`], and refuses any caller but the session's own bot.
pub(crate) async fn find_own(app: &App, caller: &Caller, id: &str) -> Result<Session, AppError> {
    let session = find(app, caller, id).await?;
    if session.bot_id != caller.user.id {
        return Err(AppError::Forbidden(format!(
            "agent session `{id}` belongs to another bot; only that bot's token may use the session API for it"
        )));
    }
    if let Some(bound) = caller.token.session_id.as_ref().filter(|bound| **bound != session.id) {
        return Err(AppError::Forbidden(format!(
            "this token was issued for agent session `{bound}` and may act for it alone"
        )));
    }
    Ok(session)
}

/// Get an agent session
///
/// The session card: status, trigger, activity feed and result.
#[utoipa::path(get, path = "/agent-sessions/{id}", tag = "agent-sessions", operation_id = "getAgentSession",
    params(("id" = String, Path, description = "Agent session id (agentRunId)")),
    responses((status = 200, body = SessionView), (status = 404, body = ErrorBody)))]
async fn get_session(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, AppError> {
    let session = find(&app, &caller, &id).await?;
    let mut conn = app.db.read().await?;
    Ok(Json(views::load_session_view(&mut conn, &session).await?))
}

/// Get an agent session's context
///
/// The session, its trigger, the task, its comments and history, and `targets.taskId`. Only the
/// session's own bot may call this; other tokens get a non-2xx answer.
#[utoipa::path(get, path = "/agent-sessions/{id}/context", tag = "agent-sessions", operation_id = "getAgentSessionContext",
    params(("id" = String, Path, description = "Agent session id (agentRunId)")),
    responses((status = 200, body = SessionContext), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_context(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Path(id): Path<String>,
) -> Result<Json<SessionContext>, AppError> {
    Ok(Json(session_context(&app, &caller, &id).await?))
}

/// The context of session `id` for its own bot (the REST call and the MCP tool).
pub(crate) async fn session_context(app: &App, caller: &Caller, id: &str) -> Result<SessionContext, AppError> {
    let session = find_own(app, caller, id).await?;
    let mut conn = app.db.read().await?;
    let task = store::tasks::get_any(&mut conn, &session.task_id)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("session {} has no task", session.id)))?;
    let comments = store::tasks::comments(&mut conn, &task.id).await?;
    let people = People::load(
        &mut conn,
        comments
            .iter()
            .map(|c| c.author_id.clone())
            .chain(session.trigger_actor_id.clone())
            .chain([session.bot_id.clone()]),
    )
    .await?;
    let comment_views: Vec<CommentView> = comments.iter().map(|c| views::comment_view(c, &people)).collect();
    let trigger_comment = session
        .comment_id
        .as_ref()
        .and_then(|id| comment_views.iter().find(|c| c.id == id.as_str()).cloned());
    let activities = store::sessions::activities(&mut conn, &session.id).await?;
    let context = SessionContext {
        session: ContextSession {
            id: session.id.to_string(),
            status: session.status,
            status_message: session.status_message.clone(),
            bot: people.user_ref(&session.bot_id),
            connection_type: session.connection_type.clone(),
            created_at: session.created_at.to_iso(),
            started_at: session.started_at.map(|t| t.to_iso()),
            ended_at: session.ended_at.map(|t| t.to_iso()),
        },
        trigger: ContextTrigger {
            kind: session.trigger_kind,
            actor: session.trigger_actor_id.as_ref().and_then(|id| people.user_ref(id)),
            comment_id: session.comment_id.as_ref().map(ToString::to_string),
            comment: trigger_comment,
        },
        task: views::load_task_view(&mut conn, &task).await?,
        comments: comment_views,
        history: views::task_history(&mut conn, &task).await?,
        activities: activities.iter().map(ActivityView::from).collect(),
        targets: Targets {
            task_id: task.id.to_string(),
            comment_id: session.comment_id.as_ref().map(ToString::to_string),
        },
    };
    Ok(context)
}

/// Text of an optional JSON field: strings as they are, other JSON serialized, null as none.
fn text_of(value: Option<serde_json::Value>) -> Option<String> {
    match value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    }
}

/// Post an activity to an agent session
///
/// Appends to the session's feed (thoughts, tool calls, the final `response`, …). Only the
/// session's own bot may call this. A repeated `idempotencyKey` answers 200 with the original
/// activity and records nothing.
#[utoipa::path(post, path = "/agent-sessions/{id}/activities", tag = "agent-sessions", operation_id = "postAgentSessionActivity",
    request_body = PostActivity,
    params(("id" = String, Path, description = "Agent session id (agentRunId)")),
    responses((status = 201, body = ActivityView, description = "Recorded"), (status = 200, body = ActivityView, description = "Repeated idempotency key: the original activity"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn post_activity(
    State(app): State<SharedApp>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Json(body): Json<PostActivity>,
) -> Result<(StatusCode, Json<ActivityView>), AppError> {
    let session = find_own(&app, &caller, &id).await?;
    let activity = NewActivity {
        activity_type: ActivityType::parse(&body.activity_type)?,
        body: body.body.unwrap_or_default(),
        action: text_of(body.action),
        parameter: text_of(body.parameter),
        result: text_of(body.result),
        provider_event_id: body.provider_event_id,
        provider_event_type: body.provider_event_type,
        raw: body.raw.filter(|r| !r.is_null()).map(|r| r.to_string()),
        idempotency_key: body.idempotency_key,
    };
    let (activity, created) =
        sessions::record_activity(&app, &session, activity, RecordSource::Api, &caller.actor()).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(ActivityView::from(&activity))))
}

/// Set an agent session's status
///
/// Moves the session to `running`, `done`, `failed` (or `canceled`), with an optional message.
/// Repeating the current status changes nothing; a finished session cannot change (409). Only the
/// session's own bot may call this. A repeated `idempotencyKey` answers with the original result.
#[utoipa::path(patch, path = "/agent-sessions/{id}/status", tag = "agent-sessions", operation_id = "setAgentSessionStatus",
    request_body = SetStatus,
    params(("id" = String, Path, description = "Agent session id (agentRunId)")),
    responses((status = 200, body = StatusResult), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn set_status(
    State(app): State<SharedApp>,
    Writer(caller): Writer,
    Path(id): Path<String>,
    Json(body): Json<SetStatus>,
) -> Result<Json<StatusResult>, AppError> {
    let session = find_own(&app, &caller, &id).await?;
    let request = sessions::StatusRequest {
        status: SessionStatus::parse(&body.status)?,
        message: body.message,
        idempotency_key: body.idempotency_key,
    };
    let outcome = sessions::change_status(&app, &session.id, request, RecordSource::Api, &caller.actor()).await?;
    let answer = outcome.answer;
    let result = StatusResult {
        session_id: session.id.to_string(),
        status: answer.status,
        message: answer.message,
        changed: answer.changed,
        at: answer.at.to_iso(),
    };
    Ok(Json(result))
}
