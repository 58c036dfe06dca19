//! A loopback fake of Anthropic's Managed Agents API (`../shared/contract/providers.md`), which
//! checks every request it gets against the documented surface:
//!
//! - every call needs `x-api-key: <the key>` (else 401 `authentication_error`, counted as an
//!   unauthorized call, not a violation: tests send wrong keys on purpose),
//!   `anthropic-version: 2023-06-01` and `anthropic-beta: managed-agents-2026-04-01`; a body is
//!   JSON with `content-type: application/json`;
//! - agents (`POST /v1/agents`, `POST /v1/agents/{id}` = a new version, `GET`), environments,
//!   vaults and their `static_bearer` credentials, sessions (`POST /v1/sessions` with known
//!   agent/environment/vaults and `github_repository` resources), `POST …/events` (`user.message`
//!   with text content, `user.interrupt`) and `GET …/events?order=asc&limit=N[&page=…]`, paged
//!   with an opaque `next_page` cursor.
//!
//! Anything else, or a malformed body, is a violation. Tests play the agent: they emit its events
//! (`emit`), read the bearer token a vault holds for an MCP server (`credential`) to call the
//! host as the agent would, and send Anthropic's webhooks (Standard Webhooks, `send_webhook`).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use leadtime_host::domain::webhook_signing::standard_v1;
use serde_json::{Value, json};

/// One request the fake got.
#[derive(Debug, Clone)]
pub struct AnthropicRequest {
    pub method: Method,
    pub path: String,
}

/// A bearer credential kept in a vault.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    pub vault: String,
    pub mcp_server_url: String,
    pub token: String,
    pub deleted: bool,
}

/// A provider session.
#[derive(Debug, Clone)]
pub struct FakeSession {
    pub id: String,
    /// The create request's body.
    pub create: Value,
    pub events: Vec<Value>,
}

#[derive(Default)]
struct World {
    /// `(id, version, spec)`.
    agents: Vec<(String, u64, Value)>,
    environments: Vec<String>,
    vaults: Vec<String>,
    credentials: Vec<Credential>,
    sessions: Vec<FakeSession>,
    next_event: usize,
}

struct Shared {
    api_key: String,
    world: Mutex<World>,
    requests: Mutex<Vec<AnthropicRequest>>,
    violations: Mutex<Vec<String>>,
    unauthorized: Mutex<usize>,
    /// The next session creations fail with this answer, while the count lasts.
    failing_sessions: Mutex<Option<(usize, u16, Value)>>,
}

/// A running fake of Anthropic's API.
#[derive(Clone)]
pub struct FakeAnthropic {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    shared: Arc<Shared>,
}

const BETA: &str = "managed-agents-2026-04-01";

