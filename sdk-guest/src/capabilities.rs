//! Host capabilities a plugin may use, as plain Rust functions over the WIT imports.

/// The session the current call is for.
pub mod session {
    use crate::bindings::leadtime::agent_runtime::session as wit;
    use crate::{Activity, ActivityType, HostError, SessionStatus};

    /// The reference to the session's token (capability `task-tools`, contract 0.1.3), for an
    /// outbound request's header or body: the host inserts a bearer token with which the
    /// provider's agent uses the Leadtime task tools (`{api-base-url}/mcp`) as the bot, for this
    /// session alone and only while it is open. The plugin never sees the token.
    pub const TOKEN_REFERENCE: &str = "{{secret:session-token}}";

    /// Appends an activity to the session's feed.
    pub fn post_activity(activity: &Activity) -> Result<(), HostError> {
        wit::post_activity(activity)
    }

    /// Appends an activity of `activity_type` with only a body.
    pub fn post(activity_type: ActivityType, body: &str) -> Result<(), HostError> {
        post_activity(&Activity::new(activity_type, body))
    }

    /// Appends a `response` activity: the agent's answer, shown as the session's result.
    pub fn respond(body: &str) -> Result<(), HostError> {
        post(ActivityType::Response, body)
    }

    /// Moves the session to `status` with an optional message for its card.
    pub fn set_status(status: SessionStatus, message: Option<&str>) -> Result<(), HostError> {
        wit::set_status(status, message)
    }

    /// Sets the link shown on the session card (pull request, provider dashboard).
    pub fn set_external_link(url: &str, label: &str) -> Result<(), HostError> {
        wit::set_external_link(url, label)
    }
}

/// Signed, durable webhook delivery.
pub mod webhook {
    use crate::HostError;
    use crate::bindings::leadtime::agent_runtime::webhook as wit;

    /// Queues a signed delivery of `body` (JSON) to `url` and returns the delivery id.
    /// It is sent once the current call returns successfully.
    pub fn deliver(url: &str, body: &str) -> Result<String, HostError> {
        wit::deliver(&wit::OutgoingWebhook {
            url: url.to_owned(),
            body: body.to_owned(),
        })
    }
}

/// Small durable state private to the connection.
pub mod kv {
    use crate::HostError;
    use crate::bindings::leadtime::agent_runtime::kv as wit;

    /// The value stored under `key`, if any.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, HostError> {
        wit::get(key)
    }

    /// Stores `value` under `key`.
    pub fn set(key: &str, value: &[u8]) -> Result<(), HostError> {
        wit::set(key, value)
    }

    /// Removes `key`.
    pub fn delete(key: &str) -> Result<(), HostError> {
        wit::delete(key)
    }
}

/// Durable timers: `on_event` gets `SessionEvent::TimerFired(payload)` after the delay, even
/// across host restarts. Declare the `timers` capability to use them.
pub mod timers {
    use crate::HostError;
    use crate::bindings::leadtime::agent_runtime::timers as wit;

    /// Schedules a timer for the current session `delay_ms` from now (1 s to 7 days) with a JSON
    /// `payload`; returns its id.
    pub fn schedule(delay_ms: u64, payload: &serde_json::Value) -> Result<String, HostError> {
        wit::schedule(delay_ms, &payload.to_string())
    }

    /// Cancels a pending timer of the current session.
    pub fn cancel(timer_id: &str) -> Result<(), HostError> {
        wit::cancel(timer_id)
    }
}

/// Provider webhooks (contract 0.1.2): open the connection's endpoint, give its URL to the
/// provider, and route the provider's ids to the current session; `on_event` then gets
/// `SessionEvent::InboundWebhook(request)` for each verified event, once. Declare the `inbound`
/// capability to use them.
pub mod inbound {
    use crate::HostError;
    use crate::bindings::leadtime::agent_runtime::inbound as wit;
    pub use crate::bindings::leadtime::agent_runtime::inbound::{EndpointSpec, HmacSignature, SignatureScheme};

    /// The reference to the host-generated endpoint secret, for an outbound request's header or
    /// body (the host inserts the value; the plugin never sees it).
    pub const GENERATED_SECRET_REFERENCE: &str = "{{secret:inbound-webhook}}";

    /// Opens the connection's endpoint (or changes how it checks and routes) and returns its URL.
    pub fn open(spec: &EndpointSpec) -> Result<String, HostError> {
        wit::open(spec)
    }

    /// An endpoint checking `{header}: {prefix}<hex HMAC-SHA256>` signatures with the
    /// host-generated secret, deduplicating on `event_id_header`, routing on `route_pointer`.
    pub fn hmac_hex(header: &str, prefix: &str, event_id_header: &str, route_pointer: &str) -> EndpointSpec {
        EndpointSpec {
            scheme: SignatureScheme::HmacSha256Hex(HmacSignature {
                header: header.to_owned(),
                prefix: prefix.to_owned(),
                event_id_header: event_id_header.to_owned(),
            }),
            secret: None,
            route_pointer: route_pointer.to_owned(),
        }
    }

