//! `/tasks`: tasks, their statuses, comments and history. Assigning a task to a bot or
//! @mentioning a bot in a comment opens an agent session.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Query, Reader, Writer};
use super::schema::{Change, require_a_change};
use super::views::{self, CommentView, HistoryEntry, People, StatusView, TaskView};
use crate::api::error::{AppError, ErrorBody};
use crate::app::SharedApp;
use crate::domain::sessions::Session;
use crate::domain::tasks::TaskRef;
use crate::store;
use crate::use_cases::tasks::{self, NewTask, TaskPatch};

/// Largest `pageSize` of list endpoints.
pub const MAX_PAGE_SIZE: u32 = 100;

pub fn router() -> OpenApiRouter<SharedApp> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(create_task))
        .routes(routes!(list_statuses))
        .routes(routes!(task_grid))
        .routes(routes!(get_task, update_task))
        .routes(routes!(add_comment, list_comments))
        .routes(routes!(task_history));
    require_a_change::<UpdateTask>(
        router.get_openapi_mut(),
        &[
            Change::Value("title"),
            Change::Value("description"),
            Change::Value("statusId"),
            Change::Present("assigneeId"),
        ],
    );
    router
}

/// A task to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CreateTask {
    /// 1–500 characters once trimmed.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u0000]{0,498}[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    title: String,
    /// At most 100000 characters.
    #[schema(max_length = 100000)]
    description: Option<String>,
    /// A status id (or name) of the workspace; defaults to the workspace's first "to do" status.
    /// One the workspace does not have is answered 404.
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    status_id: Option<String>,
    /// A user id or `@handle`; one the workspace does not have is answered 404, a disabled user
    /// 409. Assigning a bot opens an agent session.
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    assignee_id: Option<String>,
}

/// Changes to a task: at least one of `title`, `description`, `statusId` and `assigneeId`; absent
/// fields (and `null` ones, except `assigneeId`) stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct UpdateTask {
    /// 1–500 characters once trimmed.
    #[schema(
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\u0000]{0,498}[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    title: Option<String>,
    /// At most 100000 characters.
    #[schema(max_length = 100000)]
    description: Option<String>,
    /// A status id (or name) from `GET /api/public/tasks/statuses`; another is answered 404.
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    status_id: Option<String>,
    /// A user id or `@handle`; `null` unassigns. One the workspace does not have is answered 404,
    /// a disabled user 409. Assigning a bot opens an agent session.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable,
        pattern = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$")]
    assignee_id: Option<Option<String>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// A comment to add.
#[derive(Debug, Deserialize, ToSchema)]
struct AddComment {
    /// Markdown or HTML, not blank, at most 100000 characters. `@handle` mentions of bots open
    /// agent sessions.
    #[schema(
        max_length = 100000,
        pattern = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    comment: String,
}

/// A task, with the agent sessions this request opened.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TaskResponse {
    #[serde(flatten)]
    task: TaskView,
    /// Sessions opened by this request (assignment to a bot).
    agent_session_ids: Vec<String>,
}

/// A comment, with the agent sessions its mentions opened.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CommentResponse {
    #[serde(flatten)]
    comment: CommentView,
    /// Sessions opened by @mentions of bots in this comment.
    agent_session_ids: Vec<String>,
    /// Open sessions the comment continued: a mentioned bot's latest session on the task was still
    /// running and its connection continues sessions, so its plugin got the comment as a follow-up.
    followed_up_session_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct StatusList {
    statuses: Vec<StatusView>,
}

