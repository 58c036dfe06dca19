//! The built-in `claude-agent` connection type against a loopback fake of Anthropic's Managed
//! Agents API that checks every request (`utils::anthropic`): the managed agent and environment,
//! the session's vault holding a session token for the Leadtime task tools (which the test, playing
//! the agent, uses through a real MCP client), events turned into activities by polling and on
//! Anthropic's signed webhook, follow-ups, cancel, a host restart, an existing agent, and errors
//! an admin can act on. The host runs on a manual clock, so polling timers fire when the test
//! says, never after a sleep.

use leadtime_host::domain::time::{Clock, ManualClock};
use reqwest::{Method, StatusCode};
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

use crate::mcp::call_tool;
use crate::utils::anthropic::FakeAnthropic;
use crate::utils::{Api, Events, TestHost, feed, manual_clock_host};

const KEY: &str = "sk-ant-api03-test-7c1d0b8e2f4a";
const GITHUB: &str = "ghp_test_5e0c2b7d9a1f3e6c8b4d";
/// A Standard Webhooks secret as the Anthropic Console shows it.
const WHSEC: &str = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const REPOSITORY: &str = "https://github.com/acme/app";

/// A Claude bot with `config` (plus the fake's base URL and 30 s polling) and `secrets` set.
async fn claude_bot(
    admin: &Api,
    claude: &FakeAnthropic,
    handle: &str,
    config: Value,
    secrets: &[(&str, &str)],
) -> String {
    let mut config = config;
    config["apiBaseUrl"] = json!(claude.base);
    config["pollSeconds"] = json!(30);
    let (status, created) = admin
        .post(
            "/bots",
            json!({"name": handle, "handle": handle, "connection": {"type": "claude-agent", "config": config}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let bot = created["bot"]["id"].as_str().unwrap().to_owned();
    for (name, value) in secrets {
        let (status, body) = admin
            .call(
                Method::PUT,
                &format!("/bots/{bot}/secrets/{name}"),
                Some(&json!({ "value": value })),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    bot
}

/// Lets the polling timers of the next 30 s fire and waits for `session`'s.
async fn poll(host: &TestHost, clock: &ManualClock, events: &mut Events, session: &str) {
    clock.advance(30_000);
    host.app().jobs_queued.notify_one();
    events.job_finished(session, "timer").await;
}

/// A raw MCP `tools/call` with `token`; the HTTP status.
async fn mcp_status(host: &TestHost, token: &str) -> StatusCode {
    let response = reqwest::Client::new()
        .post(format!("{}/api/mcp", host.base_url))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "get_session_context", "arguments": {}}}))
        .send()
        .await
        .expect("MCP call");
    StatusCode::from_u16(response.status().as_u16()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_claude_agent_works_the_task_with_the_task_tools() {
    let (host, admin, clock, _) = manual_clock_host().await;
    let claude = FakeAnthropic::start(KEY).await;
    let config = json!({
        "repositories": [{"url": REPOSITORY, "branch": "main"}],
        "skills": [{"type": "anthropic", "skillId": "xlsx"}],
        "system": "Write plainly.",
        "guidance": "Keep comments short.",
        "webhooks": true,
    });
    let secrets = [
        ("api-key", KEY),
        ("github-token", GITHUB),
        ("webhook-signing-key", WHSEC),
    ];
    let bot = claude_bot(&admin, &claude, "claude", config, &secrets).await;
    let mut events = host.events();
    let description = "Cover the new MCP endpoint. Also paste {{secret:github-token}} here.";
    let (task, session) = admin
        .assign_new_task(&bot, "Write the release notes", description)
        .await;
    events.job_finished(&session, "start_session").await;

    // One managed agent (with the task tools and the skill), one environment, one session with
    // the repository (its token inserted by the host), and the brief as the first message.
    let mcp_url = format!("{}/api/mcp", host.base_url);
    let agents = claude.agents();
    assert_eq!(agents.len(), 1);
    let spec = &agents[0].2;
    assert_eq!(spec["name"], "Leadtime @claude");
    assert_eq!(spec["model"], "claude-sonnet-4-5");
    assert!(
        spec["system"].as_str().unwrap().ends_with("\n\nWrite plainly."),
        "{spec}"
    );
    assert_eq!(
        spec["tools"],
        json!([{"type": "agent_toolset_20260401"}, {"type": "mcp_toolset", "mcp_server_name": "leadtime"}])
    );
    assert_eq!(
        spec["mcp_servers"],
        json!([{"type": "url", "name": "leadtime", "url": mcp_url}])
    );
    assert_eq!(spec["skills"], json!([{"type": "anthropic", "skill_id": "xlsx"}]));
    assert_eq!(claude.environments().len(), 1);
    let provider = claude.sessions().remove(0);
    assert_eq!(provider.id, "sesn_01");
    assert_eq!(provider.create["agent"], json!(agents[0].0));
    assert_eq!(provider.create["environment_id"], json!(claude.environments()[0]));
    assert_eq!(
        provider.create["resources"],
        json!([{"type": "github_repository", "url": REPOSITORY, "authorization_token": GITHUB,
            "checkout": {"type": "branch", "name": "main"}}])
    );
    assert_eq!(provider.create["metadata"]["leadtime_session"], json!(session));
    let brief = provider.events[0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(provider.events[0]["type"], "user.message");
    assert!(
        brief.contains("# Write the release notes\n\nCover the new MCP endpoint.")
            && brief.contains("Keep comments short."),
        "{brief}"
    );
    // A secret reference a person wrote in the task travels as text, never as the secret.
    assert!(
        brief.contains("Also paste {{ secret:github-token}} here.") && !brief.contains(GITHUB),
        "{brief}"
    );
    let credentials = claude.credentials_of(&provider.id);
    assert_eq!(credentials.len(), 1);
    assert_eq!(credentials[0].mcp_server_url, mcp_url);
    let token = credentials[0].token.clone();
    assert!(token.starts_with(&format!("lt_ses_{session}_")), "{token}");
    let queued = admin.session_card(&session).await;
    assert_eq!(queued["status"], "queued", "created, no agent event yet: {queued}");
    assert_eq!(
        feed(&queued),
        [("action".to_owned(), "Started Claude session sesn_01".to_owned())]
    );

    // Playing the agent: a real MCP client with the vault's token reads its session and comments
    // as the bot — the token is bound to this session, no `agentRunId` needed.
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(mcp_url.clone()).auth_header(token.clone()),
    );
    let client = ().serve(transport).await.expect("the MCP handshake");
    let (failed, _, text) = call_tool(&client, "get_session_context", json!({})).await;
    assert!(!failed && text.contains("Write the release notes"), "{text}");
    let (failed, _, text) = call_tool(
        &client,
        "add_comment",
        json!({"task": task, "comment": "Drafting the notes now."}),
    )
    .await;
    assert!(!failed, "{text}");
    let (failed, _, text) = call_tool(
        &client,
        "get_session_context",
        json!({"agentRunId": "ses_someone_else"}),
    )
    .await;
    assert!(failed && text.contains("may act for it alone"), "{text}");
    let comments = admin.get(&format!("/tasks/{task}/comments")).await.1;
    let last = comments["comments"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["body"], "Drafting the notes now.");
    assert_eq!(last["author"]["id"], json!(bot), "{last}");
    client.cancel().await.ok();

    // A second task for the bot: a session of its own on the same agent and environment, with a
    // token of its own; neither token may act for the other session, by header or by path.
    let (_, second) = admin.assign_new_task(&bot, "Tag the release", "").await;
    events.job_finished(&second, "start_session").await;
    assert_eq!(claude.agents().len(), 1);
    assert_eq!(claude.requests("POST", "/v1/agents").len(), 1);
    assert_eq!(claude.environments().len(), 1);
    let second_token = claude.credentials_of("sesn_02")[0].token.clone();
    assert!(second_token.starts_with(&format!("lt_ses_{second}_")));
    let refused = reqwest::Client::new()
        .get(format!("{}/api/public/agent-sessions/{session}", host.base_url))
        .bearer_auth(&second_token)
        .header("Leadtime-Agent-Run-Id", session.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let body: Value = refused.json().await.unwrap();
    assert!(body.to_string().contains("may act for it alone"), "{body}");
    let refused = reqwest::Client::new()
        .post(format!(
            "{}/api/public/agent-sessions/{second}/activities",
            host.base_url
        ))
        .bearer_auth(&token)
        .json(&json!({"activityType": "response", "body": "Not my session"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403, "{}", refused.text().await.unwrap());

    // Progress by polling: each event once, as its activity.
    claude.emit(
        &provider.id,
        vec![
            json!({"type": "session.status_running"}),
            json!({"type": "agent.thinking"}),
            json!({"type": "agent.mcp_tool_use", "name": "add_comment", "mcp_server_name": "leadtime",
                "input": {"task": task, "comment": "Drafting the notes now."}}),
            json!({"type": "agent.mcp_tool_result", "mcp_tool_use_id": "sevt_0003",
                "content": [{"type": "text", "text": "Commented."}]}),
        ],
    );
    poll(&host, &clock, &mut events, &session).await;
    let running = admin.session_card(&session).await;
    assert_eq!(running["status"], "running", "{running}");
    poll(&host, &clock, &mut events, &session).await;
    assert_eq!(
        feed(&admin.session_card(&session).await).len(),
        4,
        "nothing posted twice"
    );

    // The agent answers and goes idle; Anthropic's webhook says so: a forged one is refused,
    // the real one finishes the session, its redelivery changes nothing.
    claude.emit(
        &provider.id,
        vec![
            json!({"type": "agent.message", "content": [{"type": "text", "text": "Release notes drafted in the task."}]}),
            json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}}),
        ],
    );
    let (_, endpoint) = admin.get(&format!("/bots/{bot}/provider-webhooks")).await;
    let url = endpoint["url"].as_str().expect("the endpoint is open").to_owned();
    let now = clock.now().millis() / 1000;
    let forged = "whsec_Zm9yZ2VkZm9yZ2VkZm9yZ2VkZm9yZ2VkZm9yZ2Vk";
    assert_eq!(
        claude
            .send_webhook(&url, &provider.id, "session.status_idled", "msg_1", forged, now)
            .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        claude
            .send_webhook(&url, &provider.id, "session.status_idled", "msg_1", WHSEC, now)
            .await,
        StatusCode::ACCEPTED
    );
    events.job_finished(&session, "session_event").await;
    assert_eq!(
        claude
            .send_webhook(&url, &provider.id, "session.status_idled", "msg_1", WHSEC, now)
            .await,
        StatusCode::OK
    );
    let done = admin.session_card(&session).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["result"], "Release notes drafted in the task.");
    assert_eq!(
        feed(&done),
        [
            ("action", "Started Claude session sesn_01"),
            ("thought", "Thinking…"),
            ("toolCall", "Called leadtime.add_comment"),
            ("toolResult", "Commented."),
            ("response", "Release notes drafted in the task."),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // The session is over: its credential is deleted, its token no longer works, and only the
    // bot's agent and environment stay in kv.
    assert!(claude.credentials_of(&provider.id)[0].deleted);
    assert_eq!(
        host.count("plugin_kv").await,
        4,
        "agent, agent-spec, environment, the second session"
    );
    assert_eq!(mcp_status(&host, &token).await, StatusCode::GONE);

    // The second session still runs: its token still works.
    assert_eq!(mcp_status(&host, &second_token).await, StatusCode::OK);

    assert_eq!(claude.violations(), Vec::<String>::new());
    assert_eq!(claude.unauthorized(), 0);
    host.assert_absent_from_database(&[KEY.to_owned(), GITHUB.to_owned(), token])
        .await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_agent_survives_a_restart_takes_follow_ups_and_is_interrupted() {
    let (mut host, _, clock, admin_token) = manual_clock_host().await;
    let admin = host.api(&admin_token);
    let claude = FakeAnthropic::start(KEY).await;
    let (agent, environment) = claude.seed();
    let config = json!({"mode": "existing", "agentId": agent, "agentVersion": 2, "environmentId": environment});
    let bot = claude_bot(&admin, &claude, "claude", config, &[("api-key", KEY)]).await;
    let (_, result) = admin.post(&format!("/bots/{bot}/validate-connection"), json!({})).await;
    assert_eq!(result, json!({"ok": true, "fieldErrors": []}));
    let mut events = host.events();
    let (task, session) = admin.assign_new_task(&bot, "Triage the crash reports", "").await;
    events.job_finished(&session, "start_session").await;
    assert_eq!(
        claude.requests("POST", "/v1/agents").len(),
        0,
        "an existing agent is not redefined"
    );
    let provider = claude.sessions().remove(0);
    assert_eq!(
        provider.create["agent"],
        json!({"type": "agent", "id": agent, "version": 2})
    );
    assert_eq!(provider.create["environment_id"], json!(environment));
    assert_eq!(claude.credentials_of(&provider.id).len(), 1, "the task tools' token");

    // A restart, and events that arrive with no webhook: polling picks up where it was.
    host.restart().await;
    let admin = host.api(&admin_token);
    let mut events = host.events();
    let mut burst = vec![json!({"type": "session.status_running"})];
    burst.extend((0..120).map(|n| json!({"type": "agent.tool_use", "name": format!("step_{n}"), "input": {}})));
    claude.emit(&provider.id, burst);
    poll(&host, &clock, &mut events, &session).await;
    let running = admin.session_card(&session).await;
    assert_eq!(running["status"], "running");
    // Read over short pages (the fake serves 50 at most), each event once.
    assert_eq!(
        feed(&running).iter().filter(|(kind, _)| kind == "toolCall").count(),
        120
    );
    poll(&host, &clock, &mut events, &session).await;
    assert_eq!(feed(&admin.session_card(&session).await).len(), feed(&running).len());

    // A follow-up @mention is sent as a new user message; an idle from before it does not end
    // the session.
    let (_, comment) = admin
        .post(
            &format!("/tasks/{task}/comments"),
            json!({"comment": "@claude also check last week's reports"}),
        )
        .await;
    assert_eq!(comment["followedUpSessionIds"], json!([session]), "{comment}");
    events.job_finished(&session, "session_event").await;
    let messages = claude.session(&provider.id).events;
    let follow_up = messages.last().unwrap();
    assert_eq!(follow_up["type"], "user.message");
    assert!(
        follow_up["content"][0]["text"]
            .as_str()
            .unwrap()
            .ends_with("wrote on the task:\n\n@claude also check last week's reports")
    );
    claude.emit(
        &provider.id,
        vec![json!({"type": "session.status_idle", "stop_reason": {"type": "end_turn"}})],
    );
    // (The fake orders this idle after the follow-up; one from before it is covered by the
    // phase rule: a later user.message reopens the turn.)
    poll(&host, &clock, &mut events, &session).await;
    let after = admin.session_card(&session).await;
    assert_eq!(after["status"], "done", "{after}");
    assert!(feed(&after).contains(&("prompt".to_owned(), "@claude also check last week's reports".to_owned())));

    // Another session, canceled mid-run: the agent is interrupted and the token revoked.
    let (task, session) = admin.assign_new_task(&bot, "Second task", "").await;
    events.job_finished(&session, "start_session").await;
    let provider = claude.sessions().remove(1);
    claude.emit(&provider.id, vec![json!({"type": "session.status_running"})]);
    poll(&host, &clock, &mut events, &session).await;
    admin
        .patch(&format!("/tasks/{task}"), json!({"assigneeId": null}))
        .await;
    events.job_finished(&session, "session_event").await;
    let last = claude.session(&provider.id).events.last().unwrap().clone();
    assert_eq!(last["type"], "user.interrupt");
    let canceled = admin.session_card(&session).await;
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    assert!(
        feed(&canceled)
            .iter()
            .any(|(kind, body)| kind == "log" && body.starts_with("Interrupted the Claude session"))
    );
    let credential = claude.credentials_of(&provider.id).remove(0);
    assert!(credential.deleted);
    assert_eq!(mcp_status(&host, &credential.token).await, StatusCode::GONE);
    assert_eq!(claude.violations(), Vec::<String>::new());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_tell_the_admin_what_to_do() {
    let (host, admin, clock, _) = manual_clock_host().await;
    let claude = FakeAnthropic::start(KEY).await;

    // Validate connection: no key, a wrong key, the right key; an existing agent that is not there.
    let bot = claude_bot(&admin, &claude, "claude", json!({}), &[]).await;
    let validate = format!("/bots/{bot}/validate-connection");
    let (_, result) = admin.post(&validate, json!({})).await;
    assert_eq!(result["ok"], false);
    assert!(
        result["fieldErrors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("secret `api-key`, which is not set"),
        "{result}"
    );
    let secret = format!("/bots/{bot}/secrets/api-key");
    admin
        .call(
            Method::PUT,
            &secret,
            Some(&json!({"value": "sk-ant-wrong-000000000000"})),
        )
        .await;
    let (_, result) = admin.post(&validate, json!({})).await;
    assert_eq!(result["fieldErrors"][0]["field"], "api-key", "{result}");
    assert!(
        result["fieldErrors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Anthropic rejected the API key"),
        "{result}"
    );
    assert_eq!(claude.unauthorized(), 1);
    admin.call(Method::PUT, &secret, Some(&json!({ "value": KEY }))).await;
    let (_, result) = admin.post(&validate, json!({})).await;
    assert_eq!(result, json!({"ok": true, "fieldErrors": []}));
    let existing = claude_bot(
        &admin,
        &claude,
        "existing",
        json!({"mode": "existing", "agentId": "agent_gone", "environmentId": "env_gone"}),
        &[("api-key", KEY)],
    )
    .await;
    let (_, result) = admin
        .post(&format!("/bots/{existing}/validate-connection"), json!({}))
        .await;
    let fields: Vec<&str> = result["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["agentId", "environmentId"], "{result}");

    // A model Anthropic refuses fails the session with Anthropic's words.
    let mut events = host.events();
    claude.fail_sessions(
        1,
        400,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "model: unknown model"}}),
    );
    let (_, session) = admin.assign_new_task(&bot, "Task one", "").await;
    events.job_finished(&session, "start_session").await;
    let failed = admin.session_card(&session).await;
    assert_eq!(failed["status"], "failed");
    let message = failed["statusMessage"].as_str().unwrap();
    assert!(
        message.contains("Anthropic refused creating the session (400): model: unknown model"),
        "{message}"
    );
    // The failed start cleaned up after itself: its vault credential is deleted, its state dropped.
    assert!(claude.credentials()[0].deleted, "{:?}", claude.credentials());
    assert_eq!(host.count("plugin_kv").await, 3, "agent, agent-spec, environment");

    // Anthropic overloaded: the start is retried later and creates exactly one session, reusing
    // the vault and credential the first attempt made.
    claude.fail_sessions(
        1,
        529,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    );
    let (_, session) = admin.assign_new_task(&bot, "Task two", "").await;
    events.job_finished(&session, "start_session").await;
    assert_eq!(admin.session_card(&session).await["status"], "queued");
    clock.advance(2_000);
    host.app().jobs_queued.notify_one();
    events.job_finished(&session, "start_session").await;
    assert_eq!(claude.sessions().len(), 1);
    assert_eq!(
        claude.requests("POST", "/v1/vaults").len(),
        2,
        "one per session, none twice"
    );

    // The managed agent was deleted in the Console: the next session makes it again.
    claude.lose_agents();
    let (_, session) = admin.assign_new_task(&bot, "Task three", "").await;
    events.job_finished(&session, "start_session").await;
    assert_eq!(admin.session_card(&session).await["status"], "queued");
    assert_eq!(claude.requests("POST", "/v1/agents").len(), 2);
    assert_eq!(claude.sessions().len(), 2);
    assert_eq!(claude.violations(), Vec::<String>::new());
    host.stop().await;
}
