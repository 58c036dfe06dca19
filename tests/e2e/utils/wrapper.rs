//! A loopback fake of a self-hosted agent wrapper (what Leadtime's OpenClaw/Hermes connectors do).
//!
//! It checks every delivery against the wire contract — `Content-Length`, the Leadtime signature
//! (ISO timestamp within ±300 s, lowercase hex, newest secret first), the Standard Webhooks
//! signature, the body's required fields — and answers like a connector (`202`, `401`, `400`,
//! duplicate ids). For each accepted delivery it then drives the session API as a connector's agent
//! run does, re-sending every call once with the same idempotency key, and reports the outcome.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use leadtime_host::delivery::signing;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Api, Bot, EVENT_TIMEOUT, http_client};

/// The path wrappers listen on by default.
pub const WEBHOOK_PATH: &str = "/leadtime/webhook";

/// What the wrapper saw.
#[derive(Debug, Clone)]
pub enum WrapperEvent {
    /// A delivery passed every check and its agent run finished; `body` is the webhook body.
    RunFinished {
        session_id: String,
        webhook_id: String,
        body: Value,
    },
    /// A delivery or a session call broke the contract.
    Violation(String),
}

/// A delivery as received (headers lowercased).
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
}

struct Shared {
    /// The bot whose token and secret the wrapper was set up with.
    bot: Mutex<Option<Bot>>,
    /// `{host}/api`, as connectors are configured (`leadtimeBaseUrl`).
    leadtime_base_url: String,
    seen: Mutex<HashSet<String>>,
    received: Mutex<Vec<Received>>,
    events: mpsc::UnboundedSender<WrapperEvent>,
}

/// A running fake wrapper.
pub struct FakeWrapper {
    /// The webhook URL to configure on the bot.
    pub webhook_url: String,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<WrapperEvent>,
}

impl FakeWrapper {
    /// Starts a wrapper on 127.0.0.1:0 that will call the host at `host_base_url`.
    pub async fn start(host_base_url: &str) -> FakeWrapper {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            bot: Mutex::new(None),
            leadtime_base_url: format!("{host_base_url}/api"),
            seen: Mutex::new(HashSet::new()),
            received: Mutex::new(Vec::new()),
            events: tx,
        });
        let app = Router::new()
            .route(WEBHOOK_PATH, post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind wrapper");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakeWrapper {
            webhook_url: format!("http://{addr}{WEBHOOK_PATH}"),
            shared,
            events: rx,
        }
    }

    /// Gives the wrapper the bot's token and webhook secret (as a connector's setup does).
    pub fn configure(&self, bot: &Bot) {
        *self.shared.bot.lock().expect("lock") = Some(bot.clone());
    }

    /// Waits for the next run to finish; panics on a contract violation or a hang.
    pub async fn next_run(&mut self) -> (String, String, Value) {
        match tokio::time::timeout(EVENT_TIMEOUT, self.events.recv()).await {
            Ok(Some(WrapperEvent::RunFinished {
                session_id,
                webhook_id,
                body,
            })) => (session_id, webhook_id, body),
            Ok(Some(WrapperEvent::Violation(reason))) => panic!("the wrapper saw a contract violation: {reason}"),
            Ok(None) => panic!("the wrapper stopped"),
            Err(_) => panic!("no agent run finished within {EVENT_TIMEOUT:?}"),
        }
    }

    /// Every delivery received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let reject = |status: StatusCode, reason: String| {
        let _ = shared.events.send(WrapperEvent::Violation(reason.clone()));
        (status, axum::Json(json!({"ok": false, "error": reason})))
    };
    let Some(bot) = shared.bot.lock().expect("lock").clone() else {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "a delivery arrived before the wrapper was configured".into(),
        );
    };

    let (webhook_id, value) = match check_delivery(&bot, &headers, &body) {
        Ok(accepted) => accepted,
        Err((status, reason)) => return reject(status, reason),
    };
    if !shared.seen.lock().expect("lock").insert(webhook_id.clone()) {
        return (StatusCode::ACCEPTED, axum::Json(json!({"ok": true, "duplicate": true})));
    }
    shared.received.lock().expect("lock").push(Received {
        headers: headers.clone(),
    });

    let session_id = value["agentRunId"].as_str().unwrap_or_default().to_owned();
    let run_id = format!("run-{session_id}");
    let api = Api {
        base: format!("{}/public", shared.leadtime_base_url),
        token: Some(bot.token.clone()),
        http: http_client(),
    };
    tokio::spawn(async move {
        let event = match agent_run(&api, &webhook_id, &value).await {
            Ok(()) => WrapperEvent::RunFinished {
                session_id,
                webhook_id,
                body: value,
            },
            Err(reason) => WrapperEvent::Violation(reason),
        };
        let _ = shared.events.send(event);
    });
    (StatusCode::ACCEPTED, axum::Json(json!({"ok": true, "runId": run_id})))
}

