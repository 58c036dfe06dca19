//! The task tools served over MCP ([`super::mcp`]): what each is (its JSON Schema) and what it
//! does — each through the same use case, checks and views as the REST call it mirrors, acting as
//! the calling bot.

use serde_json::{Value, json};

use super::views::{self, People, StatusView};
use crate::api::error::AppError;
use crate::app::SharedApp;
use crate::domain::tasks::TaskRef;
use crate::domain::tokens::Scope;
use crate::store;
use crate::use_cases::accounts::Caller;
use crate::use_cases::tasks::{self, TaskPatch};

/// A tool name no tool has.
#[derive(Debug)]
pub struct Unknown;

/// Every tool, as `tools/list` describes it.
pub fn catalog() -> Vec<Value> {
    let task = json!({"type": "string", "description": "Task id (tsk_…) or its number in the workspace (e.g. 42)"});
    vec![
        json!({
            "name": "get_session_context",
            "title": "Read your agent session",
            "description": "The agent session you are working in: why you were called, the task, its comments and history, and your activity so far. Defaults to the session this connection is bound to.",
            "inputSchema": {"type": "object", "properties": {"agentRunId": {"type": "string", "description": "Agent session id (ses_…); optional when the connection is bound to one"}}, "additionalProperties": false},
        }),
        json!({
            "name": "get_task",
            "title": "Read a task",
            "description": "A task of your workspace with its description, status, assignee and comments.",
            "inputSchema": {"type": "object", "properties": {"task": task}, "required": ["task"], "additionalProperties": false},
        }),
        json!({
            "name": "add_comment",
            "title": "Comment on a task",
            "description": "Adds a comment to a task as your bot. @mentioning a bot in it starts that bot's work.",
            "inputSchema": {"type": "object", "properties": {"task": task, "comment": {"type": "string", "description": "Markdown, 1 to 20000 characters"}}, "required": ["task", "comment"], "additionalProperties": false},
        }),
        json!({
            "name": "list_statuses",
            "title": "List task statuses",
            "description": "The statuses tasks of your workspace can have, with their ids.",
            "inputSchema": {"type": "object", "properties": {}, "additionalProperties": false},
        }),
        json!({
            "name": "update_task_status",
            "title": "Change a task's status",
            "description": "Moves a task to another status (by status id or name).",
            "inputSchema": {"type": "object", "properties": {"task": task, "status": {"type": "string", "description": "Status id (sts_…) or name, e.g. \"In review\""}}, "required": ["task", "status"], "additionalProperties": false},
        }),
    ]
}

/// Runs tool `name` with `arguments` as `caller`: `Err(Unknown)` for a tool that does not exist,
/// else its result or the refusal (shown to the agent as a tool error).
pub async fn call(
    app: &SharedApp,
    caller: &Caller,
    name: &str,
    arguments: &Value,
) -> Result<Result<Value, AppError>, Unknown> {
    let result = match name {
        "get_session_context" => get_session_context(app, caller, arguments).await,
        "get_task" => get_task(app, caller, arguments).await,
        "add_comment" => add_comment(app, caller, arguments).await,
        "list_statuses" => list_statuses(app, caller).await,
        "update_task_status" => update_task_status(app, caller, arguments).await,
        _ => return Err(Unknown),
    };
    Ok(result)
}

/// The string argument `name`.
fn text<'a>(arguments: &'a Value, name: &str) -> Result<&'a str, AppError> {
    arguments[name]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| AppError::invalid(name, format!("`{name}` is required: a non-empty string")))
}

async fn get_session_context(app: &SharedApp, caller: &Caller, arguments: &Value) -> Result<Value, AppError> {
    let id = match arguments["agentRunId"].as_str() {
        Some(id) => id.to_owned(),
        None => caller.session.as_ref().map(ToString::to_string).ok_or_else(|| {
            AppError::invalid(
                "agentRunId",
                "name the session (`agentRunId`), or bind the connection to one with ?agentRunId= on the MCP URL",
            )
        })?,
    };
    let context = super::agent_sessions::session_context(app, caller, &id).await?;
    serde_json::to_value(context).map_err(|e| AppError::Internal(e.into()))
}

async fn get_task(app: &SharedApp, caller: &Caller, arguments: &Value) -> Result<Value, AppError> {
    let reference = TaskRef::parse(text(arguments, "task")?);
    let mut conn = app.db.read().await?;
    let task = tasks::find_task(&mut conn, caller, &reference).await?;
    let comments = store::tasks::comments(&mut conn, &task.id).await?;
    let people = People::load(&mut conn, comments.iter().map(|c| c.author_id.clone())).await?;
    let view = views::load_task_view(&mut conn, &task).await?;
    let comments: Vec<_> = comments.iter().map(|c| views::comment_view(c, &people)).collect();
    Ok(json!({"task": view, "comments": comments}))
}

async fn add_comment(app: &SharedApp, caller: &Caller, arguments: &Value) -> Result<Value, AppError> {
    caller.require(Scope::Write)?;
    let reference = TaskRef::parse(text(arguments, "task")?);
    let added = tasks::add_comment(app, caller, &reference, text(arguments, "comment")?).await?;
    let mut conn = app.db.read().await?;
    let people = People::load(&mut conn, [added.comment.author_id.clone()]).await?;
    Ok(json!({
        "comment": views::comment_view(&added.comment, &people),
        "agentSessionIds": added.opened.iter().map(|s| s.id.to_string()).collect::<Vec<_>>(),
        "followedUpSessionIds": added.followed_up.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

async fn list_statuses(app: &SharedApp, caller: &Caller) -> Result<Value, AppError> {
    let mut conn = app.db.read().await?;
    let statuses = store::tasks::statuses(&mut conn, caller.workspace_id()).await?;
    let views: Vec<StatusView> = statuses.iter().map(StatusView::from).collect();
    Ok(json!({"statuses": views}))
}

async fn update_task_status(app: &SharedApp, caller: &Caller, arguments: &Value) -> Result<Value, AppError> {
    caller.require(Scope::Write)?;
    let reference = TaskRef::parse(text(arguments, "task")?);
    let patch = TaskPatch {
        status_id: Some(text(arguments, "status")?.to_owned()),
        ..TaskPatch::default()
    };
    let (task, _) = tasks::update(app, caller, &reference, patch).await?;
    let mut conn = app.db.read().await?;
    Ok(json!({"task": views::load_task_view(&mut conn, &task).await?}))
}
