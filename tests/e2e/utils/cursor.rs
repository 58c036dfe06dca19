//! A loopback fake of Cursor's Cloud Agents API v0 (`../shared/contract/providers.md`), which
//! checks every request it gets against the documented surface and plays scripted agents:
//!
//! - every call needs `Authorization: Bearer <the key>` (else 401 `{"error": …}`, counted as an
//!   unauthorized call, not a violation: tests send wrong keys on purpose);
//! - `POST /v0/agents` needs a JSON body with only `prompt {text, images?}`, `model?`,
//!   `source {repository: https://github.com/…, ref?}`, `target {autoCreatePr, branchName?, …}`
//!   and `webhook {url, secret ≥ 32 chars}`; it answers the new agent (`CREATING`);
//! - `GET /v0/agents/{id}`, `GET /v0/agents/{id}/conversation`, `POST /v0/agents/{id}/followup
//!   {prompt: {text}}`, `POST /v0/agents/{id}/stop`, `GET /v0/me`.
//!
//! Anything else, or a malformed body, is a violation. Tests move agents along (`set_status`,
//! `say`, `finish`) and play Cursor's webhook (`send_webhook`, signed like Cursor:
//! `X-Webhook-Signature: sha256=<hex HMAC of the raw body>`).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use leadtime_host::domain::webhook_signing::hmac_hex;
use serde_json::{Value, json};

/// One request the fake got.
#[derive(Debug, Clone)]
pub struct CursorRequest {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

/// A scripted agent.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub status: String,
    /// `(id, type, text)`, oldest first.
    pub messages: Vec<(String, String, String)>,
    pub summary: Option<String>,
    pub pr_url: Option<String>,
    pub webhook_url: String,
    pub webhook_secret: String,
    /// The launch request's body.
    pub launch: Value,
    pub follow_ups: Vec<String>,
    pub stopped: bool,
}

struct Shared {
    api_key: String,
    agents: Mutex<Vec<Agent>>,
    requests: Mutex<Vec<CursorRequest>>,
    violations: Mutex<Vec<String>>,
    unauthorized: Mutex<usize>,
    /// The next launches fail with this answer, while the count lasts.
    failing_launches: Mutex<Option<(usize, u16, Value)>>,
    /// The next reads of an agent answer 503, while the count lasts.
    failing_reads: Mutex<usize>,
    received: tokio::sync::watch::Sender<usize>,
}

/// A running fake of Cursor's API.
#[derive(Clone)]
pub struct FakeCursor {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    shared: Arc<Shared>,
}

impl FakeCursor {
    /// Starts the fake on a loopback port; only `api_key` is accepted.
    pub async fn start(api_key: &str) -> FakeCursor {
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            agents: Mutex::default(),
            requests: Mutex::default(),
            violations: Mutex::default(),
            unauthorized: Mutex::default(),
            failing_launches: Mutex::default(),
            failing_reads: Mutex::default(),
            received: tokio::sync::watch::channel(0).0,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind cursor");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakeCursor { base, shared }
    }

    /// The agent `id` as it stands.
    pub fn agent(&self, id: &str) -> Agent {
        self.shared
            .agents
            .lock()
            .expect("lock")
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .unwrap_or_else(|| panic!("no agent {id}"))
    }