impl FakeAnthropic {
    /// Starts the fake on a loopback port; only `api_key` is accepted.
    pub async fn start(api_key: &str) -> FakeAnthropic {
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            world: Mutex::default(),
            requests: Mutex::default(),
            violations: Mutex::default(),
            unauthorized: Mutex::default(),
            failing_sessions: Mutex::default(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind anthropic");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        FakeAnthropic { base, shared }
    }

    /// Agents created, as `(id, version, latest spec)`.
    pub fn agents(&self) -> Vec<(String, u64, Value)> {
        self.shared.world.lock().expect("lock").agents.clone()
    }

    /// Environments created.
    pub fn environments(&self) -> Vec<String> {
        self.shared.world.lock().expect("lock").environments.clone()
    }

    /// Every provider session, in order of creation.
    pub fn sessions(&self) -> Vec<FakeSession> {
        self.shared.world.lock().expect("lock").sessions.clone()
    }

    /// Provider session `id`.
    pub fn session(&self, id: &str) -> FakeSession {
        self.sessions()
            .into_iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no session {id}"))
    }

    /// The credentials of the vaults session `id` was created with.
    pub fn credentials_of(&self, id: &str) -> Vec<Credential> {
        let session = self.session(id);
        let vaults: Vec<String> = session.create["vault_ids"]
            .as_array()
            .map(|v| v.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        self.shared
            .world
            .lock()
            .expect("lock")
            .credentials
            .iter()
            .filter(|c| vaults.contains(&c.vault))
            .cloned()
            .collect()
    }

    /// Every credential stored, in order.
    pub fn credentials(&self) -> Vec<Credential> {
        self.shared.world.lock().expect("lock").credentials.clone()
    }

    /// Appends the agent's `events` (each `{type, …}`; ids and times added) to session `id`.
    pub fn emit(&self, id: &str, events: Vec<Value>) {
        let mut world = self.shared.world.lock().expect("lock");
        let mut numbered = Vec::new();
        for mut event in events {
            world.next_event += 1;
            event["id"] = json!(format!("sevt_{:04}", world.next_event));
            event["processed_at"] = json!("2026-12-01T00:00:00Z");
            numbered.push(event);
        }
        let session = world.sessions.iter_mut().find(|s| s.id == id).expect("known session");
        session.events.extend(numbered);
    }

    /// Makes the next `count` session creations answer `status` with `body`.
    pub fn fail_sessions(&self, count: usize, status: u16, body: Value) {
        *self.shared.failing_sessions.lock().expect("lock") = Some((count, status, body));
    }

    /// An agent and an environment made in the Console, not by the plugin: `(agent, environment)`.
    pub fn seed(&self) -> (String, String) {
        let mut world = self.shared.world.lock().expect("lock");
        world.agents.push((
            "agent_console".into(),
            2,
            json!({"name": "Console agent", "model": "claude-opus-4-5"}),
        ));
        world.environments.push("env_console".into());
        ("agent_console".into(), "env_console".into())
    }

    /// Forgets every agent (as if an admin deleted it in the Console).
    pub fn lose_agents(&self) {
        self.shared.world.lock().expect("lock").agents.clear();
    }

    /// Sends Anthropic's webhook `event_type` about session `session` to `url` as delivery
    /// `webhook_id`, signed (Standard Webhooks) with `secret` at `timestamp` (seconds); the host's
    /// answer status.
    pub async fn send_webhook(
        &self,
        url: &str,
        session: &str,
        event_type: &str,
        webhook_id: &str,
        secret: &str,
        timestamp: i64,
    ) -> StatusCode {
        let body = json!({
            "type": "event",
            "id": format!("wevt_{webhook_id}"),
            "created_at": "2026-12-01T00:00:00Z",
            "data": {"type": event_type, "id": session, "organization_id": "org_1", "workspace_id": "wrkspc_1"},
        })
        .to_string();
        let signature = standard_v1(secret, webhook_id, timestamp, body.as_bytes()).expect("whsec secret");
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .expect("webhook sent");
        StatusCode::from_u16(response.status().as_u16()).expect("status")
    }

    /// Requests received with `method` on `path`, in order.
    pub fn requests(&self, method: &str, path: &str) -> Vec<AnthropicRequest> {
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

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"type": "error", "error": {"type": kind, "message": message}})),
    )
        .into_response()
}

/// Fields of `value` not in `allowed`, as problems.
fn unknown_fields(value: &Value, allowed: &[&str], what: &str, problems: &mut Vec<String>) {
    match value.as_object() {
        Some(object) => {
            for key in object.keys().filter(|k| !allowed.contains(&k.as_str())) {
                problems.push(format!("unknown field `{what}{key}`"));
            }
        }
        None => problems.push(format!("`{what}` must be an object")),
    }
}

fn non_empty(value: &Value) -> bool {
    value.as_str().is_some_and(|s| !s.trim().is_empty())
}

