//! The connection config: which agent runs the sessions (one this plugin manages for the bot, or an
//! existing one), what it is given (the Leadtime task tools, GitHub repositories, external MCP
//! servers, skills), how progress is followed, and where Anthropic's API is.

use leadtime_plugin_sdk::{FieldError, FieldErrors};
use serde_json::Value;

/// JSON Schema of the config, shown to admins (the console generates its form from it).
pub const SCHEMA: &str = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","additionalProperties":false,"properties":{"mode":{"type":"string","enum":["manage","existing"],"default":"manage","description":"manage: Leadtime creates (and repairs) one Claude agent and environment for this bot from the settings below; existing: sessions run on the agent and environment you name"},"agentId":{"type":"string","maxLength":100,"description":"existing mode: the agent id (agent_…)"},"agentVersion":{"type":"integer","minimum":1,"description":"existing mode: pin an agent version (default: its latest)"},"environmentId":{"type":"string","maxLength":100,"description":"existing mode: the environment id (env_…)"},"model":{"type":"string","maxLength":100,"default":"claude-sonnet-4-5","description":"manage mode: the agent's model"},"system":{"type":"string","maxLength":20000,"description":"manage mode: the agent's system prompt, after Leadtime's own"},"guidance":{"type":"string","maxLength":20000,"description":"Standing instructions added to every session's brief"},"taskTools":{"type":"boolean","default":true,"description":"Give the agent the Leadtime task tools (MCP at {host}/api/mcp) with a token valid for its session only"},"repositories":{"type":"array","maxItems":10,"items":{"type":"object","additionalProperties":false,"required":["url"],"properties":{"url":{"type":"string","format":"uri"},"branch":{"type":"string","maxLength":200}}},"description":"GitHub repositories mounted in each session (needs the github-token secret)"},"mcpServers":{"type":"array","maxItems":5,"items":{"type":"object","additionalProperties":false,"required":["name","url"],"properties":{"name":{"type":"string","pattern":"^[a-z0-9_-]{1,64}$"},"url":{"type":"string","format":"uri"},"bearerSecret":{"type":"string","enum":["mcp-bearer-1","mcp-bearer-2","mcp-bearer-3"]}}},"description":"manage mode: external MCP servers, without auth or with a bearer token kept in a secret"},"skills":{"type":"array","maxItems":20,"items":{"type":"object","additionalProperties":false,"required":["type","skillId"],"properties":{"type":{"type":"string","enum":["anthropic","custom"]},"skillId":{"type":"string","maxLength":100},"version":{"type":"string","maxLength":50}}},"description":"manage mode: skills the agent may use"},"webhooks":{"type":"boolean","default":false,"description":"Also follow Anthropic's webhooks (register this bot's provider-webhook URL in the Anthropic Console and set the webhook-signing-key secret); polling always runs"},"pollSeconds":{"type":"integer","minimum":5,"maximum":3600,"default":20,"description":"How often progress is fetched while the session runs"},"apiBaseUrl":{"type":"string","default":"https://api.anthropic.com","description":"Anthropic API base URL; only https://api.anthropic.com, or a local fake on 127.0.0.1/localhost"}}}"#;

/// The API everyone uses.
pub const DEFAULT_API_BASE_URL: &str = "https://api.anthropic.com";
const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
const DEFAULT_POLL_SECONDS: u64 = 20;
/// Secrets an external MCP server's bearer token may be kept in.
pub const BEARER_SECRETS: [&str; 3] = ["mcp-bearer-1", "mcp-bearer-2", "mcp-bearer-3"];

/// Which agent runs the sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One agent and environment per bot, created and kept in line with this config.
    Manage,
    /// The admin's own agent (optionally a pinned version) and environment.
    Existing {
        agent_id: String,
        agent_version: Option<u64>,
        environment_id: String,
    },
}

/// A GitHub repository mounted in each session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub url: String,
    pub branch: Option<String>,
}