/// Checks a delivery as connectors do (wire contract §1 and Standard Webhooks): `Content-Length`,
/// content type, both signatures with `bot`'s secret, and the body's required fields. Returns the
/// webhook id and the body, or the answer a connector gives and why.
pub fn check_delivery(bot: &Bot, headers: &HeaderMap, body: &[u8]) -> Result<(String, Value), (StatusCode, String)> {
    // One connector reads exactly Content-Length bytes: the header must be there and be right.
    match header(headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(length) if length == body.len() => {}
        other => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("Content-Length {other:?} does not match a {}-byte body", body.len()),
            ));
        }
    }
    if header(headers, "content-type") != Some("application/json") {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("content-type is {:?}", header(headers, "content-type")),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let webhook_id = header(headers, "leadtime-webhook-id").unwrap_or_default().to_owned();
    if webhook_id.is_empty() {
        return Err((StatusCode::UNAUTHORIZED, "missing Leadtime-Webhook-Id".into()));
    }
    let timestamp = header(headers, "leadtime-webhook-timestamp");
    if timestamp.is_some_and(|t| t.parse::<i64>().is_ok()) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "Leadtime-Webhook-Timestamp is unix seconds; connectors require ISO-8601".into(),
        ));
    }
    if let Err(e) = signing::verify_leadtime(
        &bot.webhook_secret,
        timestamp,
        header(headers, "leadtime-signature"),
        body,
        now,
    ) {
        return Err((StatusCode::UNAUTHORIZED, format!("Leadtime signature: {e}")));
    }
    if header(headers, "webhook-id") != Some(webhook_id.as_str()) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "webhook-id differs from Leadtime-Webhook-Id".into(),
        ));
    }
    if let Err(e) = signing::verify_standard(
        &bot.webhook_secret,
        header(headers, "webhook-id"),
        header(headers, "webhook-timestamp"),
        header(headers, "webhook-signature"),
        body,
        now,
    ) {
        return Err((StatusCode::UNAUTHORIZED, format!("Standard Webhooks signature: {e}")));
    }

    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err((StatusCode::BAD_REQUEST, "body is not JSON".into()));
    };
    if let Err(reason) = check_body(&value, timestamp.unwrap_or_default()) {
        return Err((StatusCode::BAD_REQUEST, reason));
    }
    Ok((webhook_id, value))
}

