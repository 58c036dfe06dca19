//! The OpenAPI document lists every operation with an operationId and a summary, including the
//! contract's paths — relative to `/api/public`, as connectors in "full" mode and Leadtime's API
//! skill use them: a listed path appended to the public base reaches its route.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::utils::TestHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_has_an_id_and_a_summary() {
    let host = TestHost::start().await;
    let (status, doc) = host.anonymous().get("/docs/json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut ids = HashSet::new();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
            operations.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert_eq!(doc["servers"][0]["url"], "/api/public", "{}", doc["servers"]);
    for expected in [
        "GET /agent-sessions/{id}/context",
        "POST /agent-sessions/{id}/activities",
        "PATCH /agent-sessions/{id}/status",
        "GET /tasks/{identifier}",
        "PATCH /tasks/{identifier}",
        "POST /tasks/{identifier}/comments",
        "GET /tasks/statuses",
        "GET /tasks/grid",
        "GET /account/info",
        "GET /workspace/details",
        "GET /docs/json",
        "GET /tasks/{identifier}/history",
        "POST /tasks",
    ] {
        assert!(
            operations.iter().any(|o| o == expected),
            "{expected} missing from {operations:?}"
        );
    }
    // People get a readable page of the same operations.
    let page = crate::utils::http_client()
        .get(format!("{}/api/public/docs", host.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let page = page.text().await.unwrap();
    for operation in [
        "createBot",
        "setAgentSessionStatus",
        "claimConnectorSetup",
        "listAuditRecords",
    ] {
        assert!(page.contains(operation), "the docs page lacks {operation}");
    }
    // Unknown routes answer with the JSON error shape too.
    let (status, body) = host.anonymous().get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    host.stop().await;
}

/// Every `(method, path)` the document lists.
fn listed_operations(doc: &Value) -> Vec<(Method, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            all.push((method, path.clone(), operation.clone()));
        }
    }
    all
}

/// Fills every `{parameter}` of a path template with `value`.
fn fill(template: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e).unwrap();
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_path_appended_to_the_public_base_reaches_its_route() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (_, doc) = host.anonymous().get("/docs/json").await;
    let operations = listed_operations(&doc);
    assert!(operations.len() >= 45, "only {} operations", operations.len());
    for (method, path, _) in &operations {
        assert!(
            !path.starts_with("/api/"),
            "{method} {path} is not relative to /api/public"
        );
        // `admin.base` is `{host}/api/public`: exactly what connectors append listed paths to.
        let concrete = fill(path, "unknown_1");
        let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
        let (status, answer) = admin.call(method.clone(), &concrete, body.as_ref()).await;
        let no_route =
            status == StatusCode::NOT_FOUND && answer["message"].as_str().is_some_and(|m| m.starts_with("no route"));
        assert!(
            !no_route && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} (as {concrete}) does not reach a route: {status} {answer}"
        );
    }
    host.stop().await;
}

/// What a "full" mode connector and Leadtime's API skill do with the document: search it (the
/// skill matches a keyword against path, summary, operationId and tags), pick an operation, and
/// call `{base}/api/public` + its path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mode_agent_finds_and_calls_an_operation() {
    let host = TestHost::start().await;
    let admin = host.api(&host.bootstrap("Acme").await.admin_token);
    let (_, doc) = host.anonymous().get("/docs/json").await;
    let matches = |op: &Value, path: &str, keyword: &str| {
        let hit = |text: &str| text.to_lowercase().contains(keyword);
        hit(path)
            || op["summary"].as_str().is_some_and(hit)
            || op["operationId"].as_str().is_some_and(hit)
            || op["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t.as_str().is_some_and(hit)))
    };
    let found: Vec<(Method, String)> = listed_operations(&doc)
        .into_iter()
        .filter(|(_, path, op)| matches(op, path, "comment"))
        .map(|(method, path, _)| (method, path))
        .collect();
    assert!(
        found.contains(&(Method::POST, "/tasks/{identifier}/comments".to_owned())),
        "search `comment` found {found:?}"
    );

    let task = admin.create_task("Full mode").await;
    let number = task["shortNumber"].to_string();
    let path = fill("/tasks/{identifier}/comments", &number);
    let (status, comment) = admin
        .post(&path, json!({"comment": "<p>Posted through a listed operation.</p>"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{comment}");
    let (status, read) = admin.get(&fill("/tasks/{identifier}", &number)).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["id"], task["id"]);
    host.stop().await;
}
