//! Built-in connection type `triage-agent`: a **native agent** — its loop runs in the host, its
//! model calls never hold an instance (the `model` capability), and it acts on tasks as its bot
//! (the `tasks` capability).
//!
//! Assigned a task (or @mentioned), it reads the task and its comments, asks the model for a plan,
//! posts a concise plan/checklist comment, moves the task to a status it is allowed to set, and
//! answers with a short summary. When the task is too vague it posts an `elicitation` asking for
//! what is missing and waits; a follow-up @mention continues with the earlier context.
//!
//! The loop is durable: each model turn and each round of tool calls is one short plugin call, the
//! conversation lives in kv, and the next step is triggered by the model's answer. A host restart
//! between any two steps resumes the session, and a step that is run again does nothing twice (a
//! comment already posted is found, not posted again).

mod config;
mod conversation;

use leadtime_plugin_sdk::model::{self, ModelRequest};
use leadtime_plugin_sdk::{
    Activity, ActivityType, Comment, FieldError, Plugin, PluginError, PluginManifest, SecretSpec, SessionEvent,
    SessionRef, SessionStart, SessionStatus, brief, export_plugin, session, tasks,
};
use serde_json::{Value, json};

pub use config::Config;
use conversation::State;

/// The `triage-agent` connection type.
pub struct TriageAgent;

/// How the brief ends: the agent's job.
const CLOSING: &str = "Triage this task: use `add_comment` once to post a concise plan as a markdown checklist \
(what to do, in order, with anything a reviewer should check); move the task with `set_status` if one of the \
allowed statuses fits; when the task is too vague to plan, call `ask_for_details` with precise questions \
instead of guessing. Finish with a one-paragraph summary of what you did.";

impl Plugin for TriageAgent {
    fn manifest() -> PluginManifest {
        PluginManifest {
            config_schema: config::SCHEMA.to_owned(),
            secrets: vec![SecretSpec {
                name: "api-key".into(),
                description: "The model API's key (Anthropic or OpenAI; a local server may need none)".into(),
            }],
            // Loopback for local model servers (vLLM, Ollama, llama.cpp) and the tests' fakes: the
            // host refuses private addresses unless its operator allows them.
            outbound_hosts: vec![
                "api.anthropic.com".into(),
                "api.openai.com".into(),
                "127.0.0.1".into(),
                "localhost".into(),
            ],
            capabilities: ["session", "kv", "log", "model", "tasks", "follow-up"]
                .map(String::from)
                .to_vec(),
            ..PluginManifest::new(
                "triage-agent",
                "Triage agent",
                env!("CARGO_PKG_VERSION"),
                "A native agent: plans each task it is given as a checklist comment, sets its status, and asks \
                 for what is missing. Runs on Anthropic's API or any OpenAI-compatible server.",
            )
        }
    }

    fn validate_config(config: &Value) -> Result<(), Vec<FieldError>> {
        Config::parse(config).map(|_| ())
    }

    fn start_session(start: SessionStart) -> Result<(), PluginError> {
        let config = Config::parse(&start.connection.config_json()?).map_err(PluginError::InvalidConfig)?;
        // A retried start finds its state and only asks again.
        let state = match State::load(&start.session_id)? {
            Some(state) => state,
            None => {
                let mut text = brief::brief(&start, config.guidance.as_deref(), CLOSING);
                if !config.allowed_statuses.is_empty() {
                    text.push_str(&format!(
                        "\nStatuses you may set: {}.\n",
                        config.allowed_statuses.join(", ")
                    ));
                }
                let state = State::new(&start.task.id, &start.bot.id, text);
                state.save(&start.session_id)?;
                state
            }
        };
        session::set_status(SessionStatus::Running, None)?;
        ask(&config, &state)
    }

