//! Model calls (`model` capability, contract 0.1.3): one request shape a plugin writes (Anthropic's
//! messages and content blocks), the two wire formats the host speaks — the Anthropic Messages API
//! and the OpenAI-compatible chat completions API — and one reply shape handed back. Pure: the
//! HTTP exchange, retries and records live in `sessions::model_calls`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Largest `messages` JSON a plugin may send, in bytes.
pub const MAX_MESSAGES_BYTES: usize = 512 << 10;
/// Largest `tools` JSON, in bytes.
pub const MAX_TOOLS_BYTES: usize = 64 << 10;
/// Largest `system` prompt, in bytes.
pub const MAX_SYSTEM_BYTES: usize = 64 << 10;
/// Largest `max_tokens`.
pub const MAX_TOKENS: u32 = 32_768;
/// Largest model answer read, in bytes.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// The wire format of a model API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WireFormat {
    AnthropicMessages,
    OpenaiChat,
}

/// A completion a plugin asked for, as stored with its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRequest {
    pub format: WireFormat,
    /// Scheme, host and port; no path.
    pub base_url: String,
    pub model: String,
    pub api_key_secret: Option<String>,
    pub system: Option<String>,
    pub messages: Value,
    pub tools: Value,
    pub max_tokens: u32,
}

/// Token usage of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A model's answer, in the shape plugins read whatever the wire format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelReply {
    /// `end_turn`, `tool_use` or `max_tokens`.
    pub stop_reason: String,
    /// `{type: text, text}` and `{type: tool_use, id, name, input}` blocks.
    pub content: Vec<Value>,
    pub usage: Usage,
}

/// What to do about an HTTP answer that was not a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Try again later (429, 529, 5xx).
    Retry,
    /// Give up with this reason.
    Fail(String),
}

impl ModelRequest {
    /// Checks the request's shape; what to fix otherwise.
    pub fn check(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.base_url).map_err(|e| format!("`base-url` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("`base-url` must be an http(s) URL with a host".into());
        }
        if !url.path().trim_matches('/').is_empty() || url.query().is_some() {
            return Err(format!(
                "`base-url` is scheme, host and port only (e.g. https://api.anthropic.com), not `{}`",
                self.base_url
            ));
        }
        if self.model.trim().is_empty() || self.model.len() > 200 {
            return Err("`model` must be 1–200 characters".into());
        }
        if self
            .system
            .as_ref()
            .is_some_and(|system| system.len() > MAX_SYSTEM_BYTES)
        {
            return Err(format!(
                "`system` is larger than {} KiB: keep the standing instructions short and put the material in `messages`",
                MAX_SYSTEM_BYTES >> 10
            ));
        }
        if !(1..=MAX_TOKENS).contains(&self.max_tokens) {
            return Err(format!("`max-tokens` is 1 to {MAX_TOKENS}"));
        }
        let messages = self
            .messages
            .as_array()
            .filter(|m| !m.is_empty())
            .ok_or("`messages` must be a non-empty list")?;
        for (i, message) in messages.iter().enumerate() {
            if !matches!(message["role"].as_str(), Some("user" | "assistant")) {
                return Err(format!("messages[{i}].role must be `user` or `assistant`"));
            }
            let blocks_ok = match &message["content"] {
                Value::String(_) => true,
                Value::Array(blocks) => blocks.iter().all(|b| {
                    matches!(
                        b["type"].as_str(),
                        Some("text") if b["text"].is_string()
                    ) || matches!(b["type"].as_str(), Some("tool_use") if b["id"].is_string() && b["name"].is_string())
                        || matches!(b["type"].as_str(), Some("tool_result") if b["tool_use_id"].is_string())
                }),
                _ => false,
            };
            if !blocks_ok {
                return Err(format!(
                    "messages[{i}].content must be text or a list of text, tool_use and tool_result blocks"
                ));
            }
        }
        let tools = self.tools.as_array().ok_or("`tools` must be a list (`[]` for none)")?;
        for (i, tool) in tools.iter().enumerate() {
            if !tool["name"].is_string() || !tool["input_schema"].is_object() {
                return Err(format!("tools[{i}] must have a `name` and an `input_schema` object"));
            }
        }
        Ok(())
    }

