//! Test a Leadtime agent-runtime plugin in plain `cargo test`.
//!
//! [`Harness`] loads your plugin's `.wasm` into the host's own sandbox (the same engine, limits and
//! capability checks a real host applies) and answers its host calls from an in-process fake:
//! activities, status and link are recorded; `kv` is a map; `tasks` act on one fake task with its
//! comments and statuses; webhooks, timers and model requests are queued for the test to look at
//! and to drive — [`Harness::answer_model`] hands the plugin a scripted model answer exactly as the
//! host would, [`Harness::fire_timers`] fires its timers. Outbound HTTP is scripted with
//! [`Harness::http`] (answers by method and URL; every request is kept for
//! [`Harness::http_requests`], as it would go out: after the host's checks, secrets filled in);
//! a harness with nothing scripted sends it for real (loopback allowed, for a fake server the test
//! starts).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use leadtime_plugin_test::{Harness, Reply, Task};
//!
//! let wasm = std::fs::read("target/wasm32-wasip2/release/my_agent.wasm")?;
//! let harness = Harness::load(&wasm).await?.config(serde_json::json!({"model": "m"}));
//! harness.start(Task::new("Fix the login button")).await?;
//! harness.answer_model(Reply::text("Planned.")).await?;
//! assert_eq!(harness.status(), "done");
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use leadtime_host::domain::ids::{ConnectionId, SessionId, WorkspaceId};
use leadtime_host::domain::inbound::EndpointSpec;
use leadtime_host::domain::model::ModelRequest;
use leadtime_host::domain::sessions::{NewActivity, SessionStatus};
use leadtime_host::outbound::OutboundPolicy;
use leadtime_host::runtime::bindings::types::{
    Actor, BotInfo, Comment, ConnectionInfo, SessionEvent, SessionRef, SessionStart, TaskSnapshot, Trigger,
};
use leadtime_host::runtime::{
    CallContext, CallEffects, CallLimits, CallServices, CapabilityError, LoadedPlugin, PluginRuntime, QueuedTimer,
    QueuedWebhook, ScriptedRequest, ScriptedResponse,
};
use leadtime_host::secrets::SecretValue;
use serde_json::{Value, json};

const WORKSPACE: &str = "ws_harness";
const CONNECTION: &str = "con_harness";
const SESSION: &str = "ses_harness";
const BOT: &str = "bot_harness";

/// The task a session is about.
#[derive(Debug, Clone)]
pub struct Task {
    pub title: String,
    pub description: String,
    /// Comments already on the task: `(author name, body)`.
    pub comments: Vec<(String, String)>,
}

impl Task {
    /// A task with only a title.
    pub fn new(title: &str) -> Task {
        Task {
            title: title.to_owned(),
            description: String::new(),
            comments: Vec::new(),
        }
    }

    /// The task with a description.
    pub fn described(mut self, description: &str) -> Task {
        self.description = description.to_owned();
        self
    }

    /// The task with a comment by `author`.
    pub fn comment(mut self, author: &str, body: &str) -> Task {
        self.comments.push((author.to_owned(), body.to_owned()));
        self
    }
}

/// A scripted model answer.
#[derive(Debug, Clone)]
pub struct Reply(Value);

impl Reply {
    /// The model answers with text and ends its turn.
    pub fn text(text: &str) -> Reply {
        Reply(
            json!({"ok": {"stopReason": "end_turn", "content": [{"type": "text", "text": text}],
            "usage": {"inputTokens": 100, "outputTokens": 20}}}),
        )
    }

    /// The model calls `tools` (`(name, input)`), after `text` if any.
    pub fn tools(text: Option<&str>, tools: &[(&str, Value)]) -> Reply {
        let mut content: Vec<Value> = text.map(|t| json!({"type": "text", "text": t})).into_iter().collect();
        for (n, (name, input)) in tools.iter().enumerate() {
            content.push(json!({"type": "tool_use", "id": format!("toolu_h{n}"), "name": name, "input": input}));
        }
        Reply(json!({"ok": {"stopReason": "tool_use", "content": content,
            "usage": {"inputTokens": 100, "outputTokens": 20}}}))
    }

