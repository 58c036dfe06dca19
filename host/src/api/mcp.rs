//! `/api/mcp`: the Leadtime task tools for agents over MCP's streamable HTTP transport
//! (`../shared/contract/providers.md`, "MCP"): JSON-RPC 2.0 over `POST`, answered as JSON.
//!
//! Authorised by a **bot's** token; every tool call acts as that bot through the same use cases
//! (and checks) as the REST calls, so a tool can do nothing the bot's token could not. A client
//! may bind the connection to one of the bot's agent sessions (`?agentRunId=ses_…` on the URL, or
//! the `Leadtime-Agent-Run-Id` header): calls are then audited with that session, and
//! `get_session_context` defaults to it; another bot's session is refused. With `?tools=full` the
//! catalog adds the public API itself — `list_operations`, `describe_operation` and
//! `call_operation`, which runs an operation as a REST call with the bot's own token (so it grants
//! nothing the token does not).
//!
//! The server is stateless: it issues no `Mcp-Session-Id`, keeps nothing per client, and offers
//! no server-initiated stream (`GET` is 405), so a client cannot make the host hold anything
//! beyond its request. Written here rather than with an MCP server crate for that reason: the
//! subset an agent needs (initialize, ping, tools/list, tools/call) is small, and it reuses the
//! API's own authentication, rate limits and error messages.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::Json;
use super::mcp_tools;
use crate::api::error::AppError;
use crate::app::SharedApp;
use crate::domain::tokens::Scope;
use crate::domain::users::UserKind;
use crate::use_cases::accounts::Caller;

/// Protocol versions this server speaks, newest first.
const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

pub fn router() -> Router<SharedApp> {
    Router::new().route("/api/mcp", axum::routing::post(handle).get(no_stream).delete(no_stream))
}

/// Options on the endpoint's URL: the agent session the connection is bound to (also accepted as
/// the `Leadtime-Agent-Run-Id` header), and `tools=full` for the public API tools.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Binding {
    agent_run_id: Option<String>,
    tools: Option<String>,
}

async fn no_stream() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [("allow", "POST")],
        Json(json!({"error": "method_not_allowed", "message": "this MCP server answers POST requests with JSON and offers no event stream"})),
    )
        .into_response()
}

/// One JSON-RPC message from the client.
#[derive(Debug, Deserialize)]
struct RpcMessage {
    jsonrpc: Option<String>,
    /// Absent for notifications.
    id: Option<Value>,
    method: Option<String>,
    #[serde(default)]
    params: Value,
}

fn rpc_result(id: Value, result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

fn rpc_error(status: StatusCode, id: Value, code: i64, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

async fn handle(
    State(app): State<SharedApp>,
    mut caller: Caller,
    Query(binding): Query<Binding>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    if caller.user.kind != UserKind::Bot {
        return Err(AppError::Forbidden(
            "the MCP endpoint serves bots: use a bot's API token".into(),
        ));
    }
    caller.require(Scope::Read)?;
    // (The header form is checked by the `Caller` extractor, like on every API call.)
    if let Some(id) = binding.agent_run_id {
        let session = super::agent_sessions::find_own(&app, &caller, &id).await?;
        caller.bind_session(session.id)?;
    }
    let tools = mcp_tools::Tools {
        full: binding.tools.as_deref() == Some("full"),
        authorization: headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    };

    let message: RpcMessage = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(error) => {
            let batch = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_array());
            return Ok(if batch {
                rpc_error(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    -32600,
                    "send one JSON-RPC message per request (batches are not supported)",
                )
            } else {
                rpc_error(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    -32700,
                    format!("the body is not a JSON-RPC message: {error}"),
                )
            });
        }
    };
    let Some(method) = message.method.filter(|_| message.jsonrpc.as_deref() == Some("2.0")) else {
        // A response or a malformed message: nothing to answer with a result.
        return Ok(rpc_error(
            StatusCode::BAD_REQUEST,
            message.id.unwrap_or(Value::Null),
            -32600,
            "a JSON-RPC 2.0 request needs `jsonrpc: \"2.0\"` and a `method`",
        ));
    };
    let Some(id) = message.id else {
        // Notifications (`notifications/initialized`, cancellations) need no answer.
        return Ok(StatusCode::ACCEPTED.into_response());
    };
    Ok(match method.as_str() {
        "initialize" => {
            let asked = message.params["protocolVersion"].as_str().unwrap_or_default();
            let version = PROTOCOL_VERSIONS
                .iter()
                .find(|v| **v == asked)
                .unwrap_or(&PROTOCOL_VERSIONS[0]);
            rpc_result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "leadtime-agent-host", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Leadtime task tools. Each call acts as your bot, with its permissions. \
                        Start with get_session_context to read the task you were given.",
                }),
            )
        }
        "ping" => rpc_result(id, json!({})),
        "tools/list" => rpc_result(id, json!({"tools": mcp_tools::catalog(tools.full)})),
        "tools/call" => {
            let Some(name) = message.params["name"].as_str() else {
                return Ok(rpc_error(
                    StatusCode::OK,
                    id,
                    -32602,
                    "`params.name` names the tool to call",
                ));
            };
            let arguments = match &message.params["arguments"] {
                Value::Null => json!({}),
                other => other.clone(),
            };
            match mcp_tools::call(&app, &caller, &tools, name, &arguments).await {
                Err(mcp_tools::Unknown) => rpc_error(
                    StatusCode::OK,
                    id,
                    -32602,
                    format!(
                        "unknown tool `{}`; tools/list names them",
                        name.chars().take(64).collect::<String>()
                    ),
                ),
                Ok(Ok(value)) => rpc_result(
                    id,
                    json!({
                        "content": [{"type": "text", "text": serde_json::to_string_pretty(&value).unwrap_or_default()}],
                        "structuredContent": value,
                        "isError": false,
                    }),
                ),
                Ok(Err(refused)) => {
                    if let AppError::Internal(cause) = &refused {
                        tracing::error!(error = format!("{cause:#}"), tool = name, "MCP tool call failed");
                    }
                    let message = match &refused {
                        AppError::Internal(_) => "the host could not do this; try again later".to_owned(),
                        other => other.to_string(),
                    };
                    rpc_result(
                        id,
                        json!({"content": [{"type": "text", "text": message}], "isError": true}),
                    )
                }
            }
        }
        other => rpc_error(
            StatusCode::OK,
            id,
            -32601,
            format!(
                "method `{}` is not supported (initialize, ping, tools/list, tools/call)",
                other.chars().take(64).collect::<String>()
            ),
        ),
    })
}