    /// The endpoint the request goes to.
    pub fn url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        match self.format {
            WireFormat::AnthropicMessages => format!("{base}/v1/messages"),
            WireFormat::OpenaiChat => format!("{base}/v1/chat/completions"),
        }
    }

    /// The request body in the wire format.
    pub fn body(&self) -> Value {
        match self.format {
            WireFormat::AnthropicMessages => {
                let mut body = json!({"model": self.model, "max_tokens": self.max_tokens, "messages": self.messages});
                if let Some(system) = &self.system {
                    body["system"] = json!(system);
                }
                if self.tools.as_array().is_some_and(|t| !t.is_empty()) {
                    body["tools"] = self.tools.clone();
                }
                body
            }
            WireFormat::OpenaiChat => {
                let mut messages = Vec::new();
                if let Some(system) = &self.system {
                    messages.push(json!({"role": "system", "content": system}));
                }
                for message in self.messages.as_array().into_iter().flatten() {
                    messages.extend(openai_messages(message));
                }
                let mut body = json!({"model": self.model, "max_tokens": self.max_tokens, "messages": messages});
                let tools: Vec<Value> = self
                    .tools
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        json!({"type": "function", "function": {
                            "name": t["name"], "description": t["description"].as_str().unwrap_or_default(),
                            "parameters": t["input_schema"]}})
                    })
                    .collect();
                if !tools.is_empty() {
                    body["tools"] = json!(tools);
                }
                body
            }
        }
    }
}

/// One message in the OpenAI chat shape (a user message with tool results becomes one `tool`
/// message per result, then the user's text, if any).
fn openai_messages(message: &Value) -> Vec<Value> {
    let role = message["role"].as_str().unwrap_or("user");
    let blocks: Vec<Value> = match &message["content"] {
        Value::String(text) => vec![json!({"type": "text", "text": text})],
        Value::Array(blocks) => blocks.clone(),
        _ => Vec::new(),
    };
    let text: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let mut out = Vec::new();
    if role == "assistant" {
        let calls: Vec<Value> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| {
                json!({"id": b["id"], "type": "function",
                    "function": {"name": b["name"], "arguments": b["input"].to_string()}})
            })
            .collect();
        let mut m =
            json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text.join("\n")) }});
        if !calls.is_empty() {
            m["tool_calls"] = json!(calls);
        }
        out.push(m);
        return out;
    }
    for result in blocks.iter().filter(|b| b["type"] == "tool_result") {
        let content = match &result["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        };
        out.push(json!({"role": "tool", "tool_call_id": result["tool_use_id"], "content": content}));
    }
    if !text.is_empty() {
        out.push(json!({"role": "user", "content": text.join("\n")}));
    }
    out
}

/// What to do about a non-success `status` with `body`.
pub fn refusal(format: WireFormat, status: u16, body: &[u8]) -> Refusal {
    if status == 429 || status == 529 || status >= 500 {
        return Refusal::Retry;
    }
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let said = parsed["error"]["message"]
        .as_str()
        .map(|m| format!(": {}", m.chars().take(300).collect::<String>()))
        .unwrap_or_default();
    let api = match format {
        WireFormat::AnthropicMessages => "The Anthropic API",
        WireFormat::OpenaiChat => "The model server",
    };
    Refusal::Fail(match status {
        401 | 403 => format!("{api} refused the key ({status}){said}; check the connection's API key secret"),
        404 => format!("{api} has no such model or endpoint (404){said}; check the model and base URL"),
        _ => format!("{api} refused the request ({status}){said}"),
    })
}

/// Reads a successful answer; a readable reason when it is malformed.
pub fn parse_reply(format: WireFormat, body: &[u8]) -> Result<ModelReply, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("the model's answer is not JSON ({e})"))?;
    match format {
        WireFormat::AnthropicMessages => {
            let blocks = value["content"]
                .as_array()
                .ok_or("the model's answer has no `content` list")?;
            let mut content = Vec::new();
            for block in blocks {
                match block["type"].as_str() {
                    Some("text") => {
                        content.push(json!({"type": "text", "text": block["text"].as_str().unwrap_or_default()}))
                    }
                    Some("tool_use") => {
                        let (Some(id), Some(name)) = (block["id"].as_str(), block["name"].as_str()) else {
                            return Err("the model's answer has a tool_use block without an id or name".into());
                        };
                        content.push(json!({"type": "tool_use", "id": id, "name": name, "input": block["input"]}));
                    }
                    _ => {}
                }
            }
            let stop_reason = value["stop_reason"]
                .as_str()
                .ok_or("the model's answer has no `stop_reason`")?;
            Ok(ModelReply {
                stop_reason: match stop_reason {
                    "tool_use" => "tool_use",
                    "max_tokens" => "max_tokens",
                    _ => "end_turn",
                }
                .into(),
                content,
                usage: Usage {
                    input_tokens: value["usage"]["input_tokens"].as_u64().unwrap_or(0),
                    output_tokens: value["usage"]["output_tokens"].as_u64().unwrap_or(0),
                },
            })
        }
        WireFormat::OpenaiChat => {
            let choice = &value["choices"][0];
            let message = choice["message"]
                .as_object()
                .ok_or("the model's answer has no `choices[0].message`")?;
            let mut content = Vec::new();
            if let Some(text) = message.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                content.push(json!({"type": "text", "text": text}));
            }
            for call in message
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(id), Some(name)) = (call["id"].as_str(), call["function"]["name"].as_str()) else {
                    return Err("the model's answer has a tool call without an id or name".into());
                };
                let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
                let input: Value = serde_json::from_str(arguments)
                    .map_err(|_| format!("the model's answer calls `{name}` with arguments that are not JSON"))?;
                content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
            }
            let stop_reason = match choice["finish_reason"].as_str() {
                Some("tool_calls") => "tool_use",
                Some("length") => "max_tokens",
                Some(_) => "end_turn",
                None => return Err("the model's answer has no `finish_reason`".into()),
            };
            Ok(ModelReply {
                stop_reason: stop_reason.into(),
                content,
                usage: Usage {
                    input_tokens: value["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                    output_tokens: value["usage"]["completion_tokens"].as_u64().unwrap_or(0),
                },
            })
        }
    }
}

