//! Built-in connection type `cursor-cloud`: each session runs as a Cursor Cloud Agent (API v0,
//! see [`api`] for why).
//!
//! - **start**: launches an agent on the configured repository with a prompt built from the task
//!   ([`brief`]), handing Cursor this connection's provider-webhook URL and a secret the host
//!   generated (by reference: the plugin never sees it), routes the agent's id to the session,
//!   and schedules a polling timer.
//! - **progress**: Cursor's signed webhook (sent when the agent finishes or fails) and the timer
//!   (every `pollSeconds`, so a lost webhook never leaves a session hanging) both re-read the
//!   agent and its conversation: new assistant messages become `thought` activities (once each),
//!   the final summary the `response`, the pull request (or the agent's page) the session's link.
//! - **status** (the table in the providers contract): `CREATING` → queued, `RUNNING` → running,
//!   `FINISHED` → done, `ERROR`/`EXPIRED` → failed.
//! - **follow-up** (a new @mention while the session runs): sent to the agent as a follow-up.
//! - **cancel**: stops the agent.

mod api;
mod config;

use leadtime_plugin_sdk::{
    Activity, ActivityType, Comment, FieldError, FieldErrors, Plugin, PluginError, PluginManifest, SecretSpec,
    SessionEvent, SessionRef, SessionStart, SessionStatus, brief, export_plugin, http, http::HttpError, inbound, kv,
    log, session, timers,
};
use serde_json::{Value, json};

pub use config::Config;

/// How the brief ends: what Cursor's summary should say.
const CLOSING: &str =
    "When you finish, end with a short summary of what you changed and anything a reviewer should check.";

/// Most conversation messages turned into activities in one call; the rest are summarised.
const MESSAGES_PER_SYNC: usize = 200;

/// The `cursor-cloud` connection type.
pub struct CursorCloud;

impl Plugin for CursorCloud {
    fn manifest() -> PluginManifest {
        PluginManifest {
            config_schema: config::SCHEMA.to_owned(),
            secrets: vec![SecretSpec {
                name: "api-key".into(),
                description: "Cursor API key (cursor.com/dashboard → Integrations → API keys)".into(),
            }],
            // Loopback is listed for local fakes only: the host refuses private addresses
            // unless its operator allows them.
            outbound_hosts: vec!["api.cursor.com".into(), "127.0.0.1".into(), "localhost".into()],
            capabilities: vec![
                "session".into(),
                "kv".into(),
                "log".into(),
                "timers".into(),
                "http".into(),
                "inbound".into(),
                "follow-up".into(),
            ],
            ..PluginManifest::new(
                "cursor-cloud",
                "Cursor Cloud Agents",
                env!("CARGO_PKG_VERSION"),
                "Runs each session as a Cursor Cloud Agent on your repository; progress, the summary and \
                 the pull request show in the task history.",
            )
        }
    }

    fn validate_config(config: &Value) -> Result<(), Vec<FieldError>> {
        let parsed = Config::parse(config)?;
        // A live check when an admin validates a saved connection; denied (and skipped) while a
        // config is being saved.
        let mut errors = FieldErrors::new();
        match api::me(&parsed.api_base_url) {
            Ok(response) if response.is_success() => {}
            Ok(response) => {
                if let PluginError::InvalidConfig(fields) = api::refusal(&response, "checking the key") {
                    return Err(fields);
                }
                errors.add("", format!("Cursor answered {} when checking the key", response.status));
            }
            Err(HttpError::Denied) => {}
            Err(other) => errors.add("apiBaseUrl", format!("Cursor could not be reached: {other}")),
        }
        errors.finish()
    }

    fn start_session(start: SessionStart) -> Result<(), PluginError> {
        let config = Config::parse(&start.connection.config_json()?).map_err(PluginError::InvalidConfig)?;
        let Some(repository) = config.repository.clone() else {
            return Err(PluginError::InvalidConfig(vec![FieldError {
                field: "repository".into(),
                message: "no repository is set: the agent needs one to work in (e.g. https://github.com/acme/app)"
                    .into(),
            }]));
        };
        // A retried start must not launch a second agent.
        let agent_id = match kv::get(&agent_key(&start.session_id))? {
            Some(id) => String::from_utf8_lossy(&id).into_owned(),
            None => launch(&start, &config, &repository)?,
        };
        if !sync(&config, &start.session_id, &agent_id)? {
            timers::schedule(config.poll_seconds * 1_000, &json!({"poll": agent_id}))?;
        }
        Ok(())
    }

