//! Built-in connection type `claude-agent`: each session runs as a Claude managed-agent session
//! (Anthropic's Managed Agents API, see [`api`]).
//!
//! - **agent**: in `manage` mode the plugin creates one agent and one environment for the bot
//!   (ids in kv), updates the agent when the config changes and creates it again when Anthropic
//!   lost it; in `existing` mode sessions run on the agent and environment the admin names.
//! - **start**: with the task tools on, a vault holds the session's bearer token for the
//!   Leadtime MCP endpoint (`{{secret:session-token}}`: the host inserts a token valid for this
//!   session alone, while it is open; the plugin never sees it), plus bearer tokens of external
//!   MCP servers (by secret reference). Then the session is created (GitHub repositories mounted
//!   with the `github-token` secret) and the brief is sent as a `user.message`.
//! - **progress**: the session's events, read on a timer (every `pollSeconds`) and, when the
//!   admin registered this bot's provider-webhook URL with Anthropic, on each signed webhook,
//!   become activities once each ([`events`]); the status follows the providers contract's table.
//! - **follow-up**: a new @mention while the session is open is sent as another `user.message`.
//! - **cancel**: `user.interrupt`.
//! - **end**: the vault's credentials are deleted (best effort; the token already died with the
//!   session) and the session's kv state is dropped.

mod api;
mod config;
mod events;

use leadtime_plugin_sdk::{
    Activity, ActivityType, Comment, FieldErrors, Plugin, PluginError, PluginManifest, SecretSpec, SessionEvent,
    SessionRef, SessionStart, SessionStatus, brief, export_plugin, http, http::HttpError, inbound, kv, log, session,
    timers,
};
use serde_json::{Value, json};

use api::Api;
pub use config::Config;
use config::Mode;
use events::Phase;

/// How the brief ends.
const CLOSING: &str = "Use the `leadtime` tools (when you have them) to read the task and comment on it. \
When you finish, end with a short summary of what you did and anything a reviewer should check.";
/// Most event pages read in one call; the next call goes on from there.
const PAGES_PER_SYNC: usize = 5;
/// The MCP server name the task tools go by.
const TASK_TOOLS_SERVER: &str = "leadtime";
/// The webhook signing secret an admin copies from the Anthropic Console.
const WEBHOOK_SECRET: &str = "webhook-signing-key";

/// The `claude-agent` connection type.
pub struct ClaudeAgent;

impl Plugin for ClaudeAgent {
    fn manifest() -> PluginManifest {
        let secret = |name: &str, description: &str| SecretSpec {
            name: name.into(),
            description: description.into(),
        };
        let mut secrets = vec![
            secret("api-key", "Anthropic API key (Anthropic Console → Settings → API keys)"),
            secret(
                "github-token",
                "GitHub token with access to the configured repositories (only needed with repositories)",
            ),
            secret(
                WEBHOOK_SECRET,
                "The whsec_… signing secret of the webhook you registered in the Anthropic Console (only with webhooks on)",
            ),
        ];
        secrets.extend(
            config::BEARER_SECRETS
                .iter()
                .map(|name| secret(name, "Bearer token of an external MCP server that names this secret")),
        );
        PluginManifest {
            config_schema: config::SCHEMA.to_owned(),
            secrets,
            // Loopback is listed for local fakes only: the host refuses private addresses
            // unless its operator allows them.
            outbound_hosts: vec!["api.anthropic.com".into(), "127.0.0.1".into(), "localhost".into()],
            capabilities: [
                "session",
                "kv",
                "log",
                "timers",
                "http",
                "inbound",
                "follow-up",
                "task-tools",
            ]
            .map(String::from)
            .to_vec(),
            ..PluginManifest::new(
                "claude-agent",
                "Claude Agent",
                env!("CARGO_PKG_VERSION"),
                "Runs each session as a Claude managed agent (Anthropic) with the Leadtime task tools; its \
                 thinking, tool calls and answer show in the task history.",
            )
        }
    }