/// Per-session budgets of a connection's native agent sessions, set by an admin
/// (`connection.budgets`); exhausting one fails the session with a reason naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Budgets {
    /// Model requests per session, every attempt counted (a retried or failed one too).
    #[serde(default = "Budgets::default_model_calls")]
    pub model_calls: u32,
    /// Steps per session: plugin calls handling the session's events (its start, each model
    /// answer, timer and follow-up). A loop that never ends fails here even without model calls.
    #[serde(default = "Budgets::default_steps")]
    pub steps: u32,
    /// Input and output tokens per session.
    #[serde(default = "Budgets::default_tokens")]
    pub tokens: u64,
    /// Seconds from the session's creation to its last model call.
    #[serde(default = "Budgets::default_wall_seconds")]
    pub wall_seconds: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            model_calls: Self::default_model_calls(),
            steps: Self::default_steps(),
            tokens: Self::default_tokens(),
            wall_seconds: Self::default_wall_seconds(),
        }
    }
}

impl Budgets {
    fn default_model_calls() -> u32 {
        30
    }
    fn default_steps() -> u32 {
        100
    }
    fn default_tokens() -> u64 {
        400_000
    }
    fn default_wall_seconds() -> u64 {
        3_600
    }

    /// The stored form (`None`: the defaults).
    pub fn from_stored(text: Option<&str>) -> Budgets {
        text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default()
    }

    /// Parses an admin's budgets; what to fix otherwise.
    pub fn parse(value: &Value) -> Result<Budgets, String> {
        let budgets: Budgets = serde_json::from_value(value.clone()).map_err(|e| {
            format!("`connection.budgets` takes modelCalls, steps, tokens and wallSeconds (whole numbers): {e}")
        })?;
        if budgets.model_calls == 0 || budgets.model_calls > 10_000 {
            return Err("`connection.budgets.modelCalls` is 1 to 10000".into());
        }
        if budgets.steps == 0 || budgets.steps > 100_000 {
            return Err("`connection.budgets.steps` is 1 to 100000".into());
        }
        if budgets.tokens == 0 || budgets.tokens > 100_000_000 {
            return Err("`connection.budgets.tokens` is 1 to 100000000".into());
        }
        if budgets.wall_seconds == 0 || budgets.wall_seconds > 7 * 24 * 3_600 {
            return Err("`connection.budgets.wallSeconds` is 1 to 604800 (7 days)".into());
        }
        Ok(budgets)
    }

    /// The budget a session with `calls` calls and `tokens` tokens, `elapsed_ms` after it was
    /// created, has exhausted (before another call), as a reason naming it.
    pub fn exhausted(&self, calls: i64, tokens: i64, elapsed_ms: i64) -> Option<String> {
        if calls >= i64::from(self.model_calls) {
            return Some(format!(
                "The session used its budget of {} model calls (budget `modelCalls`).",
                self.model_calls
            ));
        }
        if tokens >= self.tokens as i64 {
            return Some(format!(
                "The session used {tokens} of its {} tokens (budget `tokens`).",
                self.tokens
            ));
        }
        if elapsed_ms >= (self.wall_seconds as i64) * 1_000 {
            return Some(format!(
                "The session ran out of its {} seconds (budget `wallSeconds`).",
                self.wall_seconds
            ));
        }
        None
    }