    /// The model call failed (as the host reports it: a reason in words).
    pub fn failed(why: &str) -> Reply {
        Reply(json!({"error": why}))
    }
}

/// A scripted answer to the plugin's outbound HTTP requests (see [`Harness::http`]).
#[derive(Debug, Clone)]
pub struct HttpReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpReply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: Value) -> HttpReply {
        HttpReply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// `status` with a plain-text body.
    pub fn text(status: u16, body: &str) -> HttpReply {
        HttpReply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// With header `name: value` too.
    pub fn header(mut self, name: &str, value: &str) -> HttpReply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// An outbound request the plugin made, as it would have gone out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The value of header `name`, if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Answers scripted for one method and URL: used in order, the last one again once it is reached.
struct HttpRoute {
    method: String,
    url: String,
    replies: VecDeque<HttpReply>,
}

/// One activity the plugin posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The wire name, e.g. `toolCall`.
    pub activity_type: String,
    pub body: String,
}

#[derive(Default)]
struct World {
    activities: Vec<Posted>,
    keys: Vec<String>,
    status: Option<(SessionStatus, Option<String>)>,
    link: Option<(String, String)>,
    kv: BTreeMap<String, Vec<u8>>,
    secrets: BTreeMap<String, String>,
    task: Option<Task>,
    task_status: String,
    statuses: Vec<String>,
    webhooks: Vec<QueuedWebhook>,
    timers: Vec<QueuedTimer>,
    model_calls: VecDeque<(String, ModelRequest, String)>,
    model_requests: Vec<ModelRequest>,
    routes: Vec<String>,
    http_routes: Vec<HttpRoute>,
    http_requests: Vec<HttpRequest>,
}

/// The fake host a [`Harness`] answers plugin calls from.
#[derive(Default)]
struct FakeHost {
    world: Mutex<World>,
}

impl FakeHost {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn task_json(world: &World) -> Value {
    let task = world.task.clone().unwrap_or_else(|| Task::new(""));
    json!({"id": "tsk_harness", "number": 1, "title": task.title, "description": task.description,
        "status": {"name": world.task_status}})
}

fn comments_json(world: &World) -> Value {
    let task = world.task.clone().unwrap_or_else(|| Task::new(""));
    Value::Array(
        task.comments
            .iter()
            .map(|(author, body)| {
                let (kind, id) = if author == "Harness bot" {
                    ("bot", BOT.to_owned())
                } else {
                    ("person", person_id(author))
                };
                json!({"author": {"id": id, "name": author, "kind": kind}, "body": body})
            })
            .collect(),
    )
}

/// The id the harness gives the person named `name`.
fn person_id(name: &str) -> String {
    format!("usr_{}", name.to_lowercase().replace(' ', "_"))
}

#[async_trait]
impl CallServices for FakeHost {
    fn scripts_http(&self) -> bool {
        !self.world().http_routes.is_empty()
    }

    async fn answer_http(&self, request: ScriptedRequest) -> ScriptedResponse {
        let mut world = self.world();
        world.http_requests.push(HttpRequest {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
        });
        let route = world
            .http_routes
            .iter_mut()
            .find(|r| r.method.eq_ignore_ascii_case(&request.method) && r.url == request.url);
        let Some(route) = route else {
            return ScriptedResponse {
                status: 599,
                headers: Vec::new(),
                body: format!(
                    "the harness has nothing scripted for {} {}",
                    request.method, request.url
                )
                .into_bytes(),
            };
        };
        let reply = if route.replies.len() > 1 {
            route.replies.pop_front()
        } else {
            route.replies.front().cloned()
        };
        let reply = reply.unwrap_or_else(|| HttpReply::text(599, "no answer left"));
        ScriptedResponse {
            status: reply.status,
            headers: reply.headers,
            body: reply.body,
        }
    }

