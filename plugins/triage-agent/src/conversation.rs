//! The agent's durable state (kv `triage/{session}`): the conversation with the model in the
//! shape the `model` capability takes, the tool results of the turn in progress, and what waits.

use leadtime_plugin_sdk::model::Reply;
use leadtime_plugin_sdk::{PluginError, kv};
use serde_json::{Value, json};

use crate::config::Config;

/// Longest tool result kept in the conversation, in characters.
const RESULT_CHARS: usize = 4_000;
/// Largest state kept, in bytes (a kv value holds 64 KiB).
const MAX_STATE_BYTES: usize = 60 << 10;

/// One session's conversation and progress.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The session's task.
    pub task_id: String,
    /// The session's bot (empty in a state saved before it was kept).
    pub bot_id: String,
    /// `[{role, content}]`, oldest first.
    pub messages: Vec<Value>,
    /// Model turns answered so far.
    pub turns: u64,
    /// The last model answer whose tools ran and which joined the conversation.
    pub last_answer: Option<String>,
    /// Tool results of the answer in progress: `(tool_use_id, result, failed)`.
    pub results: Vec<(String, String, bool)>,
    /// A side-effecting tool call begun and not yet known to be done: `(tool_use_id, comment)`.
    pub executing: Option<(String, String)>,
    /// The agent asked a person and waits for a follow-up.
    pub waiting: bool,
    /// Follow-ups that arrived while the model was thinking, for its next turn.
    pub inbox: Vec<String>,
    /// Comments already taken as follow-ups (the latest [`MAX_SEEN`]), so one handed over again
    /// joins the conversation once.
    pub seen_follow_ups: Vec<String>,
}

/// Follow-up comment ids remembered.
const MAX_SEEN: usize = 64;

impl State {
    /// A conversation starting with `brief`.
    pub fn new(task_id: &str, bot_id: &str, brief: String) -> State {
        State {
            task_id: task_id.to_owned(),
            bot_id: bot_id.to_owned(),
            messages: vec![json!({"role": "user", "content": [{"type": "text", "text": brief}]})],
            turns: 0,
            last_answer: None,
            results: Vec::new(),
            executing: None,
            waiting: false,
            inbox: Vec::new(),
            seen_follow_ups: Vec::new(),
        }
    }

    fn key(session: &str) -> String {
        format!("triage/{session}")
    }

