//! The connection config: which repository the agent works in, how it delivers (branch, pull
//! request), the model, standing guidance, and how often the session polls Cursor.

use leadtime_plugin_sdk::{FieldError, FieldErrors};
use serde_json::Value;

/// JSON Schema of the config, shown to admins (the console generates its form from it).
pub const SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"properties":{"repository":{"type":"string","format":"uri","description":"GitHub repository the agent works in, e.g. https://github.com/acme/app. Without one, sessions fail and say so."},"ref":{"type":"string","maxLength":200,"description":"Branch, tag or commit to start from (default: the repository's default branch)"},"model":{"type":"string","maxLength":100,"description":"Cursor model id (default: Cursor's default model)"},"autoCreatePr":{"type":"boolean","default":false,"description":"Open a pull request when the agent finishes"},"branchName":{"type":"string","maxLength":200,"description":"Branch the agent pushes to (default: one Cursor names)"},"guidance":{"type":"string","maxLength":20000,"description":"Standing instructions added to every prompt"},"pollSeconds":{"type":"integer","minimum":10,"maximum":3600,"default":60,"description":"How often progress is fetched while the agent runs (Cursor's webhook only reports the end)"},"apiBaseUrl":{"type":"string","default":"https://api.cursor.com","description":"Cursor API base URL; only https://api.cursor.com, or a local fake on 127.0.0.1/localhost"}}}"#;

/// The API everyone uses.
pub const DEFAULT_API_BASE_URL: &str = "https://api.cursor.com";
const DEFAULT_POLL_SECONDS: u64 = 60;
const MAX_GUIDANCE_CHARS: usize = 20_000;

/// A validated Cursor connection config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub repository: Option<String>,
    pub git_ref: Option<String>,
    pub model: Option<String>,
    pub auto_create_pr: bool,
    pub branch_name: Option<String>,
    pub guidance: Option<String>,
    pub poll_seconds: u64,
    /// Without a trailing `/`.
    pub api_base_url: String,
}

impl Config {
    /// Parses and validates a config, reporting every wrong field at once.
    pub fn parse(value: &Value) -> Result<Config, Vec<FieldError>> {
        let (object, mut errors) = FieldErrors::for_object(
            value,
            &[
                "repository",
                "ref",
                "model",
                "autoCreatePr",
                "branchName",
                "guidance",
                "pollSeconds",
                "apiBaseUrl",
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
        let repository = text(&mut errors, "repository", 500);
        if let Some(repo) = &repository
            && !is_github_repository(repo)
        {
            errors.add(
                "repository",
                "a GitHub repository URL such as https://github.com/acme/app",
            );
        }
        let git_ref = text(&mut errors, "ref", 200);
        let model = text(&mut errors, "model", 100);
        let branch_name = text(&mut errors, "branchName", 200);
        let guidance = text(&mut errors, "guidance", MAX_GUIDANCE_CHARS);
        let auto_create_pr = match object.get("autoCreatePr") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                errors.add("autoCreatePr", "must be true or false");
                false
            }
        };
        let poll_seconds = match object.get("pollSeconds") {
            None | Some(Value::Null) => DEFAULT_POLL_SECONDS,
            Some(v) => match v.as_u64() {
                Some(n) if (10..=3600).contains(&n) => n,
                _ => {
                    errors.add("pollSeconds", "a whole number of seconds from 10 to 3600");
                    DEFAULT_POLL_SECONDS
                }
            },
        };
        let api_base_url = text(&mut errors, "apiBaseUrl", 200)
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| DEFAULT_API_BASE_URL.to_owned());
        if !is_allowed_base(&api_base_url) {
            errors.add(
                "apiBaseUrl",
                "https://api.cursor.com, or a local fake at http(s)://127.0.0.1 or localhost",
            );
        }
        errors.finish()?;
        Ok(Config {
            repository,
            git_ref,
            model,
            auto_create_pr,
            branch_name,
            guidance,
            poll_seconds,
            api_base_url,
        })
    }
}

fn is_github_repository(text: &str) -> bool {
    url::Url::parse(text).is_ok_and(|u| {
        u.scheme() == "https"
            && u.host_str() == Some("github.com")
            && u.path().trim_matches('/').split('/').filter(|p| !p.is_empty()).count() == 2
    })
}

fn is_allowed_base(text: &str) -> bool {
    if text == DEFAULT_API_BASE_URL {
        return true;
    }
    url::Url::parse(text).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && matches!(u.host_str(), Some("127.0.0.1" | "localhost"))
            && u.path().trim_matches('/').is_empty()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_full_config_parses_with_defaults_for_what_is_left_out() {
        let config =
            Config::parse(&json!({"repository": "https://github.com/acme/app", "ref": "main", "autoCreatePr": true}))
                .unwrap();
        assert_eq!(config.repository.as_deref(), Some("https://github.com/acme/app"));
        assert_eq!(config.git_ref.as_deref(), Some("main"));
        assert!(config.auto_create_pr);
        assert_eq!(config.poll_seconds, 60);
        assert_eq!(config.api_base_url, DEFAULT_API_BASE_URL);
        assert_eq!(Config::parse(&json!({})).unwrap().repository, None);
    }

    #[test]
    fn every_wrong_field_is_named() {
        let errors = Config::parse(&json!({
            "repository": "https://gitlab.com/acme/app",
            "autoCreatePr": "yes",
            "pollSeconds": 1,
            "apiBaseUrl": "https://evil.example",
            "extra": 1
        }))
        .unwrap_err();
        let mut named = fields(errors);
        named.sort();
        assert_eq!(
            named,
            ["apiBaseUrl", "autoCreatePr", "extra", "pollSeconds", "repository"]
        );
        assert!(Config::parse(&json!({"apiBaseUrl": "http://127.0.0.1:8123/"})).is_ok());
        assert!(Config::parse(&json!([])).is_err());
    }
}
