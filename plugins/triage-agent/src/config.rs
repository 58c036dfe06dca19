//! The connection config: which model (and how to reach it), the standing guidance, and which
//! statuses the agent may set. Budgets (model calls, tokens, wall time) are the host's, set on the
//! connection (`connection.budgets`), so a plugin cannot lift them.

use leadtime_plugin_sdk::model::WireFormat;
use leadtime_plugin_sdk::{FieldError, FieldErrors};
use serde_json::Value;

/// JSON Schema of the config, shown to admins (the console generates its form from it).
pub const SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"properties":{"provider":{"type":"string","enum":["anthropic","openai"],"default":"anthropic","description":"anthropic: the Anthropic Messages API (needs the api-key secret); openai: any OpenAI-compatible chat completions server (OpenAI, vLLM, Ollama, llama.cpp) — the key is optional for a local server"},"baseUrl":{"type":"string","description":"Scheme, host and port of the model API (default https://api.anthropic.com or https://api.openai.com); a local server at http://127.0.0.1:PORT or localhost works when the operator allows private targets"},"model":{"type":"string","maxLength":200,"description":"The model, e.g. claude-sonnet-4-5, gpt-4.1-mini or llama3.1:8b"},"guidance":{"type":"string","maxLength":20000,"description":"Standing instructions: how your team wants tasks planned"},"allowedStatuses":{"type":"array","maxItems":20,"items":{"type":"string","maxLength":100},"description":"Status names the agent may move a task to (none: it never changes a status)"},"maxTokens":{"type":"integer","minimum":64,"maximum":8192,"default":1024,"description":"Longest answer per model turn"},"keyless":{"type":"boolean","default":false,"description":"Send no API key (a local server that needs none); otherwise the api-key secret must be set"}},"required":["model"]}"#;

/// The triage agent's validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub format: WireFormat,
    pub base_url: String,
    pub model: String,
    pub guidance: Option<String>,
    pub allowed_statuses: Vec<String>,
    pub max_tokens: u32,
    /// Send no key (a local server that needs none).
    pub keyless: bool,
}

impl Config {
    /// Parses and validates a config, reporting every wrong field at once.
    pub fn parse(value: &Value) -> Result<Config, Vec<FieldError>> {
        let (object, mut errors) = FieldErrors::for_object(
            value,
            &[
                "provider",
                "baseUrl",
                "model",
                "guidance",
                "allowedStatuses",
                "maxTokens",
                "keyless",
            ],
        )?;
        let text = |errors: &mut FieldErrors, field: &str, max: usize| -> Option<String> {
            match object.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) if s.chars().count() > max => {
                    errors.add(field, format!("at most {max} characters"));
                    None
                }
                Some(Value::String(s)) => Some(s.trim().to_owned()),
                Some(_) => {
                    errors.add(field, "must be a string");
                    None
                }
            }
        };
        let format = match text(&mut errors, "provider", 20).as_deref() {
            None | Some("anthropic") => WireFormat::AnthropicMessages,
            Some("openai") => WireFormat::OpenaiChat,
            Some(_) => {
                errors.add("provider", "`anthropic` or `openai`");
                WireFormat::AnthropicMessages
            }
        };
        let base_url = text(&mut errors, "baseUrl", 200)
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| match format {
                WireFormat::AnthropicMessages => "https://api.anthropic.com".into(),
                WireFormat::OpenaiChat => "https://api.openai.com".into(),
            });
        if !url::Url::parse(&base_url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path().trim_matches('/').is_empty()
                && u.query().is_none()
        }) {
            errors.add(
                "baseUrl",
                "scheme, host and port only, e.g. https://api.anthropic.com or http://127.0.0.1:11434",
            );
        }
        let model = text(&mut errors, "model", 200);
        if model.is_none() {
            errors.add("model", "the model to use, e.g. claude-sonnet-4-5 or llama3.1:8b");
        }
        let guidance = text(&mut errors, "guidance", 20_000);
        let allowed_statuses = match object.get("allowedStatuses") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() <= 20 => {
                let names: Vec<String> = items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::trim).filter(|s| !s.is_empty() && s.len() <= 100))
                    .map(str::to_owned)
                    .collect();
                if names.len() != items.len() {
                    errors.add(
                        "allowedStatuses",
                        "status names: non-empty strings of at most 100 characters",
                    );
                }
                names
            }
            Some(_) => {
                errors.add("allowedStatuses", "a list of at most 20 status names");
                Vec::new()
            }
        };
        let max_tokens = match object.get("maxTokens") {
            None | Some(Value::Null) => 1024,
            Some(v) => match v.as_u64() {
                Some(n) if (64..=8192).contains(&n) => n as u32,
                _ => {
                    errors.add("maxTokens", "a whole number from 64 to 8192");
                    1024
                }
            },
        };
        let keyless = match object.get("keyless") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.add("keyless", "must be true or false");
                false
            }
        };
        errors.finish()?;
        Ok(Config {
            format,
            base_url,
            model: model.unwrap_or_default(),
            guidance,
            allowed_statuses,
            max_tokens,
            keyless,
        })
    }

    /// Whether the agent may move a task to `status` (by name, case-insensitively).
    pub fn may_set(&self, status: &str) -> bool {
        self.allowed_statuses
            .iter()
            .any(|s| s.eq_ignore_ascii_case(status.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn configs_parse_with_defaults_and_every_wrong_field_is_named() {
        let config = Config::parse(&json!({"model": "claude-sonnet-4-5", "allowedStatuses": ["In progress"]})).unwrap();
        assert_eq!(config.format, WireFormat::AnthropicMessages);
        assert_eq!(config.base_url, "https://api.anthropic.com");
        assert!(config.may_set("in progress") && !config.may_set("Done"));
        let local =
            Config::parse(&json!({"provider": "openai", "baseUrl": "http://127.0.0.1:11434/", "model": "llama3.1:8b"}))
                .unwrap();
        assert_eq!(local.base_url, "http://127.0.0.1:11434");
        let errors = Config::parse(&json!({"provider": "x", "baseUrl": "https://a/v1", "maxTokens": 1, "extra": 1}))
            .unwrap_err();
        let mut fields: Vec<String> = errors.into_iter().map(|e| e.field).collect();
        fields.sort();
        assert_eq!(fields, ["baseUrl", "extra", "maxTokens", "model", "provider"]);
    }
}
