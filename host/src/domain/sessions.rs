//! Agent sessions: one piece of work of one bot on one task, with its status and activity feed.

use serde::Serialize;

use super::DomainError;
use super::ids::{ActivityId, CommentId, ConnectionId, SessionId, StatusChangeId, TaskId, UserId, WorkspaceId};
use super::time::Timestamp;

/// Where a session stands. The wire names are the contract's (`canceled` with one "l").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Opened; the connection has not started it yet.
    Queued,
    /// The agent is working.
    Running,
    /// Finished successfully.
    Done,
    /// Finished unsuccessfully.
    Failed,
    /// Stopped before it finished.
    Canceled,
}

impl SessionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [SessionStatus; 5] = [
        SessionStatus::Queued,
        SessionStatus::Running,
        SessionStatus::Done,
        SessionStatus::Failed,
        SessionStatus::Canceled,
    ];

    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Queued => "queued",
            SessionStatus::Running => "running",
            SessionStatus::Done => "done",
            SessionStatus::Failed => "failed",
            SessionStatus::Canceled => "canceled",
        }
    }

    /// Parses a status name; the error names every allowed value.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        Self::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| {
            DomainError::invalid(
                "status",
                format!("unknown status `{text}`; allowed: queued, running, done, failed, canceled"),
            )
        })
    }

    /// Done, failed and canceled sessions are over; nothing changes them any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionStatus::Done | SessionStatus::Failed | SessionStatus::Canceled
        )
    }

    /// The transition table: what moving from `self` to `to` at the request of `by` does.
    ///
    /// - The **agent** (its wrapper through the session API, or its plugin) moves an unfinished
    ///   session to `running`, `done`, `failed` or `canceled`; repeating the current status
    ///   changes nothing (wrappers re-send `running`); a finished session stays finished and no
    ///   session goes back to `queued` — both refused.
    /// - The **host** only fails (a start that could not happen, a webhook it gave up on) or
    ///   cancels (the task was taken from the bot, the bot was disabled) an unfinished session;
    ///   for a finished one there is nothing to do.
    /// - A **redelivery** puts a failed session back in the queue (the caller checks that the
    ///   host failed it); any other session is left as it is.
    pub fn transition(self, to: SessionStatus, by: StatusWriter) -> Result<Transition, DomainError> {
        use SessionStatus::*;
        match by {
            StatusWriter::Agent => {
                if self == to {
                    return Ok(Transition::Unchanged);
                }
                if self.is_terminal() {
                    return Err(DomainError::Conflict(format!(
                        "the session is already {}; a finished session cannot become {}",
                        self.as_str(),
                        to.as_str()
                    )));
                }
                if to == Queued {
                    return Err(DomainError::Conflict(format!(
                        "the session is {}; it cannot go back to queued",
                        self.as_str()
                    )));
                }
                Ok(Transition::Changed)
            }
            StatusWriter::Host => match to {
                Failed | Canceled if !self.is_terminal() => Ok(Transition::Changed),
                Failed | Canceled => Ok(Transition::Unchanged),
                other => Err(DomainError::Conflict(format!(
                    "the host only fails or cancels sessions, it does not set {}",
                    other.as_str()
                ))),
            },
            StatusWriter::Redelivery => match (self, to) {
                (Failed, Queued) => Ok(Transition::Changed),
                (_, Queued) => Ok(Transition::Unchanged),
                (_, other) => Err(DomainError::Conflict(format!(
                    "a redelivery only puts a session back in the queue, it does not set {}",
                    other.as_str()
                ))),
            },
        }
    }
}

/// Who asks for a session's status to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWriter {
    /// The session's agent: its wrapper through the session API, or its plugin.
    Agent,
    /// The host, on its own: a failed start or delivery, a cancel.
    Host,
    /// An admin redelivering a start webhook the host gave up on.
    Redelivery,
}

/// The outcome of [`SessionStatus::transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The status is new; record it.
    Changed,
    /// Nothing to record: the session already has that status, or (for the host) is finished.
    Unchanged,
}

/// What opened a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    /// The task was assigned to the bot.
    Assigned,
    /// The bot was @mentioned in a comment.
    Mentioned,
    /// An automation fired.
    Automation,
}

impl TriggerKind {
    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Assigned => "assigned",
            TriggerKind::Mentioned => "mentioned",
            TriggerKind::Automation => "automation",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [TriggerKind::Assigned, TriggerKind::Mentioned, TriggerKind::Automation]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// The kinds of activity in a session feed (the contract's `activityType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum ActivityType {
    Thought,
    Action,
    Elicitation,
    Response,
    Error,
    Prompt,
    Log,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResult,
}

