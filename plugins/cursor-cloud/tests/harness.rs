//! The Cursor Cloud plugin in the plugin test harness, with Cursor's API scripted: a start
//! launches one agent with the key filled in by the host, a poll brings its messages, link and
//! end, and a retried start does not launch a second agent.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is the failure report

use leadtime_plugin_test::{Harness, HttpReply, Task};
use serde_json::json;

const AGENTS: &str = "https://api.cursor.com/v0/agents";
const AGENT: &str = "https://api.cursor.com/v0/agents/bc_1";
const CONVERSATION: &str = "https://api.cursor.com/v0/agents/bc_1/conversation";

async fn cursor() -> Harness {
    Harness::builtin("cursor-cloud")
        .await
        .unwrap()
        .config(json!({"repository": "https://github.com/acme/app", "pollSeconds": 30}))
        .secret("api-key", "key_cursor_test")
}

#[tokio::test]
async fn a_session_launches_one_agent_and_follows_it_to_its_pull_request() {
    let harness = cursor()
        .await
        .http("POST", AGENTS, HttpReply::json(201, json!({"id": "bc_1", "name": "Fix login", "status": "CREATING"})))
        .http("GET", AGENT, HttpReply::json(200, json!({"id": "bc_1", "status": "CREATING", "target": {}})))
        .http(
            "GET",
            AGENT,
            HttpReply::json(
                200,
                json!({"id": "bc_1", "status": "FINISHED", "summary": "Fixed the handler.",
                    "target": {"url": "https://cursor.com/agents?id=bc_1", "prUrl": "https://github.com/acme/app/pull/7"}}),
            ),
        )
        .http("GET", CONVERSATION, HttpReply::json(200, json!({"messages": []})))
        .http(
            "GET",
            CONVERSATION,
            HttpReply::json(200, json!({"messages": [
                {"id": "m1", "type": "user_message", "text": "brief"},
                {"id": "m2", "type": "assistant_message", "text": "Found the bug in the click handler."}]})),
        );
    harness
        .start(Task::new("Fix the login button").described("It does nothing on iOS."))
        .await
        .unwrap();

    let requests = harness.http_requests();
    let launch = &requests[0];
    assert_eq!((launch.method.as_str(), launch.url.as_str()), ("POST", AGENTS));
    assert_eq!(
        launch.header("authorization"),
        Some("Bearer key_cursor_test"),
        "the host fills in the key the plugin only names"
    );
    let body = launch.json();
    assert_eq!(body["source"]["repository"], "https://github.com/acme/app");
    assert!(
        body["prompt"]["text"]
            .as_str()
            .unwrap()
            .contains("Fix the login button"),
        "{body}"
    );
    assert_eq!(body["webhook"]["secret"], "whsec_harness", "{body}");
    assert_eq!(harness.status(), "queued", "Cursor is still creating the agent");

    // The poll: the agent finished with a pull request.
    harness.fire_timers().await.unwrap();
    assert_eq!(harness.status(), "done");
    let bodies: Vec<String> = harness.activities().into_iter().map(|a| a.body).collect();
    assert!(
        bodies.iter().any(|b| b == "Found the bug in the click handler."),
        "{bodies:?}"
    );
    assert!(bodies.iter().any(|b| b == "Fixed the handler."), "{bodies:?}");
    assert_eq!(
        harness.link(),
        Some(("https://github.com/acme/app/pull/7".into(), "Pull request".into()))
    );
    assert!(
        harness.kv().is_empty(),
        "a finished session's state is dropped: {:?}",
        harness.kv().keys()
    );

    // Every request went to Cursor's API with the key; one launch only.
    let requests = harness.http_requests();
    assert_eq!(requests.iter().filter(|r| r.method == "POST").count(), 1);
    assert!(
        requests
            .iter()
            .all(|r| r.url.starts_with("https://api.cursor.com/v0/") && r.header("authorization").is_some())
    );
}

#[tokio::test]
async fn cursor_refusing_the_key_fails_the_start_with_its_words() {
    let harness = cursor().await.http(
        "POST",
        AGENTS,
        HttpReply::json(401, json!({"error": "Invalid API key"})),
    );
    let error = harness.start(Task::new("Fix it")).await.unwrap_err().to_string();
    assert!(error.contains("Invalid API key") || error.contains("401"), "{error}");
    assert_eq!(harness.http_requests().len(), 1);
}