    /// Every agent launched, in order.
    pub fn agents(&self) -> Vec<Agent> {
        self.shared.agents.lock().expect("lock").clone()
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Agent)) {
        let mut agents = self.shared.agents.lock().expect("lock");
        let agent = agents.iter_mut().find(|a| a.id == id).expect("known agent");
        change(agent);
    }

    /// Moves agent `id` to `status`.
    pub fn set_status(&self, id: &str, status: &str) {
        self.update(id, |a| a.status = status.to_owned());
    }

    /// Adds an assistant message to agent `id`'s conversation.
    pub fn say(&self, id: &str, text: &str) {
        self.update(id, |a| {
            let n = a.messages.len() + 1;
            a.messages
                .push((format!("msg-{n}"), "assistant_message".into(), text.to_owned()));
        });
    }

    /// Finishes agent `id` with a summary and, if any, a pull request.
    pub fn finish(&self, id: &str, summary: &str, pr_url: Option<&str>) {
        self.update(id, |a| {
            a.status = "FINISHED".into();
            a.summary = Some(summary.to_owned());
            a.pr_url = pr_url.map(str::to_owned);
        });
    }

    /// Makes the next `count` launches answer `status` with `body`.
    pub fn fail_launches(&self, count: usize, status: u16, body: Value) {
        *self.shared.failing_launches.lock().expect("lock") = Some((count, status, body));
    }

    /// Makes the next `count` reads of an agent (`GET /v0/agents/{id}`) answer 503.
    pub fn fail_reads(&self, count: usize) {
        *self.shared.failing_reads.lock().expect("lock") = count;
    }

    /// Sends Cursor's status-change webhook for agent `id` as event `event_id`, signed with
    /// `secret` (the agent's own when `None`); the host's answer status.
    pub async fn send_webhook(&self, id: &str, event_id: &str, secret: Option<&str>) -> StatusCode {
        let agent = self.agent(id);
        let body = json!({
            "event": "statusChange",
            "timestamp": "2026-11-30T12:00:00.000Z",
            "id": agent.id,
            "status": agent.status,
            "source": agent.launch["source"],
            "target": target_json(&agent),
            "summary": agent.summary,
        })
        .to_string();
        let signature = hmac_hex(secret.unwrap_or(&agent.webhook_secret), body.as_bytes());
        let response = reqwest::Client::new()
            .post(&agent.webhook_url)
            .header("content-type", "application/json")
            .header("user-agent", "Cursor-Agent-Webhook/1.0")
            .header("X-Webhook-Signature", format!("sha256={signature}"))
            .header("X-Webhook-ID", event_id)
            .header("X-Webhook-Event", "statusChange")
            .body(body)
            .send()
            .await
            .expect("webhook sent");
        StatusCode::from_u16(response.status().as_u16()).expect("status")
    }

    /// Requests received with `method` on `path`, in order.
    pub fn requests(&self, method: &str, path: &str) -> Vec<CursorRequest> {
        self.shared
            .requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.method.as_str() == method && r.path == path)
            .cloned()
            .collect()
    }

    /// Calls made with a key other than the fake's.
    pub fn unauthorized(&self) -> usize {
        *self.shared.unauthorized.lock().expect("lock")
    }

    /// Requests that broke the documented contract, described.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().expect("lock").clone()
    }
}

fn agent_json(agent: &Agent) -> Value {
    json!({
        "id": agent.id,
        "name": format!("Agent {}", agent.id),
        "status": agent.status,
        "source": agent.launch["source"],
        "target": target_json(agent),
        "summary": agent.summary,
        "createdAt": "2026-11-30T12:00:00.000Z",
    })
}

fn target_json(agent: &Agent) -> Value {
    json!({
        "branchName": agent.launch["target"]["branchName"].as_str().unwrap_or("cursor/fix"),
        "url": format!("https://cursor.com/agents?id={}", agent.id),
        "prUrl": agent.pr_url,
        "autoCreatePr": agent.launch["target"]["autoCreatePr"],
    })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// What is wrong with a launch body, if anything.
fn launch_problems(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return vec!["the body is not a JSON object".into()];
    };
    for key in object.keys() {
        if !matches!(key.as_str(), "prompt" | "model" | "source" | "target" | "webhook") {
            problems.push(format!("unknown field `{key}`"));
        }
    }
    let keys_within = |value: &Value, allowed: &[&str], what: &str, problems: &mut Vec<String>| {
        if let Some(object) = value.as_object() {
            for key in object.keys().filter(|k| !allowed.contains(&k.as_str())) {
                problems.push(format!("unknown field `{what}.{key}`"));
            }
        }
    };
    if body["prompt"]["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        problems.push("`prompt.text` must be a non-empty string".into());
    }
    keys_within(&body["prompt"], &["text", "images"], "prompt", &mut problems);
    if !body["model"].is_null() && !body["model"].is_string() {
        problems.push("`model` must be a string".into());
    }
    if !body["source"]["repository"]
        .as_str()
        .is_some_and(|r| r.starts_with("https://github.com/"))
    {
        problems.push("`source.repository` must be a GitHub URL".into());
    }
    if !body["source"]["ref"].is_null() && !body["source"]["ref"].is_string() {
        problems.push("`source.ref` must be a string".into());
    }
    keys_within(
        &body["source"],
        &["repository", "ref", "prUrl"],
        "source",
        &mut problems,
    );
    if !body["target"]["autoCreatePr"].is_boolean() {
        problems.push("`target.autoCreatePr` must be a boolean".into());
    }
    keys_within(
        &body["target"],
        &[
            "autoCreatePr",
            "branchName",
            "openAsCursorGithubApp",
            "skipReviewerRequest",
        ],
        "target",
        &mut problems,
    );
    if !body["webhook"]["url"].as_str().is_some_and(|u| u.starts_with("http")) {
        problems.push("`webhook.url` must be an http(s) URL".into());
    }
    if body["webhook"]["secret"].as_str().is_none_or(|s| s.len() < 32) {
        problems.push("`webhook.secret` must be at least 32 characters".into());
    }
    keys_within(&body["webhook"], &["url", "secret"], "webhook", &mut problems);
    problems
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, 4 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let json_body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.requests.lock().expect("lock").push(CursorRequest {
        method: parts.method.clone(),
        path: path.clone(),
        body: json_body.clone(),
    });
    let answer = answer(&shared, &parts, &path, &raw, json_body);
    shared.received.send_modify(|n| *n += 1);
    answer
}

