//! A loopback emulation of Leadtime's own connectors (OpenClaw's and Hermes's), call for call: the
//! same requests in the same order, the same bodies and the same idempotency keys derived from the
//! webhook id (`status-running-{id}`, `webhook-accepted-{id}`, `…-response-{id}`,
//! `status-done-{id}`), and the same reaction to a non-2xx answer (Hermes posts an `error` activity
//! and marks the session failed; OpenClaw drops the work).
//!
//! Like the real ones it deduplicates webhook ids in memory only, so [`Connector::restart`] makes it
//! run a redelivered webhook again — which is what at-least-once delivery means for the host. Each
//! run's calls and answers are reported as a [`Run`] for the test to compare.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::wrapper::{WEBHOOK_PATH, check_delivery};
use super::{Api, Bot, EVENT_TIMEOUT};

/// Which connector to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `openclaw-leadtime-plugin`: no tool activities; drops the work on a non-2xx.
    OpenClaw,
    /// `hermes-leadtime-plugin`: `toolCall`/`toolResult` activities; on a non-2xx posts `error`
    /// and sets `failed`.
    Hermes,
}

impl Flavor {
    /// The connector's name, as it writes it in its messages.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::OpenClaw => "OpenClaw",
            Flavor::Hermes => "Hermes",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Flavor::OpenClaw => "openclaw",
            Flavor::Hermes => "hermes",
        }
    }
}

/// How the connector's agent ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOutcome {
    /// Posts a `response` and sets `done`.
    Finishes,
    /// Posts an `error` and sets `failed`.
    Fails,
}

/// One call the connector made and what the host answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub request: Option<Value>,
    pub status: StatusCode,
    pub response: Value,
}

impl Call {
    /// `METHOD path`.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Whether this is a call of the session API (whose answers idempotency keys replay).
    pub fn is_session_call(&self) -> bool {
        self.path.starts_with("/agent-sessions/") && self.method != Method::GET
    }
}

/// One agent run: the webhook that started it and every call it made.
#[derive(Debug, Clone)]
pub struct Run {
    pub webhook_id: String,
    pub session_id: String,
    pub calls: Vec<Call>,
}

impl Run {
    /// Calls the host did not answer with a 2xx.
    pub fn refused(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|c| !c.status.is_success())
            .map(|c| format!("{} → {} {}", c.label(), c.status, c.response))
            .collect()
    }
}

struct Shared {
    flavor: Flavor,
    bot: Bot,
    /// `{host}/api`, as connectors are configured (`leadtimeBaseUrl`).
    leadtime_base_url: String,
    /// Webhook ids seen since the last restart (connectors keep them in memory only).
    seen: Mutex<HashSet<String>>,
    outcome: Mutex<AgentOutcome>,
    /// Stop each run after this many calls (a connector killed mid-run), if set.
    stop_after: Mutex<Option<usize>>,
    runs: mpsc::UnboundedSender<Result<Run, String>>,
}

/// A running connector emulation.
pub struct Connector {
    shared: Arc<Shared>,
    runs: mpsc::UnboundedReceiver<Result<Run, String>>,
}

