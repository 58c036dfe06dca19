//! Native agents: the built-in `triage-agent` plugin runs its loop in the host — each model turn a
//! job the host performs outside any instance (`model` capability), each tool round one short
//! plugin call acting as the bot (`tasks` capability) — against a loopback fake of both model APIs
//! that checks every request (`utils::models`). The host runs on a manual clock, so retries fire
//! when the test says.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::utils::models::{FakeModel, Turn};
use crate::utils::{Api, Events, TestHost, feed, manual_clock_host};

const KEY: &str = "sk-model-test-3f9a2c7e1b5d";

/// A triage bot on `model` (`provider` anthropic or openai) with the key set; its id.
async fn triage_bot(admin: &Api, model: &FakeModel, provider: &str, extra: Value) -> String {
    let mut connection = json!({"type": "triage-agent", "config": {
        "provider": provider, "baseUrl": model.base, "model": "test-model-1",
        "allowedStatuses": ["In progress"], "guidance": "Keep plans to five steps."}});
    if let Some(object) = extra.as_object() {
        for (k, v) in object {
            connection[k] = v.clone();
        }
    }
    let (status, created) = admin
        .post(
            "/bots",
            json!({"name": "Triage", "handle": "triage", "connection": connection}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let bot = created["bot"]["id"].as_str().unwrap().to_owned();
    let (status, body) = admin
        .call(
            Method::PUT,
            &format!("/bots/{bot}/secrets/api-key"),
            Some(&json!({ "value": KEY })),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    bot
}

/// Waits for one model turn of `session`: the request, then the plugin's handling of the answer.
async fn turn(events: &mut Events, session: &str) {
    events.job_finished(session, "model_call").await;
    events.job_finished(session, "timer").await;
}

fn kinds(card: &Value) -> Vec<String> {
    feed(card).into_iter().map(|(kind, _)| kind).collect()
}

async fn comments(admin: &Api, task: &str) -> Vec<Value> {
    admin.get(&format!("/tasks/{task}/comments")).await.1["comments"]
        .as_array()
        .unwrap()
        .clone()
}

const PLAN: &str = "- [ ] Reproduce on the login page\n- [ ] Bind the click handler\n- [ ] Add a regression test";

/// A full triage session on `provider`: plan comment, status, summary, usage.
async fn full_session(provider: &str) {
    let (host, admin, _, _) = manual_clock_host().await;
    let model = FakeModel::start(Some(KEY)).await;
    let bot = triage_bot(&admin, &model, provider, json!({})).await;
    model.script(vec![
        Turn::Tools(
            Some("The button has no handler; planning the fix."),
            vec![
                ("add_comment", json!({"comment": PLAN})),
                ("set_status", json!({"status": "In progress"})),
            ],
        ),
        Turn::Text("Planned the fix in three steps and moved the task to In progress."),
    ]);
    let mut events = host.events();
    let (task, session) = admin
        .assign_new_task(&bot, "Fix the login button", "Clicking it does nothing.")
        .await;
    events.job_finished(&session, "start_session").await;
    turn(&mut events, &session).await;
    turn(&mut events, &session).await;

    let done = admin.session_card(&session).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(
        done["result"],
        "Planned the fix in three steps and moved the task to In progress."
    );
    assert_eq!(
        kinds(&done),
        [
            "modelRequest",
            "modelResponse",
            "thought",
            "toolCall",
            "toolResult",
            "toolCall",
            "toolResult",
            "modelRequest",
            "modelResponse",
            "response"
        ],
        "{done}"
    );
    assert!(
        feed(&done)[1].1.contains("(tool_use; 120 input and 30 output tokens)"),
        "{:?}",
        feed(&done)
    );
    // The comment and the status were made by the bot, through the same rules as its REST calls.
    let comments = comments(&admin, &task).await;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["body"], PLAN);
    assert_eq!(comments[0]["author"]["id"], json!(bot));
    let (_, task_view) = admin.get(&format!("/tasks/{task}")).await;
    assert_eq!(task_view["status"]["name"], "In progress", "{task_view}");
    // The model saw the task, the guidance and the tools; its second turn got both results.
    let calls = model.calls();
    assert_eq!(calls.len(), 2);
    let path = if provider == "anthropic" {
        "/v1/messages"
    } else {
        "/v1/chat/completions"
    };
    assert!(calls.iter().all(|c| c.path == path));
    let first = calls[0].body.to_string();
    assert!(
        first.contains("Clicking it does nothing.") && first.contains("Keep plans to five steps."),
        "{first}"
    );
    assert!(
        first.contains("set_status") && first.contains("ask_for_details"),
        "{first}"
    );
    let second = calls[1].body.to_string();
    assert!(
        second.contains("Comment posted.") && second.contains("The task is now `In progress`."),
        "{second}"
    );
    assert_eq!(host.count("session_model_usage").await, 1);
    assert_eq!(host.count("plugin_kv").await, 0, "a finished session leaves no state");
    assert_eq!(model.violations(), Vec::<String>::new());
    host.assert_absent_from_database(&[KEY.to_owned()]).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triage_session_plans_the_task_as_its_bot_over_the_anthropic_api() {
    full_session("anthropic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_agent_runs_over_an_openai_compatible_server() {
    full_session("openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vague_task_gets_questions_and_a_follow_up_continues_the_conversation() {
    let (host, admin, _, _) = manual_clock_host().await;
    let model = FakeModel::start(Some(KEY)).await;
    let bot = triage_bot(&admin, &model, "anthropic", json!({})).await;
    model.script(vec![Turn::Tools(
        None,
        vec![(
            "ask_for_details",
            json!({"question": "Which app is slow: web or iOS? Since when?"}),
        )],
    )]);
    let mut events = host.events();
    let (task, session) = admin.assign_new_task(&bot, "It is slow", "").await;
    events.job_finished(&session, "start_session").await;
    turn(&mut events, &session).await;
    let waiting = admin.session_card(&session).await;
    assert_eq!(waiting["status"], "running", "it waits for an answer: {waiting}");
    assert!(feed(&waiting).contains(&(
        "elicitation".to_owned(),
        "Which app is slow: web or iOS? Since when?".to_owned()
    )));
    assert_eq!(model.calls().len(), 1, "no model call while it waits");

    model.script(vec![Turn::Text("It is the iOS app since 2.3; planned accordingly.")]);
    let (_, comment) = admin
        .post(
            &format!("/tasks/{task}/comments"),
            json!({"comment": "@triage the iOS app, since version 2.3"}),
        )
        .await;
    assert_eq!(comment["followedUpSessionIds"], json!([session]), "{comment}");
    events.job_finished(&session, "session_event").await;
    turn(&mut events, &session).await;
    let done = admin.session_card(&session).await;
    assert_eq!(done["status"], "done", "{done}");
    // The second turn carried the whole conversation: the brief, the question and the answer.
    let second = model.calls()[1].body.to_string();
    assert!(
        second.contains("It is slow") && second.contains("Which app is slow") && second.contains("since version 2.3"),
        "{second}"
    );
    assert_eq!(model.violations(), Vec::<String>::new());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_budget_fails_the_session_and_names_it() {
    let (host, admin, _, _) = manual_clock_host().await;
    let model = FakeModel::start(Some(KEY)).await;
    let bot = triage_bot(&admin, &model, "anthropic", json!({"budgets": {"modelCalls": 2}})).await;
    let (_, view) = admin.get(&format!("/bots/{bot}")).await;
    assert_eq!(view["connection"]["budgets"]["modelCalls"], 2, "{view}");
    let (status, refused) = admin
        .patch(
            &format!("/bots/{bot}"),
            json!({"connection": {"budgets": {"modelCalls": 0}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(refused.to_string().contains("modelCalls"), "{refused}");
    model.script(vec![
        Turn::Tools(None, vec![("add_comment", json!({"comment": "First step planned."}))]),
        Turn::Tools(None, vec![("get_task", json!({"task": "1"}))]),
    ]);
    let mut events = host.events();
    let (task, session) = admin.assign_new_task(&bot, "A long one", "Many steps.").await;
    events.job_finished(&session, "start_session").await;
    turn(&mut events, &session).await;
    turn(&mut events, &session).await;
    events.job_finished(&session, "model_call").await;
    let failed = admin.session_card(&session).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["statusMessage"]
            .as_str()
            .unwrap()
            .contains("budget `modelCalls`"),
        "{failed}"
    );
    assert_eq!(model.calls().len(), 2, "the third call was never sent");
    assert_eq!(
        comments(&admin, &task).await.len(),
        1,
        "what was done stays, nothing half-written"
    );
    // The plugin is told (a cancel) and drops the session's conversation from kv.
    events.job_finished(&session, "session_event").await;
    assert_eq!(
        host.count("plugin_kv").await,
        0,
        "the failed session's state is dropped"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_attempt_counts_against_the_model_calls_budget() {
    let (host, admin, clock, _) = manual_clock_host().await;
    let model = FakeModel::start(Some(KEY)).await;
    let bot = triage_bot(&admin, &model, "anthropic", json!({"budgets": {"modelCalls": 2}})).await;
    model.script(vec![
        Turn::Error(
            429,
            Some(2),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
        ),
        Turn::Tools(None, vec![("add_comment", json!({"comment": PLAN}))]),
    ]);
    let mut events = host.events();
    let (task, session) = admin.assign_new_task(&bot, "Fix the login button", "").await;
    events.job_finished(&session, "start_session").await;
    events.job_finished(&session, "model_call").await;
    clock.advance(2_000);
    host.app().jobs_queued.notify_one();
    turn(&mut events, &session).await;
    // Two attempts were sent (one answered 429): the next request is over the budget.
    events.job_finished(&session, "model_call").await;
    let failed = admin.session_card(&session).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["statusMessage"]
            .as_str()
            .unwrap()
            .contains("budget `modelCalls`"),
        "{failed}"
    );
    assert_eq!(model.calls().len(), 2);
    assert_eq!(comments(&admin, &task).await.len(), 1);
    assert_eq!(model.violations(), Vec::<String>::new());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_budget_stops_the_loop_between_steps() {
    let (host, admin, _, _) = manual_clock_host().await;
    let model = FakeModel::start(Some(KEY)).await;
    let bot = triage_bot(&admin, &model, "anthropic", json!({"budgets": {"steps": 2}})).await;
    let (_, view) = admin.get(&format!("/bots/{bot}")).await;
    assert_eq!(view["connection"]["budgets"]["steps"], 2, "{view}");
    model.script(vec![
        Turn::Tools(None, vec![("add_comment", json!({"comment": PLAN}))]),
        Turn::Tools(None, vec![("get_task", json!({"task": "1"}))]),
    ]);
    let mut events = host.events();
    let (task, session) = admin.assign_new_task(&bot, "Fix the login button", "").await;
    // Step 1: the start; step 2: the first answer (comment, next request).
    events.job_finished(&session, "start_session").await;
    turn(&mut events, &session).await;
    // The second answer would be step 3: the session fails before the plugin sees it.
    turn(&mut events, &session).await;
    let failed = admin.session_card(&session).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["statusMessage"].as_str().unwrap().contains("budget `steps`"),
        "{failed}"
    );
    assert_eq!(
        kinds(&failed).iter().filter(|k| *k == "toolCall").count(),
        1,
        "the third step's tool never ran: {failed}"
    );
    assert_eq!(comments(&admin, &task).await.len(), 1);
    events.job_finished(&session, "session_event").await;
    assert_eq!(
        host.count("plugin_kv").await,
        0,
        "the failed session's state is dropped"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_steps_resumes_without_doing_anything_twice() {
    let (mut host, _, clock, token) = manual_clock_host().await;
    let admin = host.api(&token);
    let model = FakeModel::start(Some(KEY)).await;
    let bot = triage_bot(&admin, &model, "anthropic", json!({})).await;
    model.script(vec![
        Turn::Tools(None, vec![("add_comment", json!({"comment": PLAN}))]),
        Turn::Error(
            529,
            Some(5),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ),
        Turn::Text("Planned."),
    ]);
    let mut events = host.events();
    let (task, session) = admin.assign_new_task(&bot, "Fix the login button", "").await;
    events.job_finished(&session, "start_session").await;
    turn(&mut events, &session).await;
    // The comment is posted; the second model call was answered "overloaded" and waits as a row
    // for its retry: restart now.
    events.job_finished(&session, "model_call").await;
    host.restart().await;
    let admin = host.api(&token);
    let mut events = host.events();
    clock.advance(5_000);
    host.app().jobs_queued.notify_one();
    turn(&mut events, &session).await;
    assert_eq!(admin.session_card(&session).await["status"], "done");
    assert_eq!(comments(&admin, &task).await.len(), 1, "no duplicate comment");
    assert_eq!(model.calls().len(), 3);
    assert_eq!(model.violations(), Vec::<String>::new());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_model_is_retried_and_model_errors_fail_with_a_reason() {
    let (host, admin, clock, _) = manual_clock_host().await;
    let model = FakeModel::start(Some(KEY)).await;
    let bot = triage_bot(&admin, &model, "anthropic", json!({})).await;
    let mut events = host.events();

    // 429 with Retry-After: the request waits as a row and is sent again, once recorded.
    model.script(vec![
        Turn::Error(
            429,
            Some(3),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
        ),
        Turn::Text("Planned."),
    ]);
    let (_, session) = admin.assign_new_task(&bot, "Task one", "").await;
    events.job_finished(&session, "start_session").await;
    events.job_finished(&session, "model_call").await;
    assert_eq!(model.calls().len(), 1, "the first attempt was answered 429");
    clock.advance(3_000);
    host.app().jobs_queued.notify_one();
    turn(&mut events, &session).await;
    let done = admin.session_card(&session).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(model.calls().len(), 2);
    assert_eq!(
        kinds(&done).iter().filter(|k| *k == "modelRequest").count(),
        1,
        "one request, however often it was sent"
    );

    // A refused request and a malformed answer fail the session with a readable reason.
    for (answer, reason) in [
        (
            Turn::Error(
                400,
                None,
                json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}),
            ),
            "The Anthropic API refused the request (400): max_tokens: too large",
        ),
        (
            Turn::Raw("{\"content\": \"not a list\""),
            "the model's answer is not JSON",
        ),
    ] {
        model.script(vec![answer]);
        let (_, session) = admin.assign_new_task(&bot, "Task", "").await;
        events.job_finished(&session, "start_session").await;
        turn(&mut events, &session).await;
        let failed = admin.session_card(&session).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert!(failed["statusMessage"].as_str().unwrap().contains(reason), "{failed}");
    }
    // The host is fine.
    let (status, _) = admin.get("/bots").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(model.violations(), Vec::<String>::new());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_it_may_not_use_and_another_workspaces_task_are_refused() {
    let (host, admin, _, _) = manual_clock_host().await;
    let model = FakeModel::start(Some(KEY)).await;
    let other = host.api(&host.bootstrap("Other").await.admin_token);
    let foreign = other.create_task("Their secret plan").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A tool call on another workspace's task: refused as not found, and the model is told.
    let bot = triage_bot(&admin, &model, "anthropic", json!({})).await;
    model.script(vec![
        Turn::Tools(None, vec![("get_task", json!({"task": foreign}))]),
        Turn::Text("Could not read it."),
    ]);
    let mut events = host.events();
    let (_, session) = admin.assign_new_task(&bot, "Compare with theirs", "").await;
    events.job_finished(&session, "start_session").await;
    turn(&mut events, &session).await;
    turn(&mut events, &session).await;
    let second = model.calls()[1].body.clone();
    let result = second["messages"][2]["content"][0].clone();
    assert_eq!(result["is_error"], true, "{second}");
    assert!(
        result["content"].as_str().unwrap().contains("in this workspace"),
        "refused as the REST call would be: {result}"
    );
    assert!(!second.to_string().contains("Their secret plan"));

    // A model host outside the plugin's manifest: the request is refused before it is queued.
    let (status, _) = admin
        .patch(
            &format!("/bots/{bot}"),
            json!({"connection": {"config": {"provider": "anthropic", "baseUrl": "https://models.example.net", "model": "m"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, session) = admin.assign_new_task(&bot, "Another", "").await;
    events.job_finished(&session, "start_session").await;
    let failed = admin.session_card(&session).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["statusMessage"]
            .as_str()
            .unwrap()
            .contains("model host `models.example.net` is not among the plugin's outbound hosts"),
        "{failed}"
    );
    assert_eq!(model.violations(), Vec::<String>::new());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_waiting_on_a_hung_model_are_rows_and_the_api_keeps_answering() {
    // The system clock: requests waiting for a free slot are put back for 200 ms at a time.
    let host = TestHost::start_with(|config| config.outbound.allow_private_targets = true, None).await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let model = FakeModel::start(Some(KEY)).await;
    let bot = triage_bot(&admin, &model, "anthropic", json!({})).await;
    model.hold();
    const SESSIONS: usize = 60;
    model.script((0..SESSIONS).map(|_| Turn::Text("Done.")).collect());
    let mut events = host.events();
    let mut sessions = Vec::new();
    for n in 0..SESSIONS {
        sessions.push(admin.assign_new_task(&bot, &format!("Task {n}"), "").await.1);
    }
    for session in &sessions {
        events.job_finished(session, "start_session").await;
    }
    // At most 32 requests are sent at once; the others wait as rows.
    model.wait_for_requests(32).await;
    let started = std::time::Instant::now();
    let (status, _) = admin.get("/bots").await;
    assert_eq!(status, StatusCode::OK);
    let answered_in = started.elapsed();
    assert_eq!(
        host.count("jobs").await as usize,
        SESSIONS,
        "one model-call row per session"
    );
    assert!(
        model.max_in_flight() <= 32,
        "{} requests held at once",
        model.max_in_flight()
    );
    model.release();
    for session in &sessions {
        turn(&mut events, session).await;
    }
    assert_eq!(model.calls().len(), SESSIONS);
    assert!(
        model.max_in_flight() <= 32,
        "{} requests held at once",
        model.max_in_flight()
    );
    println!("API answered in {answered_in:?} while {SESSIONS} sessions waited on a hung model");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_requests_to_private_addresses_and_keys_over_plain_http_are_refused() {
    // Private targets not allowed (the production default): loopback is refused at send time,
    // before anything reaches it, even though the manifest lists 127.0.0.1.
    let host = TestHost::start_with(|config| config.outbound.allow_private_targets = false, None).await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let model = FakeModel::start(Some(KEY)).await;
    let bot = triage_bot(&admin, &model, "openai", json!({})).await;
    let mut events = host.events();
    let (_, session) = admin.assign_new_task(&bot, "Anything", "").await;
    events.job_finished(&session, "start_session").await;
    turn(&mut events, &session).await;
    let failed = admin.session_card(&session).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["statusMessage"]
            .as_str()
            .unwrap()
            .contains("the model's address is not allowed"),
        "{failed}"
    );
    assert!(model.calls().is_empty(), "nothing reached the loopback server");

    // A key never goes over plain http to a host on the internet.
    let (status, body) = admin
        .patch(
            &format!("/bots/{bot}"),
            json!({"connection": {"config": {"provider": "openai", "baseUrl": "http://api.openai.com", "model": "gpt-4.1-mini"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, session) = admin.assign_new_task(&bot, "Anything else", "").await;
    events.job_finished(&session, "start_session").await;
    turn(&mut events, &session).await;
    let failed = admin.session_card(&session).await;
    assert!(
        failed["statusMessage"]
            .as_str()
            .unwrap()
            .contains("the API key is only sent over https"),
        "{failed}"
    );
    host.assert_absent_from_database(&[KEY.to_owned()]).await;
    host.stop().await;
}