    fn on_event(session_ref: SessionRef, event: SessionEvent) -> Result<(), PluginError> {
        let config = Config::parse(&session_ref.connection.config_json()?).map_err(PluginError::InvalidConfig)?;
        let id = &session_ref.session_id;
        let Some(mut state) = State::load(id)? else {
            return Ok(());
        };
        match event {
            SessionEvent::TimerFired(payload) => {
                let Some(answer) = model::answer(&payload) else {
                    return Ok(());
                };
                let reply = match answer.result {
                    Ok(reply) => reply,
                    Err(why) => {
                        State::forget(id)?;
                        session::set_status(SessionStatus::Failed, Some(&why))?;
                        return Ok(());
                    }
                };
                if state.last_answer.as_deref() != Some(answer.id.as_str()) {
                    let waiting = run_tools(&config, id, &mut state, &answer.id, &reply)?;
                    state.answered(&answer.id, &reply, waiting);
                    state.save(id)?;
                }
                if state.waiting {
                    return Ok(());
                }
                if state.awaits_model() {
                    return ask(&config, &state);
                }
                // The model is done: its text is the session's answer.
                let text = reply.text();
                let summary = if text.trim().is_empty() {
                    "Triage done."
                } else {
                    text.trim()
                };
                session::post_activity(
                    &Activity::new(ActivityType::Response, summary)
                        .with_idempotency_key(format!("triage:response:{}", answer.id)),
                )?;
                State::forget(id)?;
                session::set_status(SessionStatus::Done, None)?;
            }
            SessionEvent::FollowUp(comment) => follow_up(&config, id, &mut state, &comment)?,
            SessionEvent::CancelRequested(_) => State::forget(id)?,
            SessionEvent::InboundWebhook(_) => {}
        }
        Ok(())
    }
}

/// Asks the model for the next turn of `state`'s conversation.
fn ask(config: &Config, state: &State) -> Result<(), PluginError> {
    let request = ModelRequest {
        format: config.format,
        base_url: config.base_url.clone(),
        model: config.model.clone(),
        api_key_secret: (!config.keyless).then(|| "api-key".into()),
        system: Some(
            "You are a careful triage agent in Leadtime, a task tracker. You act through tools on the task \
             you were given; be concise."
                .into(),
        ),
        messages: state.messages_json(),
        tools: conversation::tools(config).to_string(),
        max_tokens: config.max_tokens,
    };
    model::request(&request, &json!({"turn": state.turns}))?;
    Ok(())
}

/// Runs the tool calls of `reply` (answer `answer`), each once; whether the agent now waits for a
/// person (it asked for details).
fn run_tools(
    config: &Config,
    session_id: &str,
    state: &mut State,
    answer: &str,
    reply: &model::Reply,
) -> Result<bool, PluginError> {
    let text = reply.text();
    if !text.trim().is_empty() && !reply.tool_calls().is_empty() {
        session::post_activity(
            &Activity::new(ActivityType::Thought, text.trim()).with_idempotency_key(format!("triage:thought:{answer}")),
        )?;
    }
    let mut waiting = false;
    for (call_id, name, input) in reply.tool_calls() {
        if state.results.iter().any(|(id, _, _)| *id == call_id) {
            continue;
        }
        let mut call = Activity::new(ActivityType::ToolCall, &format!("Called {name}"));
        call.action = Some(name.clone());
        call.parameter = Some(input.to_string());
        session::post_activity(&call.with_idempotency_key(format!("triage:call:{call_id}")))?;
        let (result, failed) = match run_tool(config, session_id, state, &call_id, &name, &input) {
            Ok(Outcome::Done(result)) => (result, false),
            Ok(Outcome::Asked(result)) => {
                waiting = true;
                (result, false)
            }
            Err(refused) => (refused, true),
        };
        let mut done = Activity::new(ActivityType::ToolResult, &result);
        done.result = Some(result.clone());
        session::post_activity(&done.with_idempotency_key(format!("triage:result:{call_id}")))?;
        state.results.push((call_id, result, failed));
        state.save(session_id)?;
    }
    Ok(waiting)
}

/// What a tool did.
enum Outcome {
    Done(String),
    /// It asked a person something; the agent waits for the answer.
    Asked(String),
}