impl Connector {
    /// Starts a connector on `listener` for `bot` (its token and webhook secret are the
    /// connector's configuration, so [`Connector::bind`] gives the URL to create the bot with).
    pub async fn start(flavor: Flavor, bot: Bot, listener: tokio::net::TcpListener, host_base_url: &str) -> Connector {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            flavor,
            bot,
            leadtime_base_url: format!("{host_base_url}/api"),
            seen: Mutex::new(HashSet::new()),
            outcome: Mutex::new(AgentOutcome::Finishes),
            stop_after: Mutex::new(None),
            runs: tx,
        });
        let app = Router::new()
            .route(WEBHOOK_PATH, post(receive))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Connector { shared, runs: rx }
    }

    /// A loopback listener for a connector, and the webhook URL it will serve.
    pub async fn bind() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind connector");
        let url = format!("http://{}{WEBHOOK_PATH}", listener.local_addr().expect("addr"));
        (listener, url)
    }

    /// How the agent of the next runs ends.
    pub fn set_outcome(&self, outcome: AgentOutcome) {
        *self.shared.outcome.lock().expect("lock") = outcome;
    }

    /// Makes the next runs stop after `calls` calls (as if the connector died mid-run), or not.
    pub fn stop_after(&self, calls: Option<usize>) {
        *self.shared.stop_after.lock().expect("lock") = calls;
    }

    /// Forgets the webhook ids seen, as a restarted connector does.
    pub fn restart(&self) {
        self.shared.seen.lock().expect("lock").clear();
    }

    /// Waits for the next run to end; panics on a contract violation or a hang.
    pub async fn next_run(&mut self) -> Run {
        match tokio::time::timeout(EVENT_TIMEOUT, self.runs.recv()).await {
            Ok(Some(Ok(run))) => run,
            Ok(Some(Err(violation))) => panic!("the connector refused a delivery: {violation}"),
            Ok(None) => panic!("the connector stopped"),
            Err(_) => panic!("no connector run ended within {EVENT_TIMEOUT:?}"),
        }
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    let (webhook_id, event) = match check_delivery(&shared.bot, &headers, &body) {
        Ok(accepted) => accepted,
        Err((status, reason)) => {
            let _ = shared.runs.send(Err(reason.clone()));
            return (status, axum::Json(json!({"error": reason})));
        }
    };
    if !shared.seen.lock().expect("lock").insert(webhook_id.clone()) {
        return (StatusCode::ACCEPTED, axum::Json(json!({"ok": true, "duplicate": true})));
    }
    let session_id = event["agentRunId"].as_str().unwrap_or_default().to_owned();
    let api = Api::new(&format!("{}/public", shared.leadtime_base_url), Some(&shared.bot.token));
    let answer = json!({"ok": true, "runId": session_id});
    tokio::spawn(async move {
        let calls = agent_run(&shared, &api, &webhook_id, &event).await;
        let _ = shared.runs.send(Ok(Run {
            webhook_id,
            session_id,
            calls,
        }));
    });
    (StatusCode::ACCEPTED, axum::Json(answer))
}

/// Records calls until the run is told to stop.
struct Transcript<'a> {
    api: &'a Api,
    calls: Vec<Call>,
    limit: usize,
}

impl Transcript<'_> {
    /// Makes the call unless the run stopped; `None` once it has.
    async fn call(&mut self, method: Method, path: String, body: Option<Value>) -> Option<(StatusCode, Value)> {
        if self.calls.len() >= self.limit {
            return None;
        }
        let (status, response) = self.api.call(method.clone(), &path, body.as_ref()).await;
        self.calls.push(Call {
            method,
            path,
            request: body,
            status,
            response: response.clone(),
        });
        Some((status, response))
    }
}

