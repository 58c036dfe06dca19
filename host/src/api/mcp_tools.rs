//! The task tools served over MCP ([`super::mcp`]): what each is (its JSON Schema) and what it
//! does — each through the same use case, checks and views as the REST call it mirrors, acting as
//! the calling bot. In full mode, three more tools expose the public API from its OpenAPI
//! document; `call_operation` sends the operation to this host's own API with the bot's token.

use std::sync::OnceLock;
use std::time::Duration;

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

/// How the connection asked for its tools.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The public API tools too (`?tools=full`).
    pub full: bool,
    /// The request's `Authorization` header, for `call_operation`'s REST call (never logged).
    pub authorization: String,
}

/// Longest answer `call_operation` hands back, in bytes.
const MAX_OPERATION_ANSWER: usize = 1 << 20;
/// How long `call_operation` waits for the API.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Every tool, as `tools/list` describes it (with the public API tools when `full`).
pub fn catalog(full: bool) -> Vec<Value> {
    let mut tools = task_tools();
    if full {
        tools.extend([
            json!({
                "name": "list_operations",
                "title": "List public API operations",
                "description": "Every operation of the Leadtime public API your bot may call with call_operation: id, method, path, summary, tag.",
                "inputSchema": {"type": "object", "properties": {"tag": {"type": "string", "description": "Only operations with this tag, e.g. tasks"}}, "additionalProperties": false},
            }),
            json!({
                "name": "describe_operation",
                "title": "Describe a public API operation",
                "description": "An operation's parameters, request body and responses, with the schemas they use.",
                "inputSchema": {"type": "object", "properties": {"operationId": {"type": "string"}}, "required": ["operationId"], "additionalProperties": false},
            }),
            json!({
                "name": "call_operation",
                "title": "Call a public API operation",
                "description": "Calls an operation as your bot (the same checks as any API call); returns its HTTP status and JSON answer.",
                "inputSchema": {"type": "object", "properties": {
                    "operationId": {"type": "string"},
                    "pathParams": {"type": "object", "description": "Values for the path's {placeholders}", "additionalProperties": {"type": ["string", "integer"]}},
                    "query": {"type": "object", "description": "Query parameters", "additionalProperties": {"type": ["string", "integer", "boolean"]}},
                    "body": {"description": "The JSON request body, for operations that take one"}
                }, "required": ["operationId"], "additionalProperties": false},
            }),
        ]);
    }
    tools
}

/// The task tools every connection gets.
fn task_tools() -> Vec<Value> {
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
    tools: &Tools,
    name: &str,
    arguments: &Value,
) -> Result<Result<Value, AppError>, Unknown> {
    let result = match name {
        "get_session_context" => get_session_context(app, caller, arguments).await,
        "get_task" => get_task(app, caller, arguments).await,
        "add_comment" => add_comment(app, caller, arguments).await,
        "list_statuses" => list_statuses(app, caller).await,
        "update_task_status" => update_task_status(app, caller, arguments).await,
        "list_operations" if tools.full => Ok(list_operations(arguments)),
        "describe_operation" if tools.full => describe_operation(arguments),
        "call_operation" if tools.full => call_operation(app, caller, tools, arguments).await,
        _ => return Err(Unknown),
    };
    Ok(result)
}

/// The public API's OpenAPI document (paths relative to `/api/public`), built once.
fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::to_value(super::openapi("")).unwrap_or_default())
}

/// `(operation id, method, path, operation)` of every documented operation.
fn operations() -> impl Iterator<Item = (&'static str, String, &'static str, &'static Value)> {
    document()["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .filter_map(move |(method, operation)| {
                    Some((
                        operation["operationId"].as_str()?,
                        method.to_uppercase(),
                        path.as_str(),
                        operation,
                    ))
                })
        })
}

fn list_operations(arguments: &Value) -> Value {
    let tag = arguments["tag"].as_str();
    let listed: Vec<Value> = operations()
        .filter(|(_, _, _, op)| tag.is_none_or(|t| op["tags"].as_array().is_some_and(|tags| tags.iter().any(|x| x == t))))
        .map(|(id, method, path, op)| {
            json!({"operationId": id, "method": method, "path": path, "summary": op["summary"], "tag": op["tags"][0]})
        })
        .collect();
    json!({"operations": listed})
}

