//! The built-in `cursor-cloud` connection type against a loopback fake of Cursor's API v0 that
//! checks every request (`utils::cursor`): launch, progress by polling and by Cursor's signed
//! webhook, the summary and pull request, follow-ups, cancel, errors an admin can act on, and a
//! host restart mid-session. The host runs on a manual clock, so polling timers fire when the
//! test says, never after a sleep.

use leadtime_host::domain::time::ManualClock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::utils::cursor::FakeCursor;
use crate::utils::{Api, Events, TestHost, feed, manual_clock_host};

const KEY: &str = "key_cursor_5b1e9d0c2f7a4e63";
const REPOSITORY: &str = "https://github.com/acme/app";

/// A Cursor bot with `config` (plus the fake's base URL and 30 s polling) and the key set.
async fn cursor_bot(admin: &Api, cursor: &FakeCursor, handle: &str, config: Value, key: Option<&str>) -> String {
    let mut config = config;
    config["apiBaseUrl"] = json!(cursor.base);
    config["pollSeconds"] = json!(30);
    let (status, created) = admin
        .post(
            "/bots",
            json!({"name": handle, "handle": handle, "connection": {"type": "cursor-cloud", "config": config}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let bot = created["bot"]["id"].as_str().unwrap().to_owned();
    if let Some(key) = key {
        let (status, body) = admin
            .call(
                Method::PUT,
                &format!("/bots/{bot}/secrets/api-key"),
                Some(&json!({ "value": key })),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_session_runs_from_launch_to_pull_request() {
    let (host, admin, clock, _) = manual_clock_host().await;
    let cursor = FakeCursor::start(KEY).await;
    let config = json!({"repository": REPOSITORY, "ref": "main", "autoCreatePr": true, "model": "gpt-5",
        "branchName": "cursor/login", "guidance": "Run the tests before you push."});
    let bot = cursor_bot(&admin, &cursor, "cursor", config, Some(KEY)).await;
    let mut events = host.events();
    let (_, session) = admin
        .assign_new_task(&bot, "Fix the login page", "The button does nothing.")
        .await;
    events.job_finished(&session, "start_session").await;

    // The launch carried the task, the guidance, the repository and where to report back.
    let agents = cursor.agents();
    assert_eq!(agents.len(), 1);
    let agent = &agents[0];
    let prompt = agent.launch["prompt"]["text"].as_str().unwrap();
    assert!(
        prompt.contains("# Fix the login page\n\nThe button does nothing."),
        "{prompt}"
    );
    assert!(prompt.contains("Run the tests before you push."), "{prompt}");
    assert_eq!(agent.launch["source"], json!({"repository": REPOSITORY, "ref": "main"}));
    assert_eq!(
        agent.launch["target"],
        json!({"autoCreatePr": true, "branchName": "cursor/login"})
    );
    assert_eq!(agent.launch["model"], "gpt-5");
    assert!(
        agent
            .webhook_url
            .starts_with(&format!("{}/api/plugins/cursor-cloud/inbound/con_", host.base_url))
    );
    assert!(agent.webhook_secret.starts_with("whsec_"));
    let queued = admin.session_card(&session).await;
    assert_eq!(queued["status"], "queued", "CREATING is queued: {queued}");
    assert_eq!(
        feed(&queued)[0].1,
        format!("Launched Cursor agent \"Agent bc_1\" on {REPOSITORY}")
    );

    // Progress arrives by polling: each new message once, in order.
    cursor.set_status("bc_1", "RUNNING");
    cursor.say("bc_1", "Reading the login form.");
    cursor.say("bc_1", "The click handler is never bound.");
    poll(&host, &clock, &mut events, &session).await;
    let running = admin.session_card(&session).await;
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["externalLink"]["url"], "https://cursor.com/agents?id=bc_1");
    cursor.say("bc_1", "Bound the handler and added a test.");
    poll(&host, &clock, &mut events, &session).await;

    // Cursor's webhook says it finished: a forged one is refused, the real one finishes the
    // session, and its redelivery changes nothing.
    cursor.finish(
        "bc_1",
        "Fixed the login button; added a regression test.",
        Some("https://github.com/acme/app/pull/42"),
    );
    assert_eq!(
        cursor
            .send_webhook("bc_1", "evt-1", Some("whsec_forged-forged-forged-forged"))
            .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(cursor.send_webhook("bc_1", "evt-1", None).await, StatusCode::ACCEPTED);
    events.job_finished(&session, "session_event").await;
    assert_eq!(cursor.send_webhook("bc_1", "evt-1", None).await, StatusCode::OK);
    let done = admin.session_card(&session).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["result"], "Fixed the login button; added a regression test.");
    assert_eq!(
        done["externalLink"],
        json!({"url": "https://github.com/acme/app/pull/42", "label": "Pull request"})
    );
    assert_eq!(
        feed(&done),
        [
            (
                "action".to_owned(),
                format!("Launched Cursor agent \"Agent bc_1\" on {REPOSITORY}")
            ),
            ("thought".to_owned(), "Reading the login form.".to_owned()),
            ("thought".to_owned(), "The click handler is never bound.".to_owned()),
            ("thought".to_owned(), "Bound the handler and added a test.".to_owned()),
            (
                "response".to_owned(),
                "Fixed the login button; added a regression test.".to_owned()
            ),
        ]
    );
    // The next poll finds the session finished and leaves it alone.
    clock.advance(30_000);
    host.app().jobs_queued.notify_one();
    events.job_finished(&session, "timer").await;
    assert_eq!(feed(&admin.session_card(&session).await).len(), 5);
    assert_eq!(
        host.count("plugin_kv").await,
        0,
        "a finished session leaves no kv state behind"
    );
    assert_eq!(cursor.violations(), Vec::<String>::new());
    assert_eq!(cursor.unauthorized(), 0);
    assert!(!admin.session_card(&session).await.to_string().contains(KEY));
    host.assert_absent_from_database(&[KEY.to_owned()]).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_webhook_and_a_host_restart_do_not_leave_a_session_hanging() {
    let (mut host, _, clock, token) = manual_clock_host().await;
    let admin = host.api(&token);
    let cursor = FakeCursor::start(KEY).await;
    let bot = cursor_bot(&admin, &cursor, "cursor", json!({"repository": REPOSITORY}), Some(KEY)).await;
    let mut events = host.events();
    let (_, session) = admin.assign_new_task(&bot, "Bump the dependencies", "").await;
    events.job_finished(&session, "start_session").await;

    host.restart().await;
    let admin = host.api(&token);
    let mut events = host.events();
    // Cursor is briefly down at the first poll: the session keeps waiting, not failing.
    cursor.set_status("bc_1", "RUNNING");
    cursor.fail_reads(1);
    poll(&host, &clock, &mut events, &session).await;
    assert_eq!(admin.session_card(&session).await["status"], "queued");
    // Cursor finishes, but its webhook never arrives: the next poll finds out.
    cursor.say("bc_1", "Bumped 12 packages.");
    cursor.finish("bc_1", "Dependencies bumped.", None);
    poll(&host, &clock, &mut events, &session).await;
    let done = admin.session_card(&session).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["result"], "Dependencies bumped.");
    assert_eq!(
        done["externalLink"]["url"], "https://cursor.com/agents?id=bc_1",
        "no PR: the agent's page"
    );
    assert_eq!(cursor.agents().len(), 1, "one agent, however the session was resumed");
    assert_eq!(cursor.violations(), Vec::<String>::new());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_and_cancel_reach_the_agent() {
    let (host, admin, _, _) = manual_clock_host().await;
    let cursor = FakeCursor::start(KEY).await;
    let bot = cursor_bot(&admin, &cursor, "cursor", json!({"repository": REPOSITORY}), Some(KEY)).await;
    let mut events = host.events();
    let (task, session) = admin.assign_new_task(&bot, "Fix the login page", "").await;
    events.job_finished(&session, "start_session").await;

    let (_, comment) = admin
        .post(
            &format!("/tasks/{task}/comments"),
            json!({"comment": "@cursor also keep the old URL working"}),
        )
        .await;
    assert_eq!(comment["followedUpSessionIds"], json!([session]), "{comment}");
    events.job_finished(&session, "session_event").await;
    let agent = cursor.agent("bc_1");
    assert_eq!(agent.follow_ups.len(), 1);
    assert!(
        agent.follow_ups[0].ends_with("wrote on the task:\n\n@cursor also keep the old URL working"),
        "{:?}",
        agent.follow_ups
    );
    let after = admin.session_card(&session).await;
    assert_eq!(after["status"], "running");
    assert!(feed(&after).contains(&("prompt".to_owned(), "@cursor also keep the old URL working".to_owned())));

    // Taking the task from the bot cancels the session and stops the agent.
    admin
        .patch(&format!("/tasks/{task}"), json!({"assigneeId": null}))
        .await;
    events.job_finished(&session, "session_event").await;
    assert!(cursor.agent("bc_1").stopped);
    let stops = cursor.requests("POST", "/v0/agents/bc_1/stop");
    assert_eq!(stops.len(), 1);
    assert_eq!(
        (stops[0].method.as_str(), stops[0].path.as_str()),
        ("POST", "/v0/agents/bc_1/stop")
    );
    assert_eq!(stops[0].body, json!({}));
    let canceled = admin.session_card(&session).await;
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    assert!(
        feed(&canceled)
            .iter()
            .any(|(kind, body)| kind == "log" && body.starts_with("Stopped the Cursor agent"))
    );
    assert_eq!(cursor.violations(), Vec::<String>::new());
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_errors_tell_the_admin_what_to_do() {
    let (host, admin, clock, _) = manual_clock_host().await;
    let cursor = FakeCursor::start(KEY).await;

    // Validate connection: no key, a wrong key, the right key.
    let bot = cursor_bot(&admin, &cursor, "cursor", json!({"repository": REPOSITORY}), None).await;
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
        .call(Method::PUT, &secret, Some(&json!({"value": "key_wrong_000000000000"})))
        .await;
    let (_, result) = admin.post(&validate, json!({})).await;
    assert_eq!(result["fieldErrors"][0]["field"], "api-key", "{result}");
    assert!(
        result["fieldErrors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Cursor rejected the API key"),
        "{result}"
    );
    assert_eq!(cursor.unauthorized(), 1);
    admin.call(Method::PUT, &secret, Some(&json!({ "value": KEY }))).await;
    let (_, result) = admin.post(&validate, json!({})).await;
    assert_eq!(result, json!({"ok": true, "fieldErrors": []}));

    // A repository Cursor cannot use fails the session with what to check.
    let mut events = host.events();
    cursor.fail_launches(1, 403, json!({"error": "Repository access denied"}));
    let (_, session) = admin.assign_new_task(&bot, "Task one", "").await;
    events.job_finished(&session, "start_session").await;
    let failed = admin.session_card(&session).await;
    assert_eq!(failed["status"], "failed");
    let message = failed["statusMessage"].as_str().unwrap();
    assert!(
        message.contains("Cursor could not access the repository (403): Repository access denied"),
        "{message}"
    );

    // Cursor down: the start is retried later, and launches exactly one agent.
    cursor.fail_launches(1, 503, json!({"error": "upstream unavailable"}));
    let (_, session) = admin.assign_new_task(&bot, "Task two", "").await;
    events.job_finished(&session, "start_session").await;
    assert_eq!(admin.session_card(&session).await["status"], "queued");
    clock.advance(2_000);
    host.app().jobs_queued.notify_one();
    events.job_finished(&session, "start_session").await;
    assert_eq!(cursor.agents().len(), 1);
    assert!(
        feed(&admin.session_card(&session).await)[0]
            .1
            .starts_with("Launched Cursor agent")
    );

    // A bot without a repository: the session says what to set.
    let bare = cursor_bot(&admin, &cursor, "bare", json!({}), Some(KEY)).await;
    let (_, session) = admin.assign_new_task(&bare, "Task three", "").await;
    events.job_finished(&session, "start_session").await;
    let failed = admin.session_card(&session).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["statusMessage"]
            .as_str()
            .unwrap()
            .contains("no repository is set"),
        "{failed}"
    );
    assert_eq!(cursor.violations(), Vec::<String>::new());
    host.stop().await;
}