/// The calls one webhook leads to, as the connectors make them.
async fn agent_run(shared: &Shared, api: &Api, webhook_id: &str, event: &Value) -> Vec<Call> {
    let flavor = shared.flavor;
    let outcome = *shared.outcome.lock().expect("lock");
    let limit = shared.stop_after.lock().expect("lock").unwrap_or(usize::MAX);
    let mut t = Transcript {
        api,
        calls: Vec::new(),
        limit,
    };
    let run = event["agentRunId"].as_str().unwrap_or_default();
    let task = event["context"]["task"]["shortNumber"].to_string();
    let session = |suffix: &str| format!("/agent-sessions/{run}/{suffix}");
    let name = flavor.name();
    let slug = flavor.slug();

    let accepted = t
        .call(
            Method::PATCH,
            session("status"),
            Some(json!({
                "status": "running",
                "message": format!("{name} accepted the Leadtime session"),
                "idempotencyKey": format!("status-running-{webhook_id}"),
            })),
        )
        .await;
    let mut healthy = accepted.as_ref().is_some_and(|(s, _)| s.is_success());
    if healthy {
        let prompt = t
            .call(
                Method::POST,
                session("activities"),
                Some(json!({
                    "activityType": "prompt",
                    "body": format!("{name} received the Leadtime session webhook and started the configured agent."),
                    "providerEventId": webhook_id,
                    "providerEventType": event["eventType"],
                    "idempotencyKey": format!("webhook-accepted-{webhook_id}"),
                    "raw": {"eventType": event["eventType"], "taskId": event["taskId"], "commentId": event["commentId"],
                            "botUserId": shared.bot.id, "mode": "basic"},
                })),
            )
            .await;
        healthy = prompt.is_some_and(|(s, _)| s.is_success());
    }
    if healthy {
        // The agent at work: its task tools, and (Hermes) one activity per tool event.
        t.call(Method::GET, session("context"), None).await;
        t.call(Method::GET, format!("/tasks/{task}"), None).await;
        if flavor == Flavor::Hermes {
            for (kind, activity) in [("tool.started", "toolCall"), ("tool.completed", "toolResult")] {
                t.call(
                    Method::POST,
                    session("activities"),
                    Some(json!({
                        "activityType": activity,
                        "body": "leadtime_get_task",
                        "providerEventId": webhook_id,
                        "providerEventType": kind,
                        "raw": {"event_type": kind, "tool": "leadtime_get_task", "timestamp": 1_764_000_000},
                        "idempotencyKey": format!("hermes-{kind}-1764000000-leadtime_get_task"),
                    })),
                )
                .await;
            }
        }
        let statuses = t.call(Method::GET, "/tasks/statuses".into(), None).await;
        t.call(
            Method::POST,
            format!("/tasks/{task}/comments"),
            Some(json!({"comment": "<p>I reproduced the redirect loop and I am fixing it.</p>"})),
        )
        .await;
        let in_progress = statuses
            .and_then(|(_, body)| {
                body["statuses"]
                    .as_array()
                    .and_then(|all| all.iter().find(|s| s["category"] == "started").cloned())
            })
            .map(|s| s["id"].clone());
        if let Some(status_id) = in_progress {
            t.call(
                Method::PATCH,
                format!("/tasks/{task}"),
                Some(json!({"statusId": status_id})),
            )
            .await;
        }
        let reported = match outcome {
            AgentOutcome::Finishes => {
                let response = t
                    .call(
                        Method::POST,
                        session("activities"),
                        Some(json!({
                            "activityType": "response",
                            "body": "The redirect loop came from a stale session cookie; it is fixed.",
                            "providerEventType": format!("{slug}.agent.finished"),
                            "idempotencyKey": format!("{slug}-response-{webhook_id}"),
                            "raw": {"messages": [{"role": "assistant", "text": "fixed"}]},
                        })),
                    )
                    .await;
                let done = t
                    .call(
                        Method::PATCH,
                        session("status"),
                        Some(json!({
                            "status": "done",
                            "message": format!("{name} agent finished"),
                            "idempotencyKey": format!("status-done-{webhook_id}"),
                        })),
                    )
                    .await;
                [response, done]
                    .into_iter()
                    .all(|r| r.is_none_or(|(s, _)| s.is_success()))
            }
            AgentOutcome::Fails => {
                report_failure(&mut t, flavor, run, webhook_id, "the model gave up").await;
                true
            }
        };
        healthy = reported;
    }
    // Hermes reports any refused call as a failure of the session; OpenClaw drops the work.
    if !healthy && flavor == Flavor::Hermes {
        report_failure(&mut t, flavor, run, webhook_id, "Leadtime refused a session call").await;
    }
    t.calls
}

async fn report_failure(t: &mut Transcript<'_>, flavor: Flavor, run: &str, webhook_id: &str, why: &str) {
    let (name, slug) = (flavor.name(), flavor.slug());
    let message = format!("{name} agent did not finish successfully: {why}.");
    t.call(
        Method::POST,
        format!("/agent-sessions/{run}/activities"),
        Some(json!({
            "activityType": "error",
            "body": message,
            "providerEventType": format!("{slug}.agent.failed"),
            "idempotencyKey": format!("{slug}-error-{webhook_id}"),
        })),
    )
    .await;
    t.call(
        Method::PATCH,
        format!("/agent-sessions/{run}/status"),
        Some(json!({
            "status": "failed",
            "message": message,
            "idempotencyKey": format!("status-failed-{webhook_id}"),
        })),
    )
    .await;
}
