//! Input every backend can store, and the JSON error shape on every 4xx: a NUL character in any
//! text field, path id or query value is a 400 naming the field and changes nothing (the same on
//! SQLite, which could store it, as on PostgreSQL, which cannot); paths that are not UTF-8 and
//! requests hyper refuses for their headers are answered in JSON too.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::utils::wrapper::FakeWrapper;
use crate::utils::{Api, TestHost};

/// Rows in the tables a refused request could have written to.
async fn row_counts(host: &TestHost) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "tasks",
        "task_comments",
        "users",
        "api_tokens",
        "session_activities",
        "session_status_changes",
        "audit_log",
    ] {
        counts.push(host.count(table).await);
    }
    counts
}

fn assert_names_field(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert_eq!(body["field"], field, "{body}");
    assert!(body["message"].as_str().unwrap().contains("NUL"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_any_text_is_refused_with_its_field_named_and_changes_nothing() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let mut wrapper = FakeWrapper::start(&host.base_url).await;
    let bot = admin.create_bot("Claw", "claw", &wrapper.webhook_url).await;
    wrapper.configure(&bot);
    let task = admin.create_task("Clean").await;
    let task_id = task["id"].as_str().unwrap().to_owned();
    admin
        .patch(&format!("/tasks/{task_id}"), json!({"assigneeId": bot.id}))
        .await;
    let (session, _, _) = wrapper.next_run().await;
    let bot_api = host.api(&bot.token);
    let before = row_counts(&host).await;

    let nul = "bad\u{0}text";
    let cases: Vec<(&Api, reqwest::Method, String, Value, &str)> = vec![
        (
            &admin,
            reqwest::Method::POST,
            "/tasks".into(),
            json!({"title": nul}),
            "title",
        ),
        (
            &admin,
            reqwest::Method::POST,
            "/tasks".into(),
            json!({"title": "ok", "description": nul}),
            "description",
        ),
        (
            &admin,
            reqwest::Method::PATCH,
            format!("/tasks/{task_id}"),
            json!({"title": nul}),
            "title",
        ),
        (
            &admin,
            reqwest::Method::POST,
            format!("/tasks/{task_id}/comments"),
            json!({"comment": nul}),
            "comment",
        ),
        (
            &admin,
            reqwest::Method::POST,
            "/people".into(),
            json!({"name": nul, "handle": "max", "role": "member"}),
            "name",
        ),
        (
            &admin,
            reqwest::Method::POST,
            "/people".into(),
            json!({"name": "Max", "handle": "max", "role": "member", "email": nul}),
            "email",
        ),
        (
            &admin,
            reqwest::Method::POST,
            "/bots".into(),
            json!({"name": nul, "handle": "nul", "connection": {"type": "self-hosted", "config": {"webhookUrl": "https://a.example/x"}}}),
            "name",
        ),
        (
            &admin,
            reqwest::Method::POST,
            "/bots".into(),
            json!({"name": "n", "handle": "nul", "connection": {"type": nul, "config": {}}}),
            "connection.type",
        ),
        (
            &admin,
            reqwest::Method::POST,
            "/tokens".into(),
            json!({"name": nul, "scopes": ["read"]}),
            "name",
        ),
        (
            &bot_api,
            reqwest::Method::POST,
            format!("/agent-sessions/{session}/activities"),
            json!({"activityType": "thought", "body": nul}),
            "body",
        ),
        (
            &bot_api,
            reqwest::Method::POST,
            format!("/agent-sessions/{session}/activities"),
            json!({"activityType": "thought", "body": "fine", "idempotencyKey": nul}),
            "idempotencyKey",
        ),
        (
            &bot_api,
            reqwest::Method::PATCH,
            format!("/agent-sessions/{session}/status"),
            json!({"status": "failed", "message": nul}),
            "message",
        ),
    ];
    for (api, method, path, body, field) in cases {
        let (status, answer) = api.call(method.clone(), &path, Some(&body)).await;
        assert_names_field(status, &answer, field);
    }
    for (path, field) in [
        ("/tasks/%00".to_owned(), "path"),
        (format!("/tasks/{task_id}%00/history"), "path"),
        ("/audit?action=a%00b".to_owned(), "action"),
        ("/users?kind=%00".to_owned(), "kind"),
    ] {
        let (status, answer) = admin.get(&path).await;
        assert_names_field(status, &answer, field);
    }
    // Free-form JSON (an activity's `raw`, a connection config) is kept serialized, where the NUL
    // stays escaped; fields an operation does not declare are ignored by it.
    let (status, answer) = bot_api
        .post(
            &format!("/agent-sessions/{session}/activities"),
            json!({"activityType": "log", "body": "raw output", "raw": {"stdout": nul}, "extra\u{0}": nul}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["raw"]["stdout"], nul);

    let mut after = row_counts(&host).await;
    // The accepted raw activity and its audit record are the only new rows.
    after[4] -= 1;
    after[6] -= 1;
    assert_eq!(after, before, "a refused request wrote something");
    host.stop().await;
}

/// Sends raw bytes to the host and reads its whole answer.
async fn raw_exchange(host: &TestHost, request: &[u8]) -> String {
    let address = host.base_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    // The host may answer and close before reading everything (a header limit).
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(crate::utils::EVENT_TIMEOUT, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn json_error_of(answer: &str) -> Value {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert!(body["error"].is_string() && body["message"].is_string(), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_error_is_json_even_before_routing() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    // A path that is not UTF-8 once decoded.
    let (status, body) = admin.get("/tasks/%ff%fe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "path", "{body}");

    // Too many headers, and one huge header: hyper refuses both before any route runs.
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for n in 0..300 {
        many.push_str(&format!("X-Header-{n}: {n}\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw_exchange(&host, many.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(json_error_of(&answer)["error"], "headers_too_large");

    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Huge: {}\r\n\r\n",
        "h".repeat(1 << 20)
    );
    let answer = raw_exchange(&host, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    json_error_of(&answer);

    // A request line that is not HTTP.
    let answer = raw_exchange(&host, b"HELLO\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    json_error_of(&answer);
    host.stop().await;
}