/// Runs one tool call; its result for the model, or why it was refused (also for the model).
fn run_tool(
    config: &Config,
    session_id: &str,
    state: &mut State,
    call_id: &str,
    name: &str,
    input: &Value,
) -> Result<Outcome, String> {
    let arg = |field: &str| {
        input[field]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("`{field}` is required"))
    };
    match name {
        "get_task" => {
            let task = tasks::get_task(arg("task")?).map_err(|e| said(&e))?;
            Ok(Outcome::Done(conversation::clip(&task.to_string())))
        }
        "add_comment" => {
            let body = arg("comment")?.to_owned();
            // Marked before it is posted: a step run again after a crash (the mark is there)
            // looks for the comment among the bot's own and does not post it twice. A first run
            // posts, even a text the bot wrote before (the model may mean to repeat itself).
            let rerun = state.executing.as_ref().is_some_and(|(id, _)| id == call_id);
            if !rerun {
                state.executing = Some((call_id.to_owned(), body.clone()));
                state.save(session_id).map_err(|e| e.message())?;
            }
            let already = rerun && posted_before(&state.task_id, &state.bot_id, &body).map_err(|e| e.message())?;
            if !already {
                tasks::add_comment(&state.task_id, &body).map_err(|e| said(&e))?;
            }
            state.executing = None;
            Ok(Outcome::Done("Comment posted.".into()))
        }
        "set_status" => {
            let status = arg("status")?;
            if !config.may_set(status) {
                return Err(format!(
                    "you may not set `{status}`; allowed: {}",
                    if config.allowed_statuses.is_empty() {
                        "none".to_owned()
                    } else {
                        config.allowed_statuses.join(", ")
                    }
                ));
            }
            tasks::update_status(&state.task_id, status).map_err(|e| said(&e))?;
            Ok(Outcome::Done(format!("The task is now `{status}`.")))
        }
        "ask_for_details" => {
            let question = arg("question")?;
            session::post_activity(
                &Activity::new(ActivityType::Elicitation, question)
                    .with_idempotency_key(format!("triage:ask:{call_id}")),
            )
            .map_err(|e| said(&e))?;
            Ok(Outcome::Asked(
                "Asked; the answer will come as a follow-up when someone @mentions you.".into(),
            ))
        }
        other => Err(format!("there is no tool `{other}`")),
    }
}

/// Whether the bot `bot` (any bot for a state saved before the bot was kept) has a comment on
/// `task` with `body`: a step run again after it posted.
fn posted_before(task: &str, bot: &str, body: &str) -> Result<bool, PluginError> {
    let context = tasks::get_task(task)?;
    let comments = context["comments"].as_array().cloned().unwrap_or_default();
    Ok(comments.iter().any(|c| {
        let mine = if bot.is_empty() {
            c["author"]["kind"] == "bot"
        } else {
            c["author"]["id"] == bot
        };
        mine && c["body"].as_str() == Some(body)
    }))
}

/// A follow-up @mention: added to the conversation, and the model asked again (unless it is
/// already thinking: then it reads the mention with its next turn).
///
/// The state is saved last: the model request and status change take effect only when the call
/// succeeds, so a call that fails before the end leaves the saved state as it was and its retry
/// does it all again (saving first would leave a state that no longer waits and no request).
fn follow_up(config: &Config, session_id: &str, state: &mut State, comment: &Comment) -> Result<(), PluginError> {
    session::post_activity(
        &Activity::new(ActivityType::Prompt, &comment.body)
            .with_idempotency_key(format!("triage:follow-up:{}", comment.id)),
    )?;
    if state.seen_follow_ups.contains(&comment.id) {
        return Ok(());
    }
    state.seen_follow_ups.push(comment.id.clone());
    let idle = state.waiting;
    state.inbox.push(format!(
        "{} wrote on the task:\n\n{}",
        comment.author.name, comment.body
    ));
    if idle {
        state.waiting = false;
        state.flush_inbox();
        session::set_status(SessionStatus::Running, None)?;
        ask(config, state)?;
    }
    state.save(session_id)
}

/// A host refusal in words for the model (and the feed).
fn said(error: &leadtime_plugin_sdk::HostError) -> String {
    use leadtime_plugin_sdk::HostError;
    match error {
        HostError::NotAllowed(m) => format!("not allowed: {m}"),
        HostError::Invalid(m) => m.clone(),
        HostError::LimitExceeded(m) => format!("limit reached: {m}"),
        HostError::SessionClosed(m) => format!("the session is closed: {m}"),
        HostError::Unavailable(m) => format!("the host is unavailable: {m}"),
    }
}

export_plugin!(TriageAgent);
