//! A loopback fake of both model APIs the host's `model` capability speaks
//! (`../shared/contract/providers.md`): the Anthropic Messages API (`POST /v1/messages`) and the
//! OpenAI-compatible chat completions API (`POST /v1/chat/completions`). It checks every request —
//! auth and version headers, the model, the messages (roles, content blocks, every tool result
//! answering a tool call of the turn before), the tool schemas — and answers the scripted turns in
//! order, in the format of the endpoint asked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Turn {
    /// The model calls these tools (name, input), after `text` if any.
    Tools(Option<&'static str>, Vec<(&'static str, Value)>),
    /// The model answers with text and ends its turn.
    Text(&'static str),
    /// An HTTP error: status, `Retry-After` seconds, body.
    Error(u16, Option<u64>, Value),
    /// A 200 with this body as it is.
    Raw(&'static str),
}

/// A request the fake got: which API, and its body.
#[derive(Debug, Clone)]
pub struct ModelCall {
    pub path: String,
    pub body: Value,
}

struct Shared {
    /// While set, requests are held (a model that does not answer) until [`FakeModel::release`].
    hold: std::sync::atomic::AtomicBool,
    released: tokio::sync::Notify,
    in_flight: std::sync::atomic::AtomicUsize,
    max_in_flight: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::watch::Sender<usize>,
    key: Option<String>,
    script: Mutex<VecDeque<Turn>>,
    calls: Mutex<Vec<ModelCall>>,
    violations: Mutex<Vec<String>>,
    next_id: Mutex<u64>,
}

/// A running fake model server.
#[derive(Clone)]
pub struct FakeModel {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    shared: Arc<Shared>,
}

impl FakeModel {
    /// Starts the fake; requests must carry `key` (`None`: no key, as a local server allows).
    pub async fn start(key: Option<&str>) -> FakeModel {
        let shared = Arc::new(Shared {
            hold: Default::default(),
            released: tokio::sync::Notify::new(),
            in_flight: Default::default(),
            max_in_flight: Default::default(),
            arrived: tokio::sync::watch::channel(0).0,
            key: key.map(str::to_owned),
            script: Mutex::default(),
            calls: Mutex::default(),
            violations: Mutex::default(),
            next_id: Mutex::new(0),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind model");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakeModel { base, shared }
    }

    /// Queues the next answers.
    pub fn script(&self, turns: Vec<Turn>) {
        self.shared.script.lock().expect("lock").extend(turns);
    }

    /// Holds every request from now on, as a model that does not answer.
    pub fn hold(&self) {
        self.shared.hold.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Answers the held requests (and every later one) as scripted.
    pub fn release(&self) {
        self.shared.hold.store(false, std::sync::atomic::Ordering::SeqCst);
        self.shared.released.notify_waiters();
    }

    /// The most requests the fake held at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until `count` requests arrived in all.
    pub async fn wait_for_requests(&self, count: usize) {
        let mut arrived = self.shared.arrived.subscribe();
        tokio::time::timeout(std::time::Duration::from_secs(60), arrived.wait_for(|n| *n >= count))
            .await
            .expect("the model requests did not arrive within 60 s")
            .expect("the fake is running");
    }

    /// Every request, in order.
    pub fn calls(&self) -> Vec<ModelCall> {
        self.shared.calls.lock().expect("lock").clone()
    }

    /// Requests that broke the documented contract, described.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().expect("lock").clone()
    }
}

fn allowed(value: &Value, keys: &[&str], what: &str, problems: &mut Vec<String>) {
    if let Some(object) = value.as_object() {
        for key in object.keys().filter(|k| !keys.contains(&k.as_str())) {
            problems.push(format!("unknown field `{what}{key}`"));
        }
    }
}

/// What is wrong with an Anthropic Messages request body.
fn anthropic_problems(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    allowed(
        body,
        &["model", "max_tokens", "system", "messages", "tools", "tool_choice"],
        "",
        &mut problems,
    );
    if body["model"].as_str().is_none_or(|m| m.is_empty()) || !body["max_tokens"].is_u64() {
        problems.push("`model` and `max_tokens` are required".into());
    }
    let mut open_calls: Vec<String> = Vec::new();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    if messages.is_empty() || messages[0]["role"] != "user" {
        problems.push("messages must start with a user message".into());
    }
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if i > 0 && messages[i - 1]["role"] == message["role"] {
            problems.push(format!("messages[{i}] repeats the role `{role}`"));
        }
        let blocks = match &message["content"] {
            Value::String(_) => Vec::new(),
            Value::Array(blocks) => blocks.clone(),
            _ => {
                problems.push(format!("messages[{i}].content is neither text nor blocks"));
                Vec::new()
            }
        };
        let mut answered = Vec::new();
        for block in &blocks {
            match (role, block["type"].as_str()) {
                (_, Some("text")) if block["text"].is_string() => {}
                ("assistant", Some("tool_use")) if block["id"].is_string() && block["input"].is_object() => {}
                ("user", Some("tool_result")) => {
                    let id = block["tool_use_id"].as_str().unwrap_or_default().to_owned();
                    if !open_calls.contains(&id) {
                        problems.push(format!(
                            "messages[{i}] answers tool call `{id}`, which the turn before did not make"
                        ));
                    }
                    answered.push(id);
                }
                _ => problems.push(format!(
                    "messages[{i}] has a block a {role} message cannot have: {block}"
                )),
            }
        }
        if role == "user" && !open_calls.is_empty() && open_calls.iter().any(|c| !answered.contains(c)) {
            problems.push(format!("messages[{i}] leaves tool calls unanswered: {open_calls:?}"));
        }
        open_calls = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .filter_map(|b| b["id"].as_str().map(str::to_owned))
            .collect();
    }
    for tool in body["tools"].as_array().into_iter().flatten() {
        allowed(
            tool,
            &["name", "description", "input_schema"],
            "tools[].",
            &mut problems,
        );
        if !tool["name"].is_string() || tool["input_schema"]["type"] != "object" {
            problems.push(format!("a tool needs a name and an object input_schema: {tool}"));
        }
    }
    problems
}

/// What is wrong with an OpenAI chat completions request body.
fn openai_problems(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    allowed(
        body,
        &[
            "model",
            "messages",
            "tools",
            "tool_choice",
            "max_tokens",
            "max_completion_tokens",
        ],
        "",
        &mut problems,
    );
    if body["model"].as_str().is_none_or(|m| m.is_empty()) {
        problems.push("`model` is required".into());
    }
    let mut open_calls: Vec<String> = Vec::new();
    for (i, message) in body["messages"].as_array().into_iter().flatten().enumerate() {
        match message["role"].as_str() {
            Some("system" | "user") if message["content"].is_string() => open_calls.clear(),
            Some("assistant") => {
                open_calls = message["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| {
                        let ok = c["type"] == "function"
                            && c["function"]["name"].is_string()
                            && c["function"]["arguments"]
                                .as_str()
                                .is_some_and(|a| serde_json::from_str::<Value>(a).is_ok());
                        if !ok {
                            problems.push(format!("messages[{i}] has a malformed tool call: {c}"));
                        }
                        c["id"].as_str().map(str::to_owned)
                    })
                    .collect();
            }
            Some("tool") => {
                let id = message["tool_call_id"].as_str().unwrap_or_default();
                if !open_calls.iter().any(|c| c == id) || !message["content"].is_string() {
                    problems.push(format!("messages[{i}] answers `{id}`, which is no open tool call"));
                }
            }
            _ => problems.push(format!("messages[{i}] is not a chat message: {message}")),
        }
    }
    for tool in body["tools"].as_array().into_iter().flatten() {
        if tool["type"] != "function"
            || !tool["function"]["name"].is_string()
            || tool["function"]["parameters"]["type"] != "object"
        {
            problems.push(format!(
                "a tool is {{type: function, function: {{name, description, parameters}}}}: {tool}"
            ));
        }
    }
    problems
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, 8 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let violation = |what: String| {
        shared.violations.lock().expect("lock").push(what);
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "invalid request"}})),
        )
            .into_response()
    };
    let anthropic = match (parts.method.as_str(), path.as_str()) {
        ("POST", "/v1/messages") => true,
        ("POST", "/v1/chat/completions") => false,
        _ => return violation(format!("{} {path} is no model API", parts.method)),
    };
    if !header("content-type").is_some_and(|c| c.starts_with("application/json")) {
        return violation(format!("{path}: the body is not sent as JSON"));
    }
    let authorized = match (&shared.key, anthropic) {
        (Some(key), true) => header("x-api-key") == Some(key.as_str()),
        (Some(key), false) => header("authorization") == Some(format!("Bearer {key}").as_str()),
        (None, true) => header("x-api-key").is_none(),
        (None, false) => header("authorization").is_none(),
    };
    if !authorized {
        return violation(format!("{path}: wrong or unexpected key"));
    }
    if anthropic && header("anthropic-version") != Some("2023-06-01") {
        return violation(format!("{path}: anthropic-version {:?}", header("anthropic-version")));
    }
    let problems = if anthropic {
        anthropic_problems(&body)
    } else {
        openai_problems(&body)
    };
    if !problems.is_empty() {
        return violation(format!("{path}: {}; body {body}", problems.join(", ")));
    }
    shared.calls.lock().expect("lock").push(ModelCall {
        path: path.clone(),
        body: body.clone(),
    });
    shared.arrived.send_modify(|n| *n += 1);
    {
        use std::sync::atomic::Ordering::SeqCst;
        let now = shared.in_flight.fetch_add(1, SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, SeqCst);
        while shared.hold.load(SeqCst) {
            let released = shared.released.notified();
            if !shared.hold.load(SeqCst) {
                break;
            }
            released.await;
        }
        shared.in_flight.fetch_sub(1, SeqCst);
    }
    let Some(turn) = shared.script.lock().expect("lock").pop_front() else {
        return violation(format!("{path}: a request nobody scripted an answer for"));
    };
    let next = || {
        let mut n = shared.next_id.lock().expect("lock");
        *n += 1;
        *n
    };
    let usage = |a: &str, b: &str| json!({a: 120, b: 30});
    match turn {
        Turn::Error(status, retry_after, answer) => {
            let mut response = (StatusCode::from_u16(status).expect("status"), axum::Json(answer)).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.to_string().parse().expect("header"));
            }
            response
        }
        Turn::Raw(text) => (StatusCode::OK, [("content-type", "application/json")], text).into_response(),
        Turn::Text(text) if anthropic => axum::Json(json!({
            "id": format!("msg_{}", next()), "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": usage("input_tokens", "output_tokens"),
        }))
        .into_response(),
        Turn::Text(text) => axum::Json(json!({
            "id": format!("chatcmpl-{}", next()), "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
        }))
        .into_response(),
        Turn::Tools(text, calls) if anthropic => {
            let mut content: Vec<Value> = text.map(|t| json!({"type": "text", "text": t})).into_iter().collect();
            for (name, input) in calls {
                content
                    .push(json!({"type": "tool_use", "id": format!("toolu_{}", next()), "name": name, "input": input}));
            }
            axum::Json(json!({
                "id": format!("msg_{}", next()), "type": "message", "role": "assistant", "model": body["model"],
                "content": content, "stop_reason": "tool_use", "usage": usage("input_tokens", "output_tokens"),
            }))
            .into_response()
        }
        Turn::Tools(text, calls) => {
            let tool_calls: Vec<Value> = calls
                .into_iter()
                .map(|(name, input)| {
                    json!({"id": format!("call_{}", next()), "type": "function",
                        "function": {"name": name, "arguments": input.to_string()}})
                })
                .collect();
            axum::Json(json!({
                "id": format!("chatcmpl-{}", next()), "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": tool_calls},
                    "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
            }))
            .into_response()
        }
    }
}
