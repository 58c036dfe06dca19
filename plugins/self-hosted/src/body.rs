//! The agent-session webhook body of the wire contract (§1) and its `promptContext`.

use std::fmt::Write as _;

use leadtime_plugin_sdk::{Actor, Comment, SessionStart, Trigger};
use serde::Serialize;

use crate::config::{Config, Mode};

/// At most this many comments (the newest) are written into the prompt; the rest are counted.
const PROMPT_COMMENT_LIMIT: usize = 30;

/// The `agent_session.created` body. `webhookTimestamp` starts as the session's creation time;
/// the host stamps each attempt's time into it when it sends. The task's description — often the
/// largest text — is sent once, in `promptContext`; `context.task` carries the task's fields the
/// contract names and its metadata (a wrapper reads the raw description through the task API).
///
/// Written straight from the session's strings through typed records (the contract's field
/// order is their field order): no JSON tree is built and no text copied into one — a third of
/// the cost of building the tree and writing it out, on every session start.
pub fn webhook_body(session: &SessionStart, config: &Config) -> String {
    let task = &session.task;
    let body = Body {
        event_type: "agent_session.created",
        webhook_timestamp: &session.created_at,
        workspace_id: &session.workspace_id,
        agent_run_id: &session.session_id,
        task_id: &task.id,
        comment_id: match &session.trigger {
            Trigger::Mentioned(comment) => Some(&comment.id),
            _ => None,
        },
        context: BodyContext {
            prompt_context: prompt_context(session, config),
            task: TaskJson {
                id: &task.id,
                short_number: task.short_number,
                title: &task.title,
                status: &task.status,
                status_id: &task.status_id,
                assignee: task.assignee.as_ref().map(ActorJson::of),
                created_at: &task.created_at,
            },
            trigger: TriggerJson::of(&session.trigger),
            comments: session.comments.iter().map(CommentJson::of).collect(),
            guidance: config.guidance.as_deref().map(|instructions| Guidance { instructions }),
            bot: BotJson {
                id: &session.bot.id,
                name: &session.bot.name,
                handle: &session.bot.handle,
            },
            mode: config.mode.as_str(),
            api_base_url: &session.api_base_url,
        },
    };
    // Strings, numbers and options of them always serialize.
    serde_json::to_string(&body).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    event_type: &'static str,
    webhook_timestamp: &'a str,
    workspace_id: &'a str,
    agent_run_id: &'a str,
    task_id: &'a str,
    comment_id: Option<&'a str>,
    context: BodyContext<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BodyContext<'a> {
    prompt_context: String,
    task: TaskJson<'a>,
    trigger: TriggerJson<'a>,
    comments: Vec<CommentJson<'a>>,
    guidance: Option<Guidance<'a>>,
    bot: BotJson<'a>,
    mode: &'static str,
    api_base_url: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskJson<'a> {
    id: &'a str,
    short_number: u64,
    title: &'a str,
    status: &'a str,
    status_id: &'a str,
    assignee: Option<ActorJson<'a>>,
    created_at: &'a str,
}

#[derive(Serialize)]
struct ActorJson<'a> {
    id: &'a str,
    name: &'a str,
    kind: &'a str,
    handle: Option<&'a str>,
}