fn answer(shared: &Shared, parts: &axum::http::request::Parts, path: &str, raw: &[u8], body: Value) -> Response {
    let violation = |what: String| shared.violations.lock().expect("lock").push(what);
    let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
    if authorization != Some(format!("Bearer {}", shared.api_key).as_str()) {
        *shared.unauthorized.lock().expect("lock") += 1;
        return error(StatusCode::UNAUTHORIZED, "Invalid API key");
    }
    let is_json = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (parts.method.as_str(), segments.as_slice()) {
        ("GET", ["v0", "me"]) => axum::Json(
            json!({"apiKeyName": "test", "createdAt": "2026-01-01T00:00:00Z", "userEmail": "dev@example.com"}),
        )
        .into_response(),
        ("POST", ["v0", "agents"]) => {
            let problems = launch_problems(&body);
            if !is_json || !problems.is_empty() {
                violation(format!(
                    "POST /v0/agents (json: {is_json}): {}; body {}",
                    problems.join(", "),
                    String::from_utf8_lossy(raw)
                ));
                return error(StatusCode::BAD_REQUEST, "invalid request");
            }
            {
                let mut failing = shared.failing_launches.lock().expect("lock");
                if let Some((left, status, answer)) = failing.as_mut()
                    && *left > 0
                {
                    *left -= 1;
                    let status = StatusCode::from_u16(*status).expect("status");
                    return (status, axum::Json(answer.clone())).into_response();
                }
            }
            let mut agents = shared.agents.lock().expect("lock");
            let agent = Agent {
                id: format!("bc_{}", agents.len() + 1),
                status: "CREATING".into(),
                messages: vec![(
                    "msg-0".into(),
                    "user_message".into(),
                    body["prompt"]["text"].as_str().unwrap_or_default().to_owned(),
                )],
                summary: None,
                pr_url: None,
                webhook_url: body["webhook"]["url"].as_str().unwrap_or_default().to_owned(),
                webhook_secret: body["webhook"]["secret"].as_str().unwrap_or_default().to_owned(),
                launch: body,
                follow_ups: Vec::new(),
                stopped: false,
            };
            let answer = agent_json(&agent);
            agents.push(agent);
            axum::Json(answer).into_response()
        }
        (method, ["v0", "agents", id, rest @ ..]) => {
            let mut agents = shared.agents.lock().expect("lock");
            let Some(agent) = agents.iter_mut().find(|a| a.id == *id) else {
                violation(format!("{method} {path}: no such agent"));
                return error(StatusCode::NOT_FOUND, "Agent not found");
            };
            match (method, rest) {
                ("GET", []) => {
                    let mut failing = shared.failing_reads.lock().expect("lock");
                    if *failing > 0 {
                        *failing -= 1;
                        return error(StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable");
                    }
                    axum::Json(agent_json(agent)).into_response()
                }
                ("GET", ["conversation"]) => {
                    let messages: Vec<Value> = agent
                        .messages
                        .iter()
                        .map(|(id, kind, text)| json!({"id": id, "type": kind, "text": text}))
                        .collect();
                    axum::Json(json!({"id": agent.id, "messages": messages})).into_response()
                }
                ("POST", ["followup"]) => {
                    let text = body["prompt"]["text"].as_str().filter(|t| !t.trim().is_empty());
                    match text {
                        Some(text) if is_json => {
                            agent.follow_ups.push(text.to_owned());
                            agent.messages.push((
                                format!("msg-{}", agent.messages.len() + 1),
                                "user_message".into(),
                                text.to_owned(),
                            ));
                            agent.status = "RUNNING".into();
                            axum::Json(json!({"id": agent.id})).into_response()
                        }
                        _ => {
                            violation(format!("POST {path} without prompt.text: {body}"));
                            error(StatusCode::BAD_REQUEST, "prompt.text is required")
                        }
                    }
                }
                ("POST", ["stop"]) => {
                    agent.stopped = true;
                    axum::Json(json!({"id": agent.id})).into_response()
                }
                _ => {
                    violation(format!("{method} {path} is not part of the v0 API"));
                    error(StatusCode::NOT_FOUND, "not found")
                }
            }
        }
        (method, _) => {
            violation(format!("{method} {path} is not part of the v0 API"));
            error(StatusCode::NOT_FOUND, "not found")
        }
    }
}