    fn on_event(session_ref: SessionRef, event: SessionEvent) -> Result<(), PluginError> {
        let config = Config::parse(&session_ref.connection.config_json()?).map_err(PluginError::InvalidConfig)?;
        let Some(agent_id) = kv::get(&agent_key(&session_ref.session_id))? else {
            // No agent was launched for this session: nothing to follow.
            return Ok(());
        };
        let agent_id = String::from_utf8_lossy(&agent_id).into_owned();
        match event {
            SessionEvent::InboundWebhook(_) => {
                // Verified by the host; re-read the agent rather than trusting the payload's copy.
                sync(&config, &session_ref.session_id, &agent_id)?;
            }
            SessionEvent::TimerFired(_) => match sync(&config, &session_ref.session_id, &agent_id) {
                Ok(true) => {}
                Ok(false) => {
                    timers::schedule(config.poll_seconds * 1_000, &json!({"poll": agent_id}))?;
                }
                // Cursor briefly down or rate limited: poll again later rather than fail the
                // session (the agent's own expiry ends a session Cursor forgot).
                Err(PluginError::Transient(why)) => {
                    log::warn(&format!(
                        "polling Cursor agent {agent_id} failed, will poll again: {why}"
                    ));
                    timers::schedule(config.poll_seconds * 1_000, &json!({"poll": agent_id}))?;
                }
                Err(other) => return Err(other),
            },
            SessionEvent::FollowUp(comment) => follow_up(&config, &agent_id, &comment)?,
            SessionEvent::CancelRequested(reason) => {
                let note = match api::stop(&config.api_base_url, &agent_id) {
                    Ok(()) => format!(
                        "Stopped the Cursor agent ({}).",
                        reason.as_deref().unwrap_or("canceled")
                    ),
                    Err(error) => format!("Could not stop the Cursor agent: {}", error.message()),
                };
                session::post_activity(&Activity::new(ActivityType::Log, &note).with_idempotency_key("cursor:stop"))?;
                forget(&session_ref.session_id, &agent_id)?;
            }
        }
        Ok(())
    }
}

fn agent_key(session: &str) -> String {
    format!("agent/{session}")
}

fn posted_key(agent: &str) -> String {
    format!("posted/{agent}")
}