    fn validate_config(config: &Value) -> Result<(), Vec<leadtime_plugin_sdk::FieldError>> {
        let parsed = Config::parse(config)?;
        // A live check when an admin validates a saved connection; denied (and skipped) while a
        // config is being saved.
        let api = Api {
            base: &parsed.api_base_url,
        };
        let mut errors = FieldErrors::new();
        let mut checks = vec![("", "/v1/agents?limit=1".to_owned(), "checking the key")];
        if let Mode::Existing {
            agent_id,
            environment_id,
            ..
        } = &parsed.mode
        {
            checks.push(("agentId", format!("/v1/agents/{agent_id}"), "reading the agent"));
            checks.push((
                "environmentId",
                format!("/v1/environments/{environment_id}"),
                "reading the environment",
            ));
        }
        for (field, path, doing) in checks {
            match api.probe(&path) {
                Ok(response) if response.is_success() => {}
                Ok(response) if response.status == 404 && !field.is_empty() => {
                    errors.add(
                        field,
                        format!("Anthropic has no such {} for this key", &field[..field.len() - 2]),
                    );
                }
                Ok(response) => {
                    match api::refusal(&response, doing) {
                        PluginError::InvalidConfig(fields) => return Err(fields),
                        PluginError::Transient(_) => errors.add(
                            field,
                            format!(
                                "Anthropic is busy or rate limited ({}) while {doing}; validate again in a minute",
                                response.status
                            ),
                        ),
                        PluginError::Failed(m) => errors.add(field, m),
                    }
                    // The key check failed: checking the ids would only repeat it.
                    if field.is_empty() {
                        break;
                    }
                }
                Err(HttpError::Denied) => return Ok(()),
                Err(other) => {
                    errors.add("apiBaseUrl", format!("Anthropic could not be reached: {other}"));
                    break;
                }
            }
        }
        errors.finish()
    }

    fn start_session(start: SessionStart) -> Result<(), PluginError> {
        let config = Config::parse(&start.connection.config_json()?).map_err(PluginError::InvalidConfig)?;
        let api = Api {
            base: &config.api_base_url,
        };
        // Every step is recorded as it succeeds, so a retried start repeats none.
        let mut state = State::load(&start.session_id)?.unwrap_or_default();
        let started = start_steps(&api, &config, &start, &mut state);
        if let Err(error) = &started
            && !matches!(error, PluginError::Transient(_))
        {
            // The session fails with this error: stop what was started, drop what was kept.
            abandon(&api, &start.session_id, &state);
        }
        started
    }

    fn on_event(session_ref: SessionRef, event: SessionEvent) -> Result<(), PluginError> {
        let config = Config::parse(&session_ref.connection.config_json()?).map_err(PluginError::InvalidConfig)?;
        let api = Api {
            base: &config.api_base_url,
        };
        let id = &session_ref.session_id;
        let Some(mut state) = State::load(id)? else {
            // No provider session (never started, or already over): nothing to follow.
            return Ok(());
        };
        let Some(provider) = state.provider.clone() else {
            return Ok(());
        };
        match event {
            // Verified by the host; it only says something changed, so read the events. If
            // Anthropic is briefly unavailable the polling timer reads them later.
            SessionEvent::InboundWebhook(_) => match sync(&api, id, &mut state) {
                Ok(_) => {}
                Err(PluginError::Transient(why)) => {
                    log::warn(&format!(
                        "reading Claude session {provider} after its webhook failed: {why}"
                    ));
                }
                Err(other) => {
                    abandon(&api, id, &state);
                    return Err(other);
                }
            },
            SessionEvent::TimerFired(_) => match sync(&api, id, &mut state) {
                Ok(true) => {}
                Ok(false) => {
                    timers::schedule(config.poll_seconds * 1_000, &json!({"poll": provider}))?;
                }
                // Anthropic briefly down or rate limited: poll again later rather than fail.
                Err(PluginError::Transient(why)) => {
                    log::warn(&format!(
                        "reading Claude session {provider} failed, will poll again: {why}"
                    ));
                    timers::schedule(config.poll_seconds * 1_000, &json!({"poll": provider}))?;
                }
                Err(other) => {
                    abandon(&api, id, &state);
                    return Err(other);
                }
            },
            SessionEvent::FollowUp(comment) => follow_up(&api, id, &mut state, &comment)?,
            SessionEvent::CancelRequested(reason) => {
                // A failed interrupt is retried (the host calls again on a transient error), so
                // the agent does not go on working for a canceled session.
                let note = match api.send_event(&provider, &json!({"type": "user.interrupt"}), "interrupting") {
                    Ok(()) => format!(
                        "Interrupted the Claude session ({}).",
                        reason.as_deref().unwrap_or("canceled")
                    ),
                    Err(PluginError::Transient(why)) => return Err(PluginError::Transient(why)),
                    Err(error) => format!("Could not interrupt the Claude session: {}", error.message()),
                };
                session::post_activity(
                    &Activity::new(ActivityType::Log, &note).with_idempotency_key("claude:interrupt"),
                )?;
                finish(&api, id, &state);
            }
        }
        Ok(())
    }
}

