//! What a Managed Agents session event means on the Leadtime card: the activity it becomes
//! (thinking → thought, tool use → toolCall, tool result → toolResult, message → response, error →
//! error) and how it moves the session along ([`Phase`], the status table of the providers
//! contract: running/rescheduling → running, idle after `end_turn` → done, terminated or an idle
//! that gave up → failed).

use leadtime_plugin_sdk::{Activity, ActivityType};
use serde_json::Value;

/// Longest text kept from one event for the feed, in characters.
const TEXT_CHARS: usize = 8_000;
/// Longest tool input or result kept, in characters.
const TOOL_CHARS: usize = 4_000;

/// Where the provider's session stands after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// A user message (the brief or a follow-up) waits for the agent.
    Waiting,
    /// The agent works.
    Running,
    /// The agent ended its turn with nothing left to do.
    Finished,
    /// The agent waits for a tool confirmation or custom tool result this host does not give (the
    /// idle event's id).
    NeedsAction(String),
    /// The session cannot go on; why.
    Failed(String),
}

/// What one event does.
#[derive(Debug, Default)]
pub struct Reading {
    pub activity: Option<Activity>,
    pub phase: Option<Phase>,
    /// The event was the agent's answer (a `response`).
    pub responded: bool,
}

/// Reads one event of the provider's session.
pub fn read(event: &Value) -> Reading {
    let id = event["id"].as_str().unwrap_or_default();
    let kind = event["type"].as_str().unwrap_or_default();
    let activity = |activity_type: ActivityType, body: &str| {
        let mut activity = Activity::new(activity_type, &clip(body, TEXT_CHARS));
        activity.provider_event_id = Some(id.to_owned()).filter(|id| !id.is_empty());
        activity.provider_event_type = Some(kind.to_owned());
        activity.with_idempotency_key(format!("claude:{id}"))
    };
    let mut reading = Reading::default();
    match kind {
        "agent.message" => {
            let text = text_of(&event["content"]);
            if !text.trim().is_empty() {
                reading.activity = Some(activity(ActivityType::Response, &text));
                reading.responded = true;
            }
        }
        "agent.thinking" => reading.activity = Some(activity(ActivityType::Thought, "Thinking…")),
        "agent.tool_use" | "agent.mcp_tool_use" | "agent.custom_tool_use" => {
            let name = event["name"].as_str().unwrap_or("a tool");
            let name = match event["mcp_server_name"].as_str() {
                Some(server) => format!("{server}.{name}"),
                None => name.to_owned(),
            };
            let mut call = activity(ActivityType::ToolCall, &format!("Called {name}"));
            call.action = Some(name);
            call.parameter = Some(clip(&event["input"].to_string(), TOOL_CHARS));
            reading.activity = Some(call);
        }
        "agent.tool_result" | "agent.mcp_tool_result" => {
            let text = text_of(&event["content"]);
            let failed = event["is_error"].as_bool().unwrap_or(false);
            let body = match (failed, text.trim().is_empty()) {
                (true, true) => "The tool failed.".to_owned(),
                (true, false) => format!("The tool failed: {text}"),
                (false, true) => "The tool answered.".to_owned(),
                (false, false) => text.clone(),
            };
            let mut result = activity(ActivityType::ToolResult, &body);
            result.result = Some(clip(&text, TOOL_CHARS));
            reading.activity = Some(result);
        }
        "session.error" => {
            let message = event["error"]["message"]
                .as_str()
                .or_else(|| event["error"]["type"].as_str())
                .unwrap_or("an error");
            reading.activity = Some(activity(ActivityType::Error, &format!("Claude reported {message}")));
        }
        "session.status_running" => reading.phase = Some(Phase::Running),
        "session.status_rescheduled" => {
            reading.phase = Some(Phase::Running);
            reading.activity = Some(activity(ActivityType::Log, "Claude is rescheduling the session."));
        }
        "session.status_idle" => {
            reading.phase = Some(match event["stop_reason"]["type"].as_str() {
                Some("end_turn") | None => Phase::Finished,
                Some("requires_action") => Phase::NeedsAction(id.to_owned()),
                Some("retries_exhausted") => Phase::Failed("Claude stopped after its retries were exhausted.".into()),
                Some("budget_reached") => Phase::Failed("The Claude session reached its budget.".into()),
                Some(other) => Phase::Failed(format!("The Claude session stopped ({other}).")),
            })
        }
        "session.status_terminated" => {
            reading.phase = Some(Phase::Failed("Anthropic terminated the Claude session.".into()))
        }
        "user.message" => reading.phase = Some(Phase::Waiting),
        _ => {}
    }
    reading
}

/// The text blocks of `content` (a list of blocks, or a string), joined.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_event_becomes_its_activity_and_phase() {
        let message =
            read(&json!({"id": "sevt_1", "type": "agent.message", "content": [{"type": "text", "text": "Done."}]}));
        let activity = message.activity.unwrap();
        assert_eq!(activity.activity_type, ActivityType::Response);
        assert_eq!(activity.body, "Done.");
        assert_eq!(activity.idempotency_key.as_deref(), Some("claude:sevt_1"));
        assert!(message.responded);

        let call = read(
            &json!({"id": "sevt_2", "type": "agent.mcp_tool_use", "name": "add_comment",
            "mcp_server_name": "leadtime", "input": {"body": "hi"}}),
        )
        .activity
        .unwrap();
        assert_eq!(call.activity_type, ActivityType::ToolCall);
        assert_eq!(call.action.as_deref(), Some("leadtime.add_comment"));
        assert_eq!(call.parameter.as_deref(), Some(r#"{"body":"hi"}"#));

        let failed = read(&json!({"id": "sevt_3", "type": "agent.tool_result", "is_error": true,
            "content": [{"type": "text", "text": "no such file"}]}))
        .activity
        .unwrap();
        assert_eq!(failed.body, "The tool failed: no such file");

        assert_eq!(
            read(&json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}})).phase,
            Some(Phase::Finished)
        );
        assert_eq!(
            read(&json!({"type": "session.status_idle", "stop_reason": {"type": "requires_action", "event_ids": []}}))
                .phase,
            Some(Phase::NeedsAction(String::new()))
        );
        assert!(matches!(
            read(&json!({"type": "session.status_terminated"})).phase,
            Some(Phase::Failed(_))
        ));
        assert_eq!(read(&json!({"type": "user.message"})).phase, Some(Phase::Waiting));
        let unknown = read(&json!({"type": "span.model_request_start"}));
        assert!(unknown.activity.is_none() && unknown.phase.is_none());
    }
}