impl ActivityType {
    /// Every activity type, in the contract's order.
    pub const ALL: [ActivityType; 11] = [
        ActivityType::Thought,
        ActivityType::Action,
        ActivityType::Elicitation,
        ActivityType::Response,
        ActivityType::Error,
        ActivityType::Prompt,
        ActivityType::Log,
        ActivityType::ModelRequest,
        ActivityType::ModelResponse,
        ActivityType::ToolCall,
        ActivityType::ToolResult,
    ];

    /// The wire and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityType::Thought => "thought",
            ActivityType::Action => "action",
            ActivityType::Elicitation => "elicitation",
            ActivityType::Response => "response",
            ActivityType::Error => "error",
            ActivityType::Prompt => "prompt",
            ActivityType::Log => "log",
            ActivityType::ModelRequest => "modelRequest",
            ActivityType::ModelResponse => "modelResponse",
            ActivityType::ToolCall => "toolCall",
            ActivityType::ToolResult => "toolResult",
        }
    }

    /// Parses a type name; the error names every allowed value.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        Self::ALL.into_iter().find(|t| t.as_str() == text).ok_or_else(|| {
            let allowed: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
            DomainError::invalid(
                "activityType",
                format!("unknown activityType `{text}`; allowed: {}", allowed.join(", ")),
            )
        })
    }
}

/// Largest activity `body`, in bytes.
pub const MAX_ACTIVITY_BODY_BYTES: usize = 512 * 1024;
/// Largest serialized `raw`, in bytes.
pub const MAX_ACTIVITY_RAW_BYTES: usize = 512 * 1024;
/// Largest short text field (`action`, `parameter`, `providerEventId`, ...), in bytes.
pub const MAX_ACTIVITY_FIELD_BYTES: usize = 64 * 1024;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
/// Longest status message, in bytes.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 16 * 1024;

/// An activity to append, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewActivity {
    pub activity_type: ActivityType,
    pub body: String,
    pub action: Option<String>,
    pub parameter: Option<String>,
    pub result: Option<String>,
    pub provider_event_id: Option<String>,
    pub provider_event_type: Option<String>,
    /// Serialized JSON.
    pub raw: Option<String>,
    pub idempotency_key: Option<String>,
}

impl NewActivity {
    /// An activity with only a type and a body.
    pub fn text(activity_type: ActivityType, body: String) -> Self {
        Self {
            activity_type,
            body,
            action: None,
            parameter: None,
            result: None,
            provider_event_id: None,
            provider_event_type: None,
            raw: None,
            idempotency_key: None,
        }
    }

    /// Checks sizes and text (and that `raw` is JSON); blank keys become `None`. The one check
    /// every activity meets, whether a wrapper posted it or a plugin.
    pub fn validated(mut self) -> Result<Self, DomainError> {
        check_len("body", &self.body, MAX_ACTIVITY_BODY_BYTES)?;
        for (field, value) in [
            ("action", &mut self.action),
            ("parameter", &mut self.parameter),
            ("result", &mut self.result),
            ("providerEventId", &mut self.provider_event_id),
            ("providerEventType", &mut self.provider_event_type),
        ] {
            if let Some(text) = value {
                check_len(field, text, MAX_ACTIVITY_FIELD_BYTES)?;
            }
        }
        if let Some(raw) = &self.raw {
            check_len("raw", raw, MAX_ACTIVITY_RAW_BYTES)?;
            serde_json::from_str::<serde::de::IgnoredAny>(raw)
                .map_err(|e| DomainError::invalid("raw", format!("activity `raw` is not JSON: {e}")))?;
        }
        self.idempotency_key = idempotency_key(self.idempotency_key)?;
        Ok(self)
    }
}

/// Normalises an idempotency key: blank means none; longer than 255 bytes is refused.
pub fn idempotency_key(key: Option<String>) -> Result<Option<String>, DomainError> {
    match key {
        Some(k) if k.trim().is_empty() => Ok(None),
        Some(k) => {
            check_len("idempotencyKey", &k, MAX_IDEMPOTENCY_KEY_BYTES)?;
            Ok(Some(k))
        }
        None => Ok(None),
    }
}