    /// An endpoint checking Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`) with the connection secret `secret` (a `whsec_…` key the admin copied
    /// from the provider), routing on `route_pointer`.
    pub fn standard_webhooks(secret: &str, route_pointer: &str) -> EndpointSpec {
        EndpointSpec {
            scheme: SignatureScheme::StandardWebhooks,
            secret: Some(secret.to_owned()),
            route_pointer: route_pointer.to_owned(),
        }
    }

    /// Sends events whose route key is `key` to the current session.
    pub fn route(key: &str) -> Result<(), HostError> {
        wit::route(key)
    }
}

/// Structured logs, tagged by the host with plugin, connection and session.
pub mod log {
    use crate::bindings::leadtime::agent_runtime::log as wit;
    pub use crate::bindings::leadtime::agent_runtime::log::Level;

    /// Writes one log line at `level`.
    pub fn log(level: Level, message: &str) {
        wit::log(level, message)
    }

    /// Writes a debug line.
    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }

    /// Writes an info line.
    pub fn info(message: &str) {
        log(Level::Info, message)
    }

    /// Writes a warning.
    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }

    /// Writes an error line.
    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// Model calls (contract 0.1.3): ask, end the call, and get the answer later as
/// `SessionEvent::TimerFired(payload)` — read it with [`model::answer`]. The host performs the
/// request outside any instance, records it on the session and enforces the admin's budgets.
/// Declare the `model` capability (and the model's host in `outbound-hosts`) to use it.
pub mod model {
    use crate::HostError;
    use crate::bindings::leadtime::agent_runtime::model as wit;
    pub use crate::bindings::leadtime::agent_runtime::model::{ModelRequest, WireFormat};
    use serde_json::Value;

    /// Queues `request`; its answer arrives with `callback` echoed. Returns the request's id.
    pub fn request(request: &ModelRequest, callback: &Value) -> Result<String, HostError> {
        wit::request(request, &callback.to_string())
    }

    /// A model's answer, as every wire format reads.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Reply {
        /// `end_turn`, `tool_use` or `max_tokens`.
        pub stop_reason: String,
        /// `{type: text, text}` and `{type: tool_use, id, name, input}` blocks.
        pub content: Vec<Value>,
        pub input_tokens: u64,
        pub output_tokens: u64,
    }

    impl Reply {
        /// The text blocks, joined.
        pub fn text(&self) -> String {
            self.content
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        }

        /// The tool calls: `(id, name, input)`.
        pub fn tool_calls(&self) -> Vec<(String, String, Value)> {
            self.content
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| {
                    (
                        b["id"].as_str().unwrap_or_default().to_owned(),
                        b["name"].as_str().unwrap_or_default().to_owned(),
                        b["input"].clone(),
                    )
                })
                .collect()
        }
    }

    /// An answer delivered in a `timer-fired` payload.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Answer {
        /// The id `request` returned.
        pub id: String,
        /// The callback given to `request`.
        pub callback: Value,
        /// The reply, or why the call failed (in words for the session's card).
        pub result: Result<Reply, String>,
    }

    /// The model answer in a `timer-fired` payload, if it is one (else it is an ordinary timer).
    pub fn answer(payload: &str) -> Option<Answer> {
        let value: Value = serde_json::from_str(payload).ok()?;
        let id = value["modelCall"].as_str()?.to_owned();
        let result = &value["result"];
        let result = match result["error"].as_str() {
            Some(why) => Err(why.to_owned()),
            None => {
                let ok = &result["ok"];
                Ok(Reply {
                    stop_reason: ok["stopReason"].as_str().unwrap_or("end_turn").to_owned(),
                    content: ok["content"].as_array().cloned().unwrap_or_default(),
                    input_tokens: ok["usage"]["inputTokens"].as_u64().unwrap_or(0),
                    output_tokens: ok["usage"]["outputTokens"].as_u64().unwrap_or(0),
                })
            }
        };
        Some(Answer {
            id,
            callback: value["callback"].clone(),
            result,
        })
    }
}

/// The task tools as host calls (contract 0.1.3), acting as the session's bot with the same checks
/// and audit as its REST calls. Declare the `tasks` capability to use them.
pub mod tasks {
    use crate::HostError;
    use crate::bindings::leadtime::agent_runtime::tasks as wit;
    use serde_json::Value;

    fn json(text: Result<String, HostError>) -> Result<Value, HostError> {
        text.map(|t| serde_json::from_str(&t).unwrap_or(Value::Null))
    }

    /// `{session, task, comments, trigger}` of the current session.
    pub fn session_context() -> Result<Value, HostError> {
        json(wit::session_context())
    }

    /// `{task, comments}` of a task by id or number.
    pub fn get_task(task: &str) -> Result<Value, HostError> {
        json(wit::get_task(task))
    }

    /// Comments on `task` as the bot; `{comment, …}`.
    pub fn add_comment(task: &str, body: &str) -> Result<Value, HostError> {
        json(wit::add_comment(task, body))
    }

    /// `{statuses: [{id, name, …}]}`.
    pub fn list_statuses() -> Result<Value, HostError> {
        json(wit::list_statuses())
    }

    /// Moves `task` to `status` (name or id); `{task}`.
    pub fn update_status(task: &str, status: &str) -> Result<Value, HostError> {
        json(wit::update_status(task, status))
    }
}