/// The steps of a start, each skipped when a retried start finds it done.
fn start_steps(api: &Api, config: &Config, start: &SessionStart, state: &mut State) -> Result<(), PluginError> {
    if state.provider.is_none() {
        let vault = prepare_vault(api, config, start, state)?;
        let provider = create_session(api, config, start, vault)?;
        state.provider = Some(provider.clone());
        state.save(&start.session_id)?;
        session::post_activity(
            &Activity::new(ActivityType::Action, &format!("Started Claude session {provider}"))
                .with_idempotency_key("claude:started"),
        )?;
    }
    let provider = state.provider.clone().unwrap_or_default();
    if config.webhooks {
        inbound::open(&inbound::standard_webhooks(WEBHOOK_SECRET, "/data/id"))?;
        inbound::route(&provider)?;
    }
    if !state.briefed {
        let text = brief::brief(start, config.guidance.as_deref(), CLOSING);
        api.send_event(&provider, &api::user_message(&text), "sending the brief")?;
        state.briefed = true;
        state.save(&start.session_id)?;
    }
    if !sync(api, &start.session_id, state)? {
        timers::schedule(config.poll_seconds * 1_000, &json!({"poll": provider}))?;
    }
    Ok(())
}

/// A session that fails: interrupts the provider's session (if one was started), then [`finish`].
fn abandon(api: &Api, session_id: &str, state: &State) {
    if let Some(provider) = &state.provider
        && let Err(error) = api.send_event(provider, &json!({"type": "user.interrupt"}), "interrupting")
    {
        log::warn(&format!(
            "could not interrupt Claude session {provider}: {}",
            error.message()
        ));
    }
    finish(api, session_id, state);
}

/// What this plugin remembers about one Leadtime session (kv `session/{id}`), dropped when it ends.
#[derive(Debug, Default, Clone, PartialEq)]
struct State {
    /// The provider's session id.
    provider: Option<String>,
    vault: Option<String>,
    /// Credentials stored in the vault, in config order (the task tools first).
    credentials: Vec<String>,
    /// Whether the brief was sent.
    briefed: bool,
    /// The cursor of the last event page read (`None`: the first page).
    page: Option<String>,
    /// Whether the agent has answered (a `response` was posted).
    responded: bool,
    running: bool,
}

impl State {
    fn key(session: &str) -> String {
        format!("session/{session}")
    }