/// Normalises a status message: blank means none; bounded.
pub fn status_message(message: Option<String>) -> Result<Option<String>, DomainError> {
    match message {
        Some(m) if m.trim().is_empty() => Ok(None),
        Some(m) => {
            check_len("message", &m, MAX_STATUS_MESSAGE_BYTES)?;
            Ok(Some(m))
        }
        None => Ok(None),
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), DomainError> {
    super::check_storable(field, value)?;
    if value.len() > max {
        return Err(DomainError::invalid(
            field,
            format!("`{field}` is too long: at most {max} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_and_list_the_allowed_values() {
        assert_eq!(SessionStatus::parse("canceled").unwrap(), SessionStatus::Canceled);
        let message = SessionStatus::parse("cancelled").unwrap_err().to_string();
        assert!(
            message.contains("allowed: queued, running, done, failed, canceled"),
            "{message}"
        );
    }

    /// Every (from, to, writer) of the transition table, spelled out: `C` records a change, `U`
    /// changes nothing, `-` is refused. Rows are from, columns to, both in lifecycle order
    /// (queued, running, done, failed, canceled).
    #[test]
    fn the_transition_table_covers_every_status_and_writer() {
        use StatusWriter::*;
        let tables: [(StatusWriter, [&str; 5]); 3] = [
            (Agent, ["UCCCC", "-UCCC", "--U--", "---U-", "----U"]),
            (Host, ["---CC", "---CC", "---UU", "---UU", "---UU"]),
            (Redelivery, ["U----", "U----", "U----", "C----", "U----"]),
        ];
        for (by, rows) in tables {
            for (from, row) in SessionStatus::ALL.into_iter().zip(rows) {
                for (to, cell) in SessionStatus::ALL.into_iter().zip(row.chars()) {
                    let expected = match cell {
                        'C' => Some(Transition::Changed),
                        'U' => Some(Transition::Unchanged),
                        _ => None,
                    };
                    let got = from.transition(to, by).ok();
                    assert_eq!(got, expected, "{by:?}: {} -> {}", from.as_str(), to.as_str());
                }
            }
        }
        // The refusals say why.
        let message = SessionStatus::Done
            .transition(SessionStatus::Running, Agent)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("already done; a finished session cannot become running"),
            "{message}"
        );
        let message = SessionStatus::Running
            .transition(SessionStatus::Queued, Agent)
            .unwrap_err()
            .to_string();
        assert!(message.contains("cannot go back to queued"), "{message}");
    }

    #[test]
    fn activity_types_use_the_wire_names() {
        assert_eq!(ActivityType::parse("toolCall").unwrap(), ActivityType::ToolCall);
        assert_eq!(
            serde_json::to_value(ActivityType::ModelResponse).unwrap(),
            "modelResponse"
        );
        let message = ActivityType::parse("tool_call").unwrap_err().to_string();
        assert!(message.contains("thought, action, elicitation, response, error, prompt, log, modelRequest, modelResponse, toolCall, toolResult"));
    }

    #[test]
    fn an_activity_raw_must_be_json() {
        let activity = |raw: &str| NewActivity {
            activity_type: ActivityType::Log,
            body: "b".into(),
            action: None,
            parameter: None,
            result: None,
            provider_event_id: None,
            provider_event_type: None,
            raw: Some(raw.into()),
            idempotency_key: Some(" ".into()),
        };
        let checked = activity(r#"{"x":1}"#).validated().unwrap();
        assert_eq!(checked.idempotency_key, None, "a blank key means none");
        let message = activity("not json").validated().unwrap_err().to_string();
        assert!(message.contains("`raw` is not JSON"), "{message}");
    }

    #[test]
    fn blank_keys_and_messages_mean_none() {
        assert_eq!(idempotency_key(Some("".into())).unwrap(), None);
        assert_eq!(idempotency_key(Some("k1".into())).unwrap().as_deref(), Some("k1"));
        assert!(idempotency_key(Some("k".repeat(256))).is_err());
        assert_eq!(status_message(Some(" ".into())).unwrap(), None);
    }
}

impl TryFrom<String> for SessionStatus {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, DomainError> {
        SessionStatus::parse(&value)
    }
}

impl TryFrom<String> for TriggerKind {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        TriggerKind::parse(&value).ok_or_else(|| format!("unknown trigger kind `{value}`"))
    }
}

impl TryFrom<String> for ActivityType {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, DomainError> {
        ActivityType::parse(&value)
    }
}

/// An agent session.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Session {
    pub id: SessionId,
    pub workspace_id: WorkspaceId,
    pub task_id: TaskId,
    pub bot_id: UserId,
    pub connection_id: ConnectionId,
    /// The plugin that runs the session (the connection type when it opened).
    pub connection_type: String,
    #[sqlx(try_from = "String")]
    pub trigger_kind: TriggerKind,
    /// Who assigned or mentioned the bot.
    pub trigger_actor_id: Option<UserId>,
    /// The comment that mentioned the bot.
    pub comment_id: Option<CommentId>,
    #[sqlx(try_from = "String")]
    pub status: SessionStatus,
    /// Shown on the card, e.g. why it failed.
    pub status_message: Option<String>,
    pub external_url: Option<String>,
    pub external_label: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// The plugin version (wasm SHA-256) the session started on, once it started.
    pub plugin_sha256: Option<String>,
    /// CPU time its plugin calls used so far, in microseconds.
    pub plugin_cpu_micros: i64,
}

/// Who recorded something on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordSource {
    /// The bot, through the session API (e.g. a self-hosted wrapper).
    Api,
    /// The connection's plugin.
    Plugin,
    /// The host itself (delivery outcome, cancellation).
    Host,
}

impl RecordSource {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordSource::Api => "api",
            RecordSource::Plugin => "plugin",
            RecordSource::Host => "host",
        }
    }
}