#[derive(Debug, Serialize, ToSchema)]
struct CommentList {
    comments: Vec<CommentView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TaskHistory {
    task_id: String,
    /// Oldest first; each agent session is one `agentSession` entry with its feed and status.
    entries: Vec<HistoryEntry>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct GridQuery {
    /// Page number, from 1.
    #[param(format = Int64, minimum = 1, maximum = 4294967295_u64)]
    page: Option<u32>,
    /// Tasks per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    page_size: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct TaskPage {
    tasks: Vec<TaskView>,
    page: u32,
    page_size: u32,
    total: i64,
}

fn session_ids(sessions: &[Session]) -> Vec<String> {
    sessions.iter().map(|s| s.id.to_string()).collect()
}

/// Create a task
///
/// Creates a task in the caller's workspace with the next short number. Assigning it to a bot
/// opens an agent session.
#[utoipa::path(post, path = "/tasks", tag = "tasks", operation_id = "createTask", request_body = CreateTask,
    responses((status = 201, body = TaskResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_task(
    State(app): State<SharedApp>,
    Writer(caller): Writer,
    Json(body): Json<CreateTask>,
) -> Result<(StatusCode, Json<TaskResponse>), AppError> {
    let request = NewTask {
        title: body.title,
        description: body.description,
        status_id: body.status_id,
        assignee: body.assignee_id,
    };
    let written = tasks::create(&app, &caller, request).await?;
    let task = views::written_task_view(&app.db, &written).await?;
    Ok((
        StatusCode::CREATED,
        Json(TaskResponse {
            task,
            agent_session_ids: session_ids(&written.opened),
        }),
    ))
}

/// List task statuses
///
/// The workspace's task statuses in board order, with the ids `PATCH /tasks/{identifier}` takes as `statusId`.
#[utoipa::path(get, path = "/tasks/statuses", tag = "tasks", operation_id = "listTaskStatuses",
    responses((status = 200, body = StatusList)))]
async fn list_statuses(State(app): State<SharedApp>, Reader(caller): Reader) -> Result<Json<StatusList>, AppError> {
    let mut conn = app.db.read().await?;
    let statuses = store::tasks::statuses(&mut conn, caller.workspace_id()).await?;
    Ok(Json(StatusList {
        statuses: statuses.iter().map(StatusView::from).collect(),
    }))
}

/// List tasks
///
/// A page of the workspace's tasks, newest first.
#[utoipa::path(get, path = "/tasks/grid", tag = "tasks", operation_id = "listTasks", params(GridQuery),
    responses((status = 200, body = TaskPage), (status = 400, body = ErrorBody)))]
async fn task_grid(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Query(query): Query<GridQuery>,
) -> Result<Json<TaskPage>, AppError> {
    let page = query.page.unwrap_or(1);
    let page_size = query.page_size.unwrap_or(50);
    if page == 0 {
        return Err(AppError::invalid("page", "`page` starts at 1"));
    }
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(AppError::invalid(
            "pageSize",
            format!("`pageSize` must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    let mut conn = app.db.read().await?;
    let offset = i64::from(page - 1) * i64::from(page_size);
    let (tasks, total) = store::tasks::page(&mut conn, caller.workspace_id(), offset, i64::from(page_size)).await?;
    let statuses = store::tasks::statuses(&mut conn, caller.workspace_id()).await?;
    let people = People::load(
        &mut conn,
        tasks
            .iter()
            .flat_map(|t| t.assignee_id.iter().cloned().chain([t.created_by.clone()])),
    )
    .await?;
    let tasks = tasks.iter().map(|t| views::task_view(t, &statuses, &people)).collect();
    Ok(Json(TaskPage {
        tasks,
        page,
        page_size,
        total,
    }))
}

/// Get a task
///
/// The task named by its id or its short number (`943`).
#[utoipa::path(get, path = "/tasks/{identifier}", tag = "tasks", operation_id = "getTask",
    params(("identifier" = String, Path, description = "Task id or short number")),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody)))]
async fn get_task(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Path(identifier): Path<String>,
) -> Result<Json<TaskView>, AppError> {
    let mut conn = app.db.read().await?;
    let task = tasks::find_task(&mut conn, &caller, &TaskRef::parse(&identifier)).await?;
    Ok(Json(views::load_task_view(&mut conn, &task).await?))
}