/// An external MCP server the managed agent may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServer {
    pub name: String,
    pub url: String,
    /// The secret holding its bearer token, if it needs one.
    pub bearer_secret: Option<String>,
}

/// A skill the managed agent may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    pub kind: String,
    pub id: String,
    pub version: Option<String>,
}

/// A validated Claude Agent connection config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub model: String,
    pub system: Option<String>,
    pub guidance: Option<String>,
    pub task_tools: bool,
    pub repositories: Vec<Repository>,
    pub mcp_servers: Vec<McpServer>,
    pub skills: Vec<Skill>,
    pub webhooks: bool,
    pub poll_seconds: u64,
    /// Without a trailing `/`.
    pub api_base_url: String,
}

/// Reads the fields of a config object, collecting every problem.
struct Reader<'a> {
    object: &'a serde_json::Map<String, Value>,
    errors: FieldErrors,
}

impl Reader<'_> {
    fn text(&mut self, field: &str, max: usize) -> Option<String> {
        text_in(self.object.get(field), field, max, &mut self.errors)
    }

    fn flag(&mut self, field: &str, default: bool) -> bool {
        match self.object.get(field) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.errors.add(field, "must be true or false");
                default
            }
        }
    }

    /// The items of array `field` (at most `max`), each an object.
    fn objects(&mut self, field: &str, max: usize) -> Vec<serde_json::Map<String, Value>> {
        match self.object.get(field) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() > max => {
                self.errors.add(field, format!("at most {max} entries"));
                Vec::new()
            }
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::Object(o) => Some(o.clone()),
                    _ => {
                        self.errors.add(&format!("{field}[{i}]"), "must be an object");
                        None
                    }
                })
                .collect(),
            Some(_) => {
                self.errors.add(field, "must be a list");
                Vec::new()
            }
        }
    }
}