    async fn post_activity(&self, _: &SessionId, activity: NewActivity) -> Result<(), CapabilityError> {
        let activity = activity
            .validated()
            .map_err(|e| CapabilityError::Invalid(e.to_string()))?;
        let mut world = self.world();
        if let Some(key) = &activity.idempotency_key {
            if world.keys.contains(key) {
                return Ok(());
            }
            world.keys.push(key.clone());
        }
        world.activities.push(Posted {
            activity_type: activity.activity_type.as_str().to_owned(),
            body: activity.body,
        });
        Ok(())
    }

    async fn set_status(
        &self,
        _: &SessionId,
        status: SessionStatus,
        message: Option<String>,
    ) -> Result<(), CapabilityError> {
        let mut world = self.world();
        if let Some((current, _)) = &world.status
            && current.is_terminal()
        {
            return Err(CapabilityError::SessionClosed(format!(
                "the session is already {}",
                current.as_str()
            )));
        }
        world.status = Some((status, message));
        Ok(())
    }

    async fn set_external_link(&self, _: &SessionId, url: &str, label: &str) -> Result<(), CapabilityError> {
        self.world().link = Some((url.to_owned(), label.to_owned()));
        Ok(())
    }

    async fn kv_get(&self, _: &ConnectionId, key: &str) -> Result<Option<Vec<u8>>, CapabilityError> {
        Ok(self.world().kv.get(key).cloned())
    }

    async fn kv_set(&self, _: &ConnectionId, key: &str, value: &[u8], max: i64) -> Result<(), CapabilityError> {
        let mut world = self.world();
        let used: i64 = world.kv.iter().map(|(k, v)| (k.len() + v.len()) as i64).sum();
        let freed = world.kv.get(key).map_or(0, |v| (key.len() + v.len()) as i64);
        leadtime_host::runtime::kv_bytes_after(used, freed, key, value, max)?;
        world.kv.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    async fn kv_delete(&self, _: &ConnectionId, key: &str) -> Result<(), CapabilityError> {
        self.world().kv.remove(key);
        Ok(())
    }

    async fn connection_secret(&self, _: &ConnectionId, name: &str) -> Result<Option<SecretValue>, CapabilityError> {
        Ok(self.world().secrets.get(name).cloned().map(SecretValue::new))
    }

    async fn session_token(&self, session: &SessionId) -> Result<SecretValue, CapabilityError> {
        Ok(SecretValue::new(format!("lt_ses_{session}_harness")))
    }

    async fn task_tool(&self, _: &SessionId, tool: &str, arguments: Value) -> Result<Value, CapabilityError> {
        let mut world = self.world();
        let own = |reference: &Value| {
            matches!(
                reference.as_str().map(|r| r.trim_start_matches('#')),
                Some("tsk_harness" | "1")
            )
        };
        match tool {
            "get_session_context" => Ok(json!({"session": {"id": SESSION}, "task": task_json(&world),
                "comments": comments_json(&world)})),
            "get_task" if own(&arguments["task"]) => {
                Ok(json!({"task": task_json(&world), "comments": comments_json(&world)}))
            }
            "get_task" => Err(CapabilityError::Invalid(format!(
                "no task `{}` in this workspace",
                arguments["task"].as_str().unwrap_or_default()
            ))),
            "add_comment" if own(&arguments["task"]) => {
                let body = arguments["comment"].as_str().unwrap_or_default().to_owned();
                if let Some(task) = world.task.as_mut() {
                    task.comments.push(("Harness bot".into(), body.clone()));
                }
                Ok(json!({"comment": {"body": body}}))
            }
            "list_statuses" => {
                Ok(json!({"statuses": world.statuses.iter().map(|s| json!({"name": s})).collect::<Vec<_>>()}))
            }
            "update_task_status" if own(&arguments["task"]) => {
                let wanted = arguments["status"].as_str().unwrap_or_default();
                let Some(status) = world.statuses.iter().find(|s| s.eq_ignore_ascii_case(wanted)).cloned() else {
                    return Err(CapabilityError::Invalid(format!(
                        "no status `{wanted}` in this workspace"
                    )));
                };
                world.task_status = status;
                Ok(json!({"task": task_json(&world)}))
            }
            _ => Err(CapabilityError::Invalid(format!(
                "no task `{}` in this workspace",
                arguments["task"].as_str().unwrap_or_default()
            ))),
        }
    }

    async fn pending_model_calls(&self, _: &SessionId) -> Result<u64, CapabilityError> {
        Ok(self.world().model_calls.len() as u64)
    }

    async fn pending_timers(&self, _: &SessionId) -> Result<u64, CapabilityError> {
        Ok(self.world().timers.len() as u64)
    }

    async fn open_inbound(
        &self,
        connection_type: &str,
        connection: &ConnectionId,
        _: &SessionId,
        _: EndpointSpec,
    ) -> Result<String, CapabilityError> {
        // The endpoint's generated signing secret, as the host keeps it (`{{secret:inbound-webhook}}`).
        self.world()
            .secrets
            .entry("inbound-webhook".into())
            .or_insert_with(|| "whsec_harness".into());
        Ok(format!(
            "https://harness.invalid/api/plugins/{connection_type}/inbound/{connection}"
        ))
    }

    async fn route_inbound(&self, _: &ConnectionId, _: &SessionId, key: &str) -> Result<(), CapabilityError> {
        self.world().routes.push(key.to_owned());
        Ok(())
    }
}

/// A plugin under test, with its fake host.
pub struct Harness {
    runtime: PluginRuntime,
    plugin: Arc<LoadedPlugin>,
    host: Arc<FakeHost>,
    config: String,
}

impl Harness {
    /// Loads the component `wasm` with the host's default limits (outbound requests may reach
    /// loopback, for fakes the test starts).
    pub async fn load(wasm: &[u8]) -> anyhow::Result<Harness> {
        let runtime = PluginRuntime::new(
            CallLimits::default(),
            OutboundPolicy {
                allow_private_targets: true,
            },
            None,
            1,
        )?;
        let plugin = runtime
            .load("harness", wasm)
            .await
            .map_err(|e| anyhow!("the plugin did not load: {e}"))?;
        let host = Arc::new(FakeHost::default());
        host.world().statuses = vec!["To do".into(), "In progress".into(), "In review".into(), "Done".into()];
        host.world().task_status = "To do".into();
        Ok(Harness {
            runtime,
            plugin,
            host,
            config: "{}".into(),
        })
    }