/// Update a task
///
/// Changes the title, description, status or assignee. Assigning the task to a bot (that is not
/// already its assignee) opens an agent session.
#[utoipa::path(patch, path = "/tasks/{identifier}", tag = "tasks", operation_id = "updateTask", request_body = UpdateTask,
    params(("identifier" = String, Path, description = "Task id or short number")),
    responses((status = 200, body = TaskResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_task(
    State(app): State<SharedApp>,
    Writer(caller): Writer,
    Path(identifier): Path<String>,
    Json(body): Json<UpdateTask>,
) -> Result<Json<TaskResponse>, AppError> {
    let patch = TaskPatch {
        title: body.title,
        description: body.description,
        status_id: body.status_id,
        assignee: body.assignee_id,
    };
    let written = tasks::update(&app, &caller, &TaskRef::parse(&identifier), patch).await?;
    let task = views::written_task_view(&app.db, &written).await?;
    Ok(Json(TaskResponse {
        task,
        agent_session_ids: session_ids(&written.opened),
    }))
}

/// Comment on a task
///
/// Adds a comment (`{"comment": "…"}`). Each bot @mentioned in it gets an agent session carrying the comment, or — when its latest session on the task is still open and its connection continues sessions — that session gets the comment as a follow-up.
#[utoipa::path(post, path = "/tasks/{identifier}/comments", tag = "tasks", operation_id = "addTaskComment", request_body = AddComment,
    params(("identifier" = String, Path, description = "Task id or short number")),
    responses((status = 201, body = CommentResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn add_comment(
    State(app): State<SharedApp>,
    Writer(caller): Writer,
    Path(identifier): Path<String>,
    Json(body): Json<AddComment>,
) -> Result<(StatusCode, Json<CommentResponse>), AppError> {
    let added = tasks::add_comment(&app, &caller, &TaskRef::parse(&identifier), &body.comment).await?;
    let mut conn = app.db.read().await?;
    let people = People::load(&mut conn, [added.comment.author_id.clone()]).await?;
    let comment = views::comment_view(&added.comment, &people);
    Ok((
        StatusCode::CREATED,
        Json(CommentResponse {
            comment,
            agent_session_ids: session_ids(&added.opened),
            followed_up_session_ids: added.followed_up.iter().map(ToString::to_string).collect(),
        }),
    ))
}

/// List a task's comments
///
/// The task's comments, oldest first.
#[utoipa::path(get, path = "/tasks/{identifier}/comments", tag = "tasks", operation_id = "listTaskComments",
    params(("identifier" = String, Path, description = "Task id or short number")),
    responses((status = 200, body = CommentList), (status = 404, body = ErrorBody)))]
async fn list_comments(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Path(identifier): Path<String>,
) -> Result<Json<CommentList>, AppError> {
    let mut conn = app.db.read().await?;
    let task = tasks::find_task(&mut conn, &caller, &TaskRef::parse(&identifier)).await?;
    let comments = store::tasks::comments(&mut conn, &task.id).await?;
    let people = People::load(&mut conn, comments.iter().map(|c| c.author_id.clone())).await?;
    Ok(Json(CommentList {
        comments: comments.iter().map(|c| views::comment_view(c, &people)).collect(),
    }))
}

/// Get a task's history
///
/// Everything that happened to the task, oldest first. Each agent session is one card
/// (`type: agentSession`) with its status, activity feed and result.
#[utoipa::path(get, path = "/tasks/{identifier}/history", tag = "tasks", operation_id = "getTaskHistory",
    params(("identifier" = String, Path, description = "Task id or short number")),
    responses((status = 200, body = TaskHistory), (status = 404, body = ErrorBody)))]
async fn task_history(
    State(app): State<SharedApp>,
    Reader(caller): Reader,
    Path(identifier): Path<String>,
) -> Result<Json<TaskHistory>, AppError> {
    let mut conn = app.db.read().await?;
    let task = tasks::find_task(&mut conn, &caller, &TaskRef::parse(&identifier)).await?;
    let entries = views::task_history(&mut conn, &task).await?;
    Ok(Json(TaskHistory {
        task_id: task.id.to_string(),
        entries,
    }))
}