    pub fn load(session: &str) -> Result<Option<State>, PluginError> {
        let Some(bytes) = kv::get(&Self::key(session))? else {
            return Ok(None);
        };
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| PluginError::Failed(format!("the agent's saved state is unreadable: {e}")))?;
        let strings = |field: &str| -> Vec<String> {
            v[field]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        Ok(Some(State {
            task_id: v["taskId"].as_str().unwrap_or_default().to_owned(),
            bot_id: v["botId"].as_str().unwrap_or_default().to_owned(),
            messages: v["messages"].as_array().cloned().unwrap_or_default(),
            turns: v["turns"].as_u64().unwrap_or(0),
            last_answer: v["lastAnswer"].as_str().map(str::to_owned),
            results: v["results"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| {
                            Some((
                                r[0].as_str()?.to_owned(),
                                r[1].as_str()?.to_owned(),
                                r[2].as_bool().unwrap_or(false),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            executing: v["executing"][0]
                .as_str()
                .zip(v["executing"][1].as_str())
                .map(|(a, b)| (a.to_owned(), b.to_owned())),
            waiting: v["waiting"].as_bool().unwrap_or(false),
            inbox: strings("inbox"),
            seen_follow_ups: strings("seenFollowUps"),
        }))
    }

    pub fn save(&self, session: &str) -> Result<(), PluginError> {
        let seen = &self.seen_follow_ups[self.seen_follow_ups.len().saturating_sub(MAX_SEEN)..];
        let v = json!({
            "taskId": self.task_id, "botId": self.bot_id, "messages": self.messages, "turns": self.turns,
            "lastAnswer": self.last_answer, "results": self.results, "executing": self.executing,
            "waiting": self.waiting, "inbox": self.inbox, "seenFollowUps": seen,
        })
        .to_string();
        if v.len() > MAX_STATE_BYTES {
            return Err(PluginError::Failed(format!(
                "the conversation grew past the {} KiB this agent keeps; split the task or start again with a new mention",
                MAX_STATE_BYTES >> 10
            )));
        }
        kv::set(&Self::key(session), v.as_bytes())?;
        Ok(())
    }

    /// Drops a finished session's state.
    pub fn forget(session: &str) -> Result<(), PluginError> {
        kv::delete(&Self::key(session))?;
        Ok(())
    }

    /// The conversation as the `model` capability takes it.
    pub fn messages_json(&self) -> String {
        Value::Array(self.messages.clone()).to_string()
    }

    /// Adds answer `answer` (`reply`) and the results of its tools to the conversation, with any
    /// follow-ups that arrived meanwhile; `waiting`: the agent asked a person and waits.
    pub fn answered(&mut self, answer: &str, reply: &Reply, waiting: bool) {
        self.turns += 1;
        self.last_answer = Some(answer.to_owned());
        self.messages
            .push(json!({"role": "assistant", "content": reply.content}));
        let mut content: Vec<Value> = reply
            .tool_calls()
            .iter()
            .filter_map(|(id, _, _)| {
                let (_, result, failed) = self.results.iter().find(|(done, _, _)| done == id)?;
                Some(json!({"type": "tool_result", "tool_use_id": id, "content": result, "is_error": failed}))
            })
            .collect();
        self.results.clear();
        self.waiting = waiting;
        if !waiting {
            content.extend(self.inbox.drain(..).map(|text| json!({"type": "text", "text": text})));
        }
        if !content.is_empty() {
            self.messages.push(json!({"role": "user", "content": content}));
        }
    }

    /// Whether the conversation ends with a user message the model has not answered.
    pub fn awaits_model(&self) -> bool {
        self.messages.last().is_some_and(|m| m["role"] == "user")
    }

    /// Moves the follow-ups waiting in the inbox into the conversation.
    pub fn flush_inbox(&mut self) {
        if self.inbox.is_empty() {
            return;
        }
        let texts: Vec<Value> = self
            .inbox
            .drain(..)
            .map(|text| json!({"type": "text", "text": text}))
            .collect();
        match self.messages.last_mut() {
            Some(last) if last["role"] == "user" => {
                if let Some(content) = last["content"].as_array_mut() {
                    content.extend(texts);
                }
            }
            _ => self.messages.push(json!({"role": "user", "content": texts})),
        }
    }
}

/// The tools the model may call.
pub fn tools(config: &Config) -> Value {
    let mut tools = vec![
        json!({"name": "get_task", "description": "Read another task of the workspace with its comments (for context).",
            "input_schema": {"type": "object", "properties": {"task": {"type": "string", "description": "Task id or number, e.g. 42"}}, "required": ["task"]}}),
        json!({"name": "add_comment", "description": "Post a comment (markdown) on the task you were given, as yourself.",
            "input_schema": {"type": "object", "properties": {"comment": {"type": "string"}}, "required": ["comment"]}}),
        json!({"name": "ask_for_details", "description": "Ask the people on the task for what is missing; you continue when they answer.",
            "input_schema": {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}}),
    ];
    if !config.allowed_statuses.is_empty() {
        tools.push(json!({"name": "set_status", "description": "Move the task you were given to another status.",
            "input_schema": {"type": "object", "properties": {"status": {"type": "string", "enum": config.allowed_statuses}}, "required": ["status"]}}));
    }
    Value::Array(tools)
}

/// `text`, cut to [`RESULT_CHARS`].
pub fn clip(text: &str) -> String {
    if text.chars().count() <= RESULT_CHARS {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(RESULT_CHARS).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(content: Value) -> Reply {
        Reply {
            stop_reason: "tool_use".into(),
            content: content.as_array().cloned().unwrap_or_default(),
            input_tokens: 1,
            output_tokens: 1,
        }
    }

    #[test]
    fn a_turn_joins_the_conversation_with_its_tool_results_and_waiting_follow_ups() {
        let mut state = State::new("tsk_1", "usr_bot", "Plan it".into());
        state.results.push(("tu_1".into(), "Comment posted.".into(), false));
        state.inbox.push("Ada wrote: also check mobile".into());
        let answer =
            reply(json!([{"type": "tool_use", "id": "tu_1", "name": "add_comment", "input": {"comment": "x"}}]));
        state.answered("job_1", &answer, false);
        assert_eq!(state.turns, 1);
        assert!(state.results.is_empty() && state.inbox.is_empty() && state.awaits_model());
        assert_eq!(
            state.messages[2]["content"],
            json!([{"type": "tool_result", "tool_use_id": "tu_1", "content": "Comment posted.", "is_error": false},
                {"type": "text", "text": "Ada wrote: also check mobile"}])
        );
        // Waiting for a person: follow-ups stay in the inbox until one arrives.
        let mut waiting = State::new("tsk_1", "usr_bot", "Plan it".into());
        waiting.results.push(("tu_2".into(), "Asked.".into(), false));
        waiting.answered(
            "job_2",
            &reply(json!([{"type": "tool_use", "id": "tu_2", "name": "ask_for_details", "input": {}}])),
            true,
        );
        assert!(waiting.waiting);
        waiting.inbox.push("Bo wrote: it is the iOS app".into());
        waiting.flush_inbox();
        assert_eq!(waiting.messages.last().unwrap()["content"].as_array().unwrap().len(), 2);
    }
}