    /// Loads the built-in plugin `id` (e.g. `self-hosted`), as this host embeds it.
    pub async fn builtin(id: &str) -> anyhow::Result<Harness> {
        let (_, wasm) = leadtime_host::runtime::builtin::BUILTIN_PLUGINS
            .iter()
            .find(|(source, _)| source.strip_prefix("builtin:") == Some(id))
            .with_context(|| format!("no built-in plugin `{id}`"))?;
        Harness::load(wasm).await
    }

    /// The plugin's manifest id.
    pub fn plugin_id(&self) -> &str {
        &self.plugin.manifest.id
    }

    /// Uses `config` as the connection's config (checked by the plugin's `validate-config`).
    pub fn config(mut self, config: Value) -> Harness {
        self.config = config.to_string();
        self
    }

    /// Answers the plugin's `method` requests to `url` (exactly, query included) with `reply`.
    /// Scripting one request turns the network off for this harness: a request nothing is
    /// scripted for is answered 599 and kept (see [`Harness::http_requests`]). Several replies
    /// for one route are used in order, the last one again once reached.
    pub fn http(self, method: &str, url: &str, reply: HttpReply) -> Harness {
        {
            let mut world = self.host.world();
            match world
                .http_routes
                .iter_mut()
                .find(|r| r.method.eq_ignore_ascii_case(method) && r.url == url)
            {
                Some(route) => route.replies.push_back(reply),
                None => world.http_routes.push(HttpRoute {
                    method: method.to_owned(),
                    url: url.to_owned(),
                    replies: VecDeque::from([reply]),
                }),
            }
        }
        self
    }

