//! Durable jobs, typed: what the session worker is asked to do. A job is stored as a `kind` name
//! and a JSON payload (the form rows of every earlier host have, so they keep running); a new job
//! kind is a new variant here, not a new string matched elsewhere.

use serde::{Deserialize, Serialize};

use super::DomainError;

/// What a job does (its session is the job row's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    /// Start the session through its connection's plugin (`start-session`).
    StartSession,
    /// Tell the session's plugin about an event (`on-event`).
    SessionEvent(QueuedEvent),
    /// Fire a plugin's timer (`on-event(timer-fired)`) with the payload it scheduled.
    Timer { payload: String },
    /// Perform a model request a plugin queued (`model` capability) outside any instance, then
    /// call the plugin back with the answer.
    ModelCall(Box<ModelCall>),
}

/// A model request waiting to be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelCall {
    /// The id `model.request` returned.
    pub id: String,
    pub request: super::model::ModelRequest,
    /// The plugin's JSON echoed with the answer, as text.
    pub callback: String,
}

/// A session event waiting for the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QueuedEvent {
    /// The session was canceled (the task was taken from the bot, the bot was disabled).
    Cancel { reason: Option<String> },
    /// A provider webhook routed to the session (the stored `inbound_events` row).
    Inbound { event: String },
    /// The bot was @mentioned again on the task while the session was open (the comment's id).
    FollowUp { comment: String },
}

/// The stored payloads, one per kind.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartPayload {
    #[serde(default)]
    session_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventPayload {
    #[serde(default)]
    session_id: Option<String>,
    event: QueuedEvent,
}

#[derive(Serialize, Deserialize)]
struct TimerPayload {
    /// The plugin's JSON, as text.
    payload: String,
}

impl JobKind {
    /// The stored `kind` name.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::StartSession => "start_session",
            JobKind::SessionEvent(_) => "session_event",
            JobKind::Timer { .. } => "timer",
            JobKind::ModelCall(_) => MODEL_CALL,
        }
    }

    /// The stored payload of this job for `session`.
    pub fn payload(&self, session: &str) -> String {
        let json = match self {
            JobKind::StartSession => serde_json::to_string(&StartPayload {
                session_id: Some(session.to_owned()),
            }),
            JobKind::SessionEvent(event) => serde_json::to_string(&EventPayload {
                session_id: Some(session.to_owned()),
                event: event.clone(),
            }),
            JobKind::Timer { payload } => serde_json::to_string(&TimerPayload {
                payload: payload.clone(),
            }),
            JobKind::ModelCall(call) => serde_json::to_string(call),
        };
        json.unwrap_or_default()
    }

    /// The job stored as `kind` with `payload`; what is wrong with it otherwise.
    pub fn parse(kind: &str, payload: &str) -> Result<JobKind, DomainError> {
        let bad = |e: serde_json::Error| DomainError::invalid("payload", format!("a `{kind}` job's payload: {e}"));
        match kind {
            "start_session" => Ok(JobKind::StartSession),
            "session_event" => Ok(JobKind::SessionEvent(
                serde_json::from_str::<EventPayload>(payload).map_err(bad)?.event,
            )),
            "timer" => Ok(JobKind::Timer {
                payload: serde_json::from_str::<TimerPayload>(payload).map_err(bad)?.payload,
            }),
            MODEL_CALL => Ok(JobKind::ModelCall(Box::new(
                serde_json::from_str(payload).map_err(bad)?,
            ))),
            other => Err(DomainError::invalid("kind", format!("unknown job kind `{other}`"))),
        }
    }
}

/// The kind name of timer jobs (for counting and canceling a session's timers).
pub const TIMER: &str = "timer";
/// The kind name of model-call jobs (for counting a session's pending requests).
pub const MODEL_CALL: &str = "model_call";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_their_stored_form() {
        for job in [
            JobKind::StartSession,
            JobKind::SessionEvent(QueuedEvent::Cancel {
                reason: Some("unassigned by Ada".into()),
            }),
            JobKind::Timer {
                payload: r#"{"poll":1}"#.into(),
            },
            JobKind::SessionEvent(QueuedEvent::Inbound { event: "ibe_01".into() }),
            JobKind::ModelCall(Box::new(ModelCall {
                id: "job_1".into(),
                request: super::super::model::ModelRequest {
                    format: super::super::model::WireFormat::OpenaiChat,
                    base_url: "http://127.0.0.1:8000".into(),
                    model: "llama".into(),
                    api_key_secret: None,
                    system: None,
                    messages: serde_json::json!([{"role": "user", "content": "hi"}]),
                    tools: serde_json::json!([]),
                    max_tokens: 100,
                },
                callback: "{}".into(),
            })),
        ] {
            let stored = job.payload("ses_1");
            assert_eq!(JobKind::parse(job.name(), &stored).unwrap(), job, "{stored}");
        }
        assert_eq!(JobKind::Timer { payload: "{}".into() }.name(), TIMER);
    }

    #[test]
    fn rows_written_by_earlier_hosts_still_parse() {
        assert_eq!(
            JobKind::parse(
                "session_event",
                r#"{"sessionId":"ses_1","event":{"type":"cancel","reason":"x"}}"#
            )
            .unwrap(),
            JobKind::SessionEvent(QueuedEvent::Cancel {
                reason: Some("x".into())
            })
        );
        assert_eq!(
            JobKind::parse("timer", r#"{"payload":"{\"poll\":1}"}"#).unwrap(),
            JobKind::Timer {
                payload: r#"{"poll":1}"#.into()
            }
        );
        assert!(JobKind::parse("session_event", r#"{"event":{"type":"explode"}}"#).is_err());
        assert!(JobKind::parse("reindex", "{}").is_err());
    }
}