/// What is wrong with an agent definition, if anything.
fn agent_problems(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    unknown_fields(
        body,
        &[
            "name",
            "model",
            "system",
            "tools",
            "mcp_servers",
            "skills",
            "metadata",
            "description",
            "multiagent",
        ],
        "",
        &mut problems,
    );
    if !non_empty(&body["name"]) || !non_empty(&body["model"]) {
        problems.push("`name` and `model` are required strings".into());
    }
    if !body["system"].is_null() && !body["system"].is_string() {
        problems.push("`system` must be a string".into());
    }
    let servers: Vec<&str> = body["mcp_servers"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    for server in body["mcp_servers"].as_array().into_iter().flatten() {
        unknown_fields(server, &["type", "name", "url"], "mcp_servers[].", &mut problems);
        if server["type"] != "url"
            || !non_empty(&server["name"])
            || !server["url"].as_str().is_some_and(|u| u.starts_with("http"))
        {
            problems.push(format!("an MCP server must be {{type: url, name, url}}: {server}"));
        }
    }
    let mut used = Vec::new();
    for tool in body["tools"].as_array().into_iter().flatten() {
        match tool["type"].as_str() {
            Some("agent_toolset_20260401") => {
                unknown_fields(tool, &["type", "configs", "default_config"], "tools[].", &mut problems)
            }
            Some("mcp_toolset") => {
                unknown_fields(
                    tool,
                    &["type", "mcp_server_name", "configs", "default_config"],
                    "tools[].",
                    &mut problems,
                );
                match tool["mcp_server_name"].as_str() {
                    Some(name) if servers.contains(&name) => used.push(name),
                    _ => problems.push(format!("mcp_toolset names no declared MCP server: {tool}")),
                }
            }
            _ => problems.push(format!("unknown tool {tool}")),
        }
    }
    for server in servers.iter().filter(|s| !used.contains(s)) {
        problems.push(format!("MCP server `{server}` is not used by any mcp_toolset"));
    }
    for skill in body["skills"].as_array().into_iter().flatten() {
        unknown_fields(skill, &["type", "skill_id", "version"], "skills[].", &mut problems);
        if !matches!(skill["type"].as_str(), Some("anthropic" | "custom")) || !non_empty(&skill["skill_id"]) {
            problems.push(format!(
                "a skill is {{type: anthropic|custom, skill_id, version?}}: {skill}"
            ));
        }
    }
    problems
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let raw = axum::body::to_bytes(body, 4 << 20).await.unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let json_body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.requests.lock().expect("lock").push(AnthropicRequest {
        method: parts.method.clone(),
        path: path.clone(),
    });
    answer(&shared, &parts, &path, &query, &raw, json_body)
}

fn answer(
    shared: &Shared,
    parts: &axum::http::request::Parts,
    path: &str,
    query: &str,
    raw: &[u8],
    body: Value,
) -> Response {
    let violation = |what: String| {
        shared.violations.lock().expect("lock").push(what);
        error(StatusCode::BAD_REQUEST, "invalid_request_error", "invalid request")
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let method = parts.method.as_str();
    if header("x-api-key") != Some(shared.api_key.as_str()) {
        *shared.unauthorized.lock().expect("lock") += 1;
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key");
    }
    if header("anthropic-version") != Some("2023-06-01") {
        return violation(format!(
            "{method} {path}: anthropic-version {:?}",
            header("anthropic-version")
        ));
    }
    if !header("anthropic-beta").is_some_and(|b| b.split(',').any(|b| b.trim() == BETA)) {
        return violation(format!(
            "{method} {path}: anthropic-beta {:?}",
            header("anthropic-beta")
        ));
    }
    if method == "POST" {
        let is_json = header("content-type").is_some_and(|v| v.starts_with("application/json"));
        if !is_json || !body.is_object() {
            return violation(format!(
                "POST {path}: a JSON object body is required (content-type json: {is_json}): {}",
                String::from_utf8_lossy(raw)
            ));
        }
    } else if !raw.is_empty() {
        return violation(format!("{method} {path} has a body"));
    }
    let mut world = shared.world.lock().expect("lock");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let not_found = |what: &str| error(StatusCode::NOT_FOUND, "not_found_error", &format!("{what} not found"));
    match (method, segments.as_slice()) {
        ("GET", ["v1", "agents"]) => {
            let data: Vec<Value> = world
                .agents
                .iter()
                .map(|(id, v, spec)| agent_json(id, *v, spec))
                .collect();
            axum::Json(json!({"data": data, "next_page": null})).into_response()
        }
        ("POST", ["v1", "agents"]) => {
            let problems = agent_problems(&body);
            if !problems.is_empty() {
                return violation(format!("POST /v1/agents: {}; body {body}", problems.join(", ")));
            }
            let id = format!("agent_{:02}", world.agents.len() + 1);
            world.agents.push((id.clone(), 1, body.clone()));
            axum::Json(agent_json(&id, 1, &body)).into_response()
        }
        (_, ["v1", "agents", id]) => {
            let id = (*id).to_owned();
            let Some(agent) = world.agents.iter_mut().find(|a| a.0 == id) else {
                return not_found("agent");
            };
            if method == "GET" {
                return axum::Json(agent_json(&agent.0, agent.1, &agent.2)).into_response();
            }
            let mut problems = agent_problems(&body);
            problems.retain(|p| !p.contains("`name` and `model`") || body.get("name").is_some());
            if !problems.is_empty() {
                return violation(format!("POST {path}: {}; body {body}", problems.join(", ")));
            }
            agent.1 += 1;
            if let (Some(spec), Some(update)) = (agent.2.as_object_mut(), body.as_object()) {
                for (k, v) in update {
                    spec.insert(k.clone(), v.clone());
                }
            }
            axum::Json(agent_json(&agent.0, agent.1, &agent.2)).into_response()
        }
        ("POST", ["v1", "environments"]) => {
            let mut problems = Vec::new();
            unknown_fields(
                &body,
                &["name", "config", "description", "metadata", "scope"],
                "",
                &mut problems,
            );
            if !non_empty(&body["name"]) || !matches!(body["config"]["type"].as_str(), Some("cloud" | "self_hosted")) {
                problems.push("`name` and `config.type` (cloud) are required".into());
            }
            if !problems.is_empty() {
                return violation(format!("POST /v1/environments: {}", problems.join(", ")));
            }
            let id = format!("env_{:02}", world.environments.len() + 1);
            world.environments.push(id.clone());
            axum::Json(json!({"id": id, "type": "environment", "name": body["name"], "config": body["config"]}))
                .into_response()
        }
        ("GET", ["v1", "environments", id]) => {
            if world.environments.iter().any(|e| e == id) {
                axum::Json(json!({"id": id, "type": "environment"})).into_response()
            } else {
                not_found("environment")
            }
        }
        ("POST", ["v1", "vaults"]) => {
            let mut problems = Vec::new();
            unknown_fields(&body, &["display_name", "metadata"], "", &mut problems);
            if !non_empty(&body["display_name"]) {
                problems.push("`display_name` is required".into());
            }
            if !problems.is_empty() {
                return violation(format!("POST /v1/vaults: {}", problems.join(", ")));
            }
            let id = format!("vlt_{:02}", world.vaults.len() + 1);
            world.vaults.push(id.clone());
            axum::Json(json!({"id": id, "type": "vault", "display_name": body["display_name"]})).into_response()
        }
        ("POST", ["v1", "vaults", vault, "credentials"]) => {
            if !world.vaults.iter().any(|v| v == vault) {
                return violation(format!("POST {path}: no such vault"));
            }
            let mut problems = Vec::new();
            unknown_fields(&body, &["auth", "display_name", "metadata"], "", &mut problems);
            unknown_fields(
                &body["auth"],
                &["type", "mcp_server_url", "token"],
                "auth.",
                &mut problems,
            );
            if body["auth"]["type"] != "static_bearer"
                || !body["auth"]["mcp_server_url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("http"))
                || !non_empty(&body["auth"]["token"])
            {
                problems.push("auth must be {type: static_bearer, mcp_server_url, token}".into());
            }
            if body["auth"]["token"].as_str().is_some_and(|t| t.contains("{{secret:")) {
                problems.push("the token is a reference the host did not fill in".into());
            }
            if !problems.is_empty() {
                return violation(format!("POST {path}: {}", problems.join(", ")));
            }
            let url = body["auth"]["mcp_server_url"].as_str().unwrap_or_default().to_owned();
            if world
                .credentials
                .iter()
                .any(|c| c.vault == *vault && c.mcp_server_url == url && !c.deleted)
            {
                return error(
                    StatusCode::CONFLICT,
                    "invalid_request_error",
                    "a credential for this URL exists",
                );
            }
            let id = format!("vcrd_{:02}", world.credentials.len() + 1);
            world.credentials.push(Credential {
                id: id.clone(),
                vault: (*vault).to_owned(),
                mcp_server_url: url,
                token: body["auth"]["token"].as_str().unwrap_or_default().to_owned(),
                deleted: false,
            });
            axum::Json(json!({"id": id, "type": "vault_credential", "vault_id": vault})).into_response()
        }
        ("DELETE", ["v1", "vaults", vault, "credentials", id]) => {
            match world.credentials.iter_mut().find(|c| c.vault == *vault && c.id == *id) {
                Some(credential) => {
                    credential.deleted = true;
                    axum::Json(json!({"id": id, "type": "vault_credential_deleted"})).into_response()
                }
                None => not_found("credential"),
            }
        }
        ("POST", ["v1", "sessions"]) => {
            let mut problems = Vec::new();
            unknown_fields(
                &body,
                &[
                    "agent",
                    "environment_id",
                    "title",
                    "metadata",
                    "resources",
                    "vault_ids",
                    "initial_events",
                    "budget",
                ],
                "",
                &mut problems,
            );
            let agent_id = match &body["agent"] {
                Value::String(id) => Some(id.clone()),
                Value::Object(a) if a.get("type") == Some(&json!("agent")) => {
                    a.get("id").and_then(Value::as_str).map(str::to_owned)
                }
                _ => None,
            };
            if agent_id.is_none() {
                problems.push("`agent` must be an id or {type: agent, id, version?}".into());
            }
            if !non_empty(&body["environment_id"]) {
                problems.push("`environment_id` is required".into());
            }
            for resource in body["resources"].as_array().into_iter().flatten() {
                unknown_fields(
                    resource,
                    &["type", "url", "authorization_token", "checkout", "mount_path"],
                    "resources[].",
                    &mut problems,
                );
                if resource["type"] != "github_repository"
                    || !resource["url"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("https://github.com/"))
                    || !non_empty(&resource["authorization_token"])
                    || resource["authorization_token"]
                        .as_str()
                        .is_some_and(|t| t.contains("{{"))
                {
                    problems.push(format!(
                        "a resource is {{type: github_repository, url, authorization_token}}: {resource}"
                    ));
                }
            }
            for vault in body["vault_ids"].as_array().into_iter().flatten() {
                if !vault
                    .as_str()
                    .is_some_and(|v| world.vaults.iter().any(|known| known == v))
                {
                    problems.push(format!("unknown vault {vault}"));
                }
            }
            if !problems.is_empty() {
                return violation(format!("POST /v1/sessions: {}; body {body}", problems.join(", ")));
            }
            {
                let mut failing = shared.failing_sessions.lock().expect("lock");
                if let Some((left, status, answer)) = failing.as_mut()
                    && *left > 0
                {
                    *left -= 1;
                    return (
                        StatusCode::from_u16(*status).expect("status"),
                        axum::Json(answer.clone()),
                    )
                        .into_response();
                }
            }
            let agent_id = agent_id.unwrap_or_default();
            if !world.agents.iter().any(|a| a.0 == agent_id) {
                return not_found("agent");
            }
            if !world.environments.iter().any(|e| body["environment_id"] == json!(e)) {
                return not_found("environment");
            }
            let id = format!("sesn_{:02}", world.sessions.len() + 1);
            world.sessions.push(FakeSession {
                id: id.clone(),
                create: body.clone(),
                events: Vec::new(),
            });
            axum::Json(json!({"id": id, "type": "session", "status": "idle", "environment_id": body["environment_id"]}))
                .into_response()
        }
        (_, ["v1", "sessions", id, "events"]) => {
            let id = (*id).to_owned();
            if !world.sessions.iter().any(|s| s.id == id) {
                return violation(format!("{method} {path}: no such session"));
            }
            if method == "GET" {
                return list_events(&world, &id, query).unwrap_or_else(violation);
            }
            let mut problems = Vec::new();
            unknown_fields(&body, &["events"], "", &mut problems);
            let events = body["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                problems.push("`events` must be a non-empty list".into());
            }
            for event in &events {
                match event["type"].as_str() {
                    Some("user.message") => {
                        unknown_fields(event, &["type", "content"], "events[].", &mut problems);
                        let text_ok = event["content"].as_array().is_some_and(|blocks| {
                            !blocks.is_empty() && blocks.iter().all(|b| b["type"] == "text" && non_empty(&b["text"]))
                        });
                        if !text_ok {
                            problems.push("a user.message has content [{type: text, text}]".into());
                        }
                    }
                    Some("user.interrupt") => {
                        unknown_fields(event, &["type", "session_thread_id"], "events[].", &mut problems)
                    }
                    other => problems.push(format!("unexpected event type {other:?}")),
                }
            }
            if !problems.is_empty() {
                return violation(format!("POST {path}: {}", problems.join(", ")));
            }
            let mut echoed = Vec::new();
            for mut event in events {
                world.next_event += 1;
                event["id"] = json!(format!("sevt_{:04}", world.next_event));
                event["processed_at"] = Value::Null;
                echoed.push(event);
            }
            if let Some(session) = world.sessions.iter_mut().find(|s| s.id == id) {
                session.events.extend(echoed.clone());
            }
            axum::Json(json!({"data": echoed})).into_response()
        }
        _ => violation(format!("{method} {path} is not part of the Managed Agents API")),
    }
}

/// `GET /v1/sessions/{id}/events?order=asc&limit=N[&page=cursor]`.
fn list_events(world: &World, id: &str, query: &str) -> Result<Response, String> {
    let mut limit = 20;
    let mut offset = 0;
    let mut ascending = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| format!("events: limit {value} out of 1..=1000"))?
            }
            "order" => ascending = value == "asc",
            "page" => {
                offset = value
                    .strip_prefix("page_")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("events: page {value} is no cursor this API gave"))?
            }
            other => return Err(format!("events: unknown query parameter {other}")),
        }
    }
    if !ascending {
        return Err("events: the plugin must read oldest first (order=asc)".into());
    }
    let events = &world.sessions.iter().find(|s| s.id == id).expect("known").events;
    // Like many APIs, the fake serves fewer than asked for (at most 50 a page).
    let limit = limit.min(50);
    let page: Vec<Value> = events.iter().skip(offset).take(limit).cloned().collect();
    let next = (offset + limit < events.len()).then(|| format!("page_{}", offset + limit));
    Ok(axum::Json(json!({"data": page, "next_page": next})).into_response())
}

fn agent_json(id: &str, version: u64, spec: &Value) -> Value {
    let mut agent = spec.clone();
    agent["id"] = json!(id);
    agent["type"] = json!("agent");
    agent["version"] = json!(version);
    agent
}