    /// Every outbound request the plugin made while HTTP was scripted, in order, as it would
    /// have gone out (secret references filled in).
    pub fn http_requests(&self) -> Vec<HttpRequest> {
        self.host.world().http_requests.clone()
    }

    /// Sets connection secret `name`.
    pub fn secret(self, name: &str, value: &str) -> Harness {
        self.host.world().secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    /// The plugin's `validate-config` of the current config.
    pub async fn validate(&self) -> Result<(), String> {
        self.runtime
            .validate_config(&self.plugin, &self.config)
            .await
            .map_err(|e| e.to_string())
    }

    fn context(&self) -> CallContext {
        CallContext::for_session(
            &self.plugin.manifest,
            self.plugin.grants,
            WorkspaceId::from(WORKSPACE),
            ConnectionId::from(CONNECTION),
            SessionId::from(SESSION),
        )
    }

    fn bot() -> BotInfo {
        BotInfo {
            id: BOT.into(),
            name: "Harness bot".into(),
            handle: "harness".into(),
        }
    }

    fn connection(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: CONNECTION.into(),
            connection_type: self.plugin.manifest.id.clone(),
            config: self.config.clone(),
        }
    }

    fn person(name: &str) -> Actor {
        Actor {
            id: person_id(name),
            name: name.to_owned(),
            kind: "person".into(),
            handle: Some(name.to_lowercase().replace(' ', "")),
        }
    }

    /// Starts a session on `task`, assigned by "Ada"; `Err` with the plugin's error if it fails.
    pub async fn start(&self, task: Task) -> anyhow::Result<()> {
        let comments = task
            .comments
            .iter()
            .enumerate()
            .map(|(n, (author, body))| Comment {
                id: format!("cmt_{n}"),
                author: Self::person(author),
                body: body.clone(),
                created_at: "2026-12-01T00:00:00.000Z".into(),
            })
            .collect();
        let start = SessionStart {
            session_id: SESSION.into(),
            workspace_id: WORKSPACE.into(),
            workspace_name: "Harness".into(),
            created_at: "2026-12-01T00:00:00.000Z".into(),
            bot: Self::bot(),
            connection: self.connection(),
            trigger: Trigger::Assigned(Self::person("Ada")),
            task: TaskSnapshot {
                id: "tsk_harness".into(),
                short_number: 1,
                title: task.title.clone(),
                description: task.description.clone(),
                status: "To do".into(),
                status_id: "sts_todo".into(),
                assignee: None,
                created_at: "2026-12-01T00:00:00.000Z".into(),
            },
            comments,
            api_base_url: "https://harness.invalid/api".into(),
        };
        self.host.world().task = Some(task);
        let called = self
            .runtime
            .start_session(&self.plugin, self.context(), self.host.clone(), start, ())
            .await;
        self.settle(called.result)
    }

    async fn event(&self, event: SessionEvent) -> anyhow::Result<()> {
        let session = SessionRef {
            session_id: SESSION.into(),
            workspace_id: WORKSPACE.into(),
            bot: Self::bot(),
            connection: self.connection(),
        };
        let called = self
            .runtime
            .on_event(&self.plugin, self.context(), self.host.clone(), session, event, ())
            .await;
        self.settle(called.result)
    }

    /// Records what a successful call queued; a failed call queues nothing (as in the host).
    fn settle(&self, result: Result<CallEffects, leadtime_host::runtime::CallError>) -> anyhow::Result<()> {
        let effects = result.map_err(|e| anyhow!("{e}"))?;
        let mut world = self.host.world();
        world.webhooks.extend(effects.webhooks);
        world
            .timers
            .retain(|t| !effects.canceled_timers.contains(&t.id.to_string()));
        world.timers.extend(effects.timers);
        for queued in effects.model_calls {
            world.model_requests.push(queued.call.request.clone());
            world
                .model_calls
                .push_back((queued.call.id, queued.call.request, queued.call.callback));
        }
        Ok(())
    }