/// The body fields connectors read (wire contract §1).
fn check_body(body: &Value, timestamp_header: &str) -> Result<(), String> {
    if body["eventType"] != "agent_session.created" {
        return Err(format!("eventType is {}", body["eventType"]));
    }
    if body["agentRunId"].as_str().is_none_or(str::is_empty) {
        return Err("agentRunId is missing".into());
    }
    if body["webhookTimestamp"] != timestamp_header {
        return Err(format!(
            "webhookTimestamp {} differs from the header {timestamp_header}",
            body["webhookTimestamp"]
        ));
    }
    for field in ["workspaceId", "taskId"] {
        if !body[field].is_string() {
            return Err(format!("{field} is missing"));
        }
    }
    if !(body["commentId"].is_null() || body["commentId"].is_string()) {
        return Err("commentId must be a string or null".into());
    }
    let context = &body["context"];
    if !context["task"]["shortNumber"].is_u64() {
        return Err(format!(
            "context.task.shortNumber must be a JSON number, got {}",
            context["task"]["shortNumber"]
        ));
    }
    if context["task"]["id"] != body["taskId"] {
        return Err("context.task.id differs from taskId".into());
    }
    if context["promptContext"].as_str().is_none_or(|p| p.len() <= 100) {
        return Err("context.promptContext is missing or too short to be a brief".into());
    }
    Ok(())
}

/// Sends a call twice (as connectors do when a webhook is redelivered) and checks both answers are
/// 2xx and identical in what matters.
async fn twice(api: &Api, method: reqwest::Method, path: &str, body: Value) -> Result<Value, String> {
    let (first_status, first) = api.call(method.clone(), path, Some(&body)).await;
    let (second_status, second) = api.call(method.clone(), path, Some(&body)).await;
    if !first_status.is_success() || !second_status.is_success() {
        return Err(format!(
            "{method} {path} answered {first_status} {first} then {second_status} {second}"
        ));
    }
    if first.get("id").is_some() && first["id"] != second["id"] {
        return Err(format!(
            "{method} {path}: the repeated idempotency key recorded a second item ({} vs {})",
            first["id"], second["id"]
        ));
    }
    Ok(first)
}

/// What a connector's agent run does with the session API.
async fn agent_run(api: &Api, webhook_id: &str, body: &Value) -> Result<(), String> {
    let session = body["agentRunId"].as_str().unwrap_or_default();
    let short_number = &body["context"]["task"]["shortNumber"];

    let (status, context) = api.get(&format!("/agent-sessions/{session}/context")).await;
    if !status.is_success() {
        return Err(format!("context answered {status}: {context}"));
    }
    if &context["task"]["shortNumber"] != short_number || context["targets"]["taskId"] != body["taskId"] {
        return Err(format!("context does not match the webhook: {context}"));
    }
    let (status, task) = api.get(&format!("/tasks/{short_number}")).await;
    if !status.is_success() || task["id"] != body["taskId"] {
        return Err(format!("GET /tasks/{short_number} answered {status}: {task}"));
    }

    let sessions = |suffix: &str| format!("/agent-sessions/{session}/{suffix}");
    twice(
        api,
        reqwest::Method::PATCH,
        &sessions("status"),
        json!({"status": "running", "message": "", "idempotencyKey": format!("{webhook_id}:running")}),
    )
    .await?;
    twice(
        api,
        reqwest::Method::POST,
        &sessions("activities"),
        json!({"activityType": "prompt", "body": body["context"]["promptContext"], "action": null, "parameter": null, "result": null, "idempotencyKey": format!("{webhook_id}:prompt")}),
    )
    .await?;
    twice(
        api,
        reqwest::Method::POST,
        &sessions("activities"),
        json!({
            "activityType": "toolCall", "body": "Reading the task", "action": "leadtime_get_task",
            "parameter": format!("{{\"identifier\":{short_number}}}"), "result": "ok",
            "providerEventId": "evt-1", "providerEventType": "tool_use", "raw": {"tool": "get_task", "ms": 12},
            "idempotencyKey": format!("{webhook_id}:tool-1"),
        }),
    )
    .await?;
    twice(
        api,
        reqwest::Method::POST,
        &sessions("activities"),
        json!({"activityType": "response", "body": format!("Done with #{short_number}: the redirect loop is fixed."), "idempotencyKey": format!("{webhook_id}:response")}),
    )
    .await?;
    twice(
        api,
        reqwest::Method::PATCH,
        &sessions("status"),
        json!({"status": "done", "message": "Finished", "idempotencyKey": format!("{webhook_id}:done")}),
    )
    .await?;
    Ok(())
}