impl<'a> ActorJson<'a> {
    fn of(actor: &'a Actor) -> Self {
        Self {
            id: &actor.id,
            name: &actor.name,
            kind: &actor.kind,
            handle: actor.handle.as_deref(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommentJson<'a> {
    id: &'a str,
    author: ActorJson<'a>,
    body: &'a str,
    created_at: &'a str,
}

impl<'a> CommentJson<'a> {
    fn of(comment: &'a Comment) -> Self {
        Self {
            id: &comment.id,
            author: ActorJson::of(&comment.author),
            body: &comment.body,
            created_at: &comment.created_at,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum TriggerJson<'a> {
    Assigned {
        actor: ActorJson<'a>,
    },
    Mentioned {
        #[serde(rename = "commentId")]
        comment_id: &'a str,
        actor: ActorJson<'a>,
        comment: CommentJson<'a>,
    },
    Automation {
        rule: &'a str,
    },
}

impl<'a> TriggerJson<'a> {
    fn of(trigger: &'a Trigger) -> Self {
        match trigger {
            Trigger::Assigned(by) => Self::Assigned {
                actor: ActorJson::of(by),
            },
            Trigger::Mentioned(comment) => Self::Mentioned {
                comment_id: &comment.id,
                actor: ActorJson::of(&comment.author),
                comment: CommentJson::of(comment),
            },
            Trigger::Automation(rule) => Self::Automation { rule },
        }
    }
}

#[derive(Serialize)]
struct Guidance<'a> {
    instructions: &'a str,
}

#[derive(Serialize)]
struct BotJson<'a> {
    id: &'a str,
    name: &'a str,
    handle: &'a str,
}

/// The brief pasted verbatim into the agent's prompt: who it is, why it was called, the task, its
/// comments, the admin's guidance, and how to report back.
pub fn prompt_context(session: &SessionStart, config: &Config) -> String {
    let task = &session.task;
    let bot = &session.bot;
    let mut out = String::new();
    // `write!` to a String cannot fail; the results are ignored deliberately.
    let _ = writeln!(
        out,
        "You are {} (@{}), an AI agent working as a bot user in the Leadtime workspace \"{}\".",
        bot.name, bot.handle, session.workspace_name
    );

    out.push_str("\n## Why you were called\n");
    match &session.trigger {
        Trigger::Assigned(by) => {
            let _ = writeln!(out, "{} assigned task #{} to you.", by.name, task.short_number);
        }
        Trigger::Mentioned(comment) => {
            let _ = writeln!(
                out,
                "{} mentioned you (@{}) in a comment on task #{} (comment id {}):\n",
                comment.author.name, bot.handle, task.short_number, comment.id
            );
            out.push_str(&quote(&comment.body));
            out.push_str("\nAnswer or act on that comment.\n");
        }
        Trigger::Automation(rule) => {
            let _ = writeln!(
                out,
                "The automation \"{rule}\" started you on task #{}.",
                task.short_number
            );
        }
    }

    let _ = writeln!(out, "\n## Task #{}: {}", task.short_number, task.title);
    let _ = writeln!(out, "- Task id: {}", task.id);
    let _ = writeln!(out, "- Status: {}", task.status);
    match &task.assignee {
        Some(a) => {
            let handle = a.handle.as_deref().map(|h| format!(" (@{h})")).unwrap_or_default();
            let _ = writeln!(out, "- Assignee: {}{handle}", a.name);
        }
        None => out.push_str("- Assignee: nobody\n"),
    }
    let _ = writeln!(out, "- Created: {}", task.created_at);
    out.push_str("\n### Description\n");
    if task.description.trim().is_empty() {
        out.push_str("(no description)\n");
    } else {
        out.push_str(task.description.trim_end());
        out.push('\n');
    }

    let total = session.comments.len();
    let _ = writeln!(out, "\n## Comments ({total}, oldest first)");
    if total == 0 {
        out.push_str("(none)\n");
    }
    let skipped = total.saturating_sub(PROMPT_COMMENT_LIMIT);
    if skipped > 0 {
        let _ = writeln!(
            out,
            "({skipped} earlier comments are not shown; read them through the task API.)"
        );
    }
    for comment in &session.comments[skipped..] {
        let _ = writeln!(out, "\n**{}** at {}:", comment.author.name, comment.created_at);
        out.push_str(comment.body.trim_end());
        out.push('\n');
    }

    if let Some(guidance) = &config.guidance {
        out.push_str("\n## Guidance from your workspace\n");
        out.push_str(guidance);
        out.push('\n');
    }

    // Connectors report the session themselves (running, the prompt, the final answer, done or
    // failed), so the brief tells the agent what to do about the task, not how to run the session.
    out.push_str("\n## What to do\n");
    let _ = writeln!(
        out,
        "Work on task #{n} as asked above. This is agent session {id}: your connector reports its progress \
         and your final answer to Leadtime for you, so end with a short answer saying what you did or found.",
        n = task.short_number,
        id = session.session_id,
    );
    let base = format!("{}/public", session.api_base_url);
    let _ = writeln!(
        out,
        "Act on the task with the task tools: read it (GET {base}/tasks/{n}), comment on it \
         (POST {base}/tasks/{n}/comments with {{\"comment\": \"…\"}}), list the workspace's statuses \
         (GET {base}/tasks/statuses) and move it to one (PATCH {base}/tasks/{n} with {{\"statusId\": \"…\"}}).",
        n = task.short_number,
    );
    if config.mode == Mode::Full {
        let _ = writeln!(
            out,
            "You may also use any other operation of the public API: its OpenAPI document is at {base}/docs/json, \
             and its paths are relative to {base}."
        );
    }
    out
}

/// Markdown block quote of `text`.
fn quote(text: &str) -> String {
    text.lines().map(|line| format!("> {line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadtime_plugin_sdk::{BotInfo, ConnectionInfo, TaskSnapshot};
    use serde_json::Value;

    fn actor(name: &str) -> Actor {
        Actor {
            id: format!("usr_{name}"),
            name: name.into(),
            kind: "person".into(),
            handle: None,
        }
    }

    fn comment(id: &str, body: &str) -> Comment {
        Comment {
            id: id.into(),
            author: actor("Ada"),
            body: body.into(),
            created_at: "2026-05-23T12:00:00.000Z".into(),
        }
    }

    fn session(trigger: Trigger, comments: Vec<Comment>) -> SessionStart {
        SessionStart {
            session_id: "ses_1".into(),
            workspace_id: "ws_1".into(),
            workspace_name: "Acme".into(),
            created_at: "2026-05-23T12:00:00.000Z".into(),
            bot: BotInfo {
                id: "bot_1".into(),
                name: "Claw".into(),
                handle: "claw".into(),
            },
            connection: ConnectionInfo {
                id: "con_1".into(),
                connection_type: "self-hosted".into(),
                config: "{}".into(),
            },
            trigger,
            task: TaskSnapshot {
                id: "tsk_1".into(),
                short_number: 943,
                title: "Fix the login redirect".into(),
                description: "It loops.".into(),
                status: "To do".into(),
                status_id: "sts_1".into(),
                assignee: None,
                created_at: "2026-05-23T11:00:00.000Z".into(),
            },
            comments,
            api_base_url: "http://127.0.0.1:8080/api".into(),
        }
    }

    fn config(guidance: Option<&str>) -> Config {
        Config {
            webhook_url: "https://w.example/leadtime/webhook".into(),
            mode: Mode::Basic,
            guidance: guidance.map(Into::into),
            expose_raw_api_credential_to_agent: false,
        }
    }

    fn parsed(body: &str) -> Value {
        serde_json::from_str(body).expect("the body is JSON")
    }

    #[test]
    fn body_fields_and_their_order_stay_as_the_contract_has_them() {
        let mention = comment("cmt_2", "@claw please look");
        let mut start = session(Trigger::Mentioned(mention.clone()), vec![mention]);
        start.task.assignee = Some(actor("Claw"));
        let mut body = parsed(&webhook_body(&start, &config(Some("Be brief"))));
        // The brief has tests of its own.
        body["context"]["promptContext"] = "…".into();
        assert_eq!(
            body.to_string(),
            r#"{"eventType":"agent_session.created","webhookTimestamp":"2026-05-23T12:00:00.000Z","workspaceId":"ws_1","agentRunId":"ses_1","taskId":"tsk_1","commentId":"cmt_2","context":{"promptContext":"…","task":{"id":"tsk_1","shortNumber":943,"title":"Fix the login redirect","status":"To do","statusId":"sts_1","assignee":{"id":"usr_Claw","name":"Claw","kind":"person","handle":null},"createdAt":"2026-05-23T11:00:00.000Z"},"trigger":{"type":"mentioned","commentId":"cmt_2","actor":{"id":"usr_Ada","name":"Ada","kind":"person","handle":null},"comment":{"id":"cmt_2","author":{"id":"usr_Ada","name":"Ada","kind":"person","handle":null},"body":"@claw please look","createdAt":"2026-05-23T12:00:00.000Z"}},"comments":[{"id":"cmt_2","author":{"id":"usr_Ada","name":"Ada","kind":"person","handle":null},"body":"@claw please look","createdAt":"2026-05-23T12:00:00.000Z"}],"guidance":{"instructions":"Be brief"},"bot":{"id":"bot_1","name":"Claw","handle":"claw"},"mode":"basic","apiBaseUrl":"http://127.0.0.1:8080/api"}}"#
        );
        let automation = parsed(&webhook_body(
            &session(Trigger::Automation("triage".into()), vec![]),
            &config(None),
        ));
        assert_eq!(
            automation["context"]["trigger"].to_string(),
            r#"{"type":"automation","rule":"triage"}"#
        );
        assert!(automation["commentId"].is_null() && automation["context"]["guidance"].is_null());
    }

    #[test]
    fn body_matches_the_wire_contract() {
        let mention = comment("cmt_2", "@claw please look");
        let body = parsed(&webhook_body(
            &session(Trigger::Mentioned(mention.clone()), vec![mention]),
            &config(Some("Be brief")),
        ));
        assert_eq!(body["eventType"], "agent_session.created");
        assert_eq!(body["agentRunId"], "ses_1");
        assert_eq!(body["taskId"], "tsk_1");
        assert_eq!(body["commentId"], "cmt_2");
        assert_eq!(body["workspaceId"], "ws_1");
        assert_eq!(body["webhookTimestamp"], "2026-05-23T12:00:00.000Z");
        assert!(
            body["context"]["task"]["shortNumber"].is_u64(),
            "shortNumber must be a JSON number"
        );
        assert_eq!(body["context"]["task"]["shortNumber"], 943);
        assert_eq!(body["context"]["trigger"]["type"], "mentioned");
        assert_eq!(body["context"]["trigger"]["commentId"], "cmt_2");
        assert_eq!(body["context"]["guidance"]["instructions"], "Be brief");
        assert_eq!(body["context"]["comments"][0]["body"], "@claw please look");
        let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "eventType",
                "webhookTimestamp",
                "workspaceId",
                "agentRunId",
                "taskId",
                "commentId",
                "context"
            ]
        );
    }

    #[test]
    fn a_long_description_is_sent_once() {
        let mut start = session(Trigger::Assigned(actor("Ada")), vec![]);
        start.task.description = "A long description. ".repeat(100);
        let body = webhook_body(&start, &config(None));
        assert_eq!(
            body.matches("A long description.").count(),
            100,
            "only in promptContext"
        );
        assert!(
            body.len() < start.task.description.len() + 2_000,
            "{} bytes",
            body.len()
        );
    }

    #[test]
    fn assignment_has_null_comment_id_and_no_guidance() {
        let body = parsed(&webhook_body(
            &session(Trigger::Assigned(actor("Ada")), vec![]),
            &config(None),
        ));
        assert!(body["commentId"].is_null());
        assert!(body["context"]["guidance"].is_null());
        assert_eq!(body["context"]["trigger"]["type"], "assigned");
        assert_eq!(body["context"]["trigger"]["actor"]["name"], "Ada");
    }

    #[test]
    fn prompt_is_a_complete_brief() {
        let mention = comment("cmt_2", "@claw please look\nat the logs");
        let prompt = prompt_context(
            &session(
                Trigger::Mentioned(mention.clone()),
                vec![comment("cmt_1", "First!"), mention],
            ),
            &config(Some("Never push to main.")),
        );
        for needle in [
            "You are Claw (@claw)",
            "workspace \"Acme\"",
            "Ada mentioned you (@claw)",
            "> @claw please look\n> at the logs",
            "## Task #943: Fix the login redirect",
            "- Status: To do",
            "It loops.",
            "## Comments (2, oldest first)",
            "First!",
            "Never push to main.",
            "agent session ses_1",
            "POST http://127.0.0.1:8080/api/public/tasks/943/comments with {\"comment\": \"…\"}",
            "PATCH http://127.0.0.1:8080/api/public/tasks/943 with {\"statusId\": \"…\"}",
        ] {
            assert!(prompt.contains(needle), "prompt lacks {needle:?}:\n{prompt}");
        }
        // Connectors set the session status themselves; the brief must not ask the agent to.
        for absent in ["set the status to", "agent-sessions/", "`done`", "docs/json"] {
            assert!(!prompt.contains(absent), "prompt should not say {absent:?}:\n{prompt}");
        }
    }

    #[test]
    fn full_mode_points_at_the_openapi_document_and_its_base() {
        let mut full = config(None);
        full.mode = Mode::Full;
        let prompt = prompt_context(&session(Trigger::Assigned(actor("Ada")), vec![]), &full);
        assert!(
            prompt.contains("http://127.0.0.1:8080/api/public/docs/json")
                && prompt.contains("its paths are relative to http://127.0.0.1:8080/api/public"),
            "{prompt}"
        );
    }

    #[test]
    fn long_threads_keep_the_newest_comments() {
        let comments: Vec<Comment> = (0..40)
            .map(|i| comment(&format!("cmt_{i}"), &format!("comment number {i}")))
            .collect();
        let prompt = prompt_context(&session(Trigger::Assigned(actor("Ada")), comments), &config(None));
        assert!(prompt.contains("(10 earlier comments are not shown"));
        assert!(!prompt.contains("comment number 9\n"));
        assert!(prompt.contains("comment number 10\n") && prompt.contains("comment number 39\n"));
    }
}