fn text_in(value: Option<&Value>, field: &str, max: usize, errors: &mut FieldErrors) -> Option<String> {
    match value {
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
}

impl Config {
    /// Parses and validates a config, reporting every wrong field at once.
    pub fn parse(value: &Value) -> Result<Config, Vec<FieldError>> {
        let (object, errors) = FieldErrors::for_object(
            value,
            &[
                "mode",
                "agentId",
                "agentVersion",
                "environmentId",
                "model",
                "system",
                "guidance",
                "taskTools",
                "repositories",
                "mcpServers",
                "skills",
                "webhooks",
                "pollSeconds",
                "apiBaseUrl",
            ],
        )?;
        let mut r = Reader { object, errors };
        let mode = match r.text("mode", 20).as_deref() {
            None | Some("manage") => Mode::Manage,
            Some("existing") => {
                let agent_id = r.text("agentId", 100);
                let environment_id = r.text("environmentId", 100);
                let agent_version = match r.object.get("agentVersion") {
                    None | Some(Value::Null) => None,
                    Some(v) => match v.as_u64().filter(|n| *n >= 1) {
                        Some(n) => Some(n),
                        None => {
                            r.errors.add("agentVersion", "a whole number from 1");
                            None
                        }
                    },
                };
                if agent_id.is_none() {
                    r.errors.add(
                        "agentId",
                        "the existing agent's id (agent_…) is required in existing mode",
                    );
                }
                if environment_id.is_none() {
                    r.errors.add(
                        "environmentId",
                        "the existing environment's id (env_…) is required in existing mode",
                    );
                }
                Mode::Existing {
                    agent_id: agent_id.unwrap_or_default(),
                    agent_version,
                    environment_id: environment_id.unwrap_or_default(),
                }
            }
            Some(_) => {
                r.errors.add("mode", "`manage` or `existing`");
                Mode::Manage
            }
        };
        let model = r.text("model", 100).unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        let system = r.text("system", 20_000);
        let guidance = r.text("guidance", 20_000);
        let task_tools = r.flag("taskTools", true);
        let webhooks = r.flag("webhooks", false);

        let mut repositories = Vec::new();
        for (i, item) in r.objects("repositories", 10).into_iter().enumerate() {
            let field = format!("repositories[{i}]");
            if let Some(extra) = item.keys().find(|k| !matches!(k.as_str(), "url" | "branch")) {
                r.errors.add(&field, format!("unknown field `{extra}`"));
            }
            let url = text_in(item.get("url"), &format!("{field}.url"), 500, &mut r.errors);
            let branch = text_in(item.get("branch"), &format!("{field}.branch"), 200, &mut r.errors);
            match url {
                Some(url) if is_github_repository(&url) => repositories.push(Repository { url, branch }),
                _ => r.errors.add(
                    &format!("{field}.url"),
                    "a GitHub repository URL such as https://github.com/acme/app",
                ),
            }
        }

        let mut mcp_servers: Vec<McpServer> = Vec::new();
        for (i, item) in r.objects("mcpServers", 5).into_iter().enumerate() {
            let field = format!("mcpServers[{i}]");
            if let Some(extra) = item
                .keys()
                .find(|k| !matches!(k.as_str(), "name" | "url" | "bearerSecret"))
            {
                r.errors.add(&field, format!("unknown field `{extra}`"));
            }
            let name = text_in(item.get("name"), &format!("{field}.name"), 64, &mut r.errors);
            let url = text_in(item.get("url"), &format!("{field}.url"), 500, &mut r.errors);
            let bearer_secret = text_in(
                item.get("bearerSecret"),
                &format!("{field}.bearerSecret"),
                64,
                &mut r.errors,
            );
            let name_ok = name.as_deref().is_some_and(|n| {
                n != "leadtime"
                    && n.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
                    && !mcp_servers.iter().any(|s| s.name == n)
            });
            if !name_ok {
                r.errors.add(
                    &format!("{field}.name"),
                    "a unique name of a-z, 0-9, _ and - (`leadtime` is the task tools' own)",
                );
            }
            let url_ok = url
                .as_deref()
                .is_some_and(|u| url::Url::parse(u).is_ok_and(|u| u.scheme() == "https"));
            if !url_ok {
                r.errors.add(&format!("{field}.url"), "an https URL of the MCP server");
            }
            if let Some(secret) = &bearer_secret
                && !BEARER_SECRETS.contains(&secret.as_str())
            {
                r.errors.add(
                    &format!("{field}.bearerSecret"),
                    "mcp-bearer-1, mcp-bearer-2 or mcp-bearer-3 (set the token there as a secret)",
                );
            }
            if let (true, true, Some(name), Some(url)) = (name_ok, url_ok, name, url) {
                mcp_servers.push(McpServer {
                    name,
                    url,
                    bearer_secret,
                });
            }
        }

        let mut skills = Vec::new();
        for (i, item) in r.objects("skills", 20).into_iter().enumerate() {
            let field = format!("skills[{i}]");
            if let Some(extra) = item
                .keys()
                .find(|k| !matches!(k.as_str(), "type" | "skillId" | "version"))
            {
                r.errors.add(&field, format!("unknown field `{extra}`"));
            }
            let kind = text_in(item.get("type"), &format!("{field}.type"), 20, &mut r.errors);
            let id = text_in(item.get("skillId"), &format!("{field}.skillId"), 100, &mut r.errors);
            let version = text_in(item.get("version"), &format!("{field}.version"), 50, &mut r.errors);
            match (kind.as_deref(), id) {
                (Some("anthropic" | "custom"), Some(id)) => skills.push(Skill {
                    kind: kind.unwrap_or_default(),
                    id,
                    version,
                }),
                _ => r
                    .errors
                    .add(&field, "`type` (anthropic or custom) and `skillId` are required"),
            }
        }

        let poll_seconds = match r.object.get("pollSeconds") {
            None | Some(Value::Null) => DEFAULT_POLL_SECONDS,
            Some(v) => match v.as_u64() {
                Some(n) if (5..=3600).contains(&n) => n,
                _ => {
                    r.errors.add("pollSeconds", "a whole number of seconds from 5 to 3600");
                    DEFAULT_POLL_SECONDS
                }
            },
        };
        let api_base_url = r
            .text("apiBaseUrl", 200)
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| DEFAULT_API_BASE_URL.to_owned());
        if !is_allowed_base(&api_base_url) {
            r.errors.add(
                "apiBaseUrl",
                "https://api.anthropic.com, or a local fake at http(s)://127.0.0.1 or localhost",
            );
        }
        if matches!(mode, Mode::Existing { .. }) {
            for (field, set) in [
                ("mcpServers", !mcp_servers.is_empty()),
                ("skills", !skills.is_empty()),
                ("system", system.is_some()),
            ] {
                if set {
                    r.errors.add(
                        field,
                        "only used in manage mode: an existing agent keeps its own (edit it in the Anthropic Console)",
                    );
                }
            }
        }
        r.errors.finish()?;
        Ok(Config {
            mode,
            model,
            system,
            guidance,
            task_tools,
            repositories,
            mcp_servers,
            skills,
            webhooks,
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
        let mut named: Vec<String> = errors.into_iter().map(|e| e.field).collect();
        named.sort();
        named
    }

    #[test]
    fn an_empty_config_manages_an_agent_with_the_task_tools() {
        let config = Config::parse(&json!({})).unwrap();
        assert_eq!(config.mode, Mode::Manage);
        assert!(config.task_tools && !config.webhooks);
        assert_eq!(config.model, DEFAULT_MODEL);
        assert_eq!(config.poll_seconds, 20);
        assert_eq!(config.api_base_url, DEFAULT_API_BASE_URL);
    }

    #[test]
    fn a_full_manage_config_parses() {
        let config = Config::parse(&json!({
            "model": "claude-opus-4-5",
            "repositories": [{"url": "https://github.com/acme/app", "branch": "main"}],
            "mcpServers": [{"name": "docs", "url": "https://mcp.example.com/mcp", "bearerSecret": "mcp-bearer-1"}],
            "skills": [{"type": "anthropic", "skillId": "xlsx"}],
            "apiBaseUrl": "http://127.0.0.1:9000/"
        }))
        .unwrap();
        assert_eq!(config.repositories[0].branch.as_deref(), Some("main"));
        assert_eq!(config.mcp_servers[0].bearer_secret.as_deref(), Some("mcp-bearer-1"));
        assert_eq!(config.skills[0].id, "xlsx");
        assert_eq!(config.api_base_url, "http://127.0.0.1:9000");
    }

    #[test]
    fn every_wrong_field_is_named() {
        let errors = Config::parse(&json!({
            "mode": "existing",
            "repositories": [{"url": "https://gitlab.com/a/b"}],
            "mcpServers": [{"name": "leadtime", "url": "http://x"}, {"name": "ok", "url": "https://x", "bearerSecret": "api-key"}],
            "skills": [{"type": "x"}],
            "pollSeconds": 1,
            "apiBaseUrl": "https://evil.example",
            "extra": true
        }))
        .unwrap_err();
        assert_eq!(
            fields(errors),
            [
                "agentId",
                "apiBaseUrl",
                "environmentId",
                "extra",
                "mcpServers",
                "mcpServers[0].name",
                "mcpServers[0].url",
                "mcpServers[1].bearerSecret",
                "pollSeconds",
                "repositories[0].url",
                "skills[0]",
            ]
        );
        let existing = Config::parse(
            &json!({"mode": "existing", "agentId": "agent_1", "environmentId": "env_1", "agentVersion": 3}),
        )
        .unwrap();
        assert_eq!(
            existing.mode,
            Mode::Existing {
                agent_id: "agent_1".into(),
                agent_version: Some(3),
                environment_id: "env_1".into()
            }
        );
    }
}