    /// The reason a session that took `steps` steps may not take another, if it has used them up.
    pub fn steps_exhausted(&self, steps: i64) -> Option<String> {
        (steps >= i64::from(self.steps))
            .then(|| format!("The session took its budget of {} steps (budget `steps`).", self.steps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(format: WireFormat) -> ModelRequest {
        ModelRequest {
            format,
            base_url: "https://api.example.com".into(),
            model: "m-1".into(),
            api_key_secret: Some("api-key".into()),
            system: Some("Be brief.".into()),
            messages: json!([
                {"role": "user", "content": "Plan task #7"},
                {"role": "assistant", "content": [{"type": "text", "text": "Reading it."},
                    {"type": "tool_use", "id": "call_1", "name": "get_task", "input": {"task": "7"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "Task 7: fix login"}]}
            ]),
            tools: json!([{"name": "get_task", "description": "Read a task", "input_schema": {"type": "object"}}]),
            max_tokens: 1024,
        }
    }

    #[test]
    fn one_request_speaks_both_wire_formats() {
        let anthropic = request(WireFormat::AnthropicMessages);
        anthropic.check().unwrap();
        assert_eq!(anthropic.url(), "https://api.example.com/v1/messages");
        let body = anthropic.body();
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["messages"], anthropic.messages);
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));

        let openai = request(WireFormat::OpenaiChat);
        assert_eq!(openai.url(), "https://api.example.com/v1/chat/completions");
        let body = openai.body();
        assert_eq!(
            body["messages"],
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Plan task #7"},
                {"role": "assistant", "content": "Reading it.", "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "get_task", "arguments": "{\"task\":\"7\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "Task 7: fix login"}
            ])
        );
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "function": {"name": "get_task", "description": "Read a task", "parameters": {"type": "object"}}}])
        );
    }

    #[test]
    fn bad_requests_say_what_to_fix() {
        let mut bad = request(WireFormat::AnthropicMessages);
        bad.base_url = "https://api.example.com/v1".into();
        assert!(bad.check().unwrap_err().contains("scheme, host and port only"));
        let mut bad = request(WireFormat::AnthropicMessages);
        bad.messages = json!([{"role": "system", "content": "x"}]);
        assert!(bad.check().unwrap_err().contains("messages[0].role"));
        let mut bad = request(WireFormat::AnthropicMessages);
        bad.max_tokens = 0;
        assert!(bad.check().is_err());
    }

    #[test]
    fn replies_of_both_formats_read_alike() {
        let anthropic = parse_reply(
            WireFormat::AnthropicMessages,
            br#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Plan"},{"type":"tool_use","id":"tu_1","name":"add_comment","input":{"comment":"x"}}],"stop_reason":"tool_use","usage":{"input_tokens":10,"output_tokens":5}}"#,
        )
        .unwrap();
        let openai = parse_reply(
            WireFormat::OpenaiChat,
            br#"{"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"Plan","tool_calls":[{"id":"tu_1","type":"function","function":{"name":"add_comment","arguments":"{\"comment\":\"x\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#,
        )
        .unwrap();
        assert_eq!(anthropic, openai);
        assert_eq!(anthropic.stop_reason, "tool_use");
        assert_eq!(
            anthropic.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 5
            }
        );
        assert!(
            parse_reply(WireFormat::OpenaiChat, b"{}")
                .unwrap_err()
                .contains("choices[0].message")
        );
        assert!(
            parse_reply(
                WireFormat::OpenaiChat,
                br#"{"choices":[{"message":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{oops"}}]},"finish_reason":"tool_calls"}]}"#
            )
            .unwrap_err()
            .contains("not JSON")
        );
        assert_eq!(refusal(WireFormat::OpenaiChat, 429, b""), Refusal::Retry);
        let budgets = Budgets::parse(&json!({"modelCalls": 3})).unwrap();
        assert_eq!(budgets.tokens, 400_000);
        assert!(budgets.exhausted(2, 10, 0).is_none());
        assert!(budgets.exhausted(3, 10, 0).unwrap().contains("budget `modelCalls`"));
        assert!(budgets.exhausted(0, 400_000, 0).unwrap().contains("budget `tokens`"));
        assert!(
            budgets
                .exhausted(0, 0, 3_600_000)
                .unwrap()
                .contains("budget `wallSeconds`")
        );
        assert!(
            Budgets::parse(&json!({"stepz": 1})).is_err(),
            "an unknown budget is refused"
        );
        let mut long_system = request(WireFormat::AnthropicMessages);
        long_system.system = Some("x".repeat(MAX_SYSTEM_BYTES + 1));
        assert!(
            long_system
                .check()
                .unwrap_err()
                .contains("`system` is larger than 64 KiB")
        );
        assert!(Budgets::parse(&json!({"steps": 0})).is_err());
        let steps = Budgets::parse(&json!({"steps": 4})).unwrap();
        assert!(steps.steps_exhausted(3).is_none());
        assert!(steps.steps_exhausted(4).unwrap().contains("budget `steps`"));
        assert_eq!(Budgets::default().steps, 100);
        assert!(Budgets::parse(&json!({"modelCalls": 0})).is_err());
        assert_eq!(refusal(WireFormat::AnthropicMessages, 529, b""), Refusal::Retry);
        assert!(matches!(
            refusal(WireFormat::AnthropicMessages, 401, br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#),
            Refusal::Fail(m) if m.contains("refused the key (401): invalid x-api-key")
        ));
    }
}