    /// Answers the oldest waiting model request with `reply` and lets the plugin handle it.
    pub async fn answer_model(&self, reply: Reply) -> anyhow::Result<()> {
        let (id, _, callback) = self
            .host
            .world()
            .model_calls
            .pop_front()
            .context("no model request is waiting")?;
        let callback: Value = serde_json::from_str(&callback).unwrap_or(Value::Null);
        let payload = json!({"modelCall": id, "callback": callback, "result": reply.0}).to_string();
        self.event(SessionEvent::TimerFired(payload)).await
    }

    /// Fires every pending timer, oldest first.
    pub async fn fire_timers(&self) -> anyhow::Result<()> {
        let timers: Vec<QueuedTimer> = std::mem::take(&mut self.host.world().timers);
        for timer in timers {
            self.event(SessionEvent::TimerFired(timer.payload)).await?;
        }
        Ok(())
    }

    /// `author` @mentions the bot again with `body` (a follow-up, for plugins that take them).
    pub async fn mention(&self, author: &str, body: &str) -> anyhow::Result<()> {
        if !self
            .plugin
            .grants
            .contains(leadtime_host::runtime::Capability::FollowUp)
        {
            bail!("the plugin does not declare the `follow-up` capability");
        }
        if let Some(task) = self.host.world().task.as_mut() {
            task.comments.push((author.to_owned(), body.to_owned()));
        }
        self.event(SessionEvent::FollowUp(Comment {
            id: format!("cmt_mention_{}", body.len()),
            author: Self::person(author),
            body: body.to_owned(),
            created_at: "2026-12-01T00:05:00.000Z".into(),
        }))
        .await
    }

    /// Someone cancels the session.
    pub async fn cancel(&self) -> anyhow::Result<()> {
        self.event(SessionEvent::CancelRequested(Some("canceled in the harness".into())))
            .await
    }

    /// The session's status (`queued` until the plugin sets one).
    pub fn status(&self) -> String {
        self.host
            .world()
            .status
            .as_ref()
            .map_or("queued", |(s, _)| s.as_str())
            .to_owned()
    }

    /// The message of the session's status, if any.
    pub fn status_message(&self) -> Option<String> {
        self.host.world().status.as_ref().and_then(|(_, m)| m.clone())
    }

    /// Activities posted, in order.
    pub fn activities(&self) -> Vec<Posted> {
        self.host.world().activities.clone()
    }

    /// The activity types posted, in order.
    pub fn activity_types(&self) -> Vec<String> {
        self.activities().into_iter().map(|a| a.activity_type).collect()
    }

    /// The task's comments: `(author name, body)`; the bot is "Harness bot".
    pub fn comments(&self) -> Vec<(String, String)> {
        self.host
            .world()
            .task
            .as_ref()
            .map(|t| t.comments.clone())
            .unwrap_or_default()
    }

    /// The task's status name.
    pub fn task_status(&self) -> String {
        self.host.world().task_status.clone()
    }

    /// Every model request the plugin made, in order.
    pub fn model_requests(&self) -> Vec<ModelRequest> {
        self.host.world().model_requests.clone()
    }

    /// Model requests waiting for an answer.
    pub fn waiting_model_requests(&self) -> usize {
        self.host.world().model_calls.len()
    }

    /// Webhooks the plugin queued: `(url, JSON body)`.
    pub fn webhooks(&self) -> Vec<(String, Value)> {
        self.host
            .world()
            .webhooks
            .iter()
            .map(|w| (w.url.clone(), serde_json::from_str(&w.body).unwrap_or(Value::Null)))
            .collect()
    }

    /// The plugin's kv state.
    pub fn kv(&self) -> BTreeMap<String, Vec<u8>> {
        self.host.world().kv.clone()
    }

    /// The link on the session's card: `(url, label)`.
    pub fn link(&self) -> Option<(String, String)> {
        self.host.world().link.clone()
    }
}