/// Launches the agent for `start`; its id.
fn launch(start: &SessionStart, config: &Config, repository: &str) -> Result<String, PluginError> {
    let webhook_url = inbound::open(&inbound::hmac_hex(
        "X-Webhook-Signature",
        "sha256=",
        "X-Webhook-ID",
        "/id",
    ))?;
    let mut source = json!({"repository": repository});
    if let Some(git_ref) = &config.git_ref {
        source["ref"] = json!(git_ref);
    }
    let mut target = json!({"autoCreatePr": config.auto_create_pr});
    if let Some(branch) = &config.branch_name {
        target["branchName"] = json!(branch);
    }
    let mut body = json!({
        "prompt": {"text": brief::brief(start, config.guidance.as_deref(), CLOSING)},
        "source": source,
        "target": target,
        "webhook": {"url": webhook_url, "secret": inbound::GENERATED_SECRET_REFERENCE},
    });
    if let Some(model) = &config.model {
        body["model"] = json!(model);
    }
    let agent = api::launch(&config.api_base_url, &body)?;
    let id = agent["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| PluginError::Failed("Cursor launched an agent but its answer had no id".into()))?
        .to_owned();
    kv::set(&agent_key(&start.session_id), id.as_bytes())?;
    inbound::route(&id)?;
    let name = agent["name"].as_str().unwrap_or(&id);
    session::post_activity(
        &Activity::new(
            ActivityType::Action,
            &format!("Launched Cursor agent \"{name}\" on {repository}"),
        )
        .with_idempotency_key("cursor:launched"),
    )?;
    Ok(id)
}

/// Drops what this plugin kept about a session that is over, so the connection's kv state does
/// not grow with every session.
fn forget(session: &str, agent_id: &str) -> Result<(), PluginError> {
    kv::delete(&agent_key(session))?;
    kv::delete(&posted_key(agent_id))?;
    Ok(())
}

/// Brings the session up to date with the agent: new messages, status, link. Whether the agent
/// is finished (or gone); then the session's kv state is dropped.
fn sync(config: &Config, session_id: &str, agent_id: &str) -> Result<bool, PluginError> {
    let agent = api::agent(&config.api_base_url, agent_id)?;
    let messages = api::conversation(&config.api_base_url, agent_id)?;
    let posted: usize = kv::get(&posted_key(agent_id))?
        .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0);
    let fresh: Vec<_> = messages
        .iter()
        .skip(posted)
        .filter(|m| m.kind == "assistant_message" && !m.text.trim().is_empty())
        .collect();
    for message in fresh.iter().take(MESSAGES_PER_SYNC) {
        session::post_activity(
            &Activity::new(ActivityType::Thought, &message.text)
                .with_idempotency_key(format!("cursor:msg:{}", message.id)),
        )?;
    }
    if fresh.len() > MESSAGES_PER_SYNC {
        session::post(
            ActivityType::Log,
            &format!(
                "{} more messages are in the Cursor agent's conversation.",
                fresh.len() - MESSAGES_PER_SYNC
            ),
        )?;
    }
    if messages.len() > posted {
        kv::set(&posted_key(agent_id), messages.len().to_string().as_bytes())?;
    }
    let target = &agent["target"];
    let status = agent["status"].as_str().unwrap_or_default();
    match status {
        "RUNNING" => {
            link(target, false)?;
            session::set_status(SessionStatus::Running, None)?;
            Ok(false)
        }
        "FINISHED" => {
            let summary = agent["summary"]
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .unwrap_or("The Cursor agent finished.");
            session::post_activity(
                &Activity::new(ActivityType::Response, summary).with_idempotency_key("cursor:summary"),
            )?;
            link(target, true)?;
            session::set_status(SessionStatus::Done, None)?;
            forget(session_id, agent_id)?;
            Ok(true)
        }
        "ERROR" | "EXPIRED" => {
            link(target, false)?;
            let why = agent["summary"].as_str().filter(|s| !s.trim().is_empty());
            let message = match (status, why) {
                ("EXPIRED", _) => "The Cursor agent expired before it finished.".to_owned(),
                (_, Some(why)) => format!("The Cursor agent failed: {why}"),
                _ => "The Cursor agent failed.".to_owned(),
            };
            session::set_status(SessionStatus::Failed, Some(&message))?;
            forget(session_id, agent_id)?;
            Ok(true)
        }
        // CREATING (still queued) or a status this plugin does not know yet: keep polling.
        _ => Ok(false),
    }
}

/// Sets the session's link: the pull request when there is one (`prefer_pr`), else the agent's page.
fn link(target: &Value, prefer_pr: bool) -> Result<(), PluginError> {
    if prefer_pr && let Some(pr) = target["prUrl"].as_str().filter(|u| !u.is_empty()) {
        session::set_external_link(pr, "Pull request")?;
    } else if let Some(url) = target["url"].as_str().filter(|u| !u.is_empty()) {
        session::set_external_link(url, "Cursor agent")?;
    }
    Ok(())
}

/// Sends a follow-up @mention to the agent.
fn follow_up(config: &Config, agent_id: &str, comment: &Comment) -> Result<(), PluginError> {
    let text = http::defuse(&format!(
        "{} wrote on the task:\n\n{}",
        comment.author.name, comment.body
    ));
    api::follow_up(&config.api_base_url, agent_id, &text)?;
    session::post_activity(
        &Activity::new(ActivityType::Prompt, &comment.body)
            .with_idempotency_key(format!("cursor:follow-up:{}", comment.id)),
    )?;
    session::set_status(SessionStatus::Running, None)?;
    Ok(())
}

export_plugin!(CursorCloud);
