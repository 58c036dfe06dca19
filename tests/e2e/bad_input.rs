//! Bad input gets a 4xx JSON error saying what to fix, and writes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::utils::wrapper::FakeWrapper;
use crate::utils::{Api, TestHost};

/// Rows of every table a session call could write.
async fn session_rows(host: &TestHost) -> (i64, i64, i64) {
    (
        host.count("session_activities").await,
        host.count("session_status_changes").await,
        host.count("agent_sessions").await,
    )
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error must say what to fix: {body}"
    );
}

/// Two workspaces, a bot in the first with a finished session, another bot, and a task in the second.
struct World {
    host: TestHost,
    admin: Api,
    bot: Api,
    other_bot: Api,
    session: String,
    task_id: String,
    foreign_admin: Api,
    foreign_task: String,
}

async fn world() -> World {
    let host = TestHost::start().await;
    let acme = host.bootstrap("Acme").await;
    let globex = host.bootstrap("Globex").await;
    let admin = host.api(&acme.admin_token);
    let mut wrapper = FakeWrapper::start(&host.base_url).await;
    let bot = admin.create_bot("Claw", "claw", &wrapper.webhook_url).await;
    wrapper.configure(&bot);
    let other = admin.create_bot("Hermes", "hermes", "http://127.0.0.1:9/unused").await;
    let task = admin.create_task("Ship it").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    let (_, assigned) = admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": bot.id}))
        .await;
    let session = assigned["agentSessionIds"][0].as_str().unwrap().to_owned();
    wrapper.next_run().await;
    let foreign_admin = host.api(&globex.admin_token);
    let foreign_task = foreign_admin.create_task("Their task").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    World {
        bot: host.api(&bot.token),
        other_bot: host.api(&other.token),
        admin,
        session,
        task_id,
        foreign_admin,
        foreign_task,
        host,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_foreign_ids_are_not_found() {
    let w = world().await;
    for path in [
        "/tasks/tsk_00000000000000000000000000",
        "/tasks/999999",
        "/agent-sessions/ses_unknown",
        "/bots/bot_unknown",
    ] {
        let (status, body) = w.admin.get(path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    // Another workspace's task and session exist, but not for these callers.
    let (status, body) = w.admin.get(&format!("/tasks/{}", w.foreign_task)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = w.foreign_admin.get(&format!("/tasks/{}", w.task_id)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = w.foreign_admin.get(&format!("/agent-sessions/{}", w.session)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let before = session_rows(&w.host).await;
    let (status, body) = w
        .foreign_admin
        .patch(&format!("/tasks/{}", w.task_id), json!({"title": "pwned"}))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = w
        .foreign_admin
        .post(
            &format!("/tasks/{}/comments", w.task_id),
            json!({"comment": "@claw hi"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = w
        .bot
        .post(
            "/agent-sessions/ses_unknown/activities",
            json!({"activityType": "log", "body": "x"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(session_rows(&w.host).await, before);
    let (_, task) = w.admin.get(&format!("/tasks/{}", w.task_id)).await;
    assert_eq!(task["title"], "Ship it");
    w.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sessions_own_bot_may_use_the_session_api() {
    let w = world().await;
    let before = session_rows(&w.host).await;
    let s = &w.session;
    let (status, _) = w.other_bot.get(&format!("/agent-sessions/{s}/context")).await;
    assert!(!status.is_success(), "another bot's token must not read the context");
    let (status, body) = w
        .other_bot
        .post(
            &format!("/agent-sessions/{s}/activities"),
            json!({"activityType": "log", "body": "hijack"}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = w
        .other_bot
        .patch(&format!("/agent-sessions/{s}/status"), json!({"status": "failed"}))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = w
        .admin
        .post(
            &format!("/agent-sessions/{s}/activities"),
            json!({"activityType": "log", "body": "person"}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(session_rows(&w.host).await, before);
    let (_, card) = w.admin.get(&format!("/agent-sessions/{s}")).await;
    assert_eq!(card["status"], "done");
    w.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_enum_values_name_the_allowed_ones() {
    let w = world().await;
    let before = session_rows(&w.host).await;
    let s = &w.session;
    let (status, body) = w
        .bot
        .post(
            &format!("/agent-sessions/{s}/activities"),
            json!({"activityType": "tool_call", "body": "x"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let message = body["message"].as_str().unwrap();
    for allowed in [
        "thought",
        "action",
        "elicitation",
        "response",
        "error",
        "prompt",
        "log",
        "modelRequest",
        "modelResponse",
        "toolCall",
        "toolResult",
    ] {
        assert!(message.contains(allowed), "{message} should name {allowed}");
    }
    assert_eq!(body["field"], "activityType");
    let (status, body) = w
        .bot
        .patch(&format!("/agent-sessions/{s}/status"), json!({"status": "cancelled"}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let message = body["message"].as_str().unwrap();
    for allowed in ["queued", "running", "done", "failed", "canceled"] {
        assert!(message.contains(allowed), "{message} should name {allowed}");
    }
    let (status, body) = w
        .bot
        .post(&format!("/agent-sessions/{s}/activities"), json!({"body": "no type"}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("activityType"), "{body}");
    assert_eq!(session_rows(&w.host).await, before);
    w.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_change_nothing() {
    let w = world().await;
    let before = session_rows(&w.host).await;
    let tasks_before = w.host.count("tasks").await;
    let s = &w.session;
    let activities = format!("/agent-sessions/{s}/activities");
    let (status, body) = w
        .bot
        .raw(
            Method::POST,
            &activities,
            Some("application/json"),
            "{\"activityType\": \"log\", ",
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, body) = w
        .bot
        .raw(Method::POST, &activities, Some("application/json"), "[1, 2]")
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, body) = w
        .bot
        .raw(Method::POST, &activities, None, "{\"activityType\": \"log\"}")
        .await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (status, body) = w
        .bot
        .raw(
            Method::PATCH,
            &format!("/agent-sessions/{s}/status"),
            Some("application/json"),
            "not json",
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let huge = json!({"activityType": "log", "body": "x".repeat(3 << 20)}).to_string();
    let (status, body) = w
        .bot
        .raw(Method::POST, &activities, Some("application/json"), &huge)
        .await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let (status, body) = w.admin.post("/tasks", json!({"title": "   "})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    // Well-formed references to nothing are not found.
    let (status, body) = w
        .admin
        .post("/tasks", json!({"title": "x", "assigneeId": "usr_nobody"}))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = w
        .admin
        .patch(&format!("/tasks/{}", w.task_id), json!({"statusId": "sts_nope"}))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = w.admin.patch(&format!("/tasks/{}", w.task_id), json!({})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, body) = w
        .admin
        .post(
            &format!("/tasks/{}/comments", w.task_id),
            json!({"body": "wrong field name"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, body) = w.admin.get("/tasks/grid?page=1&pageSize=1000").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    let (status, body) = w.admin.get("/tasks/grid?page=abc").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(session_rows(&w.host).await, before);
    assert_eq!(w.host.count("tasks").await, tasks_before);
    assert_eq!(w.host.count("task_comments").await, 0);
    w.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked() {
    let w = world().await;
    let (status, body) = w.host.anonymous().get("/tasks/statuses").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = w.host.api("lt_pat_notarealtoken").get("/tasks/statuses").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    // A well-formed token that was never issued.
    let forged = leadtime_host::domain::tokens::generate_token();
    let (status, body) = w.host.api(&forged).get("/tasks/statuses").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    // Bots cannot administer the workspace.
    let bots_before = w.host.count("users").await;
    let (status, body) = w.bot.post("/bots", json!({"name": "Evil", "handle": "evil", "connection": {"type": "self-hosted", "config": {"webhookUrl": "http://127.0.0.1:9/x"}}})).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(w.host.count("users").await, bots_before);
    w.host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_configs_are_validated_by_the_plugin_with_field_errors() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let users_before = host.count("users").await;
    let (status, body) = admin
        .post("/bots", json!({"name": "Claw", "handle": "claw", "connection": {"type": "self-hosted", "config": {"webhookUrl": "ftp://x", "mode": "turbo"}}}))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_config");
    let fields: Vec<&str> = body["fieldErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["webhookUrl", "mode"], "{body}");
    let (status, body) = admin
        .post(
            "/bots",
            json!({"name": "Claw", "handle": "claw", "connection": {"type": "telepathy", "config": {}}}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert!(
        body["message"].as_str().unwrap().contains("self-hosted"),
        "names the installed types: {body}"
    );
    let (status, body) = admin.post("/bots", json!({"name": "Claw", "handle": "no spaces", "connection": {"type": "self-hosted", "config": {"webhookUrl": "https://a.example/"}}})).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(host.count("users").await, users_before);
    admin
        .create_bot("Claw", "claw", "https://a.example/leadtime/webhook")
        .await;
    let (status, body) = admin.post("/bots", json!({"name": "Claw 2", "handle": "CLAW", "connection": {"type": "self-hosted", "config": {"webhookUrl": "https://a.example/"}}})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    host.stop().await;
}