    fn load(session: &str) -> Result<Option<State>, PluginError> {
        let Some(bytes) = kv::get(&Self::key(session))? else {
            return Ok(None);
        };
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let text = |field: &str| v[field].as_str().map(str::to_owned);
        Ok(Some(State {
            provider: text("provider"),
            vault: text("vault"),
            credentials: v["credentials"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            briefed: v["briefed"].as_bool().unwrap_or(false),
            page: text("page"),
            responded: v["responded"].as_bool().unwrap_or(false),
            running: v["running"].as_bool().unwrap_or(false),
        }))
    }

    fn save(&self, session: &str) -> Result<(), PluginError> {
        let v = json!({
            "provider": self.provider, "vault": self.vault, "credentials": self.credentials,
            "briefed": self.briefed, "page": self.page, "responded": self.responded, "running": self.running,
        });
        kv::set(&Self::key(session), v.to_string().as_bytes())?;
        Ok(())
    }
}

/// The vault with this session's MCP credentials (none needed: no vault).
fn prepare_vault(
    api: &Api,
    config: &Config,
    start: &SessionStart,
    state: &mut State,
) -> Result<Option<String>, PluginError> {
    let mut wanted: Vec<(String, String)> = Vec::new();
    if config.task_tools {
        wanted.push((task_tools_url(start), session::TOKEN_REFERENCE.to_owned()));
    }
    if config.mode == Mode::Manage {
        for server in &config.mcp_servers {
            if let Some(secret) = &server.bearer_secret {
                wanted.push((server.url.clone(), format!("{{{{secret:{secret}}}}}")));
            }
        }
    }
    if wanted.is_empty() {
        return Ok(None);
    }
    let vault = match &state.vault {
        Some(vault) => vault.clone(),
        None => {
            let vault = api.create_vault(&format!("Leadtime session {}", start.session_id))?;
            state.vault = Some(vault.clone());
            state.save(&start.session_id)?;
            vault
        }
    };
    for (url, token) in wanted.iter().skip(state.credentials.len()) {
        let credential = api.add_bearer_credential(&vault, url, token)?;
        state.credentials.push(credential);
        state.save(&start.session_id)?;
    }
    Ok(Some(vault))
}

/// The Leadtime MCP endpoint the task tools are served at.
fn task_tools_url(start: &SessionStart) -> String {
    format!("{}/mcp", start.api_base_url.trim_end_matches('/'))
}

/// Creates the provider's session (repairing a managed agent or environment Anthropic lost);
/// its id.
fn create_session(
    api: &Api,
    config: &Config,
    start: &SessionStart,
    vault: Option<String>,
) -> Result<String, PluginError> {
    for attempt in 0..2 {
        let (agent, environment) = match &config.mode {
            Mode::Manage => {
                let (agent, environment) = managed_agent(api, config, start)?;
                (json!(agent), environment)
            }
            Mode::Existing {
                agent_id,
                agent_version: Some(version),
                environment_id,
            } => (
                json!({"type": "agent", "id": agent_id, "version": version}),
                environment_id.clone(),
            ),
            Mode::Existing {
                agent_id,
                environment_id,
                ..
            } => (json!(agent_id), environment_id.clone()),
        };
        let resources: Vec<Value> = config
            .repositories
            .iter()
            .map(|repo| {
                let mut resource = json!({
                    "type": "github_repository",
                    "url": repo.url,
                    "authorization_token": "{{secret:github-token}}",
                });
                if let Some(branch) = &repo.branch {
                    resource["checkout"] = json!({"type": "branch", "name": branch});
                }
                resource
            })
            .collect();
        let mut body = json!({
            "agent": agent,
            "environment_id": environment,
            "title": format!("#{} {}", start.task.short_number, start.task.title).chars().take(200).collect::<String>(),
            "metadata": {"leadtime_session": start.session_id, "leadtime_task": start.task.id},
        });
        if !resources.is_empty() {
            body["resources"] = json!(resources);
        }
        if let Some(vault) = &vault {
            body["vault_ids"] = json!([vault]);
        }
        match api.create_session(&body)? {
            Some(id) => return Ok(id),
            // The agent or environment is gone: a managed one is made again, once.
            None if config.mode == Mode::Manage && attempt == 0 => {
                log::warn("Anthropic no longer knows this bot's agent or environment; creating them again");
                kv::delete(AGENT_KEY)?;
                kv::delete(ENVIRONMENT_KEY)?;
            }
            None => break,
        }
    }
    Err(PluginError::Failed(match config.mode {
        Mode::Manage => "Anthropic lost this bot's agent or environment again right after Leadtime made them (404); \
                         check the key's workspace in the Anthropic Console"
            .into(),
        Mode::Existing { .. } => {
            "Anthropic has no such agent or environment (404); check `agentId` and `environmentId`".into()
        }
    }))
}

const AGENT_KEY: &str = "agent";
const AGENT_SPEC_KEY: &str = "agent-spec";
const ENVIRONMENT_KEY: &str = "environment";

/// The bot's managed agent (created, or updated when the config changed) and environment.
fn managed_agent(api: &Api, config: &Config, start: &SessionStart) -> Result<(String, String), PluginError> {
    let spec = agent_spec(config, start);
    let fingerprint = fingerprint(&spec.to_string());
    let stored = |key: &str| -> Result<Option<String>, PluginError> {
        Ok(kv::get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    };
    let agent = match stored(AGENT_KEY)? {
        Some(agent) if stored(AGENT_SPEC_KEY)?.as_deref() == Some(fingerprint.as_str()) => agent,
        Some(agent) if api.update_agent(&agent, &spec)? => {
            kv::set(AGENT_SPEC_KEY, fingerprint.as_bytes())?;
            agent
        }
        _ => {
            let agent = api.create_agent(&spec)?;
            kv::set(AGENT_KEY, agent.as_bytes())?;
            kv::set(AGENT_SPEC_KEY, fingerprint.as_bytes())?;
            agent
        }
    };
    let environment = match stored(ENVIRONMENT_KEY)? {
        Some(environment) => environment,
        None => {
            let environment = api.create_environment(&format!("Leadtime @{}", start.bot.handle))?;
            kv::set(ENVIRONMENT_KEY, environment.as_bytes())?;
            environment
        }
    };
    Ok((agent, environment))
}

/// The managed agent as this config defines it.
fn agent_spec(config: &Config, start: &SessionStart) -> Value {
    let mut tools = vec![json!({"type": "agent_toolset_20260401"})];
    let mut servers = Vec::new();
    if config.task_tools {
        tools.push(json!({"type": "mcp_toolset", "mcp_server_name": TASK_TOOLS_SERVER}));
        servers.push(json!({"type": "url", "name": TASK_TOOLS_SERVER, "url": task_tools_url(start)}));
    }
    for server in &config.mcp_servers {
        tools.push(json!({"type": "mcp_toolset", "mcp_server_name": server.name}));
        servers.push(json!({"type": "url", "name": server.name, "url": server.url}));
    }
    let skills: Vec<Value> = config
        .skills
        .iter()
        .map(|skill| {
            let mut s = json!({"type": skill.kind, "skill_id": skill.id});
            if let Some(version) = &skill.version {
                s["version"] = json!(version);
            }
            s
        })
        .collect();
    let mut system = format!(
        "You are {} (@{}), an agent of the \"{}\" workspace in Leadtime, a task tracker. Each session \
         hands you one task. Work on it, keep the people on the task informed with short comments \
         (the `leadtime` tools, when present), and end with a summary.",
        start.bot.name, start.bot.handle, start.workspace_name
    );
    if let Some(extra) = &config.system {
        system.push_str("\n\n");
        system.push_str(extra);
    }
    // Every list is sent, empty or not: an update replaces lists, so a server or skill removed
    // from the config leaves the agent too.
    json!({
        "name": format!("Leadtime @{}", start.bot.handle),
        "model": config.model,
        "system": system,
        "tools": tools,
        "mcp_servers": servers,
        "skills": skills,
        "metadata": {"leadtime_bot": start.bot.id},
    })
}

/// FNV-1a of `text`, as hex: whether the agent's spec changed since it was last written.
fn fingerprint(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Brings the Leadtime session up to date with the provider's events. Whether it is over.
fn sync(api: &Api, session_id: &str, state: &mut State) -> Result<bool, PluginError> {
    let provider = state.provider.clone().unwrap_or_default();
    let mut phase: Option<Phase> = None;
    for _ in 0..PAGES_PER_SYNC {
        let page = api.events(&provider, state.page.as_deref())?;
        for event in &page.events {
            let reading = events::read(event);
            if let Some(activity) = &reading.activity {
                session::post_activity(activity)?;
            }
            state.responded |= reading.responded;
            if let Some(p) = reading.phase {
                phase = Some(p);
            }
        }
        // A page with a cursor: read on from it. The page without one is read again next time
        // (its events are posted once: their idempotency keys), as new events join it.
        match page.next_page {
            Some(next) if !page.events.is_empty() => state.page = Some(next),
            _ => break,
        }
    }
    let over = match phase {
        Some(Phase::Running) if !state.running => {
            session::set_status(SessionStatus::Running, None)?;
            state.running = true;
            false
        }
        Some(Phase::NeedsAction(event)) => {
            session::post_activity(
                &Activity::new(
                    ActivityType::Elicitation,
                    "The Claude agent waits for a tool confirmation or a custom tool result; answer it in the \
                     Anthropic Console, or cancel this session.",
                )
                .with_idempotency_key(format!("claude:needs-action:{event}")),
            )?;
            false
        }
        Some(Phase::Finished) => {
            if !state.responded {
                session::respond("The Claude agent finished without a message.")?;
            }
            session::set_status(SessionStatus::Done, None)?;
            true
        }
        Some(Phase::Failed(why)) => {
            session::set_status(SessionStatus::Failed, Some(&why))?;
            true
        }
        _ => false,
    };
    if over {
        finish(api, session_id, state);
    } else {
        state.save(session_id)?;
    }
    Ok(over)
}

/// Sends a follow-up @mention to the agent.
fn follow_up(api: &Api, session_id: &str, state: &mut State, comment: &Comment) -> Result<(), PluginError> {
    let provider = state.provider.clone().unwrap_or_default();
    let text = http::defuse(&format!(
        "{} wrote on the task:\n\n{}",
        comment.author.name, comment.body
    ));
    api.send_event(&provider, &api::user_message(&text), "sending the follow-up")?;
    session::post_activity(
        &Activity::new(ActivityType::Prompt, &comment.body)
            .with_idempotency_key(format!("claude:follow-up:{}", comment.id)),
    )?;
    session::set_status(SessionStatus::Running, None)?;
    state.running = true;
    state.save(session_id)
}

/// The session is over: its credentials are deleted (best effort: its token already stopped
/// working) and its state dropped.
fn finish(api: &Api, session_id: &str, state: &State) {
    if let Some(vault) = &state.vault {
        for credential in &state.credentials {
            if let Err(error) = api.delete_credential(vault, credential) {
                log::warn(&format!(
                    "could not delete credential {credential} of vault {vault}: {}",
                    error.message()
                ));
            }
        }
    }
    if let Err(error) = kv::delete(&State::key(session_id)) {
        log::warn(&format!("could not drop the session's state: {error:?}"));
    }
}

export_plugin!(ClaudeAgent);