/// The operation `arguments.operationId`, or a refusal naming how to find one.
fn find_operation(arguments: &Value) -> Result<(&'static str, String, &'static str, &'static Value), AppError> {
    let id = text(arguments, "operationId")?;
    operations().find(|(op, ..)| *op == id).ok_or_else(|| {
        AppError::NotFound(format!(
            "no operation `{}`; list_operations names them",
            id.chars().take(64).collect::<String>()
        ))
    })
}

fn describe_operation(arguments: &Value) -> Result<Value, AppError> {
    let (id, method, path, op) = find_operation(arguments)?;
    // The component schemas the operation uses, directly or through other schemas.
    let mut schemas = serde_json::Map::new();
    let mut pending = vec![op];
    while let Some(value) = pending.pop() {
        let mut refs = Vec::new();
        collect_refs(value, &mut refs);
        for name in refs {
            if schemas.contains_key(&name) {
                continue;
            }
            if let Some(schema) = document()["components"]["schemas"].get(&name) {
                schemas.insert(name, schema.clone());
                pending.push(schema);
            }
        }
    }
    Ok(json!({
        "operationId": id, "method": method, "path": path,
        "summary": op["summary"], "description": op["description"],
        "parameters": op["parameters"], "requestBody": op["requestBody"], "responses": op["responses"],
        "schemas": schemas,
    }))
}

/// Names of the `#/components/schemas/…` references in `value`.
fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                into.push(name.to_owned());
            }
            map.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

/// A path or query value as text.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Runs an operation as a REST call to this host's own API with the bot's token (and its bound
/// session), so it is checked, rate limited and audited exactly like one.
async fn call_operation(app: &SharedApp, caller: &Caller, tools: &Tools, arguments: &Value) -> Result<Value, AppError> {
    let (id, method, template, _) = find_operation(arguments)?;
    let mut path = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        let name = &rest[open + 1..close];
        let value = arguments["pathParams"]
            .get(name)
            .and_then(value_text)
            .ok_or_else(|| AppError::invalid("pathParams", format!("`{id}` needs pathParams.{name}")))?;
        path.push_str(&rest[..open]);
        path.extend(percent_encoding::utf8_percent_encode(
            &value,
            percent_encoding::NON_ALPHANUMERIC,
        ));
        rest = &rest[(close + 1).min(rest.len())..];
    }
    path.push_str(rest);
    let addr = app
        .local_addr
        .get()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("the API's address is not known yet")))?;
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let mut url = url::Url::parse(&format!("http://{host}:{}{}{path}", addr.port(), super::PUBLIC_BASE))
        .map_err(|e| AppError::invalid("pathParams", format!("unusable path: {e}")))?;
    if let Some(query) = arguments["query"].as_object() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in query {
            let value = value_text(value).ok_or_else(|| {
                AppError::invalid("query", format!("query.{name} must be a string, number or boolean"))
            })?;
            pairs.append_pair(name, &value);
        }
    }
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| AppError::Internal(e.into()))?;
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    let mut request = CLIENT
        .get_or_init(reqwest::Client::new)
        .request(method, url)
        .timeout(OPERATION_TIMEOUT)
        .header(reqwest::header::AUTHORIZATION, &tools.authorization);
    if let Some(session) = &caller.session {
        request = request.header(super::extract::AGENT_RUN_HEADER, session.as_str());
    }
    if let Some(body) = arguments.get("body").filter(|b| !b.is_null()) {
        request = request.json(body);
    }
    let mut response = request.send().await.map_err(|e| AppError::Internal(e.into()))?;
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| AppError::Internal(e.into()))? {
        if bytes.len() + chunk.len() > MAX_OPERATION_ANSWER {
            return Err(AppError::PayloadTooLarge(format!(
                "`{id}` answered more than {} KiB; narrow the request (e.g. with query parameters)",
                MAX_OPERATION_ANSWER >> 10
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(json!({"status": status, "body": body}))
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
    // A session token reads its own session's context alone.
    caller.clone().bind_session(id.as_str().into())?;
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
    let written = tasks::update(app, caller, &reference, patch).await?;
    Ok(json!({"task": views::written_task_view(&app.db, &written).await?}))
}