impl TryFrom<String> for RecordSource {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "api" => Ok(RecordSource::Api),
            "plugin" => Ok(RecordSource::Plugin),
            "host" => Ok(RecordSource::Host),
            other => Err(format!("unknown source `{other}`")),
        }
    }
}

/// An activity in a session's feed.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Activity {
    pub id: ActivityId,
    pub session_id: SessionId,
    #[sqlx(try_from = "String")]
    pub activity_type: ActivityType,
    pub body: String,
    pub action: Option<String>,
    pub parameter: Option<String>,
    pub result: Option<String>,
    pub provider_event_id: Option<String>,
    pub provider_event_type: Option<String>,
    /// Serialized JSON.
    pub raw: Option<String>,
    pub idempotency_key: Option<String>,
    #[sqlx(try_from = "String")]
    pub source: RecordSource,
    pub created_at: Timestamp,
}

/// A recorded change of a session's status.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StatusChange {
    pub id: StatusChangeId,
    pub session_id: SessionId,
    #[sqlx(try_from = "String")]
    pub status: SessionStatus,
    pub message: Option<String>,
    pub idempotency_key: Option<String>,
    #[sqlx(try_from = "String")]
    pub source: RecordSource,
    pub created_at: Timestamp,
}

/// The answer to a status request. Kept under the request's idempotency key, so a repeated key
/// answers exactly as the first request did, whatever happened to the session since.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusAnswer {
    /// The status the request set or, if it changed nothing, the session's status then.
    pub status: SessionStatus,
    pub message: Option<String>,
    /// Whether the request changed the status.
    pub changed: bool,
    /// When the status was set (or, if nothing changed, when the session last changed).
    pub at: Timestamp,
}

/// A bot's agent connection.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Connection {
    pub id: ConnectionId,
    pub workspace_id: WorkspaceId,
    pub bot_id: UserId,
    /// The plugin (connection type) id, e.g. `self-hosted`.
    pub connection_type: String,
    /// JSON config accepted by the plugin's `validate-config`.
    pub config: String,
    /// The admin's choice of [`FollowUps`] (its stored name); `None`: the connection type's default.
    pub follow_ups: Option<String>,
    /// The admin's per-session budgets for model calls, JSON ([`super::model::Budgets`]); `None`:
    /// the host's defaults.
    pub budgets: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Connection {
    /// What a mention does while the bot's latest session on the task is open, given whether the
    /// connection's plugin `handles_follow_ups`.
    pub fn follow_ups(&self, handles_follow_ups: bool) -> FollowUps {
        match self.follow_ups.as_deref().and_then(FollowUps::parse) {
            Some(FollowUps::Continue) if handles_follow_ups => FollowUps::Continue,
            Some(_) => FollowUps::NewSession,
            None if handles_follow_ups => FollowUps::Continue,
            None => FollowUps::NewSession,
        }
    }
}

/// What an @mention of a bot does while its latest session on the task is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUps {
    /// The open session continues: its plugin gets the comment as a `follow-up` event.
    Continue,
    /// A new session opens, as for any mention.
    NewSession,
}

impl FollowUps {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            FollowUps::Continue => "continue",
            FollowUps::NewSession => "newSession",
        }
    }

    /// The mode named `name`.
    pub fn parse(name: &str) -> Option<FollowUps> {
        match name {
            "continue" => Some(FollowUps::Continue),
            "newSession" => Some(FollowUps::NewSession),
            _ => None,
        }
    }
}
