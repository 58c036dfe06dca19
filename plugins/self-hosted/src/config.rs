//! The connection config: `{webhookUrl, mode: basic|full, guidance?, exposeRawApiCredentialToAgent?}`.

use leadtime_plugin_sdk::{FieldError, FieldErrors};
use serde_json::Value;

/// JSON Schema of the config, shown to admins and served in the connection-type list. Its
/// `x-leadtime-*` annotations tell the host what a field is for without the host knowing the
/// field: `x-leadtime-role: webhook-url` is where a setup claim puts the wrapper's webhook URL,
/// and `x-leadtime-claim` names where a field's value goes in the claim's answer (wire contract
/// §4).
pub const SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"required":["webhookUrl"],"properties":{"webhookUrl":{"type":"string","format":"uri","description":"Where the wrapper listens, e.g. https://agent.example.com/leadtime/webhook","x-leadtime-role":"webhook-url"},"mode":{"enum":["basic","full"],"default":"basic","description":"basic: task tools only; full: the wrapper may call the whole public API","x-leadtime-claim":"mode"},"guidance":{"type":"string","maxLength":20000,"description":"Standing instructions for the agent, added to every prompt","x-leadtime-claim":"guidance.instructions"},"exposeRawApiCredentialToAgent":{"type":"boolean","default":false,"description":"Let the wrapper hand the bot's API token itself to its agent (needed by some full-mode agents); off keeps the token inside the wrapper","x-leadtime-claim":"exposeRawApiCredentialToAgent"}}}"#;

/// Longest accepted guidance, in characters.
const MAX_GUIDANCE_CHARS: usize = 20_000;

/// How much of the public API the wrapper's agent may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Task tools only.
    Basic,
    /// Every operation of the public API.
    Full,
}

impl Mode {
    /// The wire name, `basic` or `full`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Basic => "basic",
            Mode::Full => "full",
        }
    }
}

/// A validated self-hosted connection config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Absolute http(s) URL the webhook goes to.
    pub webhook_url: String,
    pub mode: Mode,
    /// Standing instructions, trimmed; `None` when absent or blank.
    pub guidance: Option<String>,
    /// Whether the wrapper may give the bot token itself to its agent (told at setup claim).
    pub expose_raw_api_credential_to_agent: bool,
}

impl Config {
    /// Parses and validates a config, reporting every wrong field at once.
    pub fn parse(value: &Value) -> Result<Config, Vec<FieldError>> {
        let (object, mut errors) = FieldErrors::for_object(
            value,
            &["webhookUrl", "mode", "guidance", "exposeRawApiCredentialToAgent"],
        )?;
        let webhook_url = match object.get("webhookUrl") {
            None | Some(Value::Null) => {
                errors.add(
                    "webhookUrl",
                    "required: the URL your wrapper listens on, e.g. https://agent.example.com/leadtime/webhook",
                );
                None
            }
            Some(Value::String(s)) => match check_url(s) {
                Ok(()) => Some(s.trim().to_owned()),
                Err(message) => {
                    errors.add("webhookUrl", message);
                    None
                }
            },
            Some(_) => {
                errors.add("webhookUrl", "must be a string (an http or https URL)");
                None
            }
        };
        let mode = match object.get("mode") {
            None | Some(Value::Null) => Mode::Basic,
            Some(Value::String(s)) if s == "basic" => Mode::Basic,
            Some(Value::String(s)) if s == "full" => Mode::Full,
            Some(_) => {
                errors.add("mode", "must be \"basic\" or \"full\"");
                Mode::Basic
            }
        };
        let guidance = match object.get("guidance") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() > MAX_GUIDANCE_CHARS => {
                errors.add("guidance", format!("too long: at most {MAX_GUIDANCE_CHARS} characters"));
                None
            }
            Some(Value::String(s)) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Some(_) => {
                errors.add("guidance", "must be a string");
                None
            }
        };
        let expose_raw_api_credential_to_agent = match object.get("exposeRawApiCredentialToAgent") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.add("exposeRawApiCredentialToAgent", "must be true or false");
                false
            }
        };
        errors.finish()?;
        Ok(Config {
            webhook_url: webhook_url.unwrap_or_default(),
            mode,
            guidance,
            expose_raw_api_credential_to_agent,
        })
    }
}

fn check_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| format!("not a valid URL ({e}); expected e.g. https://agent.example.com/leadtime/webhook"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not allowed; use http or https", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL needs a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL are not allowed; the host signs every delivery instead".into());
    }
    if url.fragment().is_some() {
        return Err("remove the #fragment; it is never sent".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Vec<String> {
        Config::parse(&value)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn minimal_config_defaults_to_basic_mode() {
        let config = Config::parse(&json!({"webhookUrl": "https://a.example/leadtime/webhook"})).unwrap();
        assert_eq!(config.mode, Mode::Basic);
        assert_eq!(config.guidance, None);
        assert_eq!(config.webhook_url, "https://a.example/leadtime/webhook");
        assert!(!config.expose_raw_api_credential_to_agent);
    }

    #[test]
    fn full_config_is_kept() {
        let config =
            Config::parse(&json!({"webhookUrl": "http://127.0.0.1:9/x", "mode": "full", "guidance": "  Be brief. "}))
                .unwrap();
        assert_eq!(config.mode, Mode::Full);
        assert_eq!(config.guidance.as_deref(), Some("Be brief."));
        let config =
            Config::parse(&json!({"webhookUrl": "http://127.0.0.1:9/x", "exposeRawApiCredentialToAgent": true}))
                .unwrap();
        assert!(config.expose_raw_api_credential_to_agent);
    }

    #[test]
    fn every_bad_field_is_reported() {
        assert_eq!(fields(json!({})), ["webhookUrl"]);
        assert_eq!(
            fields(
                json!({"webhookUrl": "ftp://x", "mode": "turbo", "guidance": 3, "extra": 1, "exposeRawApiCredentialToAgent": "yes"})
            ),
            [
                "extra",
                "webhookUrl",
                "mode",
                "guidance",
                "exposeRawApiCredentialToAgent"
            ]
        );
        assert_eq!(fields(json!({"webhookUrl": "not a url"})), ["webhookUrl"]);
        assert_eq!(
            fields(json!({"webhookUrl": "https://user:pw@a.example/"})),
            ["webhookUrl"]
        );
        assert_eq!(
            fields(json!({"webhookUrl": "https://a.example/", "guidance": "x".repeat(20_001)})),
            ["guidance"]
        );
        assert_eq!(fields(json!([1])), [""]);
    }
}
